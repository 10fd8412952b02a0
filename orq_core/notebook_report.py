"""A Notebook as one standalone HTML file for stakeholders: the Markdown, each cell's inputs and
outputs, the charts and the totals. It makes no network request when opened: plotly.js is inlined,
a Content-Security-Policy forbids every other source, and Markdown images from the web are shown
as links. Markdown (the person's and the model's) is rendered with HTML off."""

from __future__ import annotations

import html
import time
from functools import lru_cache

from .cost import format_usd
from .notebook import Cell, Notebook, NotebookError, parse_variables

CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data:; font-src data:")
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;
color:#212529;line-height:1.5}
header .banner{padding:.75rem 1rem;border-radius:.5rem;margin:1rem 0}
.banner.local{background:#fff4e6;border:1px solid #ffa94d}.banner.orq{background:#e7f5ff;border:1px solid #74c0fc}
section.cell{border:1px solid #dee2e6;border-radius:.5rem;padding:1rem;margin:1rem 0}
section.markdown{border:none;padding:0 1rem}
.kind{font-size:.8rem;text-transform:uppercase;letter-spacing:.05em;color:#868e96}
pre{background:#f8f9fa;padding:.75rem;border-radius:.375rem;white-space:pre-wrap;word-break:break-word}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #dee2e6;padding:.25rem .5rem;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.answer{border-left:3px solid #4c6ef5;padding-left:1rem;margin:.5rem 0}
.error{color:#c92a2a;background:#fff5f5;border:1px solid #ffc9c9;padding:.5rem;border-radius:.375rem}
.columns{display:grid;grid-template-columns:repeat(auto-fit,minmax(280px,1fr));gap:1rem}
.meta{color:#495057;font-size:.9rem}
"""


@lru_cache(maxsize=1)
def _markdown():
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")

    def image(renderer, tokens, idx, options, env):  # a web image would be a network request: show it as a link
        token = tokens[idx]
        src = token.attrGet("src") or ""
        alt = html.escape(token.content or "image")
        if src.startswith("data:image/"):
            return f'<img src="{html.escape(src)}" alt="{alt}">'
        return f"[image: {alt}] ({html.escape(src)})"

    md.add_render_rule("image", image)
    return md


def render_markdown(text: str) -> str:
    """Markdown to HTML with raw HTML shown as text, never interpreted."""
    return _markdown().render(text or "")


def _esc(value) -> str:
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{_esc(v)}</td>' if i in numeric else f"<td>{_esc(v)}</td>"
                                    for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _ms(value) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _requests_table(cell: Cell) -> str:
    rows = [[r.label, r.model, f"{r.usage.input_tokens:,}", f"{r.usage.cache_read_tokens:,}",
             f"{r.usage.cache_write_tokens:,}", f"{r.usage.output_tokens:,}", format_usd(r.cost_usd),
             format_usd(r.no_cache_usd), _ms(r.ttft_ms), _ms(r.latency_ms), r.error or ""]
            for r in cell.output.requests]
    return _table(["request", "answered by", "uncached input", "cache read", "cache write", "output", "cost",
                   "without caching", "TTFT", "latency", "error"], rows, numeric=set(range(2, 10)))


def _figure(fig) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


def router_banner(notebook: Notebook) -> tuple[str, str]:
    """(css class, sentence) saying where the answers came from."""
    routers = notebook.routers()
    if routers == {"orq"}:
        return "orq", "The answers in this report came from Orq's AI Router (real Claude models)."
    if "local" in routers:
        extra = " Some came from Orq's AI Router; each cell says which." if "orq" in routers else ""
        return "local", ("The answers in this report came from the playground's local router: their text is "
                         "synthetic, not Claude's. Token counts, caching, latency and costs follow Claude's "
                         "published rules, priced as Orq would charge." + extra)
    return "local", "Nothing in this notebook has been run yet: there are no answers to show."


def _inputs(cell: Cell) -> str:
    i = cell.inputs
    if cell.kind == "prompt":
        params = [f"model {i.model}", f"max_tokens {i.max_tokens:,}"]
        if i.thinking_budget:
            params.append(f"thinking {i.thinking_budget:,}")
        if i.temperature is not None:
            params.append(f"temperature {i.temperature:g}")
        cached = [n for n, on in (("system", i.cache_system), ("user message", i.cache_user)) if on]
        if cached:
            params.append(f"cached: {', '.join(cached)} ({i.cache_ttl})")
        return _prompt_inputs(params, i.system, i.user)
    if cell.kind == "compare":
        params = ["targets " + ", ".join(i.targets), f"max_tokens {i.max_tokens:,}"]
        if i.cache_system:
            params.append(f"system cached ({i.cache_ttl})")
        return _prompt_inputs(params, i.system, i.user)
    if cell.kind == "lab":
        params = [f"preset {i.preset}", "models " + ", ".join(i.models), f"{i.requests} requests per arm",
                  "arms " + ", ".join(i.arms), f"TTL {i.ttl}", f"context {i.context_tokens:,} tokens"]
        return f'<p class="meta">{_esc(" · ".join(params))}</p>'
    if cell.kind == "batch":
        params = ["targets " + ", ".join(i.targets), f"max_tokens {i.max_tokens:,}", f"concurrency {i.concurrency}"]
        return (_prompt_inputs(params, i.system, i.template)
                + f"<details><summary>Table</summary><pre>{_esc(i.table)}</pre></details>")
    return ""


def _prompt_inputs(params: list[str], system: str, user: str) -> str:
    out = f'<p class="meta">{_esc(" · ".join(params))}</p>'
    if system:
        out += f"<details><summary>System prompt ({len(system):,} characters)</summary><pre>{_esc(system)}</pre></details>"
    return out + f"<p><b>User:</b></p><pre>{_esc(user)}</pre>"


def _answers(cell: Cell) -> str:
    output = cell.output
    blocks = []
    for answer in output.answers:
        body = render_markdown(answer.text) if answer.text else "<p><i>(no text)</i></p>"
        if answer.reasoning:
            body = f"<details><summary>Thinking</summary><pre>{_esc(answer.reasoning)}</pre></details>" + body
        if answer.error:
            body += f'<p class="error">{_esc(answer.error)}</p>'
        blocks.append(f'<div class="answer"><p class="kind">{_esc(answer.label)}</p>{body}</div>')
    if cell.kind == "compare":
        return f'<div class="columns">{"".join(blocks)}</div>'
    return "".join(blocks)


def _lab(cell: Cell) -> str:
    from .charts import cost_figure, latency_figure, tokens_figure
    from .lab import ExperimentResult
    from .notebook_export import lab_summary_markdown

    result = ExperimentResult.from_dict(cell.output.lab)
    return (render_markdown(lab_summary_markdown(result))
            + "".join(_figure(f(result)) for f in (tokens_figure, cost_figure, latency_figure)))


def _output(cell: Cell, notebook: Notebook) -> str:
    output = cell.output
    if output is None:
        return '<p class="meta"><i>Not run.</i></p>'
    where = "Orq" if output.router == "orq" else "local router (synthetic text)"
    stale = " · <b>stale</b>: changed since this run" if notebook.is_stale(cell) else ""
    out = (f'<p class="meta">Ran {time.strftime("%Y-%m-%d %H:%M", time.gmtime(output.ran_at))} UTC on the '
           f"{_esc(where)} in {output.elapsed_s:,.1f} s{stale}</p>")
    if cell.kind == "lab" and output.lab:
        out += _lab(cell)
    elif cell.kind == "batch":
        from .notebook_batch import batch_report

        out += batch_report(output)
    else:
        out += _answers(cell)
    if cell.kind == "compare" and output.table:
        out += _table(["target", "TTFT", "latency", "output tok/s", "cost", "best"],
                      [[r["target"], _ms(r.get("ttft_ms")), _ms(r.get("latency_ms")),
                        "–" if r.get("tokens_per_s") is None else f"{r['tokens_per_s']:,.1f}",
                        "–" if r.get("cost_usd") is None else format_usd(r["cost_usd"]), r.get("best", "")]
                       for r in output.table], numeric={1, 2, 3, 4})
    if output.requests:
        out += "<details><summary>Requests</summary>" + _requests_table(cell) + "</details>" \
            if cell.kind in ("lab", "batch") else _requests_table(cell)
    for request in output.requests:
        if request.cache is not None and hasattr(request.cache, "sentence"):
            out += f'<p class="meta">Cache doctor · {_esc(request.label)}: {_esc(request.cache.sentence())}</p>'
    for note in output.notes:
        out += f'<p class="meta">{_esc(note)}</p>'
    if output.error:
        out += f'<p class="error">{_esc(output.error)}</p>'
    return out


def _cell(number: int, cell: Cell, notebook: Notebook) -> str:
    if cell.kind == "markdown":
        variables = notebook.variables_before(cell.id)
        from .notebook import substitute

        return f'<section class="cell markdown">{render_markdown(substitute(cell.inputs.text, variables, keep_unknown=True))}</section>'
    head = f'<p class="kind">{number} · {_esc(cell.label)}</p>'
    if cell.kind == "variables":
        try:
            variables = parse_variables(cell.inputs.text)
            body = _table(["name", "value"], [[k, v] for k, v in variables.items()])
        except NotebookError as error:
            body = f'<p class="error">{_esc(error)}</p>'
        return f'<section class="cell">{head}{body}</section>'
    return f'<section class="cell">{head}{_inputs(cell)}{_output(cell, notebook)}</section>'


def _cost_chart(notebook: Notebook) -> str:
    import plotly.graph_objects as go

    ran = [(n, c) for n, c in enumerate(notebook.cells, start=1) if c.output is not None and c.output.requests]
    if not ran:
        return ""
    labels = [f"{n} · {c.label}" for n, c in ran]
    fig = go.Figure()
    fig.add_bar(x=labels, y=[sum(r.cost_usd for r in c.output.requests) for _, c in ran], name="cost",
                marker_color="#2b8a3e")
    fig.add_bar(x=labels, y=[sum(r.no_cache_usd for r in c.output.requests) for _, c in ran],
                name="without caching", marker_color="#868e96")
    fig.update_layout(title="Cost per cell", barmode="group", yaxis={"tickprefix": "$", "title": "USD"}, height=360)
    return _figure(fig)


def export_html(notebook: Notebook) -> str:
    from plotly.offline import get_plotlyjs

    css, banner = router_banner(notebook)
    totals = notebook.totals().rows()
    cells = "".join(_cell(n, c, notebook) for n, c in enumerate(notebook.cells, start=1))
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(notebook.title)}</title><style>{STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<header><h1>{_esc(notebook.title)}</h1>"
        f'<p class="meta">Report generated {generated} by the Claude playground on Orq\'s AI Router.</p>'
        f'<p class="banner {css}" id="router-banner">{_esc(banner)}</p></header>'
        f'<h2>Totals</h2><div id="totals">{_table(["", "value"], [list(r) for r in totals], numeric={1})}</div>'
        f"{_cost_chart(notebook)}<h2>Cells</h2>{cells}</body></html>\n"
    )


__all__ = ["export_html", "render_markdown", "router_banner"]
