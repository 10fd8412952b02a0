"""Plotly figures of a Caching Lab result. Plotly is imported inside each function, so importing
this module (or orq_core) costs nothing for code that never draws."""

from __future__ import annotations

from itertools import accumulate

from .catalog import catalog
from .lab import ExperimentResult, LabRecord

TOKEN_SERIES = (  # (LabRecord field, legend name, colour)
    ("input_tokens", "Uncached input", "#9aa5b1"),
    ("cache_write_tokens", "Cache write", "#e07a5f"),
    ("cache_read_tokens", "Cache read", "#3d9970"),
    ("output_tokens", "Output", "#4c6ef5"),
)
ARM_COLOURS = {"no-cache": "#868e96", "prompt-cache": "#2b8a3e", "response-cache": "#1c7ed6"}
DASHES = ("solid", "dot", "dash", "dashdot")


def _model_label(slug: str) -> str:
    target = catalog().resolve(slug)
    return target.model.label if target.provider.id == "anthropic" else target.label


def _series_name(result: ExperimentResult, model: str, arm: str) -> str:
    return arm if len(result.config.models) == 1 else f"{arm} · {_model_label(model)}"


def _style(result: ExperimentResult, model: str, arm: str) -> dict:
    dash = DASHES[result.config.models.index(model) % len(DASHES)] if model in result.config.models else "solid"
    return {"color": ARM_COLOURS.get(arm, "#495057"), "dash": dash}


def _requests(records: list[LabRecord]) -> list[int]:
    return [r.request for r in records]


def tokens_figure(result: ExperimentResult):
    """Stacked tokens per request (uncached input / cache write / cache read / output), one panel
    per model (rows) and arm (columns)."""
    from plotly.subplots import make_subplots

    models = [m for m in result.config.models if any(r.model == m for r in result.records)] or [""]
    arms = [a for a in result.config.arms if any(r.arm == a for r in result.records)] or [""]
    titles = [_series_name(result, m, a) if m else a for m in models for a in arms]
    fig = make_subplots(rows=len(models), cols=len(arms), shared_yaxes=True, subplot_titles=titles,
                        vertical_spacing=0.12, horizontal_spacing=0.04)
    for row, model in enumerate(models, start=1):
        for col, arm in enumerate(arms, start=1):
            records = result.arm_records(model, arm)
            for field, name, colour in TOKEN_SERIES:
                fig.add_bar(x=_requests(records), y=[getattr(r, field) for r in records], name=name,
                            marker_color=colour, legendgroup=name, showlegend=row == 1 and col == 1,
                            row=row, col=col, hovertemplate=f"{name}: %{{y:,}} tokens<extra></extra>")
            fig.update_xaxes(title_text="Request #", dtick=1, row=row, col=col)
        fig.update_yaxes(title_text="Tokens", row=row, col=1)
    fig.update_layout(barmode="stack", title="Tokens per request", legend_title_text="Billed as",
                      height=320 * len(models) + 80)
    return fig


def cost_figure(result: ExperimentResult):
    """Cost per request (bars) and cumulative cost per arm (lines) with the no-cache baseline
    (the same requests priced without caching, dashed)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Cost per request", "Cumulative cost"))
    for model, arm in result.groups():
        records = result.arm_records(model, arm)
        name, style = _series_name(result, model, arm), _style(result, model, arm)
        x = _requests(records)
        costs = [float(r.cost_usd) for r in records]
        fig.add_bar(x=x, y=costs, name=name, marker_color=style["color"], legendgroup=name,
                    row=1, col=1, hovertemplate="$%{y:.6f}<extra>" + name + "</extra>")
        fig.add_scatter(x=x, y=list(accumulate(costs)), name=name, mode="lines+markers", line=style,
                        legendgroup=name, showlegend=False, row=1, col=2,
                        hovertemplate="$%{y:.6f}<extra>" + name + "</extra>")
    for model in result.config.models:
        records = _baseline_records(result, model)
        if not records:
            continue
        name = "no-cache baseline" if len(result.config.models) == 1 else f"no-cache baseline · {_model_label(model)}"
        fig.add_scatter(x=_requests(records), y=list(accumulate(float(r.baseline_usd) for r in records)),
                        name=name, mode="lines", line={"color": "#212529", "dash": "dash"}, row=1, col=2,
                        hovertemplate="$%{y:.6f}<extra>" + name + "</extra>")
    fig.update_xaxes(title_text="Request #", dtick=1)
    fig.update_yaxes(title_text="Cost ($)", tickprefix="$", row=1, col=1)
    fig.update_yaxes(title_text="Cumulative cost ($)", tickprefix="$", row=1, col=2)
    fig.update_layout(barmode="group", title="Cost", legend_title_text="Arm", height=420)
    return fig


def _baseline_records(result: ExperimentResult, model: str) -> list[LabRecord]:
    """The prompt-cache arm's baseline prices exactly its own requests; else the first arm's."""
    for arm in ("prompt-cache", *result.config.arms):
        records = result.arm_records(model, arm)
        if records:
            return records
    return []


def latency_figure(result: ExperimentResult):
    """Time to first token and total latency per request, one line per arm (and model)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Time to first token", "Total latency"))
    for model, arm in result.groups():
        records = [r for r in result.arm_records(model, arm) if r.status == "ok"]
        name, style = _series_name(result, model, arm), _style(result, model, arm)
        x = _requests(records)
        for col, field in ((1, "ttft_ms"), (2, "latency_ms")):
            fig.add_scatter(x=x, y=[getattr(r, field) for r in records], name=name, mode="lines+markers",
                            line=style, legendgroup=name, showlegend=col == 1, row=1, col=col,
                            hovertemplate="%{y:,.0f} ms<extra>" + name + "</extra>")
    fig.update_xaxes(title_text="Request #", dtick=1)
    fig.update_yaxes(title_text="TTFT (ms)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="Latency (ms)", rangemode="tozero", row=1, col=2)
    fig.update_layout(title="Latency", legend_title_text="Arm", height=420)
    return fig


def figure_to_html(fig, *, full_html: bool = True, include_plotlyjs: bool | str = True) -> str:
    """Self-contained HTML (plotly.js inlined by default: the export works offline)."""
    return fig.to_html(full_html=full_html, include_plotlyjs=include_plotlyjs)


BREAKER_SERIES = (  # (BreakerStep field, legend name, colour)
    ("cache_read_tokens", "Read from the cache", "#3d9970"),
    ("cache_write_tokens", "Written to the cache", "#e07a5f"),
    ("uncached_tokens", "Uncached", "#9aa5b1"),
)


def breakers_figure(run):
    """"What breaks the cache": each step's input as read / written / uncached, the doctor's
    reason on hover."""
    import plotly.graph_objects as go

    steps = [s for s in run.steps if s.outcome not in ("skipped", "failed")]
    labels = [f"{s.step}. {s.change}" for s in steps]
    fig = go.Figure()
    for field, name, colour in BREAKER_SERIES:
        fig.add_bar(y=labels, x=[getattr(s, field) for s in steps], name=name, orientation="h",
                    marker_color=colour, customdata=[s.why for s in steps],
                    hovertemplate=f"{name}: %{{x:,}} tokens<br>%{{customdata}}<extra></extra>")
    fig.update_layout(barmode="stack", title=f"What breaks the cache · {_model_label(run.model)}",
                      xaxis_title="Input tokens", yaxis={"autorange": "reversed"},
                      height=60 + 40 * max(1, len(steps)), legend_orientation="h")
    return fig
