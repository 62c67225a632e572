#!/usr/bin/env python3
"""Checks that the shell's imports run one way, as docs/architecture.md says.

The "## Layers" section of docs/architecture.md lists src/module's files
(and the folder commands/) top to bottom; a file may import only files
listed below it (files of one listed folder may import each other). Every
file of src/module must be listed. Reads each file's `crate::module::x` and
`super::x` paths outside its tests; exits 1 naming every import that runs
upwards or every file the list misses.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODULE = ROOT / "src" / "module"


def layers():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("## Layers", 1)[1].split("\n## ", 1)[0]
    order = []
    for line in section.splitlines():
        m = re.match(r"(src/module/\S+)", line)
        if m:
            order.append(m.group(1).removeprefix("src/module/"))
    return order


def entry_of(rel, order):
    """The listed entry a file (path relative to src/module) belongs to."""
    for i, e in enumerate(order):
        if rel == e or (e.endswith("/") and rel.startswith(e)):
            return i
    return None


def module_path(rel):
    """The module path of a file: commands/mod.rs -> [commands]."""
    parts = rel.removesuffix(".rs").split("/")
    return parts[:-1] if parts[-1] == "mod" else parts


def target(parts, order):
    """The listed entry of module path `parts` (under src/module), if any."""
    for n in range(len(parts), 0, -1):
        cand = "/".join(parts[:n])
        for rel in (cand + ".rs", cand + "/mod.rs"):
            if (MODULE / rel).exists():
                return entry_of(rel, order), rel
    return None, None


def imports(rel, text):
    """Module paths (under src/module) that a file's code names."""
    code = re.split(r"^#\[cfg\(test\)\]", text, flags=re.M)[0]
    code = re.sub(r"//[^\n]*", "", code)
    here = module_path(rel)
    # `super` of a mod.rs is its folder's parent; of a file, its folder.
    parent = here[:-1]
    found = []
    for m in re.finditer(r"\b(crate::module|super(?:::super)*)::(\{[^}]*\}|\w+)", code):
        head, tail = m.groups()
        if head == "crate::module":
            base = []
        else:
            base = parent[: len(parent) - (head.count("super") - 1)]
            if head.count("super") - 1 > len(parent):
                continue
        names = tail.strip("{}").split(",") if tail.startswith("{") else [tail]
        for name in names:
            name = name.strip().split("::")[0].strip()
            if name and name not in ("self", "*") and name[0].islower():
                found.append(base + [name])
    return found


def main():
    order = layers()
    if not order:
        sys.exit("docs/architecture.md: no src/module files under ## Layers")
    problems = []
    for path in sorted(MODULE.rglob("*.rs")):
        rel = path.relative_to(MODULE).as_posix()
        if rel == "mod.rs":
            continue
        mine = entry_of(rel, order)
        if mine is None:
            problems.append(f"src/module/{rel}: not listed under ## Layers in docs/architecture.md")
            continue
        for parts in imports(rel, path.read_text()):
            theirs, trel = target(parts, order)
            if theirs is None or trel == rel:
                continue
            if theirs < mine:
                problems.append(
                    f"src/module/{rel} imports src/module/{trel}, listed above it ({order[theirs]} before {order[mine]})"
                )
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"layers: {len(order)} entries, every src/module import runs downwards")


main()
