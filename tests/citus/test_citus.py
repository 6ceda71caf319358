"""llm_cost on Citus (12.1 on PostgreSQL 15): a coordinator and two workers on this machine, each
a scratch cluster with shared_preload_libraries = 'citus,llm_cost'. Skipped, saying so, where
Citus is not installed (it is in no package registry: build a 12.1.x release from
github.com/citusdata/citus and `make install` it to run these)."""
import json
import os
import pathlib
import subprocess
import uuid

import psycopg
import pytest
from psycopg import sql

ROOT = pathlib.Path(__file__).resolve().parents[2]
PKGLIBDIR = subprocess.run(["/usr/bin/pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
CONF = """shared_preload_libraries = 'citus,llm_cost'
max_prepared_transactions = 100
wal_level = logical
citus.enable_unsafe_triggers = on
llm_cost.retention_naptime = 2
"""

# Some builds of PostgreSQL (this machine's) list the libraries allowed as logical decoding output
# plugins; Citus's non-blocking table and shard operations decode through its own.
_DESCRIBE = subprocess.run([os.path.join(subprocess.run(["/usr/bin/pg_config", "--bindir"], capture_output=True, text=True).stdout.strip(),
                                         "postgres"), "--describe-config"], capture_output=True, text=True).stdout
if "output_plugin_libraries" in _DESCRIBE:
    CONF += "output_plugin_libraries = 'pgoutput, test_decoding, citus'\n"

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(PKGLIBDIR, "citus.so")),
                                reason=f"Citus is not installed ({PKGLIBDIR}/citus.so missing): the Citus tests need a hand-built Citus 12.1.x")


def cluster(name, cmd):
    env = dict(os.environ, LLM_COST_CLUSTER=str(ROOT / "target" / f"citus-test-{name}"), LLM_COST_CLUSTER_CONF=CONF)
    out = subprocess.run([str(ROOT / "scripts" / "cluster.sh"), cmd], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def connect(port, db="postgres"):
    return psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname={db}", autocommit=True)


@pytest.fixture(scope="module")
def citus():
    """{'coord': port, 'w1': port, 'w2': port, 'db': name}: Citus with llm_cost set up as
    docs/citus.md says (CREATE EXTENSION on the coordinator after adding the workers)."""
    nodes = ["coord", "w1", "w2"]
    for n in nodes:
        cluster(n, "stop")
    ports = {n: int(cluster(n, "start")) for n in nodes}
    db = "cit_" + uuid.uuid4().hex[:8]
    try:
        for n in nodes:
            # Databases an earlier run left in these clusters keep a Citus maintenance daemon each
            # (background worker slots the logical replication of shard splits needs).
            with connect(ports[n]) as c:
                for (old,) in c.execute("SELECT datname FROM pg_database WHERE datname LIKE 'cit\\_%' OR datname = 'dbg'").fetchall():
                    try:
                        c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(old)))
                    except psycopg.Error:
                        pass  # (one an interrupted shard split left a subscription in: left alone)
            with connect(ports[n]) as c:
                c.execute(f"CREATE DATABASE {db}")
            with connect(ports[n], db) as c:
                c.execute("SET client_min_messages = warning")
                c.execute("CREATE EXTENSION citus")
        with connect(ports["coord"], db) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (ports["coord"],))
            for n in ("w1", "w2"):
                c.execute("SELECT citus_add_node('127.0.0.1', %s)", (ports[n],))
            # (CREATE EXTENSION makes the price catalog reference tables on a coordinator with workers)
            c.execute("CREATE EXTENSION llm_cost")
            c.execute("""CREATE TABLE app_calls (id bigserial, created_at timestamptz NOT NULL DEFAULT now(), tenant_id text NOT NULL,
                                                 model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text,
                                                 PRIMARY KEY (tenant_id, id))""")
            c.execute("SELECT llm_cost.track('app_calls')")
            c.execute("SELECT create_distributed_table('app_calls', 'tenant_id')")
        yield {**ports, "db": db}
    finally:
        for n in nodes:
            cluster(n, "stop")


def test_the_extension_reaches_the_workers(citus):
    for n in ("w1", "w2"):
        with connect(citus[n], citus["db"]) as c:
            assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'llm_cost'").fetchone()[0]


def test_a_price_added_on_the_coordinator_prices_rows_on_every_worker_from_the_next_statement(citus):
    tenants = [f"t{i}" for i in range(12)]  # spread over both workers' shards
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        rows = ", ".join(f"('{t}', 'cit-model-x', 1000000, 0)" for t in tenants)
        c.execute(f"INSERT INTO app_calls (tenant_id, model, input_tokens, output_tokens) VALUES {rows}")
        assert c.execute("SELECT count(*) FROM app_calls WHERE model = 'cit-model-x' AND cost_source = 'unpriced'").fetchone()[0] == 12
        c.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok) VALUES ('acme', 'cit-model-x', 3)")
        c.execute("INSERT INTO llm_cost.model_aliases (alias, model) VALUES ('cit-x', 'cit-model-x')")
        # The same session (Citus keeps its connections to the workers): their backends see it.
        rows = ", ".join(f"('{t}', '{m}', 1000000, 0)" for t in tenants for m in ('cit-model-x', 'cit-x'))
        c.execute(f"INSERT INTO app_calls (tenant_id, model, input_tokens, output_tokens) VALUES {rows}")
        got = c.execute("""SELECT count(*), sum(cost_usd) FROM app_calls
                            WHERE model IN ('cit-model-x', 'cit-x') AND cost_source = 'estimated'""").fetchone()
        assert got == (24, 72)
        # Every worker holds rows of the table (the check above covered both).
        placements = c.execute("""SELECT count(DISTINCT nodeport) FROM pg_dist_shard_placement p JOIN pg_dist_shard s USING (shardid)
                                   WHERE s.logicalrelid = 'app_calls'::regclass""").fetchone()[0]
        assert placements >= 2
    # And on the workers themselves.
    for n in ("w1", "w2"):
        with connect(citus[n], citus["db"]) as c:
            assert str(c.execute("SELECT llm_cost.estimate_cost('cit-x', 1000000, 0)").fetchone()[0]) == "3"


def test_copy_into_a_distributed_tracked_table_prices_every_row(citus):
    with connect(citus["coord"], citus["db"]) as c:
        data = "".join(f"copy{i}\tgpt-4o\t1000000\t0\n" for i in range(40))
        with c.cursor() as cur:
            with cur.copy("COPY app_calls (tenant_id, model, input_tokens, output_tokens) FROM STDIN") as cp:
                cp.write(data)
        got = c.execute("""SELECT count(*), sum(cost_usd), string_agg(DISTINCT cost_source, ',') FROM app_calls
                            WHERE tenant_id LIKE 'copy%'""").fetchone()
        assert got == (40, 100, "estimated")


def raw_vs_rollup(c, table, rollup, keys, time_col, grain):
    """Rows of the rollup view and of the same aggregate over the raw rows, both sorted."""
    k = "".join(f", {g}" for g in keys)
    view = c.execute(f"""SELECT period_start{k}, requests, input_tokens, output_tokens, cost_usd, unpriced_requests
                           FROM {rollup} ORDER BY 1{''.join(f', {i + 2}' for i in range(len(keys)))}""").fetchall()
    raw = c.execute(f"""SELECT date_trunc('{grain}', {time_col}, 'UTC'){k}, count(*), sum(input_tokens), sum(output_tokens),
                               sum(cost_usd), count(*) FILTER (WHERE cost_source = 'unpriced')
                          FROM {table} GROUP BY 1{''.join(f', {i + 2}' for i in range(len(keys)))}
                          ORDER BY 1{''.join(f', {i + 2}' for i in range(len(keys)))}""").fetchall()
    return view, raw


