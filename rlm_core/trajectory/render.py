"""Human-readable renderings of a ``Trajectory``: terminal text and a standalone HTML page.

Rules this module keeps:

* Rendering only reads the trajectory. Long texts are shortened for display (with the number
  of characters left out); the stored data keeps them whole.
* The HTML page is self-contained: inline CSS, no scripts, nothing fetched; every model- or
  code-produced string is HTML-escaped.
"""

from __future__ import annotations

import html
import textwrap
from typing import TYPE_CHECKING

from rlm_core.trajectory.records import preview

if TYPE_CHECKING:
    from rlm_core.trajectory.records import IterationRecord, SubCallRecord, Trajectory

__all__ = ["render_html", "render_text"]

_SHOW = 1200


def _c(s: str, code: str, on: bool) -> str:
    return f"\x1b[{code}m{s}\x1b[0m" if on else s


def _block(text: str, indent: str, width: int) -> list[str]:
    shown = preview(text, _SHOW)
    out: list[str] = []
    for raw in shown.splitlines() or [""]:
        out.extend(
            textwrap.wrap(raw, width=max(20, width - len(indent)), replace_whitespace=False,
                          drop_whitespace=False) or [""]
        )
    return [indent + line for line in out]


def _summary(t: Trajectory) -> str:
    u = t.total_usage
    return (
        f"{len(t.iterations)} iterations, {len(t.sub_calls)} sub-calls, "
        f"{u.total_tokens} tokens, ${t.cost_usd:.4f}, {t.elapsed_s:.2f} s, "
        f"stopped by {t.stopped_by or '-'}"
    )


def _render_sub(s: SubCallRecord, indent: str, width: int, color: bool) -> list[str]:
    tag = s.kind + (f"[{s.batch_index}]" if s.batch_index is not None else "")
    tag += " (fallback to llm_query)" if s.fallback else ""
    head = (
        f"{indent}↳ {tag} d{s.depth} {s.model} +{s.started_s:.2f}s {s.duration_s:.2f}s "
        f"{s.usage.total_tokens} tok"
    )
    lines = [_c(head, "35", color)]
    lines += _block(f"prompt ({s.prompt_chars} chars): {s.prompt_preview}", indent + "    ", width)
    if s.error:
        lines += [_c(ln, "31", color) for ln in _block(f"error: {s.error}", indent + "    ", width)]
    else:
        lines += _block(f"response ({s.response_chars} chars): {s.response_preview}", indent + "    ", width)
    if s.child is not None:
        lines += _render(s.child, indent + "    ", width, color)
    return lines


def _render_iteration(it: IterationRecord, indent: str, width: int, color: bool) -> list[str]:
    title = "final call" if it.kind == "final_call" else f"iteration {it.index}"
    head = (
        f"{indent}── {title}: prompt {it.prompt_messages} msgs / {it.prompt_chars} chars, "
        f"{it.usage.total_tokens} tok, model {it.lm_s:.2f}s, total {it.duration_s:.2f}s"
    )
    lines = [_c(head, "1;34", color)]
    lines += _block(it.reply, indent + "  │ ", width)
    for n, cell in enumerate(it.cells, 1):
        status = "timed out" if cell.timed_out else ("error" if cell.error else "ok")
        if cell.worker_restarted:
            status += f", worker restarted ({cell.restart_reason or 'unknown'})"
        lines.append(_c(f"{indent}  ▶ cell {n} ({status}, {cell.duration_s:.3f}s)", "32", color))
        lines += _block(cell.output or "(no output)", indent + "    ", width)
    for s in it.sub_calls:
        lines += _render_sub(s, indent + "  ", width, color)
    if it.note:
        lines += _block(f"note: {it.note}", indent + "  ", width)
    if it.answer is not None:
        lines.append(_c(f"{indent}  ★ answer ({it.answer_source}): {preview(it.answer, 300)}", "1;32", color))
    return lines


