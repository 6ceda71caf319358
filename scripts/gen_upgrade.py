#!/usr/bin/env python3
"""Writes the update script sql/llm_cost--FROM--TO.sql: nobody edits one by hand.

    scripts/gen_upgrade.py FROM TO            write it
    scripts/gen_upgrade.py --check FROM TO    exit 1 if the committed one differs from what this writes

What it is made of:
  1. sql/upgrades/FROM--TO.sql, written by hand: the release note (its leading comment) and what
     cannot be derived: tables, columns, data. Where the line `-- @generated` stands, part 2 goes
     (at the end without it). `-- @manual <object>` lines name functions or views this part
     re-creates itself (the generator leaves them out).
  2. Generated, function by function and view by view: every function and view of llm_cost as a
     fresh install of TO defines it (`CREATE EXTENSION llm_cost`, the install script `cargo pgrx`
     writes from src/ and sql/) that a database updated to FROM lacks or defines otherwise:
     CREATE OR REPLACE (after a DROP where the result type changed), then its grants and comment;
     a DROP for each one TO no longer has. In the fresh install's order, which is an order that
     creates every dependency first.

It compares two databases of the running scratch cluster (LLM_COST_CLUSTER, default
target/it-cluster; scripts/cluster.sh start): one made with CREATE EXTENSION llm_cost VERSION
'0.1.0' and ALTER EXTENSION llm_cost UPDATE TO 'FROM' (tests/upgrade/llm_cost--0.1.0.sql and the
shipped update scripts), one with CREATE EXTENSION llm_cost (TO must be the installed default
version). The test tests/integration/test_upgrade_script.py runs --check in CI; the fresh install
vs updated install comparison (test_hardening.py) checks the result.

Update scripts up to 0.6.0 were released before this generator and stay as released.
"""
import os
import pathlib
import re
import subprocess
import sys
import uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLUSTER = pathlib.Path(os.environ.get("LLM_COST_CLUSTER", ROOT / "target" / "it-cluster"))

FUNCTIONS = """
SELECT p.oid::pg_catalog.regprocedure::text AS sig, p.oid::bigint,
       pg_catalog.pg_get_functiondef(p.oid) AS def, pg_catalog.pg_get_function_result(p.oid) AS result,
       p.proacl::text AS acl, pg_catalog.obj_description(p.oid, 'pg_proc') AS comment,
       p.prokind
  FROM pg_catalog.pg_proc p
 WHERE p.pronamespace = 'llm_cost'::pg_catalog.regnamespace
 ORDER BY p.oid"""

VIEWS = """
SELECT c.oid::pg_catalog.regclass::text AS name, c.oid::bigint,
       pg_catalog.pg_get_viewdef(c.oid) AS def, c.relacl::text AS acl,
       pg_catalog.obj_description(c.oid, 'pg_class') AS comment,
       (SELECT pg_catalog.array_agg(a.attname::text || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
          FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)::text AS cols
  FROM pg_catalog.pg_class c
 WHERE c.relnamespace = 'llm_cost'::pg_catalog.regnamespace AND c.relkind = 'v'
 ORDER BY c.oid"""

GRANTS = """
SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END, x.privilege_type
  FROM pg_catalog.aclexplode(%s::aclitem[]) x LEFT JOIN pg_catalog.pg_roles r ON r.oid = x.grantee
 WHERE x.grantee <> x.grantor
 ORDER BY 1, 2"""


def port() -> int:
    return int((CLUSTER / "port").read_text().strip())


def connect(db):
    import psycopg
    return psycopg.connect(f"host=127.0.0.1 port={port()} user=postgres dbname={db}", autocommit=True)


def install_base_script(current=None):
    """The 0.1.0 install script, which every update chain starts from. A full install script of
    another version than 0.1.0 and `current` left by an older build on this machine (pgrx writes
    one per build) would be used instead of 0.1.0 plus the shipped updates: it is removed."""
    sharedir = subprocess.run(["/usr/bin/pg_config", "--sharedir"], capture_output=True, text=True, check=True).stdout.strip()
    target = pathlib.Path(sharedir) / "extension" / "llm_cost--0.1.0.sql"
    source = ROOT / "tests" / "upgrade" / "llm_cost--0.1.0.sql"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        cmd = ["install", "-m", "0644", str(source), str(target)]
        subprocess.run(cmd if os.geteuid() == 0 else ["sudo", *cmd], check=True)
    for old in target.parent.glob("llm_cost--*.sql"):
        version = old.name[len("llm_cost--"):-len(".sql")]
        if "--" not in version and version != "0.1.0" and current is not None and version != current:
            cmd = ["rm", "-f", str(old)]
            subprocess.run(cmd if os.geteuid() == 0 else ["sudo", *cmd], check=True)


def literal(s):
    return "NULL" if s is None else "'" + s.replace("'", "''") + "'"


def snapshot(db):
    with connect(db) as c:
        funcs = {r[0]: r for r in c.execute(FUNCTIONS).fetchall()}
        views = {r[0]: r for r in c.execute(VIEWS).fetchall()}
        grants = {}
        for acl in {r[4] for r in funcs.values()} | {r[3] for r in views.values()}:
            if acl is not None:
                grants[acl] = c.execute(GRANTS, (acl,)).fetchall()
    return funcs, views, grants


def acl_statements(kind, name, acl, grants, default_public, new_object):
    """Statements that give `name` exactly the grants `acl` lists (NULL: the default)."""
    if acl is None:
        # The default: what a new object has already; a changed one gets the default's grant.
        return [f"GRANT EXECUTE ON {kind} {name} TO PUBLIC;"] if default_public and not new_object else []
    out = [f"REVOKE ALL ON {kind} {name} FROM PUBLIC;"]
    by_grantee = {}
    for grantee, priv in grants[acl]:
        by_grantee.setdefault(grantee, []).append(priv)
    for grantee, privs in sorted(by_grantee.items()):
        out.append(f"GRANT {', '.join(sorted(privs))} ON {kind} {name} TO {grantee};")
    return out