def test_rollups_of_a_distributed_table_are_co_located_and_exact_under_concurrent_writers(citus):
    import random
    import threading
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("""CREATE TABLE ledger (id bigserial, logged_at timestamptz NOT NULL DEFAULT now(), org_id int NOT NULL,
                                          feature text, model text, input_tokens int, output_tokens int, cost_usd numeric,
                                          cost_source text, PRIMARY KEY (org_id, id))""")
        c.execute("SELECT llm_cost.track('ledger', time_column => 'logged_at')")
        c.execute("SELECT create_distributed_table('ledger', 'org_id')")
        # Rows before the rollups: the backfill takes them.
        c.execute("""INSERT INTO ledger (org_id, feature, model, input_tokens, output_tokens)
                     SELECT i % 13, 'f' || (i % 4), 'gpt-4o-mini', 1000 * i, 10 * i FROM generate_series(1, 200) i""")
        c.execute("SELECT llm_cost.create_rollup('ledger_by_org', 'ledger', 'day', '{org_id}')")
        c.execute("SELECT llm_cost.create_rollup('ledger_by_feature', 'ledger', 'hour', '{feature, model}')")
        c.execute("SELECT llm_cost.create_rollup('ledger_total', 'ledger', 'month', '{}')")
        # Each table of sums is distributed by org_id, co-located with the source.
        got = c.execute("""SELECT logicalrelid::text, column_to_column_name(logicalrelid, partkey),
                                  colocationid = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'ledger'::regclass)
                             FROM pg_dist_partition WHERE logicalrelid::text LIKE 'ledger\\_%%stripes' ORDER BY 1""").fetchall()
        assert got == [("ledger_by_feature_stripes", "org_id", True), ("ledger_by_org_stripes", "org_id", True),
                       ("ledger_total_stripes", "org_id", True)]
    errors = []

    def writer(seed):
        rnd = random.Random(seed)
        try:
            with connect(citus["coord"], citus["db"]) as w:
                w.execute("SET client_min_messages = error")
                for i in range(25):
                    with w.transaction() as tx:
                        rows = ", ".join(f"({rnd.randrange(40)}, 'f{rnd.randrange(4)}', '{rnd.choice(['gpt-4o', 'gpt-4o-mini', 'no-such-model-x'])}', "
                                         f"{rnd.randrange(1, 100000)}, {rnd.randrange(1, 5000)})" for _ in range(rnd.randrange(1, 12)))
                        w.execute(f"INSERT INTO ledger (org_id, feature, model, input_tokens, output_tokens) VALUES {rows}")
                        if rnd.random() < 0.3:
                            raise psycopg.Rollback(tx)
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        # COPY and UPDATE (the old values leave the group, the new ones enter it) reach them too.
        with c.cursor() as cur:
            with cur.copy("COPY ledger (org_id, feature, model, input_tokens, output_tokens) FROM STDIN") as cp:
                cp.write("".join(f"{i}\tcopy\tgpt-4o\t1000\t100\n" for i in range(30)))
        c.execute("UPDATE ledger SET input_tokens = input_tokens + 7, feature = 'moved' WHERE org_id IN (3, 17) AND feature = 'f1'")
        total = c.execute("SELECT count(*) FROM ledger").fetchone()[0]
        assert total > 230
        for rollup, keys, grain in (("ledger_by_org", ["org_id"], "day"), ("ledger_by_feature", ["feature", "model"], "hour"),
                                    ("ledger_total", [], "month")):
            view, raw = raw_vs_rollup(c, "ledger", rollup, keys, "logged_at", grain)
            assert view == raw, rollup
        # Rows landed on both workers' shards of sums.
        nodes = c.execute("""SELECT count(DISTINCT p.nodeport) FROM pg_dist_shard s JOIN pg_dist_placement pl USING (shardid)
                               JOIN pg_dist_node p ON p.groupid = pl.groupid
                              WHERE s.logicalrelid = 'ledger_total_stripes'::regclass""").fetchone()[0]
        assert nodes == 2
        # rebuild_rollup recounts from the raw rows through Citus, to the same sums.
        before = c.execute("SELECT * FROM ledger_by_feature ORDER BY row_key").fetchall()
        c.execute("SELECT llm_cost.rebuild_rollup('ledger_by_feature')")
        assert c.execute("SELECT * FROM ledger_by_feature ORDER BY row_key").fetchall() == before
        # A price added for the unknown model: reprice fixes the rows and the sums on every shard.
        c.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('acme', 'no-such-model-x', 1, 2)")
        changed, diff = c.execute("SELECT rows_changed, cost_difference FROM llm_cost.reprice('ledger')").fetchone()
        assert changed > 0 and diff > 0
        assert c.execute("SELECT count(*) FROM ledger WHERE cost_source = 'unpriced'").fetchone()[0] == 0
        for rollup, keys, grain in (("ledger_by_org", ["org_id"], "day"), ("ledger_total", [], "month")):
            view, raw = raw_vs_rollup(c, "ledger", rollup, keys, "logged_at", grain)
            assert view == raw, rollup
        # Dropping a rollup leaves the others fed.
        c.execute("SELECT llm_cost.drop_rollup('ledger_by_org')")
        c.execute("INSERT INTO ledger (org_id, feature, model, input_tokens, output_tokens) VALUES (5, 'late', 'gpt-4o', 1, 1)")
        view, raw = raw_vs_rollup(c, "ledger", "ledger_total", [], "logged_at", "month")
        assert view == raw


def test_two_phase_commits_of_multi_shard_inserts_update_the_rows_of_sums_they_wrote_before(citus):
    """Citus commits a multi-shard INSERT with PREPARE TRANSACTION on each worker. A worker
    backend's next statement finds its rows of sums free again and updates them: the rows of a
    group stay bounded by the worker backends, not one more per statement (0.13.0 moved every
    backend to a new stripe after each PREPARE: a new row per group and statement)."""
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("""CREATE TABLE tpc_log (id bigserial, at timestamptz NOT NULL DEFAULT '2026-11-02 10:00+00', team int NOT NULL,
                                           model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text,
                                           PRIMARY KEY (team, id))""")
        c.execute("SELECT llm_cost.track('tpc_log', time_column => 'at')")
        c.execute("SELECT create_distributed_table('tpc_log', 'team')")
        c.execute("SELECT llm_cost.create_rollup('tpc_by_model', 'tpc_log', 'day', '{model}')")
        insert = ("INSERT INTO tpc_log (team, model, input_tokens, output_tokens) "
                  "SELECT g % 20, (ARRAY['gpt-4o', 'gpt-4o-mini'])[1 + g % 2], 1000 + g, g FROM generate_series(1, 200) g")
        counts = []
        for i in range(12):
            c.execute(insert)
            counts.append(c.execute("SELECT count(*) FROM tpc_by_model_stripes").fetchone()[0])
        # Every statement went to both workers with two-phase commit.
        assert c.execute("SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'tpc_log'::regclass").fetchone()[0] == 2
        stripes = c.execute("SELECT count(DISTINCT stripe), max(stripe) FROM tpc_by_model_stripes").fetchone()
        assert stripes[1] < 262144, stripes
        # 20 groups: a row each, and more only where a new worker backend got another slot (Citus
        # opens new ones per multi-shard statement; slots are reused lowest first), never one per
        # group and statement as before (240).
        assert counts[0] == 20 and counts[-1] < 12 * 20, counts
        view, raw = raw_vs_rollup(c, "tpc_log", "tpc_by_model", ["model"], "at", "day")
        assert view == raw
        assert c.execute("SELECT sum(requests) FROM tpc_by_model").fetchone()[0] == 12 * 200


def test_rollups_citus_cannot_follow_are_refused_with_what_to_do(citus):
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        # Rollups made before the table was distributed: writes fail (never a silent short sum).
        c.execute("""CREATE TABLE early_log (id bigserial, at timestamptz NOT NULL DEFAULT now(), team text NOT NULL, model text,
                                             input_tokens int, output_tokens int, cost_usd numeric, cost_source text)""")
        c.execute("SELECT llm_cost.track('early_log', time_column => 'at')")
        c.execute("SELECT llm_cost.create_rollup('early_daily', 'early_log', 'day', '{team}')")
        c.execute("SELECT llm_cost.create_rollup('early_models', 'early_log', 'day', '{model}')")
        c.execute("INSERT INTO early_log (team, model, input_tokens, output_tokens) VALUES ('a', 'gpt-4o', 1000000, 0)")
        c.execute("SELECT create_distributed_table('early_log', 'team')")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as e:
            c.execute("INSERT INTO early_log (team, model, input_tokens, output_tokens) VALUES ('a', 'gpt-4o', 1, 1)")
        assert "created before Citus distributed it" in str(e.value)
        assert "llm_cost.distribute_rollups('public.early_log')" in e.value.diag.message_hint
        # distribute_rollups moves their sums next to the shards; one that does not group by the
        # distribution column cannot follow and says what to do instead.
        with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
            c.execute("SELECT llm_cost.distribute_rollups('early_log')")
        assert "drop_rollup" in e.value.diag.message_hint
        c.execute("SELECT llm_cost.drop_rollup('early_models')")
        assert c.execute("SELECT llm_cost.distribute_rollups('early_log')").fetchone()[0] == 1
        assert c.execute("SELECT llm_cost.distribute_rollups('early_log')").fetchone()[0] == 0
        c.execute("INSERT INTO early_log (team, model, input_tokens, output_tokens) VALUES ('a', 'gpt-4o', 1000000, 0), ('b', 'gpt-4o', 1000000, 0)")
        assert c.execute("SELECT team, requests, cost_usd FROM early_daily ORDER BY 1").fetchall() == [("a", 2, 5), ("b", 1, 2.5)]
        # Made again on the distributed table, the other one keeps team as a key of its sums.
        c.execute("SELECT llm_cost.create_rollup('early_models', 'early_log', 'day', '{model}')")
        c.execute("INSERT INTO early_log (team, model, input_tokens, output_tokens) VALUES ('c', 'gpt-4o', 1000000, 0)")
        assert c.execute("SELECT model, requests, cost_usd FROM early_models").fetchall() == [("gpt-4o", 4, 10)]
        # A reference table's triggers fire on every copy of it: no rollup of one.
        c.execute("""CREATE TABLE shared_log (id bigserial, at timestamptz NOT NULL DEFAULT now(), team text, model text,
                                              input_tokens int, output_tokens int, cost_usd numeric)""")
        c.execute("SELECT llm_cost.track('shared_log', time_column => 'at')")
        c.execute("SELECT create_reference_table('shared_log')")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            c.execute("SELECT llm_cost.create_rollup('shared_daily', 'shared_log', 'day', '{team}')")


