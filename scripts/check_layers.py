#!/usr/bin/env python3
"""The layers, checked (docs/design.md): fails on an upward import or a circle.

  crates/llm_cost_core   plain Rust: no pgrx, nothing of the extension crate
  src/pg/                plumbing: imports llm_cost_core and pg/ only
  src/features/          imports pg/, llm_cost_core and other features, never in a circle
  src/lib.rs             wiring: imports anything

A module is a file, or a folder's files taken together (features/rollups/ is one module to the
modules outside it; inside it, its files must not form a circle either). Imports are read from
the code as written: `crate::a::b`, `super::x`, `use` lists with braces. Tests (`mod tests`,
`#[cfg(test)]` blocks to the end of the file) are not imports of the module.

  python3 scripts/check_layers.py          exit 1 and say why on any violation
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
CORE = ROOT / "crates" / "llm_cost_core"


def module_path(f: pathlib.Path) -> tuple:
    """src/features/rollups/flush.rs -> ('features', 'rollups', 'flush'); mod.rs is its folder."""
    parts = list(f.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts == ["lib"]:
        return ()
    return tuple(parts)


def code_of(f: pathlib.Path) -> str:
    text = f.read_text()
    # Tests are not part of the module's imports: cut at the first test module.
    m = re.search(r"^#\[cfg\((?:test|any\(test, feature = \"pg_test\"\))\)\]\s*\n(?:\s*#\[[^\]]*\]\s*\n)*\s*(?:pub\s+)?mod\s+\w+\s*\{", text, re.M)
    if m:
        text = text[: m.start()]
    # Comments do not import.
    text = re.sub(r"//[^\n]*", "", text)
    return text


def expand_use(text: str):
    """Every path named by the code: `a::b::c` runs, with `use x::{y, z::w}` expanded."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        stack = [("", m.group(1).replace("\n", " "))]
        while stack:
            prefix, body = stack.pop()
            body = body.strip()
            b = body.find("{")
            if b < 0:
                for item in body.split(","):
                    item = item.strip().split(" as ")[0].strip()
                    if item:
                        paths.append(prefix + item)
                continue
            head = body[:b]
            depth, end = 0, b
            for i in range(b, len(body)):
                depth += body[i] == "{"
                depth -= body[i] == "}"
                if depth == 0:
                    end = i
                    break
            inner = body[b + 1 : end]
            # split inner at top-level commas
            items, depth, cur = [], 0, ""
            for ch in inner:
                if ch == "," and depth == 0:
                    items.append(cur)
                    cur = ""
                    continue
                depth += ch == "{"
                depth -= ch == "}"
                cur += ch
            items.append(cur)
            for it in items:
                if it.strip():
                    stack.append((prefix + head, it))
            rest = body[end + 1 :].lstrip(", ")
            if rest:
                stack.append((prefix, rest))
    paths += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", text)
    return paths


def resolve(mod: tuple, is_folder: bool, path: str, modules: set):
    """The module a path names (the longest known module prefix), or None."""
    segs = path.split("::")
    if segs[0] == "crate":
        base, segs = [], segs[1:]
    elif segs[0] in ("super", "self"):
        base = list(mod) if is_folder else list(mod[:-1])
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super" and base:
                base.pop()
            segs = segs[1:]
    else:
        return None
    full = tuple(base + segs)
    for n in range(len(full), 0, -1):
        if full[:n] in modules:
            return full[:n]
    return None


def find_cycle(graph: dict):
    color, stack = {}, []

    def visit(n):
        color[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if color.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if color.get(m) is None:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        color[n] = 2
        return None

    for n in sorted(graph):
        if color.get(n) is None:
            c = visit(n)
            if c:
                return c
    return None


def name(m: tuple) -> str:
    return "/".join(m) or "lib.rs"


def main() -> int:
    problems = []
    files = sorted(p for p in SRC.rglob("*.rs"))
    mods = {module_path(f): f for f in files}
    modules = set(mods)
    edges = {m: set() for m in modules}
    for m, f in mods.items():
        for p in expand_use(code_of(f)):
            t = resolve(m, f.name == "mod.rs", p, modules)
            if t is not None and t != m and not (t[: len(m)] == m and f.name == "mod.rs" and len(t) > len(m)) :
                edges[m].add(t)
        for p in re.findall(r"\bllm_cost::", code_of(f)):
            problems.append(f"{f.relative_to(ROOT)}: names the crate by its own name (`llm_cost::`)")

    def layer(m):
        return {"pg": 1, "features": 2, "test_support": 2}.get(m[0], 3) if m else 3

    for a, targets in edges.items():
        for b in targets:
            if layer(b) > layer(a):
                problems.append(f"upward import: {name(a)} -> {name(b)} (a {['', 'pg', 'features', 'lib'][layer(a)]} module may not import {name(b)})")
            if b and b[0] == "test_support" and (not a or a[0] != "test_support"):
                problems.append(f"{name(a)} imports test_support outside its tests")

    # Circles: between files, and between the modules a folder makes to the outside.
    c = find_cycle(edges)
    if c:
        problems.append("circle: " + " -> ".join(name(x) for x in c))
    folders = {m[:2] for m in modules if len(m) > 2}
    if folders:
        def outer(m):
            return m[:2] if m[:2] in folders else m
        g = {}
        for a, ts in edges.items():
            for b in ts:
                if outer(a) != outer(b):
                    g.setdefault(outer(a), set()).add(outer(b))
        c = find_cycle(g)
        if c:
            problems.append("circle between folders: " + " -> ".join(name(x) for x in c))

    # The core: no pgrx, no path into the extension crate.
    toml = (CORE / "Cargo.toml").read_text()
    if re.search(r"^\s*pgrx", toml, re.M):
        problems.append("crates/llm_cost_core/Cargo.toml depends on pgrx")
    for f in sorted((CORE / "src").rglob("*.rs")):
        if re.search(r"\b(pgrx|pg_sys|llm_cost)::", code_of(f)):
            problems.append(f"{f.relative_to(ROOT)}: the core names pgrx or the extension crate")

    if problems:
        print("check_layers: the layers of docs/design.md do not hold:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    n = sum(len(t) for t in edges.values())
    print(f"check_layers: {len(modules)} modules, {n} imports, none upward, no circle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