def _render(t: Trajectory, indent: str, width: int, color: bool) -> list[str]:
    head = f"{indent}RLM depth {t.depth} [{t.root_model}/{t.sub_model}] {t.run_id[:8]}: {_summary(t)}"
    lines = [_c(head, "1", color)]
    lines += _block(f"query: {t.query}", indent + "  ", width)
    for it in list(t.iterations):
        lines += _render_iteration(it, indent, width, color)
    if t.error:
        lines += [_c(ln, "31", color) for ln in _block(f"error: {t.error}", indent + "  ", width)]
    if t.answer is not None:
        lines += _block(f"ANSWER: {t.answer}", indent + "  ", width)
    return lines


def render_text(t: Trajectory, *, width: int = 100, color: bool = False) -> str:
    return "\n".join(_render(t, "", width, color))


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
pre{background:#fff;border:1px solid #ddd;padding:.5em;white-space:pre-wrap;word-break:break-word;margin:.3em 0}
details{margin:.3em 0 .3em 1em;border-left:3px solid #ccd;padding-left:.6em}
summary{cursor:pointer;font-weight:600}
.err{color:#b00}.ans{background:#e8f6e8;border-color:#8c8}.meta{color:#666;font-weight:400}
.sub{border-left-color:#c9c}.cell{border-left-color:#9c9}
"""


def _e(s: str) -> str:
    return html.escape(s, quote=True)


def _html_sub(s: SubCallRecord) -> str:
    tag = s.kind + (f"[{s.batch_index}]" if s.batch_index is not None else "")
    tag += " (fallback)" if s.fallback else ""
    body = [f"<pre>{_e(s.prompt_preview)}</pre>"]
    if s.error:
        body.append(f'<pre class="err">{_e(s.error)}</pre>')
    else:
        body.append(f"<pre>{_e(s.response_preview)}</pre>")
    if s.child is not None:
        body.append(_html_traj(s.child, open_=False))
    meta = f"depth {s.depth} · {_e(s.model)} · {s.duration_s:.2f}s · {s.usage.total_tokens} tok"
    return (
        f'<details class="sub"><summary>{_e(tag)} <span class="meta">{meta}</span></summary>'
        + "".join(body) + "</details>"
    )


def _html_iter(it: IterationRecord) -> str:
    title = "final call" if it.kind == "final_call" else f"iteration {it.index}"
    meta = (
        f"{it.prompt_chars} prompt chars · {it.usage.total_tokens} tok · model {it.lm_s:.2f}s"
        f" · total {it.duration_s:.2f}s"
    )
    parts = [f"<pre>{_e(it.reply)}</pre>"]
    for n, c in enumerate(it.cells, 1):
        cls = "err" if (c.error or c.timed_out) else ""
        parts.append(
            f'<details class="cell" open><summary>cell {n} <span class="meta">{c.duration_s:.3f}s'
            f'{" · worker restarted" if c.worker_restarted else ""}</span></summary>'
            f"<pre>{_e(c.code)}</pre><pre class=\"{cls}\">{_e(c.output)}</pre></details>"
        )
    parts += [_html_sub(s) for s in it.sub_calls]
    if it.note:
        parts.append(f'<p class="meta">{_e(it.note)}</p>')
    if it.answer is not None:
        parts.append(f'<pre class="ans">{_e(it.answer)}</pre>')
    return (
        f'<details open><summary>{title} <span class="meta">{meta}</span></summary>'
        + "".join(parts) + "</details>"
    )


def _html_traj(t: Trajectory, *, open_: bool = True) -> str:
    parts = [f"<pre>{_e(t.query)}</pre>"] + [_html_iter(it) for it in list(t.iterations)]
    if t.error:
        parts.append(f'<pre class="err">{_e(t.error)}</pre>')
    if t.answer is not None:
        parts.append(f'<pre class="ans">{_e(t.answer)}</pre>')
    return (
        f'<details{" open" if open_ else ""}><summary>RLM depth {t.depth} '
        f'<span class="meta">{_e(_summary(t))}</span></summary>' + "".join(parts) + "</details>"
    )


def render_html(t: Trajectory) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        f"<title>RLM run {_e(t.run_id[:8])}</title><style>{_CSS}</style></head><body>"
        f"<h1>RLM run {_e(t.run_id)}</h1><p class=\"meta\">{_e(t.started_at)} · "
        f"{_e(t.root_model)} / {_e(t.sub_model)}</p>{_html_traj(t)}</body></html>\n"
    )