def test_retention_purges_distributed_and_partitioned_tables_from_the_coordinator(citus):
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        c.execute("""CREATE TABLE calls_kept (id bigserial, ts timestamptz NOT NULL, account text NOT NULL, model text,
                                              input_tokens int, output_tokens int, cost_usd numeric, cost_source text)""")
        c.execute("SELECT llm_cost.track('calls_kept', time_column => 'ts')")
        c.execute("SELECT create_distributed_table('calls_kept', 'account')")
        c.execute("SELECT llm_cost.create_rollup('calls_kept_monthly', 'calls_kept', 'month', '{}')")
        # 700 old rows, 300 of them at one instant (ties across a batch boundary), and 50 recent ones.
        c.execute("""INSERT INTO calls_kept (ts, account, model, input_tokens, output_tokens)
                     SELECT now() - interval '400 days' - (i % 400) * interval '1 minute', 'acct' || (i % 11), 'gpt-4o', 1, 1
                       FROM generate_series(1, 400) i""")
        c.execute("""INSERT INTO calls_kept (ts, account, model, input_tokens, output_tokens)
                     SELECT timestamptz '2025-01-01 00:00:00+00', 'acct' || (i % 11), 'gpt-4o', 1, 1 FROM generate_series(1, 300) i""")
        c.execute("""INSERT INTO calls_kept (ts, account, model, input_tokens, output_tokens)
                     SELECT now() - i * interval '1 minute', 'acct' || (i % 11), 'gpt-4o', 1, 1 FROM generate_series(1, 50) i""")
        # A partitioned distributed table: whole old partitions are dropped on every shard.
        c.execute("""CREATE TABLE calls_parts (id bigserial, ts timestamptz NOT NULL, account text NOT NULL, model text,
                                               input_tokens int, output_tokens int, cost_usd numeric, cost_source text)
                     PARTITION BY RANGE (ts)""")
        c.execute("CREATE TABLE calls_parts_2024 PARTITION OF calls_parts FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
        c.execute("CREATE TABLE calls_parts_now PARTITION OF calls_parts FOR VALUES FROM ('2025-01-01') TO ('2100-01-01')")
        c.execute("SELECT llm_cost.track('calls_parts', time_column => 'ts')")
        c.execute("SELECT create_distributed_table('calls_parts', 'account')")
        c.execute("""INSERT INTO calls_parts (ts, account, model, input_tokens, output_tokens)
                     SELECT CASE WHEN i % 2 = 0 THEN timestamptz '2024-06-01' ELSE now() END, 'a' || (i % 9), 'gpt-4o', 1, 1
                       FROM generate_series(1, 60) i""")
        # (the background worker's purge off meanwhile: its round could take the rows first)
        c.execute("ALTER SYSTEM SET llm_cost.retention_enabled = off")
        c.execute("ALTER SYSTEM SET llm_cost.retention_batch_size = 100")
        c.execute("SELECT pg_reload_conf()")
    try:
        import time
        time.sleep(1)
        with connect(citus["coord"], citus["db"]) as c:
            c.execute("SET client_min_messages = error")
            assert c.execute("SHOW llm_cost.retention_batch_size").fetchone()[0] == "100"
            for t in ("calls_kept", "calls_parts"):
                c.execute(f"SELECT llm_cost.set_retention('{t}', '90 days')")
            runs = {r[0]: r[1:] for r in c.execute("""SELECT log_table::text, rows_deleted, partitions_dropped, error FROM llm_cost.run_retention()
                                                       WHERE log_table::text IN ('calls_kept', 'calls_parts')""").fetchall()}
            assert runs["calls_kept"] == (700, 0, None)
            assert runs["calls_parts"] == (0, 1, None)
            assert c.execute("SELECT count(*), min(ts) > now() - interval '90 days' FROM calls_kept").fetchone() == (50, True)
            assert c.execute("SELECT count(*) FROM calls_parts").fetchone()[0] == 30
            assert c.execute("SELECT to_regclass('calls_parts_2024')").fetchone()[0] is None
            # The rollup keeps what the purge deleted.
            assert c.execute("SELECT sum(requests) FROM calls_kept_monthly").fetchone()[0] == 750
    finally:
        with connect(citus["coord"], citus["db"]) as c:
            c.execute("ALTER SYSTEM RESET llm_cost.retention_batch_size")
            c.execute("ALTER SYSTEM RESET llm_cost.retention_enabled")
            c.execute("SELECT pg_reload_conf()")


def test_unpriced_models_and_budgets_see_the_whole_cluster_from_the_coordinator(citus):
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        c.execute("""CREATE TABLE spend_log (id bigserial, at timestamptz NOT NULL DEFAULT now(), customer text NOT NULL, model text,
                                             input_tokens int, output_tokens int, cost_usd numeric, cost_source text)""")
        c.execute("SELECT llm_cost.track('spend_log', time_column => 'at')")
        c.execute("SELECT create_distributed_table('spend_log', 'customer')")
        c.execute("SELECT llm_cost.create_rollup('spend_daily', 'spend_log', 'day', '{customer}')")
        c.execute("SELECT llm_cost.create_rollup('spend_all', 'spend_log', 'month', '{}')")
        customers = [f"cust{i}" for i in range(10)]  # on both workers
        rows = ", ".join(f"('{x}', 'mystery-model-{n}', 10, 10)" for x in customers for n in (1, 2))
        c.execute(f"INSERT INTO spend_log (customer, model, input_tokens, output_tokens) VALUES {rows}")
        got = c.execute("""SELECT model, rows FROM llm_cost.unpriced_models WHERE log_table = 'spend_log'::regclass ORDER BY 1""").fetchall()
        assert got == [("mystery-model-1", 10), ("mystery-model-2", 10)]
        # Budgets: a cap per customer and a platform-wide one, read across the workers.
        c.execute("SELECT llm_cost.create_budget('cust_cap', 'spend_daily', 5, '{0.5,1}')")
        c.execute("SELECT llm_cost.create_budget('all_cap', 'spend_all', 20, '{0.5,1}')")
        rows = ", ".join(f"('{x}', 'gpt-4o', {1000000 * (i + 1)}, 0)" for i, x in enumerate(customers))  # 2.5 USD x (i+1)
        c.execute(f"INSERT INTO spend_log (customer, model, input_tokens, output_tokens) VALUES {rows}")
        for i, x in enumerate(customers):
            allowed, spent, limit = c.execute("SELECT allowed, spent_usd, limit_usd FROM llm_cost.check_budget('cust_cap', %s)",
                                              (f'{{"customer": "{x}"}}',)).fetchone()
            assert (spent, limit) == (2.5 * (i + 1), 5)
        assert c.execute("SELECT spent_usd FROM llm_cost.check_budget('all_cap', '{}')").fetchone()[0] == 137.5
        status = dict(c.execute("""SELECT "group" ->> 'customer', state FROM llm_cost.budget_status WHERE budget = 'cust_cap'""").fetchall())
        assert status["cust0"] == "warning" and status["cust1"] == "exceeded" and status["cust9"] == "exceeded"
        # Alerts: the coordinator's pass over the distributed sums records each crossing once.
        c.execute("SELECT llm_cost._budget_sweep()")
        c.execute("SELECT llm_cost._budget_sweep()")
        alerts = c.execute("""SELECT "group" ->> 'customer', threshold::text, count(*) FROM llm_cost.budget_alerts
                               WHERE budget = 'cust_cap' GROUP BY 1, 2 ORDER BY 1, 2""").fetchall()
        expected = sorted([("cust0", "0.5", 1)] + [(x, t, 1) for x in customers[1:] for t in ("0.5", "1")])
        assert alerts == expected
        assert c.execute("SELECT count(*) FROM llm_cost.budget_alerts WHERE budget = 'all_cap'").fetchone()[0] == 2


def test_a_shard_trigger_cannot_write_into_the_rollup_of_another_owner(citus):
    """The rollup trigger's argument names the tables of sums its shards write: a table owner
    who writes one naming another owner's rollup (co-located with their own table) gets an error,
    and that rollup keeps its sums."""
    mallory = "mallory_" + uuid.uuid4().hex[:8]  # (roles outlive the test's database)
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        c.execute(f"CREATE ROLE {mallory} LOGIN")
        c.execute(f"CREATE SCHEMA mal AUTHORIZATION {mallory}")
        cols = "id bigserial, at timestamptz NOT NULL DEFAULT now(), team text NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric"
        c.execute(f"CREATE TABLE victim_log ({cols})")
        c.execute("SELECT llm_cost.track('victim_log', time_column => 'at')")
        c.execute("SELECT create_distributed_table('victim_log', 'team')")
        c.execute("SELECT llm_cost.create_rollup('victim_daily', 'victim_log', 'day', '{team}')")
        c.execute("INSERT INTO victim_log (team, model, input_tokens, output_tokens) VALUES ('blue', 'gpt-4o', 1000000, 0)")
        args = c.execute("SELECT llm_cost._rollup_shard_args('victim_log')::text").fetchone()[0]
        before = c.execute("SELECT team, requests, cost_usd FROM victim_daily").fetchall()
        assert before == [("blue", 1, 2.5)]
        c.execute(f"SET ROLE {mallory}")
        c.execute(f"CREATE TABLE mal.fake ({cols})")
        c.execute("SELECT create_distributed_table('mal.fake', 'team', colocate_with => 'victim_log')")
        c.execute("CREATE TRIGGER llm_cost_rollup AFTER INSERT ON mal.fake FOR EACH ROW EXECUTE FUNCTION llm_cost.rollup_row_trigger(%s)"
                  % sql.Literal(args).as_string(c))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("INSERT INTO mal.fake (team, model, input_tokens, output_tokens) VALUES ('blue', 'gpt-4o', 1000000000, 0)")
        c.execute("RESET ROLE")
        assert c.execute("SELECT team, requests, cost_usd FROM victim_daily").fetchall() == before


def test_a_writer_without_usage_on_the_schema_of_the_sums_still_rolls_up(citus):
    """The rollup's view and table of sums live in a schema the writing role may not even look
    into: its single-row, multi-shard and COPY writes are still added up on every worker (the
    shard trigger finds the table of sums by name without the writer's rights), and the writer
    still cannot read the sums."""
    writer = "w_" + uuid.uuid4().hex[:8]  # (roles outlive the test's database)
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        c.execute(f"CREATE ROLE {writer} LOGIN")
        c.execute("CREATE SCHEMA ledger_private")
        c.execute("REVOKE ALL ON SCHEMA ledger_private FROM PUBLIC")
        c.execute("""CREATE TABLE open_log (id bigserial, at timestamptz NOT NULL DEFAULT now(), team text NOT NULL, model text,
                                            input_tokens int, output_tokens int, cost_usd numeric, cost_source text)""")
        c.execute("SELECT llm_cost.track('open_log', time_column => 'at')")
        c.execute("SELECT create_distributed_table('open_log', 'team', shard_count => 6)")
        c.execute("SELECT llm_cost.create_rollup('ledger_private.open_daily', 'open_log', 'day', '{team, model}')")
        c.execute(f"GRANT INSERT ON open_log TO {writer}")
        c.execute(f"GRANT USAGE ON SEQUENCE open_log_id_seq TO {writer}")
    with psycopg.connect(f"host=127.0.0.1 port={citus['coord']} user={writer} dbname={citus['db']}", autocommit=True) as w:
        w.execute("INSERT INTO open_log (team, model, input_tokens, output_tokens) VALUES ('t1', 'gpt-4o', 1000, 100)")
        w.execute("""INSERT INTO open_log (team, model, input_tokens, output_tokens)
                     SELECT 't' || (i % 9), (ARRAY['gpt-4o', 'claude-sonnet-4-5', 'not-a-model'])[1 + i % 3], 100 * i, i
                       FROM generate_series(1, 300) i""")
        with w.cursor() as cur:
            with cur.copy("COPY open_log (team, model, input_tokens, output_tokens) FROM STDIN") as cp:
                for i in range(120):
                    cp.write_row((f"t{i % 5}", "gpt-4o-mini", 10 * i, i))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            w.execute("SELECT * FROM ledger_private.open_daily")
    with connect(citus["coord"], citus["db"]) as c:
        view, raw = raw_vs_rollup(c, "open_log", "ledger_private.open_daily", ["team", "model"], "at", "day")
        assert view == raw
        assert sum(r[3] for r in view) == 421


def test_quoted_names_another_schema_an_integer_key_and_local_times(citus):
    """The same with names that need quoting, a table outside public, an integer distribution
    column and a timestamp (without time zone) column read in the table's time zone."""
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        c.execute('CREATE SCHEMA "Billing"')
        c.execute('''CREATE TABLE "Billing"."Usage Log" (id bigserial, "When" timestamp NOT NULL, "Org Id" int NOT NULL, "Feature" text,
                                                        "Model Name" text, "In" int, "Out" int, "Cost" numeric(20, 10), cost_source text)''')
        c.execute('''SELECT llm_cost.track('"Billing"."Usage Log"', model_column => 'Model Name', input_tokens_column => 'In',
                                          output_tokens_column => 'Out', cost_column => 'Cost', time_column => 'When',
                                          time_zone => 'America/New_York')''')
        c.execute('''SELECT create_distributed_table('"Billing"."Usage Log"', 'Org Id', shard_count => 8)''')
        c.execute('''SELECT llm_cost.create_rollup('"Billing"."Org Feature Daily"', '"Billing"."Usage Log"', 'day', '{"Org Id", "Feature"}',
                                                   'America/New_York')''')
        c.execute('''SELECT llm_cost.create_rollup('"Billing"."Models Monthly"', '"Billing"."Usage Log"', 'month', '{"Model Name"}')''')
        # 23:30 local on Nov 30 (04:30 UTC Dec 1): the New York day is Nov 30.
        c.execute('''INSERT INTO "Billing"."Usage Log" ("When", "Org Id", "Feature", "Model Name", "In", "Out")
                     SELECT timestamp '2026-11-30 23:30' + (i % 3) * interval '1 hour', i % 17, 'f' || (i % 2),
                            (ARRAY['gpt-4o', 'openai/gpt-4o', 'claude-sonnet-4-5', 'unknown-q'])[1 + i % 4], 1000 * i, 10 * i
                       FROM generate_series(1, 120) i''')
        got = c.execute('''SELECT period_start AT TIME ZONE 'America/New_York', sum(requests), sum(cost_usd)
                             FROM "Billing"."Org Feature Daily" GROUP BY 1 ORDER BY 1''').fetchall()
        raw = c.execute('''SELECT date_trunc('day', "When"), count(*), sum("Cost") FROM "Billing"."Usage Log" GROUP BY 1 ORDER BY 1''').fetchall()
        assert got == raw and len(got) == 2
        # (no priced_model_column: grouped by the name as sent)
        models = dict(c.execute('''SELECT "Model Name", requests FROM "Billing"."Models Monthly"''').fetchall())
        assert models == {"gpt-4o": 30, "openai/gpt-4o": 30, "claude-sonnet-4-5": 30, "unknown-q": 30}
        assert c.execute('''SELECT sum(requests) FROM "Billing"."Models Monthly"''').fetchone()[0] == 120
        assert c.execute('''SELECT rows FROM llm_cost.unpriced_models WHERE log_table = '"Billing"."Usage Log"'::regclass''').fetchone()[0] == 30
        # Per-org and per-feature groups equal the raw rows.
        view = c.execute('''SELECT "Org Id", "Feature", requests, cost_usd FROM "Billing"."Org Feature Daily" ORDER BY 1, 2, period_start''').fetchall()
        raw = c.execute('''SELECT "Org Id", "Feature", count(*), sum("Cost") FROM "Billing"."Usage Log"
                            GROUP BY 1, 2, date_trunc('day', "When") ORDER BY 1, 2, date_trunc('day', "When")''').fetchall()
        assert view == raw


def seat_rollup(c, table, rollup, owner_col, n=8):
    """A distributed table tracked with a daily rollup by `owner_col` under row security, one
    row of 1M input tokens of gpt-4o ($2.50) per owner acct0..acct{n-1}."""
    c.execute("SET client_min_messages = error")
    c.execute(f"""CREATE TABLE {table} (id bigserial, at timestamptz NOT NULL DEFAULT now(), {owner_col} text NOT NULL, model text,
                                        input_tokens int, output_tokens int, cost_usd numeric, cost_source text)""")
    c.execute(f"SELECT llm_cost.track('{table}', time_column => 'at')")
    c.execute(f"SELECT create_distributed_table('{table}', '{owner_col}')")
    c.execute(f"SELECT llm_cost.create_rollup('{rollup}', '{table}', 'day', '{{{owner_col}}}')")
    rows = ", ".join(f"('acct{i}', 'gpt-4o', 1000000, 0)" for i in range(n))
    c.execute(f"INSERT INTO {table} ({owner_col}, model, input_tokens, output_tokens) VALUES {rows}")
    c.execute(f"SELECT llm_cost.enable_row_security('{rollup}', '{owner_col}')")


def test_row_security_on_a_distributed_rollup_sees_the_principal_set_with_set_config(citus):
    """Policies of a distributed rollup run on the workers. The principal's settings reach them in
    a transaction block however they were set (set_config as PostGraphile and PostgREST do, SET
    LOCAL, a session SET), changed mid-transaction, across savepoints; outside a transaction
    block the workers see no principal and a reader sees nothing (never someone else's rows)."""
    reader = "reader_" + uuid.uuid4().hex[:8]
    with connect(citus["coord"], citus["db"]) as c:
        seat_rollup(c, "seat_log", "seat_daily", "account")
        odd = "o'b\\r\"9"  # quote, backslash, double quote: sent as a literal, not as SQL
        c.execute("INSERT INTO seat_log (account, model, input_tokens, output_tokens) VALUES (%s, 'gpt-4o', 1000000, 0)", (odd,))
        c.execute(f"CREATE ROLE {reader} LOGIN")
        c.execute(f"GRANT SELECT ON seat_daily, seat_daily_stripes TO {reader}")
        c.execute(f"SET ROLE {reader}")
        mine = "SELECT account, requests, cost_usd FROM seat_daily ORDER BY 1"
        with c.transaction():
            c.execute("SELECT set_config('llm_cost.principal', 'acct5', true)")
            assert c.execute(mine).fetchall() == [("acct5", 1, 2.5)]
        with c.transaction():
            c.execute("SELECT set_config('jwt.claims.user_id', %s, true)", (odd,))
            assert c.execute(mine).fetchall() == [(odd, 1, 2.5)]
        with c.transaction():
            c.execute("""SELECT set_config('request.jwt.claims', '{"sub": "acct2", "role": "x"}', true)""")
            assert c.execute(mine).fetchall() == [("acct2", 1, 2.5)]
            # Another principal later in the same transaction: the open worker connections get it.
            c.execute("""SELECT set_config('request.jwt.claims', '{"sub": "acct6"}', true)""")
            assert c.execute(mine).fetchall() == [("acct6", 1, 2.5)]
            # Claims that name nobody: nobody, on the workers too.
            c.execute("""SELECT set_config('request.jwt.claims', '{"sub": {"x": 1}}', true)""")
            assert c.execute(mine).fetchall() == []
        # A setting read before llm_cost.principal wins on every node alike.
        c.execute("SET citus.propagate_set_commands = 'local'")
        with c.transaction():
            c.execute("SET LOCAL llm_cost.principal = 'acct1'")
            assert c.execute(mine).fetchall() == [("acct1", 1, 2.5)]
            c.execute("SELECT set_config('jwt.claims.user_id', 'acct4', true)")
            assert c.execute(mine).fetchall() == [("acct4", 1, 2.5)]
        c.execute("RESET citus.propagate_set_commands")
        # Savepoints: a principal set inside one that rolls back is gone on every node; one set
        # before it stays, although it was first sent to the workers inside it.
        with c.transaction():
            c.execute("SAVEPOINT a")
            c.execute("SELECT set_config('llm_cost.principal', 'acct7', true)")
            assert c.execute(mine).fetchall() == [("acct7", 1, 2.5)]
            c.execute("ROLLBACK TO SAVEPOINT a")
            assert c.execute(mine).fetchall() == []
            c.execute("SELECT set_config('llm_cost.principal', 'acct3', true)")
            c.execute("SAVEPOINT b")
            assert c.execute(mine).fetchall() == [("acct3", 1, 2.5)]
            c.execute("ROLLBACK TO SAVEPOINT b")
            assert c.execute(mine).fetchall() == [("acct3", 1, 2.5)]
            c.execute("SAVEPOINT c")
            c.execute("SELECT set_config('llm_cost.principal', 'acct0', true)")
            assert c.execute(mine).fetchall() == [("acct0", 1, 2.5)]
            c.execute("RELEASE SAVEPOINT c")
            assert c.execute(mine).fetchall() == [("acct0", 1, 2.5)]
        # A read-only transaction, as PostgREST runs its reads.
        c.execute("BEGIN READ ONLY")
        c.execute("""SELECT set_config('request.jwt.claims', '{"sub": "acct4"}', true)""")
        assert c.execute(mine).fetchall() == [("acct4", 1, 2.5)]
        c.execute("COMMIT")
        # A session setting, read in a transaction block.
        c.execute("SET llm_cost.principal = 'acct6'")
        with c.transaction():
            assert c.execute(mine).fetchall() == [("acct6", 1, 2.5)]
        # Outside a transaction block Citus sends no SET: nothing, never someone else's rows.
        assert c.execute(mine).fetchall() == []
        c.execute("RESET llm_cost.principal")
        c.execute("RESET ROLE")
        assert c.execute("SELECT count(*) FROM seat_daily").fetchone()[0] == 9


def test_postgraphile_readers_of_a_distributed_rollup_and_its_budgets_see_exactly_their_rows(citus):
    """The real PostGraphile 4 (npm) on the coordinator: it sets the JWT's claims and role with
    set_config(..., true) in a transaction per request, and each reader gets exactly their rows
    of a distributed rollup and of budget_status over it, an admin all, no token nothing."""
    import base64
    import hashlib
    import hmac
    import socket
    import time
    import urllib.request
    from decimal import Decimal

    postgraphile = ROOT / "tests" / "graphql" / "node_modules" / ".bin" / "postgraphile"
    if not postgraphile.exists():
        pytest.fail("PostGraphile is not installed: run scripts/test.sh (it runs npm ci in tests/graphql)")
    secret = "citus-test-secret"
    app = "gql_" + uuid.uuid4().hex[:8]
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("CREATE SCHEMA gql")
        seat_rollup(c, "gql.team_calls", "gql.team_daily", "team", n=5)
        c.execute("INSERT INTO gql.team_calls (team, model, input_tokens, output_tokens) VALUES ('acct1', 'gpt-4o', 0, 1000000)")
        c.execute("SELECT llm_cost.create_budget('team_cap', 'gql.team_daily', 5, '{0.8,1}')")
        c.execute(f"CREATE ROLE {app} LOGIN")
        c.execute(f"GRANT llm_cost_reader, llm_cost_admin TO {app}")
        c.execute("GRANT USAGE ON SCHEMA gql TO llm_cost_reader, llm_cost_admin")
        c.execute("GRANT SELECT ON gql.team_daily, gql.team_daily_stripes TO llm_cost_reader, llm_cost_admin")
        # Citus connects to the workers as the role a request switched to (docs/citus.md).
        for role in ("llm_cost_reader", "llm_cost_admin"):
            ok = c.execute(f"SELECT bool_and(success) FROM run_command_on_workers('SET citus.enable_ddl_propagation TO off; ALTER ROLE {role} LOGIN')")
            assert ok.fetchone()[0]

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    def jwt(claims):
        head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = b64(json.dumps({"aud": "postgraphile", "exp": int(time.time()) + 600, **claims}).encode())
        return f"{head}.{body}.{b64(hmac.new(secret.encode(), f'{head}.{body}'.encode(), hashlib.sha256).digest())}"

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    http_port = s.getsockname()[1]
    s.close()
    url = f"http://127.0.0.1:{http_port}/graphql"

    def query(q, token=None):
        req = urllib.request.Request(url, data=json.dumps({"query": q}).encode(),
                                     headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})
        with urllib.request.urlopen(req, timeout=20) as r:
            body = json.loads(r.read())
        assert not body.get("errors"), body["errors"]
        return body["data"]

    log_path = ROOT / "target" / "postgraphile-citus.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(postgraphile), "-c", f"postgres://{app}@127.0.0.1:{citus['coord']}/{citus['db']}", "-s", "gql,llm_cost",
                                 "--include-extension-resources", "-n", "127.0.0.1", "-p", str(http_port), "--jwt-secret", secret,
                                 "--default-role", "llm_cost_reader", "--disable-query-log"],
                                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT / "tests" / "graphql")
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    query("{ __typename }")
                    break
                except Exception:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        raise RuntimeError("PostGraphile did not start:\n" + log_path.read_text())
                    time.sleep(0.3)
            daily = "{ allTeamDailies(orderBy: TEAM_ASC) { nodes { team requests costUsd } } }"
            budgets = '{ allBudgetStatuses(condition: {budget: "team_cap"}, orderBy: GROUP_ASC) { nodes { group spentUsd state } } }'
            for who in ["acct1", "acct3"]:
                token = jwt({"role": "llm_cost_reader", "user_id": who})
                rows = query(daily, token)["allTeamDailies"]["nodes"]
                want = Decimal("12.5") if who == "acct1" else Decimal("2.5")
                assert [(r["team"], int(r["requests"]), Decimal(r["costUsd"])) for r in rows] == [(who, 2 if who == "acct1" else 1, want)]
                st = query(budgets, token)["allBudgetStatuses"]["nodes"]
                group = [json.loads(n["group"]) if isinstance(n["group"], str) else n["group"] for n in st]
                assert group == [{"team": who}]
                assert Decimal(st[0]["spentUsd"]) == want
                assert st[0]["state"] == ("exceeded" if who == "acct1" else "ok")
            admin = query(daily, jwt({"role": "llm_cost_admin", "user_id": "boss"}))["allTeamDailies"]["nodes"]
            assert sorted(r["team"] for r in admin) == [f"acct{i}" for i in range(5)]
            assert sum(Decimal(r["costUsd"]) for r in admin) == Decimal("22.5")
            assert query(daily)["allTeamDailies"]["nodes"] == []
            assert query(budgets)["allBudgetStatuses"]["nodes"] == []
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_the_coordinators_background_worker_purges_and_alerts(citus):
    """No call from anyone: the coordinator's background worker purges the distributed table and
    records the budget crossings of its distributed rollup (NOTIFY to a listener)."""
    import time
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        c.execute("""CREATE TABLE bg_log (id bigserial, at timestamptz NOT NULL DEFAULT now(), acct text NOT NULL, model text,
                                          input_tokens int, output_tokens int, cost_usd numeric, cost_source text)""")
        c.execute("SELECT llm_cost.track('bg_log', time_column => 'at')")
        c.execute("SELECT create_distributed_table('bg_log', 'acct')")
        c.execute("SELECT llm_cost.create_rollup('bg_daily', 'bg_log', 'day', '{acct}')")
        c.execute("SELECT llm_cost.create_budget('bg_cap', 'bg_daily', 1, '{0.5,1}')")
        c.execute("LISTEN llm_cost_budget")
        c.execute("""INSERT INTO bg_log (at, acct, model, input_tokens, output_tokens)
                     SELECT now() - interval '200 days', 'acct' || (i % 6), 'gpt-4o', 1, 1 FROM generate_series(1, 900) i""")
        c.execute("""INSERT INTO bg_log (acct, model, input_tokens, output_tokens)
                     SELECT 'acct' || i, 'gpt-4o', 1000000, 0 FROM generate_series(0, 5) i""")  # 2.5 USD each: past both thresholds
        c.execute("SELECT llm_cost.set_retention('bg_log', '30 days')")
        deadline = time.time() + 30
        while time.time() < deadline:
            old = c.execute("SELECT count(*) FROM bg_log WHERE at < now() - interval '30 days'").fetchone()[0]
            alerts = c.execute("SELECT count(*) FROM llm_cost.budget_alerts WHERE budget = 'bg_cap'").fetchone()[0]
            if old == 0 and alerts == 12:
                break
            time.sleep(0.5)
        assert (old, alerts) == (0, 12)
        assert c.execute("""SELECT sum(rows_deleted) FROM llm_cost.retention_runs WHERE table_name = 'public.bg_log' AND run_by = 'worker'""").fetchone()[0] == 900
        # The notification names the alert only (who may read it reads budget_alerts). Alerts of
        # the other tests' budgets in this database may arrive too (the worker records them when
        # it gets to them): only this budget's are counted, each once.
        ids = {r[0] for r in c.execute("SELECT id FROM llm_cost.budget_alerts WHERE budget = 'bg_cap'")}
        notes, seen = [], []
        deadline = time.time() + 10
        while set(seen) != ids and time.time() < deadline:
            for n in c.notifies(timeout=1):
                notes.append(n.payload)
                assert set(json.loads(n.payload)) == {"id"}, n.payload
                if json.loads(n.payload)["id"] in ids:
                    seen.append(json.loads(n.payload)["id"])
        assert len(ids) == 12 and sorted(seen) == sorted(ids), (notes, ids)
        assert c.execute("SELECT count(*) FROM bg_log").fetchone()[0] == 6


