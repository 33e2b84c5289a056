"""A campaign's report as data (pure): every outcome evaluated per arm against control, with breakdowns.

The same dict feeds `persona campaign report` (terminal, HTML), `GET /v1/campaigns/NAME` and the
dashboard; nothing here reads files or databases.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import pandas as pd

from configs.campaign import CampaignSpec
from models.experiments import evaluate_outcome

ARM = "arm"


def build_report(
    spec: CampaignSpec,
    frame: pd.DataFrame,
    *,
    outcomes: Mapping[str, bool],
    status: Mapping[str, object] | None = None,
    seed: int = 0,
) -> dict:
    """`frame`: one row per assigned customer with `arm`, each outcome column named in `outcomes`
    (name -> binary?) and any breakdown columns. The first outcome is the primary one; the campaign's
    `minimum_effect` applies to it. Breakdown columns the frame lacks are listed, not invented."""
    present = [c for c in spec.breakdown_by if c in frame.columns]
    missing = [c for c in spec.breakdown_by if c not in frame.columns]
    results = []
    for i, (name, binary) in enumerate(outcomes.items()):
        results.append(
            evaluate_outcome(
                frame,
                arm_column=ARM,
                outcome=name,
                binary=binary,
                control=spec.control,
                shares=spec.shares,
                breakdown_by=present,
                minimum_effect=spec.minimum_effect if i == 0 else None,
                power=spec.power,
                alpha=spec.alpha,
                seed=seed,
            )
        )
    warnings = list(dict.fromkeys(w for r in results for w in r["warnings"]))
    if missing:
        warnings.append(f"no breakdown by {missing}: those tags are not available for this campaign")
    return {
        "campaign": spec.name,
        "description": spec.description,
        "arms": [{"name": a.name, "share": a.share, "control": a.control} for a in spec.arms],
        "start": spec.start.isoformat() if spec.start else None,
        "end": spec.end.isoformat() if spec.end else None,
        "audience": spec.audience,
        "minimum_effect": spec.minimum_effect,
        "n": len(frame),
        "status": dict(status or {}),
        "outcomes": results,
        "warnings": warnings,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def _num(x: float, kind: str) -> str:
    return f"{x:.4f}" if kind == "rate" else f"{x:,.2f}"


def render_text(report: dict) -> str:
    """The report for a terminal."""
    lines = [
        f"campaign {report['campaign']}: {report['n']:,} customers"
        + (f" - {report['description']}" if report["description"] else "")
    ]
    if report.get("start"):
        lines.append(f"  {report['start']} -> {report['end']}   audience: {report.get('audience') or '-'}")
    status = report.get("status") or {}
    if status.get("as_of"):
        lines.append(
            f"  data as of {status.get('as_of', '-')[:10]}, window {'complete' if status.get('complete') else 'open'}"
        )
    for result in report["outcomes"]:
        kind = result["kind"]
        lines += ["", f"outcome {result['outcome']} ({kind})", f"  {'arm':<16} {'n':>9} {kind:>10}"]
        for a in result["arms"]:
            lines.append(f"  {a['arm']:<16} {a['n']:>9,} {_num(a['mean'], kind):>10}")
        for e in result["effects"]:
            lines.append(
                f"  {e['arm']} vs {e['control']}: {e['difference']:+.5g} [{e['ci_low']:+.5g}, {e['ci_high']:+.5g}] "
                f"p={e['p_value']:.2g} lift {_pct(e['relative_lift'])} ({e['method']})"
            )
        srm = result["sample_ratio"]
        lines.append(
            f"  sample ratio: chi2 {srm['chi2']:.2f}, p {srm['p_value']:.3g}{' MISMATCH' if srm['mismatch'] else ' ok'}"
        )
        for p in result["power"]["arms"]:
            extra = (
                f", power {p['power']:.2f} for {result['power']['minimum_effect']:g}"
                if p["power"] is not None
                else ""
            )
            lines.append(f"  {p['arm']}: minimum detectable effect {p['mde']:.4g}{extra}")
        for col, rows in result["breakdowns"].items():
            lines.append(f"  by {col}:")
            for row in rows:
                eff = "  ".join(
                    f"{e['arm']} {e['difference']:+.4g} [{e['ci_low']:+.4g}, {e['ci_high']:+.4g}]"
                    for e in row["effects"]
                )
                lines.append(f"    {str(row['value']):<18} n={row['n']:<7,} {eff}")
    if report["warnings"]:
        lines += ["", *[f"warning: {w}" for w in report["warnings"]]]
    return "\n".join(lines)


def render_html(report: dict) -> str:
    """The report as a self-contained HTML page."""

    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Campaign {esc(report['campaign'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f4f4f4}"
        ".warn{color:#a40}</style></head><body>",
        f"<h1>Campaign {esc(report['campaign'])}</h1><p>{esc(report['description'] or '')}</p>",
        f"<p>{report['n']:,} customers; audience: <code>{esc(report.get('audience') or '-')}</code></p>",
    ]
    parts += [f"<p class='warn'>warning: {esc(w)}</p>" for w in report["warnings"]]
    for result in report["outcomes"]:
        kind = result["kind"]
        parts.append(
            f"<h2>{esc(result['outcome'])} ({kind})</h2><table><tr><th>arm</th><th>n</th><th>{kind}</th></tr>"
        )
        parts += [
            f"<tr><td>{esc(a['arm'])}</td><td>{a['n']:,}</td><td>{_num(a['mean'], kind)}</td></tr>"
            for a in result["arms"]
        ]
        parts.append(
            "</table><table><tr><th>arm</th><th>difference</th><th>95% CI</th><th>p</th><th>lift</th><th>interval</th></tr>"
        )
        parts += [
            f"<tr><td>{esc(e['arm'])}</td><td>{e['difference']:+.5g}</td><td>[{e['ci_low']:+.5g}, {e['ci_high']:+.5g}]</td>"
            f"<td>{e['p_value']:.2g}</td><td>{_pct(e['relative_lift'])}</td><td>{e['method']}</td></tr>"
            for e in result["effects"]
        ]
        parts.append("</table>")
        for col, rows in result["breakdowns"].items():
            parts.append(
                f"<h3>by {esc(col)}</h3><table><tr><th>{esc(col)}</th><th>n</th><th>effects</th></tr>"
            )
            for row in rows:
                eff = "<br>".join(
                    f"{esc(e['arm'])} {e['difference']:+.4g} [{e['ci_low']:+.4g}, {e['ci_high']:+.4g}]"
                    for e in row["effects"]
                )
                parts.append(f"<tr><td>{esc(str(row['value']))}</td><td>{row['n']:,}</td><td>{eff}</td></tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def imported_report(spec: CampaignSpec, frame: pd.DataFrame, *, seed: int = 0) -> dict:
    """The report of a finished campaign imported through its `source:` mapping (every mapped outcome)."""
    outcomes = {name: o.type == "rate" for name, o in spec.source.outcomes.items()}
    return build_report(
        spec, frame, outcomes=outcomes, status={"imported": True, "complete": True}, seed=seed
    )
