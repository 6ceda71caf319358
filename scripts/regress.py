#!/usr/bin/env python3
"""SQL tests as SQL: each tests/sql/NAME.sql runs in a database of its own (CREATE EXTENSION
llm_cost) through psql, echoing every statement with what it returns, and the output must equal
tests/expected/NAME.out. They read as examples of the SQL surface. psql runs in the checkout's
root: `\i tests/data/x.sql` includes a fixture.

    scripts/regress.py [NAME ...]           run them (all without names); exit 1 on a difference
    scripts/regress.py --update [NAME ...]  write the expected files from this run (then read the diff!)

Runs against the scratch cluster of the integration tests (LLM_COST_CLUSTER, default
target/it-cluster, started by scripts/cluster.sh). A difference is written to
target/regress/NAME.diff. Output is made stable: errors as `ERROR:  SQLSTATE: message` with their
DETAIL and HINT (psql VERBOSITY verbose), without the source location, the CONTEXT lines or a
debug build's Rust backtrace.
"""
import difflib
import os
import pathlib
import re
import subprocess
import sys
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLUSTER = pathlib.Path(os.environ.get("LLM_COST_CLUSTER", ROOT / "target" / "it-cluster"))
SQL, EXPECTED, OUT = ROOT / "tests" / "sql", ROOT / "tests" / "expected", ROOT / "target" / "regress"
PSQL = "/usr/bin/psql"

def port() -> str:
    return (CLUSTER / "port").read_text().strip()


def psql(db, sql_text):
    r = subprocess.run([PSQL, "-X", "-a", "-q", "-v", "VERBOSITY=verbose", "-v", "SHOW_CONTEXT=never", "-P", "null=(null)",
                        "-h", "127.0.0.1", "-p", port(), "-U", "postgres", "-d", db],
                       input=sql_text, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                       env={**os.environ, "PGOPTIONS": "-c client_min_messages=notice", "PGTZ": "UTC", "PGDATESTYLE": "ISO"})
    return r.stdout


def clean(out: str) -> str:
    lines, in_trace = [], False
    for line in out.splitlines():
        if line.startswith("LOCATION:"):
            continue
        # A debug build puts a Rust backtrace in an otherwise empty DETAIL: drop that DETAIL and
        # the frame lines after it, and nothing else (a result row may look like a frame).
        if line.rstrip() == "DETAIL:":
            in_trace = True
            continue
        if in_trace and (re.match(r"^\s+\d+: \S", line) or re.match(r"^\s+at \S", line) or line.strip() == ""):
            continue
        in_trace = False
        lines.append(line.rstrip())
    return "\n".join(lines).strip("\n") + "\n"


def run_one(name: str) -> str:
    db = "regress_" + uuid.uuid4().hex[:10]
    subprocess.run([PSQL, "-X", "-q", "-h", "127.0.0.1", "-p", port(), "-U", "postgres", "-d", "postgres",
                    "-c", f"CREATE DATABASE {db}"], check=True, capture_output=True)
    try:
        subprocess.run([PSQL, "-X", "-q", "-h", "127.0.0.1", "-p", port(), "-U", "postgres", "-d", db,
                        "-c", "SET client_min_messages = warning", "-c", "CREATE EXTENSION llm_cost"],
                       check=True, capture_output=True)
        text = (SQL / f"{name}.sql").read_text()
        return clean(psql(db, text))
    finally:
        subprocess.run([PSQL, "-X", "-q", "-h", "127.0.0.1", "-p", port(), "-U", "postgres", "-d", "postgres",
                        "-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], capture_output=True)


def main(argv) -> int:
    update = "--update" in argv
    names = [a for a in argv if a != "--update"] or sorted(p.stem for p in SQL.glob("*.sql"))
    OUT.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        got = run_one(name)
        want_path = EXPECTED / f"{name}.out"
        if update:
            EXPECTED.mkdir(parents=True, exist_ok=True)
            want_path.write_text(got)
            print(f"regress: wrote tests/expected/{name}.out")
            continue
        want = want_path.read_text() if want_path.exists() else ""
        if got != want:
            diff = "\n".join(difflib.unified_diff(want.splitlines(), got.splitlines(), f"expected/{name}.out", f"results/{name}.out", lineterm=""))
            (OUT / f"{name}.diff").write_text(diff + "\n")
            (OUT / f"{name}.out").write_text(got)
            failed.append(name)
            print(f"regress: {name} ... FAILED (target/regress/{name}.diff)\n{diff[:3000]}")
        else:
            print(f"regress: {name} ... ok")
    if failed:
        print(f"regress: {len(failed)} of {len(names)} failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
