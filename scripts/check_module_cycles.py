#!/usr/bin/env python3
"""Fails when two files of one crate use each other, directly or in a ring.

Each crate's modules should depend one way: a file uses the files "below"
it, and what two files share moves down into a module of its own. This
check reads every `crates/*/src/**/*.rs` and finds, per file, the other
files of its crate it names through `crate::…`, `super::…` or `self::…`
paths (in `use` trees and inline). The crate root (lib.rs / main.rs) is left
out: it declares and re-exports every module, so edges through it say
nothing about layering. `#[cfg(test)]` modules are left out too (a test may
use anything).

Prints each cycle as `crate: a.rs -> b.rs -> a.rs` and exits 1 if there is
one; exits 0 with a one-line summary otherwise.

Usage: scripts/check_module_cycles.py [REPO_ROOT]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_RE = re.compile(rf"\b(crate|super|self)((?:::{IDENT})+)")
USE_RE = re.compile(r"\buse\s+([^;]+);", re.S)
CFG_TEST_MOD_RE = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
COMMENT_RE = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
STRING_RE = re.compile(r'r#*"(?:.|\n)*?"#*|"(?:\\.|[^"\\])*"')


def strip_code(text: str) -> str:
    """Source without comments, string literals and #[cfg(test)] modules."""
    text = STRING_RE.sub('""', text)
    text = COMMENT_RE.sub("", text)
    while True:
        m = CFG_TEST_MOD_RE.search(text)
        if not m:
            return text
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        text = text[: m.start()] + text[i:]


def expand_use(tree: str) -> list[str]:
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        return [tree]
    start = tree.index("{")
    prefix, inner = tree[:start], tree[start + 1 : tree.rindex("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    out = []
    for part in filter(None, parts):
        for tail in expand_use(part):
            out.append(prefix + tail if tail != "self" else prefix.rstrip(":"))
    return out


def module_path(src: Path, file: Path) -> tuple[str, ...]:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return ()
    return tuple(parts)


def crate_edges(src: Path) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    files = {module_path(src, f): f for f in sorted(src.rglob("*.rs")) if f.parent.name != "bin"}
    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in files if m}
    for here, file in files.items():
        if not here:
            continue
        code = strip_code(file.read_text(encoding="utf-8"))
        paths = []
        for use in USE_RE.findall(code):
            paths.extend(expand_use(use.lstrip(":")))
        paths.extend(m.group(1) + m.group(2) for m in PATH_RE.finditer(code))
        for path in paths:
            target = resolve(here, path.split("::"))
            if target is None:
                continue
            # The longest prefix that is a file of this crate.
            while target and target not in files:
                target = target[:-1]
            if target and target != here:
                edges[here].add(target)
    return edges


def resolve(here: tuple[str, ...], segments: list[str]) -> tuple[str, ...] | None:
    head, rest = segments[0], segments[1:]
    if head == "crate":
        return tuple(rest)
    if head not in ("super", "self"):
        return None
    base = list(here)
    while head in ("super", "self"):
        if head == "super":
            if not base:
                return None
            base.pop()
        if not rest:
            break
        head, rest = rest[0], rest[1:]
    else:
        rest = [head] + rest
    return tuple(base) + tuple(r for r in rest if r not in ("super", "self"))


def cycles(edges: dict[tuple[str, ...], set[tuple[str, ...]]]) -> list[list[tuple[str, ...]]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    on_stack: set = set()
    found: list = []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def ring(component, edges):
    """One concrete cycle through the component, for the message."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    node = start
    while True:
        nexts = sorted(w for w in edges[node] if w in members)
        if start in nexts and len(path) > 1:
            return path + [start]
        unvisited = [w for w in nexts if w not in seen]
        if not unvisited:
            return path + [nexts[0]]
        node = unvisited[0]
        seen.add(node)
        path.append(node)


def name(src: Path, module: tuple[str, ...]) -> str:
    as_file = src.joinpath(*module).with_suffix(".rs")
    if as_file.exists():
        return str(as_file.relative_to(src))
    return str(src.joinpath(*module, "mod.rs").relative_to(src))


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    problems, crates = [], 0
    for src in sorted(root.glob("crates/*/src")):
        crates += 1
        edges = crate_edges(src)
        for component in cycles(edges):
            loop = " -> ".join(name(src, m) for m in ring(component, edges))
            if len(component) > 2:
                loop += f" (a ring of {', '.join(name(src, m) for m in component)})"
            problems.append(f"{src.parent.name}: {loop}")
    for p in problems:
        print(f"import cycle: {p}")
    if problems:
        print(f"{len(problems)} import cycle(s) between files; move what both sides use into a module of its own")
        return 1
    print(f"no import cycles between the files of {crates} crates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
