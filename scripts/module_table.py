#!/usr/bin/env python3
"""Print the library's tree, one line per module: its name, its lines, its docstring's first line.

    python scripts/module_table.py            # memory/, rlm_core/, agents/
    python scripts/module_table.py memory     # one package
    python scripts/module_table.py --summary  # lines and modules per package only

A package's line is its ``__init__.py``. docs/architecture.md's tree is refreshed from this output. The modules are read as text
(``ast``), never imported, so the script needs nothing installed and runs in a second.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("memory", "rlm_core", "agents")


def first_line(path: Path) -> str:
    """The first line of the module's docstring, or ``""``."""
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except SyntaxError:
        return "(does not parse)"
    return doc.strip().splitlines()[0].strip() if doc else ""


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"), key=lambda p: p.relative_to(ROOT).parts)


def lines_of(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def table(packages: list[str], width: int) -> list[str]:
    """A heading per package directory (its ``__init__``'s lines and docstring), then its modules."""
    out: list[str] = []
    seen: set[Path] = set()
    for pkg in packages:
        for path in modules(pkg):
            rel = path.relative_to(ROOT)
            for n in range(1, len(rel.parts)):
                folder = Path(*rel.parts[:n])
                if folder not in seen:
                    seen.add(folder)
                    init = ROOT / folder / "__init__.py"
                    size = lines_of(init) if init.is_file() else 0
                    out.append(_row("  " * (n - 1) + folder.name + "/", size, first_line(init) if size else "", width))
            if path.name != "__init__.py":
                out.append(_row("  " * (len(rel.parts) - 1) + rel.name, lines_of(path), first_line(path), width))
    return out


def _row(name: str, lines: int, doc: str, width: int) -> str:
    row = f"{name:<34} {lines:>5}  {doc}".rstrip()
    if len(row) <= width:
        return row
    return row[: width - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def summary(packages: list[str]) -> list[str]:
    out = [f"{'package':<24} {'modules':>7} {'lines':>7}"]
    total_m = total_l = 0
    for pkg in packages:
        groups: dict[str, list[Path]] = {}
        for path in modules(pkg):
            groups.setdefault(str(path.parent.relative_to(ROOT)), []).append(path)
        for group, paths in groups.items():
            out.append(f"{group + '/':<24} {len(paths):>7} {sum(map(lines_of, paths)):>7}")
        n, lines = sum(map(len, groups.values())), sum(lines_of(p) for ps in groups.values() for p in ps)
        out.append(f"{pkg + '/ (all)':<24} {n:>7} {lines:>7}")
        total_m, total_l = total_m + n, total_l + lines
    out.append(f"{'total':<24} {total_m:>7} {total_l:>7}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="*", default=list(PACKAGES), help="packages to list")
    parser.add_argument("--summary", action="store_true", help="modules and lines per package only")
    parser.add_argument("--width", type=int, default=120, help="cut lines to this width (at a word)")
    args = parser.parse_args(argv)
    unknown = [p for p in args.packages if not (ROOT / p / "__init__.py").is_file()]
    if unknown:
        parser.error(f"not a package of this project: {', '.join(unknown)}")
    print("\n".join(summary(args.packages) if args.summary else table(args.packages, args.width)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