def test_the_0_11_0_update_fills_the_new_sums_of_a_distributed_rollup(citus):
    """ALTER EXTENSION llm_cost UPDATE from 0.10.0 on a Citus coordinator: the tables of sums of a
    distributed rollup gain the 0.11.0 columns on every shard, computed from the raw rows; the
    rollup then equals GROUP BY over the raw rows (cost, errors, cache savings, histogram)."""
    import importlib.util
    import re
    spec = importlib.util.spec_from_file_location("gen_upgrade", ROOT / "scripts" / "gen_upgrade.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    current = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
    gen.install_base_script(current=current)
    db = "citup_" + uuid.uuid4().hex[:8]
    for n in ("coord", "w1", "w2"):
        with connect(citus[n]) as c:
            c.execute(f"CREATE DATABASE {db}")
        with connect(citus[n], db) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION citus")
    with connect(citus["coord"], db) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (citus["coord"],))
        for n in ("w1", "w2"):
            c.execute("SELECT citus_add_node('127.0.0.1', %s)", (citus[n],))
        c.execute("CREATE EXTENSION llm_cost VERSION '0.10.0'")
        for t in ("providers", "model_prices", "model_aliases"):
            c.execute(f"SELECT create_reference_table('llm_cost.{t}')")
        c.execute("""CREATE TABLE up_calls (id bigserial, created_at timestamptz NOT NULL DEFAULT now(), tenant_id text NOT NULL,
                                            model text, input_tokens int, output_tokens int, cache_read_tokens int, error text,
                                            cost_usd numeric, cost_source text, PRIMARY KEY (tenant_id, id))""")
        c.execute("SELECT llm_cost.track('up_calls', cache_read_tokens_column => 'cache_read_tokens')")
        c.execute("SELECT create_distributed_table('up_calls', 'tenant_id')")
        c.execute("SELECT llm_cost.create_rollup('up_daily', 'up_calls', 'day', '{tenant_id,model}')")
        c.execute("""INSERT INTO up_calls (created_at, tenant_id, model, input_tokens, output_tokens, cache_read_tokens, error)
                     SELECT '2026-11-01'::timestamptz + (i % 3) * interval '1 day', 't' || (i % 12),
                            (ARRAY['gpt-4o', 'claude-sonnet-4-5'])[1 + i % 2], 1000 + i, 100, (i % 4) * 500,
                            CASE WHEN i % 5 = 0 THEN 'boom' END
                       FROM generate_series(1, 240) i""")
        c.execute("ALTER EXTENSION llm_cost UPDATE")
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'llm_cost'").fetchone()[0] == current
        for n in ("w1", "w2"):
            with connect(citus[n], db) as w:
                assert w.execute("SELECT extversion FROM pg_extension WHERE extname = 'llm_cost'").fetchone()[0] == current
        # Rows after the update add to the filled sums.
        c.execute("""INSERT INTO up_calls (created_at, tenant_id, model, input_tokens, output_tokens, cache_read_tokens, error)
                     SELECT '2026-11-02', 't' || (i % 12), 'gpt-4o', 500, 50, 800, CASE WHEN i % 3 = 0 THEN 'x' END
                       FROM generate_series(1, 36) i""")
        rolled = c.execute("""SELECT period_start, tenant_id, model, requests, cost_usd, error_cost_usd, cache_savings_usd,
                                     llm_cost.histogram_requests(cost_histogram)
                                FROM up_daily ORDER BY 1, 2, 3""").fetchall()
        raw = c.execute("""SELECT date_trunc('day', created_at, 'UTC'), tenant_id, model, count(*), sum(cost_usd),
                                  coalesce(sum(cost_usd) FILTER (WHERE error IS NOT NULL), 0),
                                  sum(llm_cost.cache_savings(model, input_tokens, output_tokens, cache_read_tokens, 0, created_at)),
                                  count(*) FILTER (WHERE cost_source <> 'unpriced')
                             FROM up_calls GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""").fetchall()
        assert rolled == raw
        assert sum(r[6] for r in rolled) > 0 and sum(r[5] for r in rolled) > 0
        # 0.12.0's internal-state histogram aggregate across shards and tenants (partial states
        # combined on the coordinator), directly and through cost_percentiles.
        total = c.execute("SELECT llm_cost.histogram_requests(llm_cost.cost_histogram_sum(cost_histogram)) FROM up_daily").fetchone()[0]
        assert total == sum(r[7] for r in rolled)
        for t in ("up_daily", "up_daily_stripes"):
            col = "cost_histogram" if t == "up_daily" else "cost_hist"
            per_model = c.execute(f"""SELECT model, llm_cost.histogram_requests(llm_cost.cost_histogram_sum({col}))
                                        FROM {t} GROUP BY 1 ORDER BY 1""").fetchall()
            assert per_model == [(m, sum(r[7] for r in rolled if r[2] == m)) for m in ("claude-sonnet-4-5", "gpt-4o")], (t, per_model)
        pct = c.execute("""SELECT "group"->>'model', priced_requests FROM llm_cost.cost_percentiles('up_daily', '{model}') ORDER BY 1""").fetchall()
        assert pct == [(m, sum(r[7] for r in rolled if r[2] == m)) for m in ("claude-sonnet-4-5", "gpt-4o")], pct


