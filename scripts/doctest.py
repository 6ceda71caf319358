#!/usr/bin/env python3
"""Docs are code: every SQL block of README.md and docs/*.md runs, and every result they show is
what it returns.

    scripts/doctest.py [FILE ...]           run them (README.md and docs/*.md without names)
    scripts/doctest.py --update [FILE ...]  rewrite the shown results from this run (then read the diff!)

The rules a page follows:
  - Each page runs in a database of its own (CREATE EXTENSION llm_cost first, unless the page's
    first block creates it), its ```sql blocks in order, each with psql, stopping at the first
    error: a page creates whatever it uses (the shared schemas of tests/data are loaded by
    `\\i tests/data/NAME.sql` from the checkout's root).
  - A ```text block right after a ```sql block (nothing but blank lines between) is that
    block's output as psql prints it (aligned, NULL shown as NULL, UTC, ISO dates): it must be
    exactly what the block prints.
  - ```sql fails: the block must fail (its shown output, if any, is the error's first line).
  - ```sql citus: needs a Citus cluster (a coordinator and workers); reported as skipped here
    and checked by tests/citus. ```sql norun: never run, shown for reading (a signature, a
    placeholder); use it sparingly: the page must still work when copied in order without it.
Against the scratch cluster of the integration tests (LLM_COST_CLUSTER, scripts/cluster.sh).
"""
import os
import pathlib
import re
import subprocess
import sys
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLUSTER = pathlib.Path(os.environ.get("LLM_COST_CLUSTER", ROOT / "target" / "it-cluster"))
PSQL = "/usr/bin/psql"
FENCE = re.compile(r"^```(\S*)(?:[ \t]+(.*))?$")


def port() -> str:
    return (CLUSTER / "port").read_text().strip()


class Block:
    def __init__(self, lang, flags, start, end, body):
        self.lang, self.flags, self.start, self.end, self.body = lang, flags, start, end, body
        self.output = None  # the ```text block after it: (start, end, body)


def blocks(text: str):
    """The fenced blocks of a Markdown page: (info, first line, last line, body) with 0-based
    line numbers of the fences."""
    lines = text.split("\n")
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m.group(1) != "":
            j = i + 1
            while j < len(lines) and lines[j].rstrip() != "```":
                j += 1
            out.append((m.group(1), (m.group(2) or "").split(), i, j, "\n".join(lines[i + 1:j])))
            i = j + 1
        else:
            i += 1
    return lines, out


def sql_blocks(text: str):
    lines, raw = blocks(text)
    result = []
    for k, (lang, flags, s, e, body) in enumerate(raw):
        if lang != "sql":
            continue
        b = Block(lang, flags, s, e, body)
        if k + 1 < len(raw) and raw[k + 1][0] == "text":
            nxt = raw[k + 1]
            if all(l.strip() == "" for l in lines[e + 1:nxt[2]]):
                b.output = (nxt[2], nxt[3], nxt[4])
        result.append(b)
    return lines, result


def psql(db, sql):
    env = {**os.environ, "PGTZ": "UTC", "PGDATESTYLE": "ISO", "PGOPTIONS": "-c client_min_messages=warning"}
    r = subprocess.run([PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-P", "null=NULL", "-P", "footer=off",
                        "-h", "127.0.0.1", "-p", port(), "-U", "postgres", "-d", db],
                       input=sql, capture_output=True, text=True, cwd=ROOT, env=env)
    return r.returncode, r.stdout, r.stderr


def clean(out: str) -> str:
    return "\n".join(l.rstrip() for l in out.strip("\n").split("\n")) if out.strip() else ""


def run_page(path: pathlib.Path, update: bool):
    text = path.read_text()
    lines, bs = sql_blocks(text)
    rel = path.relative_to(ROOT)
    if not bs:
        return [], 0, 0, text
    db = "doc_" + uuid.uuid4().hex[:10]
    subprocess.run([PSQL, "-X", "-q", "-h", "127.0.0.1", "-p", port(), "-U", "postgres", "-d", "postgres",
                    "-c", f"CREATE DATABASE {db}"], check=True, capture_output=True)
    problems, ran, skipped = [], 0, 0
    replacements = []
    try:
        first = next((b for b in bs if not ({"citus", "norun"} & set(b.flags))), None)
        if first is None or "create extension llm_cost" not in first.body.lower():
            subprocess.run([PSQL, "-X", "-q", "-h", "127.0.0.1", "-p", port(), "-U", "postgres", "-d", db,
                            "-c", "SET client_min_messages = warning", "-c", "CREATE EXTENSION llm_cost"],
                           check=True, capture_output=True)
        for b in bs:
            where = f"{rel}:{b.start + 1}"
            if "citus" in b.flags or "norun" in b.flags:
                skipped += 1
                continue
            code, out, err = psql(db, b.body + "\n")
            ran += 1
            fails = "fails" in b.flags
            if fails:
                if code == 0:
                    problems.append(f"{where}: the block should fail and did not")
                    break
                got = next((l for l in err.splitlines() if l.startswith("ERROR") or "ERROR:" in l), err.strip())
                got = re.sub(r"^psql:<stdin>:\d+: ", "", got)
                got = clean((clean(out) + "\n" + got).strip("\n"))
            else:
                if code != 0:
                    problems.append(f"{where}: {err.strip()}")
                    break
                got = clean(out)
            if b.output is not None:
                want = clean(b.output[2])
                if got != want:
                    if update:
                        replacements.append((b.output[0], b.output[1], got))
                    else:
                        problems.append(f"{where}: shows\n{want}\nbut returns\n{got}")
            elif got:
                if update:
                    replacements.append((b.end + 1, None, got))
                elif not fails:
                    problems.append(f"{where}: returns rows the page does not show (add a ```text block after it):\n{got}")
    finally:
        subprocess.run([PSQL, "-X", "-q", "-h", "127.0.0.1", "-p", port(), "-U", "postgres", "-d", "postgres",
                        "-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], capture_output=True)
    if update and replacements:
        for s, e, got in sorted(replacements, key=lambda r: -r[0]):
            new = ["```text"] + got.split("\n") + ["```"]
            if e is None:
                lines[s:s] = [""] + new
            else:
                lines[s:e + 1] = new
        text = "\n".join(lines)
    return problems, ran, skipped, text


def main(argv) -> int:
    update = "--update" in argv
    names = [a for a in argv if a != "--update"]
    pages = [ROOT / n for n in names] if names else [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
    total_problems, total_ran, total_skipped = 0, 0, 0
    for p in pages:
        problems, ran, skipped, text = run_page(p, update)
        total_ran += ran
        total_skipped += skipped
        if update and text != p.read_text():
            p.write_text(text)
            print(f"doctest: rewrote the results shown in {p.relative_to(ROOT)}")
        for pr in problems:
            print(f"doctest: {pr}\n")
        total_problems += len(problems)
        print(f"doctest: {p.relative_to(ROOT)}: {ran} blocks run, {skipped} skipped (citus/norun), "
              f"{'ok' if not problems else 'FAILED'}")
    print(f"doctest: {total_ran} blocks run, {total_skipped} skipped, {total_problems} problems")
    return 1 if total_problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
