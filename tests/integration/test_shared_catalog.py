"""One price catalog per server (0.10.0): every catalog version is built once into an image in
shared memory and attached by every backend; a writer publishes the version it commits; no
reader ever sees a torn image, also after kill -9 and a crash; 100,000 price rows load in one
statement with the no-overlap guarantee intact."""
import json
import os
import signal
import subprocess
import threading
import time
from decimal import Decimal

import psycopg
import pytest

from conftest import CLUSTER, admin, dsn, one, wait_for


def stats(conn, reload=False):
    return one(conn, "SELECT llm_cost._catalog_stats(%s)", reload)


def server_stats(conn):
    return stats(conn)["shared"]


def test_new_backends_attach_the_one_image(fresh_db):
    with psycopg.connect(dsn(fresh_db), autocommit=True) as first:
        s = stats(first)
        assert s["source"] in ("built and published", "attached")
        version = s["version"]
    before = None
    for _ in range(5):
        with psycopg.connect(dsn(fresh_db), autocommit=True) as c:
            s = stats(c)
            # The same version, attached: no rows read, no private copy.
            assert s["source"] == "attached", s
            assert s["version"] == version
            assert s["read_ms"] == 0
            assert s["private_added_kb"] <= 512, s
            assert one(c, "SELECT llm_cost.estimate_cost('gpt-4o', 1000000, 1000000)") == Decimal("12.5")
            published = s["shared"]["published"]
            assert before is None or published == before
            before = published


def test_a_writer_publishes_and_warm_readers_only_attach(fresh_db):
    readers = [psycopg.connect(dsn(fresh_db), autocommit=True) for _ in range(20)]
    try:
        for r in readers:
            assert one(r, "SELECT llm_cost.estimate_cost('acme-shared-1', 1000000, 0)") is None
        with psycopg.connect(dsn(fresh_db), autocommit=True) as w:
            published = server_stats(w)["published"]
            w.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'acme-shared-1', 4)")
            new_version = one(w, "SELECT version FROM llm_cost.catalog_version")
            # One image for the new version, published by the writer before it committed.
            assert server_stats(w)["published"] == published + 1
        for r in readers:
            assert one(r, "SELECT llm_cost.estimate_cost('acme-shared-1', 1000000, 0)") == Decimal("4")
            s = stats(r)
            assert s["source"] == "attached" and s["version"] == new_version, s
        with psycopg.connect(dsn(fresh_db), autocommit=True) as c:
            assert server_stats(c)["published"] == published + 1
    finally:
        for r in readers:
            r.close()


def test_the_writer_prices_with_its_own_rows_until_it_ends(fresh_db):
    with psycopg.connect(dsn(fresh_db)) as w, psycopg.connect(dsn(fresh_db), autocommit=True) as r:
        w.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'acme-own', 2)")
        assert one(w, "SELECT llm_cost.estimate_cost('acme-own', 1000000, 0)") == Decimal("2")
        assert stats(w)["source"] == "built for this backend"
        assert one(r, "SELECT llm_cost.estimate_cost('acme-own', 1000000, 0)") is None
        w.rollback()
        assert one(w, "SELECT llm_cost.estimate_cost('acme-own', 1000000, 0)") is None
        assert one(r, "SELECT llm_cost.estimate_cost('acme-own', 1000000, 0)") is None
        # A rolled-back version was published under a version number nobody will see again.
        w.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'acme-own', 3)")
        w.commit()
        assert one(r, "SELECT llm_cost.estimate_cost('acme-own', 1000000, 0)") == Decimal("3")
        assert one(w, "SELECT llm_cost.estimate_cost('acme-own', 1000000, 0)") == Decimal("3")