def test_a_shard_writes_only_into_a_shard_of_sums_whose_hash_range_covers_it(citus):
    """alter_distributed_table(..., cascade_to_colocated => false) leaves the tables of sums at their
    old shard count. A shard's trigger may not take the shard of sums with the same smallest hash
    for its own (a wider source shard's rows would be summed into a narrower shard of sums: per-group
    sums short, others' groups listed): it writes only into a shard of sums on its node whose hash
    range covers its whole range, and refuses the write (55000, the statement whole) otherwise."""
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        outcome = {}
        for name, before, after in (("cov_narrow", 8, 4), ("cov_wide", 4, 8)):
            c.execute(f"""CREATE TABLE {name} (id bigserial, created_at timestamptz NOT NULL DEFAULT now(), tenant_id text NOT NULL,
                                               model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text,
                                               PRIMARY KEY (tenant_id, id))""")
            c.execute(f"SELECT llm_cost.track('{name}')")
            c.execute(f"SELECT create_distributed_table('{name}', 'tenant_id', shard_count => {before})")
            c.execute(f"SELECT llm_cost.create_rollup('{name}_daily', '{name}', 'day', '{{tenant_id}}')")
            c.execute(f"INSERT INTO {name} (tenant_id, model, input_tokens, output_tokens) SELECT 't' || i, 'gpt-4o', 1000, 10 FROM generate_series(1, 60) i")
            # (the table computed by an expression: a call on a tracked table named by a literal,
            # a parameter or a variable is refused, see below; this is the case that slips past)
            c.execute(f"""CREATE OR REPLACE FUNCTION cov_reshard(t regclass, n int) RETURNS void LANGUAGE plpgsql AS $$
                          BEGIN PERFORM alter_distributed_table(pg_catalog.to_regclass(t::text), shard_count => n, cascade_to_colocated => false); END $$""")
            c.execute(f"SELECT cov_reshard('{name}', {after})")
            ok = refused = 0
            for i in range(1, 61):
                try:
                    c.execute(f"INSERT INTO {name} (tenant_id, model, input_tokens, output_tokens) VALUES ('t{i}', 'gpt-4o', 2000, 20)")
                    ok += 1
                except psycopg.Error as e:
                    assert e.sqlstate == "55000", e
                    refused += 1
            outcome[name] = (ok, refused)
            # Every tenant's sums, read where Citus routes the tenant, equal its raw rows: nothing
            # was summed into another tenant's shard.
            for i in range(1, 61):
                raw = c.execute(f"SELECT count(*), sum(cost_usd) FROM {name} WHERE tenant_id = %s", (f"t{i}",)).fetchone()
                rolled = c.execute(f"SELECT coalesce(sum(requests), 0), sum(cost_usd) FROM {name}_daily WHERE tenant_id = %s", (f"t{i}",)).fetchone()
                assert rolled == raw, (name, i, rolled, raw)
            groups = c.execute(f"SELECT count(*) FROM {name}_daily").fetchone()[0]
            assert groups == 60, (name, groups)
        # Narrower shards of sums than the source's: none covers a source shard, every write refused.
        assert outcome["cov_narrow"] == (0, 60), outcome
        # Wider shards of sums: a source shard's rows are summed where its covering shard of sums
        # is on the same node, refused where it is not.
        assert sum(outcome["cov_wide"]) == 60, outcome


