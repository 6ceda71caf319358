"""Integration tests run against the scratch cluster started by scripts/test.sh
(LLM_COST_CLUSTER, llm_cost preloaded). Each test module gets its own database."""
import contextlib
import os
import pathlib
import subprocess
import time
import uuid

import psycopg
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLUSTER = pathlib.Path(os.environ.get("LLM_COST_CLUSTER", ROOT / "target" / "it-cluster"))
DATA = ROOT / "tests" / "data"


def port() -> int:
    return int((CLUSTER / "port").read_text().strip())


def dsn(dbname: str, user: str = "postgres") -> str:
    return f"host=127.0.0.1 port={port()} user={user} dbname={dbname}"


def _database_with_llm_cost():
    name = "it_" + uuid.uuid4().hex[:10]
    with psycopg.connect(dsn("postgres"), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(dsn(name), autocommit=True) as c:
        c.execute("SET client_min_messages = warning")
        c.execute("CREATE EXTENSION llm_cost")
    yield name
    with psycopg.connect(dsn("postgres"), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def dbname():
    yield from _database_with_llm_cost()


@pytest.fixture
def fresh_db():
    """A database of its own for one test (one that changes the catalog, say)."""
    yield from _database_with_llm_cost()


@pytest.fixture
def connect(dbname):
    """connect(user=..., autocommit=...) -> a new session to the module's database."""
    opened = []

    def _connect(user="postgres", autocommit=True):
        c = psycopg.connect(dsn(dbname, user), autocommit=autocommit)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()


def one(conn, sql, *args):
    row = conn.execute(sql, args or None).fetchone()
    return None if row is None else row[0]


def admin(db="postgres"):
    """A superuser session (autocommit) to `db`."""
    return psycopg.connect(dsn(db), autocommit=True)


@contextlib.contextmanager
def server(cmd, ready, log_name, **popen):
    """Runs a server process (PostGraphile, the dashboard) for the duration of a `with`: waits
    until `ready()` stops raising (60 s at most), and stops it after."""
    log_path = ROOT / "target" / log_name
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **popen)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    ready()
                    break
                except Exception:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.flush()
                        raise RuntimeError(f"{cmd[0]} did not start:\n" + log_path.read_text())
                    time.sleep(0.3)
            yield proc
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def wait_for(pred, timeout=30.0, step=0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def set_worker_fast(on: bool):
    """The retention worker every second, batches without pauses (or back to the defaults)."""
    with admin() as c:
        for name, value in (("llm_cost.retention_naptime", "1"), ("llm_cost.retention_batch_delay", "0")):
            c.execute(f"ALTER SYSTEM SET {name} = {value}" if on else f"ALTER SYSTEM RESET {name}")
        c.execute("SELECT pg_reload_conf()")
    if on:
        time.sleep(1.5)
