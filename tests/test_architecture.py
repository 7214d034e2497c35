"""The architecture's contracts, checked on the source: layers, no import cycles, and a REPL
worker that imports the standard library only.

The imports are read with ``ast`` (every ``import``, including those inside functions and
under ``TYPE_CHECKING``, as import-linter's graph counts them), so the rules hold without
any tool installed; when import-linter is installed, ``lint-imports`` runs the same
contracts from pyproject.toml.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("memory", "rlm_core", "agents")
LAYERS = {"memory": 0, "rlm_core": 1, "agents": 2}
# The modules the REPL worker runs: standard library only (plus each other).
WORKER = ("rlm_core.sandbox.worker", "agents.repl.views")
# Import cycles allowed (none: each was cut along an interface).
KNOWN_CYCLES: list[set[str]] = []


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            parts = list(p.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _imported(name: str, path: Path, *, top_level_only: bool = False) -> set[str]:
    """Every module ``name`` imports (absolute names, submodules where they are imported)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    return found


def _internal(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH = {
    m: {t for i in _imported(m, p) if (t := _internal(i)) is not None and t != m}
    for m, p in MODULES.items()
}


def test_layers_point_one_way() -> None:
    wrong = [
        f"{m} imports {t}"
        for m, targets in GRAPH.items()
        for t in targets
        if LAYERS[t.split(".")[0]] > LAYERS[m.split(".")[0]]
    ]
    assert wrong == []


def test_rlm_core_knows_memory_only_through_its_errors() -> None:
    allowed = {"memory.errors", "memory.lazy", "memory.tokens"}  # the error tree; standard-library helpers
    reached = sorted({t for m, ts in GRAPH.items() if m.startswith("rlm_core") for t in ts
                      if t.startswith("memory") and t not in allowed})  # fmt: skip
    assert reached == [], "rlm_core is handed memory's functions; it imports only memory.errors"


def _cycles(graph: dict[str, set[str]] | None = None) -> list[set[str]]:
    graph_ = GRAPH if graph is None else graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph_.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph_):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    assert [c for c in _cycles() if c not in KNOWN_CYCLES] == []


def test_the_worker_imports_the_standard_library_only() -> None:
    worker = [m for m in MODULES if any(m == w or m.startswith(w + ".") for w in WORKER)]
    assert "rlm_core.sandbox.worker.main" in worker and "agents.repl.views" in worker
    bad = []
    for m in worker:
        for i in _imported(m, MODULES[m]):
            top = i.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            if not any(i == w or i.startswith(w + ".") for w in WORKER):
                bad.append(f"{m} imports {i}")
    # Importing a worker module runs its packages' __init__ files: those must stay light.
    for m in worker:
        parts = m.split(".")
        for n in range(1, len(parts)):
            pkg = ".".join(parts[:n])
            for i in _imported(pkg, MODULES[pkg], top_level_only=True):
                top = i.split(".")[0]
                if top not in sys.stdlib_module_names and top != "__future__":
                    bad.append(f"{pkg} (a package of {m}) imports {i} at import time")
    assert sorted(set(bad)) == []


# Helpers and values written once: where each is defined (every other module imports it from there).
ONE_DEFINITION = {
    "count_tokens": "memory.tokens",  # the model-token estimate (chunk sizes are count_words)
    "parse_when": "memory.text.query",  # the one reader of ISO dates
    "jsonable": "memory.ops.values",
    "store_exists": "memory.config",
    "RecallFilter": "memory.text.query",  # the recall filters, one value through every layer
    "BaseLM": "rlm_core.lm.base",  # the one request path of the LM clients
}


def test_shared_helpers_are_defined_once() -> None:
    defined: dict[str, set[str]] = {name: set() for name in ONE_DEFINITION}
    for m, p in MODULES.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name in defined:
                defined[node.name].add(m)
    assert defined == {name: {m} for name, m in ONE_DEFINITION.items()}


def test_the_checks_see_what_they_check() -> None:
    # a reader that found no imports would pass every rule above
    assert "memory.db" in GRAPH["memory.manager"] and "rlm_core.lm.types" in GRAPH["rlm_core.lm.fakes"]
    assert "agents.repl.binding" in GRAPH["agents.ask"] and "memory.ops.registry" in GRAPH["agents.repl.binding"]
    # the cycle finder finds a cycle where there is one
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


@pytest.mark.skipif(shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
                    reason="import-linter is not installed (pip install -e .[dev])")
def test_import_linter_contracts() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe is not None
    run = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


@pytest.mark.parametrize("blocked,module,extra", [
    ("starlette", "agents.server.http", "server"),
    ("mcp", "agents.server.mcp", "server"),
])  # fmt: skip
def test_a_missing_extra_is_named(blocked: str, module: str, extra: str) -> None:
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            f"try:\n    import {module}\nexcept Exception as e:\n    print(type(e).__name__, e)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(ROOT)}).stdout  # fmt: skip
    assert out.startswith("MissingExtraError") and f"pip install 'rlm-memory[{extra}]'" in out


def test_a_postgres_url_without_the_driver_names_the_extra() -> None:
    code = ("import sys; sys.modules['psycopg'] = None\nfrom memory.db import Database\n"
            "try:\n    Database.open('postgresql://nobody@127.0.0.1:1/none')\n"
            "except Exception as e:\n    print(type(e).__name__, e)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(ROOT)}).stdout  # fmt: skip
    assert out.startswith("MissingExtraError") and "rlm-memory[postgres]" in out


def test_the_module_table_lists_every_module() -> None:
    # docs/architecture.md's tree is made by this script: one line per module.
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "module_table.py"), "--width", "300"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()  # fmt: skip
    names = [line.split()[0] for line in out]
    files = sorted(p for p in MODULES.values() if p.name != "__init__.py")
    assert len(names) == len(files) + sum(1 for p in MODULES.values() if p.name == "__init__.py")
    assert sorted(n for n in names if n.endswith(".py")) == sorted(p.name for p in files)
    row = next(line for line in out if line.split()[0] == "tokens.py")
    assert row.split()[1] == str(len((ROOT / "memory" / "tokens.py").read_text().splitlines()))
    assert "the one ``count_tokens``" in row