def test_the_catalog_reaches_the_workers_without_a_manual_step(citus):
    """CREATE EXTENSION on a coordinator with workers makes the price catalog reference tables; a
    coordinator that gets its workers later gets it onto them from its background worker (within
    a naptime); while the catalog is not on the workers, tracking or rolling up a distributed table
    is refused (55000, with what to do) instead of storing its rows unpriced on the workers."""
    import time
    kinds = "SELECT logicalrelid::text, partmethod FROM pg_dist_partition WHERE logicalrelid::text LIKE 'llm_cost.%' ORDER BY 1"
    with connect(citus["coord"], citus["db"]) as c:
        assert c.execute(kinds).fetchall() == [("llm_cost.model_aliases", "n"), ("llm_cost.model_prices", "n"), ("llm_cost.providers", "n")]
        assert c.execute("SELECT llm_cost.citus_setup()").fetchone()[0] == "the price catalog is on every node already"
        # Not on the workers (the catalog's metadata taken away in a transaction, rolled back): refused.
        c.execute("CREATE TABLE nocat (created_at timestamptz NOT NULL DEFAULT now(), tenant_id text NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric)")
        c.execute("SELECT create_distributed_table('nocat', 'tenant_id')")
        for call in ("SELECT llm_cost.track('nocat')",):
            try:
                with c.transaction():
                    c.execute("SET LOCAL client_min_messages = warning")
                    c.execute("DELETE FROM pg_dist_partition WHERE logicalrelid = 'llm_cost.model_aliases'::regclass")
                    c.execute(call)
                raise AssertionError(call)
            except psycopg.Error as e:
                assert e.sqlstate == "55000" and "llm_cost.citus_setup()" in (e.diag.message_hint or ""), e
        assert c.execute(kinds).fetchall()[0] == ("llm_cost.model_aliases", "n")
        c.execute("DROP TABLE nocat")
    # A coordinator whose workers come after CREATE EXTENSION.
    db = "late_" + uuid.uuid4().hex[:8]
    for n in ("coord", "w1", "w2"):
        with connect(citus[n]) as c:
            c.execute(f"CREATE DATABASE {db}")
        with connect(citus[n], db) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION citus")
    with connect(citus["coord"], db) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (citus["coord"],))
        c.execute("CREATE EXTENSION llm_cost")
        assert c.execute(kinds).fetchall() == []
        assert c.execute("SELECT llm_cost.citus_setup()").fetchone()[0].startswith("not a Citus coordinator with workers")
        for n in ("w1", "w2"):
            c.execute("SELECT citus_add_node('127.0.0.1', %s)", (citus[n],))
        end = time.monotonic() + 30
        while time.monotonic() < end and len(c.execute(kinds).fetchall()) < 3:
            time.sleep(0.5)
        assert [k for _, k in c.execute(kinds).fetchall()] == ["n", "n", "n"]
        # A price added on the coordinator prices rows on the workers' shards.
        c.execute("CREATE TABLE late_calls (created_at timestamptz NOT NULL DEFAULT now(), tenant_id text NOT NULL, model text, input_tokens int, output_tokens int, cost_usd numeric, cost_source text)")
        c.execute("SELECT llm_cost.track('late_calls')")
        c.execute("SELECT create_distributed_table('late_calls', 'tenant_id')")
        c.execute("INSERT INTO llm_cost.model_prices (provider, model, input_usd_per_mtok, output_usd_per_mtok) VALUES ('house', 'late-model', 1, 2)")
        c.execute("INSERT INTO late_calls (tenant_id, model, input_tokens, output_tokens) SELECT 't' || i, 'late-model', 1000000, 1000000 FROM generate_series(1, 40) i")
        assert c.execute("SELECT count(*), sum(cost_usd) FROM late_calls WHERE cost_source = 'estimated'").fetchone() == (40, 120)


