"""Memory outlives the process: one process writes memory and exits, a new one answers from it.

Each step is a fresh Python interpreter, so nothing is shared but the store directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from memory_corpus import open_store

ROOT = Path(__file__).resolve().parent.parent

WRITE = """
from datetime import datetime, timezone
from memory_corpus import open_store
mem = open_store(STORE, embed_recall=True)
mem.recall.append_many([
    {"content": "Kickoff: we aim to ship the beta in June.", "session_id": "kickoff",
     "created_at": datetime(2024, 4, 2, 9, 0, tzinfo=timezone.utc)},
    {"content": "Update: the beta launch moved to March 3rd because of the audit.",
     "session_id": "planning", "created_at": datetime(2024, 5, 6, 14, 0, tzinfo=timezone.utc)},
])
mem.archival.insert("Audit report: the security audit finishes on February 20th.", source="audit.md")
mem.working.create("human", "Ada, release manager.", limit=500)
mem.close()
print("written")
"""

ASK = """
import json
from memory_corpus import open_store
from agents.ask import ask
from rlm_core.lm import ScriptedLM
mem = open_store(STORE, embed_recall=True)
root = ScriptedLM([
    "```repl\\nhits = grep('launch', tier='all')\\nwhy = search('security audit', k=1, tier='archival')[0]\\n"
    "print(hits, why)\\n```",
    "```repl\\nimport re\\nwhen = re.search(r'moved to (\\\\w+ \\\\d+\\\\w*)', hits[0].snippet).group(1)\\n"
    "remember(f'The beta launch date is {when}.', tags=['decision'])\\n"
    "FINAL(f'{when} ({why.source}); asked by {working[\\"human\\"]}')\\n```",
])
result = ask(mem, "When is the beta launch, and why?", root=root)
mem.close()
print(json.dumps({"answer": result.answer, "first": root.requests[0].messages[0]["content"]}))
"""


def _python(code: str, store: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    src = f"STORE = {str(store)!r}\n" + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", src], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_new_process_answers_from_memory_written_by_another(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert _python(WRITE, store) == "written"
    out = json.loads(_python(ASK, store))
    assert out["answer"] == "March 3rd (audit.md); asked by Ada, release manager."
    assert "2 messages in 2 sessions" in out["first"] and "audit.md: 1 chunks" in out["first"]
    # and what the second process remembered is there for a third
    mem = open_store(store)
    try:
        found = [c for c in mem.archival.iter_chunks() if "decision" in c.tags]
        assert [c.text for c in found] == ["The beta launch date is March 3rd."]
        assert found[0].metadata["written_by"] == "rlm"
        assert mem.recall.count() == 2
    finally:
        mem.close()