def test_a_prepared_writer_is_built_once_by_its_first_reader(fresh_db):
    with psycopg.connect(dsn(fresh_db), autocommit=True) as w:
        w.execute("BEGIN")
        w.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'acme-2pc', 6)")
        w.execute("PREPARE TRANSACTION 'llm_cost_shared_catalog'")
        w.execute("COMMIT PREPARED 'llm_cost_shared_catalog'")
    readers = [psycopg.connect(dsn(fresh_db), autocommit=True) for _ in range(8)]
    try:
        sources = []
        barrier = threading.Barrier(len(readers))

        def read(c):
            barrier.wait()
            cost = one(c, "SELECT llm_cost.estimate_cost('acme-2pc', 1000000, 0)")
            sources.append((cost, stats(c)["source"]))

        threads = [threading.Thread(target=read, args=(c,)) for c in readers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(cost == Decimal("6") for cost, _ in sources), sources
        # One backend built it (under the builders' lock); the others waited and attached.
        assert sorted(s for _, s in sources).count("built and published") == 1, sources
    finally:
        for r in readers:
            r.close()


def test_fifty_backends_price_identically_across_a_concurrent_price_change(fresh_db):
    """Every statement prices with one whole version: the price it returns is the one of the
    version its snapshot sees, in 50 backends while the price changes under them."""
    with admin(fresh_db) as c:
        c.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'acme-race', 1, 10)")
        c.execute("CREATE TABLE calls (id bigserial, created_at timestamptz DEFAULT now(), model text, input_tokens bigint, output_tokens bigint, cost_usd numeric)")
        c.execute("SELECT llm_cost.track('calls')")
        c.execute("GRANT ALL ON calls, calls_id_seq TO PUBLIC")
    price_of = {}
    stop = threading.Event()
    problems = []
    samples = []

    def reader():
        try:
            with psycopg.connect(dsn(fresh_db), autocommit=True) as c:
                while not stop.is_set():
                    # Three calls priced in one statement, with the version the statement sees.
                    row = c.execute(
                        "SELECT llm_cost.estimate_cost('acme-race', 1000000, 0), llm_cost.estimate_cost('acme-race', 0, 1000000),"
                        " llm_cost.estimate_cost('ACME-race', 2000000, 0), (SELECT version FROM llm_cost.catalog_version), llm_cost._catalog_stats()").fetchone()
                    samples.append(row)
        except Exception as e:  # noqa: BLE001
            problems.append(repr(e))

    threads = [threading.Thread(target=reader) for _ in range(50)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    with admin(fresh_db) as w:
        price_of[one(w, "SELECT version FROM llm_cost.catalog_version")] = Decimal(1)
        for p in (2, 3, 5, 7, 11):
            with w.transaction():
                w.execute("UPDATE llm_cost.model_prices SET input_usd_per_mtok = %s, output_usd_per_mtok = %s WHERE model = 'acme-race'", (p, 10 * p))
                price_of[one(w, "SELECT version FROM llm_cost.catalog_version")] = Decimal(p)
            time.sleep(0.4)
        final_version = one(w, "SELECT version FROM llm_cost.catalog_version")
        # Rows inserted by the 50 backends after the last change: all at the final price.
        stop.set()
        for t in threads:
            t.join()
    assert not problems, problems[:3]
    assert len(samples) > 500
    seen_versions = set()
    for inp, out, double, version, st in samples:
        p = price_of[version]
        assert (inp, out, double) == (p, 10 * p, 2 * p), f"priced {inp} under version {st['version']} ({st['source']}) in a statement that sees version {version}"
        seen_versions.add(version)
    assert len(seen_versions) >= 4, seen_versions

    conns = [psycopg.connect(dsn(fresh_db), autocommit=True) for _ in range(50)]
    try:
        barrier = threading.Barrier(50)

        def insert(c):
            barrier.wait()
            c.execute("INSERT INTO calls (model, input_tokens, output_tokens) SELECT 'acme-race', 1000 * g, 10 * g FROM generate_series(1, 20) g")

        ts = [threading.Thread(target=insert, args=(c,)) for c in conns]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for c in conns[:5]:
            assert stats(c)["version"] == final_version
    finally:
        for c in conns:
            c.close()
    with admin(fresh_db) as c:
        # 1,000 rows, 20 distinct calls, each priced identically in every backend.
        assert one(c, "SELECT count(*) FROM calls") == 1000
        assert one(c, "SELECT count(DISTINCT (input_tokens, cost_usd)) FROM calls") == 20
        assert one(c, "SELECT bool_and(cost_usd = (input_tokens * 11 + output_tokens * 110) / 1000000.0) FROM calls")


def test_no_overlap_holds_for_a_100000_row_load(fresh_db):
    with admin(fresh_db) as c:
        c.execute("SET client_min_messages = warning")
        started = time.monotonic()
        c.execute("""INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok, valid_from, valid_to)
                     SELECT 'reseller', 'm-' || (g % 50000), 1 + g % 7, 2, '2025-01-01'::timestamptz + (g / 50000) * interval '1 year',
                            '2025-01-01'::timestamptz + (g / 50000 + 1) * interval '1 year'
                       FROM generate_series(0, 99999) g""")
        assert time.monotonic() - started < 120
        assert one(c, "SELECT count(*) FROM llm_cost.model_prices WHERE provider = 'reseller'") == 100000
        # Priced from the new version by a fresh backend (attached, not rebuilt).
        with psycopg.connect(dsn(fresh_db), autocommit=True) as r:
            assert one(r, "SELECT llm_cost.estimate_cost('m-123', 1000000, 0, at => '2025-06-01')") == Decimal(1 + 123 % 7)
            assert one(r, "SELECT llm_cost.estimate_cost('m-123', 1000000, 0, at => '2026-06-01')") == Decimal(1 + 50123 % 7)
            s = stats(r)
            assert s["source"] == "attached" and s["rows"] > 100000, s
            assert s["private_added_kb"] <= 2048, s

        # Overlapping rows in one batch: refused whole.
        with pytest.raises(psycopg.errors.ExclusionViolation) as e:
            c.execute("""INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, valid_from)
                         SELECT 'reseller', 'dup-' || g, 1, '2030-01-01'::timestamptz + (g % 2) * interval '1 day'
                           FROM generate_series(1, 4) g, generate_series(1, 2) k""")
        assert "overlap" in str(e.value)
        assert one(c, "SELECT count(*) FROM llm_cost.model_prices WHERE model LIKE 'dup-%%'") == 0

    # Two concurrent batches overlapping each other: the second waits for the first, sees its
    # rows, and is refused.
    a = psycopg.connect(dsn(fresh_db))
    b = psycopg.connect(dsn(fresh_db))
    try:
        a.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) SELECT 'reseller', 'conc-' || g, 1 FROM generate_series(1, 1000) g")
        err = []

        def second():
            try:
                b.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) SELECT 'reseller', 'conc-' || g, 2 FROM generate_series(990, 1990) g")
                b.commit()
            except psycopg.Error as x:
                err.append(x)
                b.rollback()

        t = threading.Thread(target=second)
        t.start()
        time.sleep(1.0)
        assert t.is_alive()  # waiting for the first writer
        a.commit()
        t.join(30)
        assert err and isinstance(err[0], psycopg.errors.ExclusionViolation), err
    finally:
        a.close()
        b.close()
    with admin(fresh_db) as c:
        assert one(c, "SELECT count(*) FROM llm_cost.model_prices WHERE model LIKE 'conc-%%'") == 1000
        assert one(c, "SELECT max(input_usd_per_mtok) FROM llm_cost.model_prices WHERE model LIKE 'conc-%%'") == 1