def test_usage_events_distributed_by_tenant(citus):
    """llm_cost.distribute_usage_events(): the extension's own log distributed by tenant_id with its
    two rollups co-located; rows written before and after (INSERT, multi-row, COPY, unknown model)
    are in the rollups exactly; a row without a tenant is refused; rows without one before are
    named first (23502)."""
    db = "ue_" + uuid.uuid4().hex[:8]
    for n in ("coord", "w1", "w2"):
        with connect(citus[n]) as c:
            c.execute(f"CREATE DATABASE {db}")
        with connect(citus[n], db) as c:
            c.execute("SET client_min_messages = warning")
            c.execute("CREATE EXTENSION citus")
    with connect(citus["coord"], db) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (citus["coord"],))
        for n in ("w1", "w2"):
            c.execute("SELECT citus_add_node('127.0.0.1', %s)", (citus[n],))
        c.execute("CREATE EXTENSION llm_cost")
        c.execute("""INSERT INTO llm_cost.usage_events (occurred_at, tenant_id, user_id, model, input_tokens, output_tokens)
                     SELECT now() - (i % 3) * interval '1 day', 't' || (i % 10), 'u' || (i % 25), 'gpt-4o', 1000 + i, 100 FROM generate_series(1, 100) i""")
        c.execute("INSERT INTO llm_cost.usage_events (user_id, model, input_tokens, output_tokens) VALUES ('nobody', 'gpt-4o', 1, 1)")
        try:
            c.execute("SELECT llm_cost.distribute_usage_events()")
            raise AssertionError("distributed with a row without tenant")
        except psycopg.Error as e:
            assert e.sqlstate == "23502" and "1 rows" in str(e), e
        c.execute("DELETE FROM llm_cost.usage_events WHERE tenant_id IS NULL")
        c.execute("SELECT llm_cost.rebuild_rollup('llm_cost.usage_daily'); SELECT llm_cost.rebuild_rollup('llm_cost.usage_monthly')")
        msg = c.execute("SELECT llm_cost.distribute_usage_events(shard_count => 8)").fetchone()[0]
        assert msg == "llm_cost.usage_events distributed by tenant_id, with its rollups (llm_cost.usage_daily, llm_cost.usage_monthly)", msg
        assert c.execute("SELECT llm_cost.distribute_usage_events()").fetchone()[0] == "llm_cost.usage_events is distributed already"
        got = c.execute("""SELECT logicalrelid::text, column_to_column_name(logicalrelid, partkey), colocationid = (
                                  SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'llm_cost.usage_events'::regclass)
                             FROM pg_dist_partition WHERE logicalrelid::text LIKE 'llm_cost.usage_%' ORDER BY 1""").fetchall()
        assert got == [("llm_cost.usage_daily_stripes", "tenant_id", True), ("llm_cost.usage_events", "tenant_id", True),
                       ("llm_cost.usage_monthly_stripes", "tenant_id", True)], got
        c.execute("""INSERT INTO llm_cost.usage_events (tenant_id, user_id, feature, model, input_tokens, output_tokens, cache_read_tokens)
                     SELECT 't' || (i % 13), 'u' || (i % 30), 'f' || (i % 2), (ARRAY['gpt-4o-mini', 'claude-sonnet-4-5', 'no-such-model-ue'])[1 + i % 3],
                            500 * i, 20 * i, (i % 4) * 100 FROM generate_series(1, 300) i""")
        c.execute("INSERT INTO llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens) VALUES ('t1', 'u1', 'gpt-4o', 7, 7)")
        with c.cursor() as cur:
            with cur.copy("COPY llm_cost.usage_events (tenant_id, user_id, model, input_tokens, output_tokens) FROM STDIN") as cp:
                for i in range(40):
                    cp.write_row((f"t{i % 7}", f"u{i}", "gpt-4o", 100 * i, 10))
        try:
            c.execute("INSERT INTO llm_cost.usage_events (user_id, model, input_tokens, output_tokens) VALUES ('x', 'gpt-4o', 1, 1)")
            raise AssertionError("a row without tenant")
        except psycopg.Error as e:
            assert e.sqlstate == "22004", e  # Citus: no partition column value
        for rollup, keys, grain in (("llm_cost.usage_daily", ["tenant_id", "user_id", "feature", "provider", "model"], "day"),
                                    ("llm_cost.usage_monthly", ["tenant_id", "user_id"], "month")):
            view, raw = raw_vs_rollup(c, "llm_cost.usage_events", rollup, keys, "occurred_at", grain)
            assert view == raw and len(view) > 50, rollup
        assert c.execute("SELECT count(*) FROM llm_cost.usage_events").fetchone()[0] == 441
        # Reports and unknown models read the distributed rollups from the coordinator.
        total = c.execute("SELECT requests FROM llm_cost.spend_by('llm_cost.usage_daily', '{}')").fetchone()[0]
        assert total == 441
        assert c.execute("SELECT rows FROM llm_cost.unpriced_models WHERE model = 'no-such-model-ue'").fetchone()[0] == 100


