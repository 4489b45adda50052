#!/usr/bin/env python3
"""Fails when ember-nn-core's top-level modules import each other in a cycle.

A module's imports are the `crate::<module>` paths in its code (comments and
doc links do not count), with the crate root's re-exports (`crate::Tensor`,
`crate::Graph`, ...) resolved to the module that defines them. `KNOWN` lists
the cycles that exist today, each with why; any other cycle fails, and so
does a known one that is gone (so that the list stays true).

    python3 scripts/module-cycles.py            # check
    python3 scripts/module-cycles.py --print    # print the module graph
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "core" / "src"

# Cycles that exist, as sorted tuples of modules, with the reason.
KNOWN: dict = {
    # None: the last one (graph <-> ops <-> tensor) went when the walk was
    # handed each op's backward instead of importing it.
}


def modules():
    mods = {}
    for p in SRC.iterdir():
        if p.is_dir():
            mods[p.name] = sorted(p.rglob("*.rs"))
        elif p.suffix == ".rs" and p.stem not in ("lib",):
            mods[p.stem] = [p]
    return mods


def code_lines(path):
    for line in path.read_text().splitlines():
        s = line.strip()
        if s.startswith("//"):
            continue
        yield line.split("//")[0]


def root_reexports(mods):
    """`pub use <module>::{A, B}` in lib.rs: A -> module."""
    names = {}
    text = (SRC / "lib.rs").read_text()
    for m, body in re.findall(r"pub use (\w+)::\{?([^;]*?)\}?;", text):
        for n in re.split(r"[,\s]+", body):
            n = n.split("::")[-1]
            if n and m in mods:
                names[n] = m
    return names


def imports(mods):
    names = root_reexports(mods)
    graph = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            for line in code_lines(f):
                for target in re.findall(r"crate::(\w+)", line):
                    t = target if target in mods else names.get(target)
                    if t and t != m:
                        graph[m].add(t)
                for group in re.findall(r"crate::\{([^}]*)\}", line):
                    for item in re.split(r"[,\s]+", group):
                        head = item.split("::")[0]
                        t = head if head in mods else names.get(head)
                        if t and t != m:
                            graph[m].add(t)
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(tuple(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    graph = imports(modules())
    if "--print" in sys.argv:
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m])) or '(nothing)'}")
    found = set(cycles(graph))
    bad = False
    for c in sorted(found - set(KNOWN)):
        edges = [f"{a} -> {b}" for a in c for b in sorted(graph[a]) if b in c]
        print(f"module cycle: {' <-> '.join(c)} ({'; '.join(edges)})")
        bad = True
    for c in sorted(set(KNOWN) - found):
        print(f"the known cycle {' <-> '.join(c)} is gone: remove it from KNOWN")
        bad = True
    if bad:
        sys.exit(1)
    print(f"ember-nn-core modules: no new import cycle ({len(graph)} modules, known: "
          + (", ".join(" <-> ".join(c) for c in sorted(found)) or "none") + ")")


if __name__ == "__main__":
    main()
