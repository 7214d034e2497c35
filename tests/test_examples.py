"""The examples and the docs run: every script in examples/ and every fenced ``python`` block
in docs/*.md that needs no API key or server.

A docs block is skipped when its info string says so: ```` ```python norun ```` (it needs a
key, a server or a user at a terminal). The runnable blocks of one page run in order in one
fresh interpreter, in an empty working directory, so later blocks may use earlier names.
An example that needs a key says ``# needs: ANTHROPIC_API_KEY`` and is skipped without one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLMEM_", "ANTHROPIC_", "OPENAI_"))}
    env.update({
        "PYTHONPATH": str(ROOT),
        "RLMEM_STORE": str(tmp_path / "store"),
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "ANONYMIZED_TELEMETRY": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        # queued items stay queued: searches still find them by full text, and the suite
        # does not load the embedding model once per script
        "RLMEM_BACKGROUND_EMBED": "false",
    })
    return env


def python_blocks(markdown: str) -> list[str]:
    """The runnable python blocks of a page, in order."""
    out = []
    for info, body in _FENCE.findall(markdown):
        words = info.strip().split()
        if words and words[0] in ("python", "py") and "norun" not in words[1:]:
            out.append(body)
    return out


def test_the_block_reader_honours_norun() -> None:
    page = "x\n```python\na = 1\n```\n```python norun\nboom()\n```\n```bash\nls\n```\n"
    assert python_blocks(page) == ["a = 1\n"]


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script: Path, tmp_path: Path) -> None:
    source = script.read_text(encoding="utf-8")
    needs = re.findall(r"^# needs: (\w+)", source, re.MULTILINE)
    missing = [v for v in needs if not os.environ.get(v)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    env = _env(tmp_path)
    for v in needs:
        env[v] = os.environ[v]
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_docs_python_blocks_run(page: Path, tmp_path: Path) -> None:
    blocks = python_blocks(page.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip("no runnable python blocks")
    code = "\n\n".join(blocks)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"{page.name}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_the_quickstart_runs_twice(tmp_path: Path) -> None:
    """Setup code is run again as it is: the second run opens what the first created."""
    code = "\n\n".join(python_blocks((ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8")))
    runs = [subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(tmp_path),
                           capture_output=True, text=True, timeout=240) for _ in range(2)]
    for proc in runs:
        assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "Green tea, you said." in runs[1].stdout