def test_citus_functions_that_re_create_a_tracked_table_are_refused_before_anything_changes(citus):
    """alter_distributed_table / undistribute_table re-create the table under its name (a new
    identity): llm_cost would lose the table, its rollups, budgets and retention policy. They are
    refused (0A000, with what to do) and nothing changes: the registry keeps the table, the rollup
    stays fed and exact."""
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        c.execute("""CREATE TABLE rw_calls (id bigserial, created_at timestamptz NOT NULL DEFAULT now(), org text NOT NULL, model text,
                                            input_tokens int, output_tokens int, cost_usd numeric, cost_source text, PRIMARY KEY (org, id))""")
        c.execute("SELECT llm_cost.track('rw_calls')")
        c.execute("SELECT create_distributed_table('rw_calls', 'org', shard_count => 4)")
        c.execute("SELECT llm_cost.create_rollup('rw_daily', 'rw_calls', 'day', '{org}')")
        c.execute("SELECT llm_cost.create_budget('rw_cap', 'rw_daily', 100)")
        c.execute("SELECT llm_cost.set_retention('rw_calls', '90 days')")
        c.execute("INSERT INTO rw_calls (org, model, input_tokens, output_tokens) SELECT 'o' || (i % 9), 'gpt-4o', 1000, 10 FROM generate_series(1, 90) i")
        registry = lambda: (  # noqa: E731
            c.execute("SELECT count(*) FROM llm_cost.tracked_tables WHERE log_table = 'rw_calls'::regclass").fetchone()[0],
            c.execute("SELECT count(*) FROM llm_cost.rollups WHERE source = 'rw_calls'::regclass").fetchone()[0],
            c.execute("SELECT count(*) FROM llm_cost.budgets WHERE name = 'rw_cap'").fetchone()[0],
            c.execute("SELECT count(*) FROM llm_cost.retention_policies WHERE log_table = 'rw_calls'::regclass").fetchone()[0])
        assert registry() == (1, 1, 1, 1)
        shards = c.execute("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'rw_calls'::regclass").fetchone()[0]
        c.execute("""CREATE FUNCTION reshard_it(t regclass, n int) RETURNS void LANGUAGE plpgsql AS $$
                     BEGIN PERFORM alter_distributed_table(t, shard_count => n, cascade_to_colocated => true); END $$""")
        for call in ("SELECT alter_distributed_table('rw_calls', shard_count => 8, cascade_to_colocated => true)",
                     "SELECT reshard_it('rw_calls', 8)",  # from inside a function, the table in a variable
                     "SELECT alter_distributed_table('rw_calls', shard_count => 8, cascade_to_colocated => false)",
                     "SELECT undistribute_table('rw_calls', cascade_via_foreign_keys => false)",
                     "SELECT alter_distributed_table('rw_daily_stripes', shard_count => 2, cascade_to_colocated => false)"):
            try:
                c.execute(call)
                raise AssertionError(call)
            except psycopg.Error as e:
                assert e.sqlstate == "0A000" and "untrack" in (e.diag.message_hint or ""), (call, e)
            assert registry() == (1, 1, 1, 1), call
        assert c.execute("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'rw_calls'::regclass").fetchone()[0] == shards
        c.execute("INSERT INTO rw_calls (org, model, input_tokens, output_tokens) SELECT 'o' || (i % 5), 'gpt-4o', 500, 5 FROM generate_series(1, 20) i")
        view, raw = raw_vs_rollup(c, "rw_calls", "rw_daily", ["org"], "created_at", "day")
        assert view == raw
        # The way the hint gives: untrack, change, track and roll up again.
        c.execute("SELECT llm_cost.untrack('rw_calls')")
        c.execute("SELECT alter_distributed_table('rw_calls', shard_count => 8, cascade_to_colocated => false)")
        c.execute("SELECT llm_cost.track('rw_calls')")
        c.execute("SELECT llm_cost.create_rollup('rw_daily', 'rw_calls', 'day', '{org}')")
        c.execute("INSERT INTO rw_calls (org, model, input_tokens, output_tokens) VALUES ('o1', 'gpt-4o', 1, 1)")
        view, raw = raw_vs_rollup(c, "rw_calls", "rw_daily", ["org"], "created_at", "day")
        assert view == raw


def test_shard_splits_moves_and_concurrent_distribution_keep_rollups_exact(citus):
    """Citus's own shard maintenance under llm_cost: create_distributed_table_concurrently and
    citus_add_local_table_to_metadata of a tracked table are refused before anything changes (they
    would make it a shard of a new table); a table distributed with the former, then tracked, is
    priced and summed; a shard split (its co-located
    shard of sums splits with it) and a shard move keep every rollup equal to GROUP BY over the
    raw rows, before and after more writes."""
    with connect(citus["coord"], citus["db"]) as c:
        c.execute("SET client_min_messages = error")
        c.execute("""CREATE TABLE split_log (id bigserial, at timestamptz NOT NULL DEFAULT now(), org text NOT NULL, model text,
                                             input_tokens int, output_tokens int, cost_usd numeric, cost_source text,
                                             PRIMARY KEY (org, id))""")
        c.execute("SELECT llm_cost.track('split_log', time_column => 'at')")
        oid = c.execute("SELECT 'split_log'::regclass::oid").fetchone()[0]
        # Citus's functions that make the table a shard of a new one of the same name are refused
        # before anything changes: called directly, prepared, or from PL/pgSQL with a variable.
        for call in ["SELECT create_distributed_table_concurrently('split_log', 'org', shard_count => 4)",
                     "SELECT citus_add_local_table_to_metadata('public.split_log')",
                     "SELECT * FROM create_distributed_table_concurrently('split_log', 'org')",
                     "DO $$ DECLARE t regclass := 'split_log'; BEGIN PERFORM create_distributed_table_concurrently(t, 'org'); END $$"]:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match=r"llm_cost: Citus's .* would turn public\.split_log, which llm_cost tracks"):
                c.execute(call)
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            c.execute("SELECT create_distributed_table_concurrently(%s::regclass, 'org')", ("split_log",), prepare=True)
        assert c.execute("SELECT 'split_log'::regclass::oid, EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'split_log'::regclass), "
                         "EXISTS (SELECT 1 FROM llm_cost.tracked_tables WHERE log_table = 'split_log'::regclass)").fetchone() == (oid, False, True)
        # The way the hint gives: untrack, distribute concurrently, track again.
        c.execute("SELECT llm_cost.untrack('split_log')")
        c.execute("SELECT create_distributed_table_concurrently('split_log', 'org', shard_count => 4)")
        c.execute("SELECT llm_cost.track('split_log', time_column => 'at')")
        c.execute("SELECT llm_cost.create_rollup('split_daily', 'split_log', 'day', '{org,model}')")

        def write(k):
            c.execute(f"""INSERT INTO split_log (org, model, input_tokens, output_tokens)
                          SELECT 'o' || (g % 40), (ARRAY['gpt-4o', 'claude-sonnet-4-5', 'no-such-model-{k}'])[1 + g % 3], 1000 + g, g % 300
                            FROM generate_series(1, 600) g""")

        def check():
            view = c.execute("SELECT org, model, requests, cost_usd, unpriced_requests FROM split_daily ORDER BY 1, 2").fetchall()
            raw = c.execute("""SELECT org, model, count(*), CASE WHEN count(cost_usd) > 0 THEN sum(cost_usd) END, count(*) - count(cost_usd)
                                 FROM split_log GROUP BY org, model, date_trunc('day', at) ORDER BY 1, 2""").fetchall()
            assert view == raw and len(view) > 40

        write(1)
        assert c.execute("SELECT count(*) FILTER (WHERE cost_source = 'estimated'), count(*) FROM split_log").fetchone() == (400, 600)
        check()
        nodes = [r[0] for r in c.execute("SELECT nodeid FROM pg_dist_node WHERE noderole = 'primary' AND nodeport IN (%s, %s) ORDER BY nodeport",
                                         (citus["w1"], citus["w2"])).fetchall()]
        shard, lo, hi = c.execute("""SELECT shardid, shardminvalue::bigint, shardmaxvalue::bigint FROM pg_dist_shard
                                      WHERE logicalrelid = 'split_log'::regclass ORDER BY shardminvalue::bigint LIMIT 1""").fetchone()
        c.execute("SELECT citus_split_shard_by_split_points(%s, ARRAY[%s], ARRAY[%s, %s], shard_transfer_mode => 'block_writes')",
                  (shard, str((lo + hi) // 2), nodes[0], nodes[1]))
        assert c.execute("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'split_daily_stripes'::regclass").fetchone()[0] == 5
        check()
        write(2)
        check()
        shard, port = c.execute("""SELECT s.shardid, n.nodeport FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
                                     JOIN pg_dist_node n ON n.groupid = p.groupid
                                    WHERE s.logicalrelid = 'split_log'::regclass ORDER BY s.shardid DESC LIMIT 1""").fetchone()
        to = citus["w2"] if port == citus["w1"] else citus["w1"]
        c.execute("SELECT citus_move_shard_placement(%s, '127.0.0.1', %s, '127.0.0.1', %s, shard_transfer_mode => 'block_writes')",
                  (shard, port, to))
        check()
        write(3)
        check()
        assert c.execute("SELECT count(*) FILTER (WHERE cost_source = 'estimated'), count(*) FROM split_log").fetchone() == (1200, 1800)
