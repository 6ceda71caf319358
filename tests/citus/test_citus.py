"""llm_cost on Citus (12.1 on PostgreSQL 15): a coordinator and two workers on this machine, each
a scratch cluster with shared_preload_libraries = 'citus,llm_cost'. Skipped, saying so, where
Citus is not installed (it is in no package registry: build a 12.1.x release from
github.com/citusdata/citus and `make install` it to run these)."""
import os
import pathlib
import subprocess
import uuid

import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PKGLIBDIR = subprocess.run(["/usr/bin/pg_config", "--pkglibdir"], capture_output=True, text=True).stdout.strip()
CONF = """shared_preload_libraries = 'citus,llm_cost'
max_prepared_transactions = 100
citus.enable_unsafe_triggers = on
"""

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
    """{'coord': port, 'w1': port, 'w2': port, 'db': name}: Citus with llm_cost, its catalog made
    reference tables (docs: Scaling out with Citus)."""
    nodes = ["coord", "w1", "w2"]
    for n in nodes:
        cluster(n, "stop")
    ports = {n: int(cluster(n, "start")) for n in nodes}
    db = "cit_" + uuid.uuid4().hex[:8]
    try:
        for n in nodes:
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
            c.execute("CREATE EXTENSION llm_cost")
            for t in ("providers", "model_prices", "model_aliases"):
                c.execute(f"SELECT create_reference_table('llm_cost.{t}')")
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