def _pg_ctl(*args):
    data = CLUSTER / "data"
    return subprocess.run(["runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_ctl", "-D", str(data), *args],
                          capture_output=True, text=True, timeout=120)


def _reconnect(db):
    def ok():
        try:
            with psycopg.connect(dsn(db), autocommit=True, connect_timeout=2) as c:
                c.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False
    assert wait_for(ok, timeout=60)


def test_kill_9_during_a_rebuild_and_a_crash_leave_no_torn_catalog(fresh_db):
    """A writer killed (SIGKILL) while it builds the new version's image at commit: the server
    restarts its shared memory; every reader afterwards prices from a whole image of the version
    its snapshot sees. Then the same after an immediate shutdown (a crash)."""
    with admin(fresh_db) as c:
        c.execute("SET client_min_messages = warning")
        # A large catalog, so that building its image takes a while.
        c.execute("""INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok)
                     SELECT 'bulk', 'bulk-' || g, 1 + g % 9 FROM generate_series(1, 60000) g""")
    w = psycopg.connect(dsn(fresh_db))
    pid = one(w, "SELECT pg_backend_pid()")
    w.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'acme-killed', 9)")

    def commit():
        try:
            w.commit()
        except psycopg.Error:
            pass

    t = threading.Thread(target=commit)
    t.start()
    # Kill it while it reads the catalog for the image it would publish.
    with admin(fresh_db) as watcher:
        wait_for(lambda: one(watcher, "SELECT state = 'active' FROM pg_stat_activity WHERE pid = %s", pid), timeout=10, step=0.005)
    time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    t.join(30)
    w.close()
    _reconnect(fresh_db)

    def check():
        with psycopg.connect(dsn(fresh_db), autocommit=True) as r:
            killed = one(r, "SELECT count(*) FROM llm_cost.model_prices WHERE model = 'acme-killed'")
            cost = one(r, "SELECT llm_cost.estimate_cost('acme-killed', 1000000, 0)")
            assert cost == (Decimal(9) if killed else None)
            assert one(r, "SELECT llm_cost.estimate_cost('bulk-12345', 1000000, 0)") == Decimal(1 + 12345 % 9)
            s = stats(r)
            assert s["version"] == one(r, "SELECT version FROM llm_cost.catalog_version")
            assert s["rows"] == one(r, "SELECT count(*) FROM llm_cost.model_prices")

    check()
    r = _pg_ctl("stop", "-m", "immediate")
    assert r.returncode == 0, r.stderr
    r = _pg_ctl("start", "-w", "-l", str(CLUSTER / "run" / "postgres.log"))
    assert r.returncode == 0, r.stderr
    _reconnect(fresh_db)
    check()