def generated_part(old, new, manual):
    (of, ov, og), (nf, nv, ng) = old, new
    out = []
    for sig in sorted(set(of) - set(nf)):
        if sig not in manual:
            out.append(f"DROP {'PROCEDURE' if of[sig][6] == 'p' else 'FUNCTION'} {sig};")
    for name in sorted(set(ov) - set(nv)):
        if name not in manual:
            out.append(f"DROP VIEW {name};")
    items = [("f", r) for r in nf.values()] + [("v", r) for r in nv.values()]
    items.sort(key=lambda x: x[1][1])  # creation order of the fresh install
    for kind, r in items:
        name = r[0]
        if name in manual:
            continue
        if kind == "f":
            o = of.get(name)
            body = r[2].rstrip() + ";"
            what = "PROCEDURE" if r[6] == "p" else "FUNCTION"
            if o is None or o[2] != r[2]:
                if o is not None and o[3] != r[3]:
                    out.append(f"DROP {what} {name};")
                    o = None
                out.append(body)
            if o is None or o[4] != r[4]:
                out += acl_statements(what, name, r[4], ng, default_public=True, new_object=o is None)
            if o is None or o[5] != r[5]:
                out.append(f"COMMENT ON {what} {name} IS {literal(r[5])};")
        else:
            o = ov.get(name)
            if o is None or o[2] != r[2] or o[5] != r[5]:
                if o is not None and o[5] != r[5] and not r[5].startswith(o[5].rstrip("}")):
                    out.append(f"DROP VIEW {name};")
                    o = None
                out.append(f"CREATE OR REPLACE VIEW {name} AS\n{r[2].rstrip().rstrip(';')};")
            if o is None or o[3] != r[3]:
                out += acl_statements("TABLE", name, r[3], ng, default_public=False, new_object=o is None)
            if o is None or o[4] != r[4]:
                out.append(f"COMMENT ON VIEW {name} IS {literal(r[4])};")
    return out


def generate(frm, to):
    hand_path = ROOT / "sql" / "upgrades" / f"{frm}--{to}.sql"
    if not hand_path.exists():
        sys.exit(f"gen_upgrade: {hand_path.relative_to(ROOT)} is missing (the hand-written part: release note, tables, data)")
    hand = hand_path.read_text()
    manual = set(re.findall(r"^-- @manual (\S+)\s*$", hand, re.M))
    install_base_script(current=to)
    old_db, new_db = "gen_old_" + uuid.uuid4().hex[:8], "gen_new_" + uuid.uuid4().hex[:8]
    with connect("postgres") as a:
        a.execute(f"CREATE DATABASE {old_db}")
        a.execute(f"CREATE DATABASE {new_db}")
    try:
        with connect(old_db) as c:
            c.execute("SET client_min_messages = error")
            c.execute("CREATE EXTENSION llm_cost VERSION '0.1.0'")
            c.execute(f"ALTER EXTENSION llm_cost UPDATE TO {literal(frm)}")
        with connect(new_db) as c:
            c.execute("SET client_min_messages = error")
            c.execute("CREATE EXTENSION llm_cost")
            v = c.execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'llm_cost'").fetchone()[0]
            if v != to:
                sys.exit(f"gen_upgrade: the installed llm_cost is {v}, not {to} (cargo pgrx install first)")
        gen = generated_part(snapshot(old_db), snapshot(new_db), manual)
    finally:
        with connect("postgres") as a:
            a.execute(f"DROP DATABASE IF EXISTS {old_db} WITH (FORCE)")
            a.execute(f"DROP DATABASE IF EXISTS {new_db} WITH (FORCE)")
    generated = ("-- @generated: the functions and views of " + to + " that " + frm + " lacks or defines otherwise\n\n"
                 + "\n\n".join(gen) + "\n") if gen else "-- @generated: no function or view changed\n"
    if re.search(r"^-- @generated\s*$", hand, re.M):
        body = re.sub(r"^-- @generated\s*$", lambda _: generated.rstrip("\n"), hand, count=1, flags=re.M)
    else:
        body = hand.rstrip("\n") + "\n\n" + generated
    header = (f"-- Generated by scripts/gen_upgrade.py {frm} {to} from sql/upgrades/{frm}--{to}.sql and the\n"
              f"-- install scripts of both versions: do not edit (CI checks it equals the generator's output).\n"
              f"\\echo Use \"ALTER EXTENSION llm_cost UPDATE TO '{to}'\" to load this file. \\quit\n\n")
    return header + body


def main(argv):
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    if len(args) != 2:
        sys.exit(__doc__)
    frm, to = args
    text = generate(frm, to)
    out = ROOT / "sql" / f"llm_cost--{frm}--{to}.sql"
    if check:
        if not out.exists() or out.read_text() != text:
            import difflib
            old = out.read_text().splitlines() if out.exists() else []
            diff = "\n".join(list(difflib.unified_diff(old, text.splitlines(), str(out.relative_to(ROOT)), "generated", lineterm="", n=1))[:60])
            print(f"gen_upgrade: {out.relative_to(ROOT)} is not what scripts/gen_upgrade.py {frm} {to} writes:\n{diff}", file=sys.stderr)
            return 1
        print(f"gen_upgrade: {out.relative_to(ROOT)} is the generator's output")
        return 0
    out.write_text(text)
    print(f"gen_upgrade: wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
