"""Chart specifications for plotly.js (the figure JSON `Plotly.newPlot` takes), built as plain dicts:
building `plotly.graph_objects` figures validates every property and costs tens of milliseconds each,
while the browser validates the same JSON anyway. The JS itself is the plotly package's own bundle,
served by Persona (`plotly.min.js`), so the pages work offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

PALETTE = ["#2f6fbf", "#e4572e", "#17a398", "#f3a712", "#8c5fbf", "#6b8f71", "#c94f7c", "#4d4d4d"]
TIER_COLOURS = {"high": "#d64545", "medium": "#f3a712", "low": "#3c9d5d"}
FONT = "Noto Sans CJK SC, Noto Sans SC, Microsoft YaHei, Helvetica, Arial, sans-serif"


def plotly_js_path() -> Path:
    """The plotly.js bundle shipped inside the plotly Python package (no CDN)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _layout(title: str, *, height: int = 280, **extra: Any) -> dict[str, Any]:
    layout = {
        "title": {"text": title, "font": {"size": 14}, "x": 0.01},
        "height": height,
        "margin": {"l": 48, "r": 16, "t": 36, "b": 40},
        "font": {"family": FONT, "size": 12},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "showlegend": False,
    }
    layout.update(extra)
    return layout


def figure(data: list[dict[str, Any]], layout: dict[str, Any]) -> dict[str, Any]:
    return {"data": data, "layout": layout}


def bar(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    colours: Sequence[str] | None = None,
    horizontal: bool = False,
    height: int = 260,
    text: Sequence[str] | None = None,
) -> dict[str, Any]:
    trace: dict[str, Any] = {
        "type": "bar",
        "x": list(values) if horizontal else list(labels),
        "y": list(labels) if horizontal else list(values),
        "orientation": "h" if horizontal else "v",
        "marker": {"color": list(colours) if colours else PALETTE[0]},
        "hovertemplate": "%{y}: %{x:,}<extra></extra>" if horizontal else "%{x}: %{y:,}<extra></extra>",
    }
    if text is not None:
        trace.update(text=list(text), textposition="auto")
    # labels are categories even when they read as numbers (scores 1-5, segment numbers)
    extra: dict[str, Any] = {"yaxis": {"automargin": True}, "xaxis": {"automargin": True}}
    if horizontal:
        extra["yaxis"].update(autorange="reversed", type="category")
    else:
        extra["xaxis"]["type"] = "category"
    return figure([trace], _layout(title, height=height, **extra))


def donut(
    labels: Sequence[str], values: Sequence[float], *, title: str, colours: Sequence[str]
) -> dict[str, Any]:
    trace = {
        "type": "pie",
        "labels": list(labels),
        "values": list(values),
        "hole": 0.5,
        "sort": False,
        "marker": {"colors": list(colours)},
        "textinfo": "label+percent",
        "hovertemplate": "%{label}: %{value:,}<extra></extra>",
    }
    return figure([trace], _layout(title, height=280, showlegend=False))


def funnel(labels: Sequence[str], values: Sequence[float], *, title: str) -> dict[str, Any]:
    trace = {
        "type": "funnel",
        "y": list(labels),
        "x": list(values),
        "textinfo": "value+percent total",
        "marker": {"color": PALETTE[: len(labels)] if len(labels) <= len(PALETTE) else PALETTE[0]},
    }
    return figure([trace], _layout(title, height=300, yaxis={"automargin": True}))


def stacked(
    x: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    title: str,
    colours: dict[str, str],
    kind: str = "bar",
) -> dict[str, Any]:
    """Stacked bars (or areas) of several series over the same x, with a legend."""
    data = []
    for name, values in series.items():
        trace: dict[str, Any] = {"x": list(x), "y": list(values), "name": name}
        if kind == "bar":
            trace.update(type="bar", marker={"color": colours.get(name)})
        else:
            trace.update(type="scatter", mode="lines", stackgroup="one", line={"color": colours.get(name)})
        data.append(trace)
    return figure(
        data,
        _layout(
            title,
            height=280,
            barmode="stack",
            showlegend=True,
            legend={"orientation": "h", "y": -0.2},
            xaxis={"type": "category"},
        ),
    )


def lines(x: Sequence[Any], series: dict[str, Sequence[float | None]], *, title: str) -> dict[str, Any]:
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": list(x),
            "y": list(values),
            "name": name,
            "line": {"color": PALETTE[i % len(PALETTE)]},
        }
        for i, (name, values) in enumerate(series.items())
    ]
    return figure(
        data,
        _layout(
            title,
            height=260,
            showlegend=True,
            legend={"orientation": "h", "y": -0.25, "font": {"size": 11}},
            xaxis={"type": "category"},
            margin={"l": 48, "r": 16, "t": 36, "b": 20},
        ),
    )


def effects(
    labels: Sequence[str],
    differences: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    title: str,
    unit: str = "",
) -> dict[str, Any]:
    """Each treatment's effect against control as a point with its interval, beside a zero line: an
    interval that crosses zero is no evidence of an effect."""
    colours = [
        "#3c9d5d" if lo > 0 else "#d64545" if hi < 0 else "#888888"
        for lo, hi in zip(lows, highs, strict=True)
    ]
    trace = {
        "type": "scatter",
        "mode": "markers",
        "x": list(differences),
        "y": list(labels),
        "marker": {"size": 12, "color": colours},
        "error_x": {
            "type": "data",
            "symmetric": False,
            "array": [h - d for h, d in zip(highs, differences, strict=True)],
            "arrayminus": [d - lo for d, lo in zip(differences, lows, strict=True)],
            "thickness": 2,
            "width": 6,
        },
        "hovertemplate": "%{y}: %{x:+.2f}" + (f" {unit}" if unit else "") + "<extra></extra>",
    }
    return figure(
        [trace],
        _layout(
            title,
            height=max(160, 50 * len(labels) + 90),
            xaxis={
                "zeroline": True,
                "zerolinewidth": 2,
                "zerolinecolor": "#555",
                "ticksuffix": f" {unit}" if unit else "",
                "automargin": True,
            },
            yaxis={"type": "category", "automargin": True},
        ),
    )
