"""The three pages in words and charts: each function turns the language-free numbers (`overview`,
`model_health`, `customer`) into a template context in one language, from the catalog texts."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from artifacts.texts import Texts
from serving.dashboard import charts
from serving.dashboard.customer import Customer
from serving.dashboard.model_health import ModelHealth, ViewFreshness
from serving.dashboard.overview import Overview, TagInfo

CAMPAIGN_TAG = "persona_campaign_"  # configs.campaign: the CRM tag of an assignment
STATUS_KEYS = {"pending": "status_pending", "delivered": "status_delivered", "dead": "status_dead"}


def _number(value: Any, decimals: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{decimals}f}"


def _day(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return "-"
    return pd.Timestamp(value).strftime("%Y-%m-%d")


def _colours(tag: TagInfo | None, values: list[str]) -> list[str]:
    out = []
    for i, v in enumerate(values):
        out.append(charts.TIER_COLOURS.get(v, charts.PALETTE[i % len(charts.PALETTE)]))
    return out


def _short_labels(labels: list[str], width: int = 30) -> list[str]:
    """Labels cut to `width` (reasons in words are long), still distinct: plotly draws equal category
    labels as one bar."""
    out: list[str] = []
    for label in labels:
        short = label if len(label) <= width else label[: width - 2] + "…"
        base, k = short, 2
        while short in out:
            short, k = f"{base} ({k})", k + 1
        out.append(short)
    return out


# --------------------------------------------------------------------------------------- overview
def overview_context(data: Overview, texts: Texts, lang: str) -> dict[str, Any]:
    def t(key: str, **kw: Any) -> str:
        return texts.ui_text(key, lang, **kw)

    cards = [
        {"label": t("customers_in_profile"), "value": _number(data.profiled)},
        {"label": t("consent_withdrawn"), "value": _number(data.withdrawn)},
        {"label": t("data_as_of"), "value": _day(data.as_of)},
        {
            "label": t("features_snapshot"),
            "value": _day(data.snapshot),
            "note": f"{_number(data.behind_days, 0)} {t('behind_data')}"
            if data.behind_days is not None
            else "",
        },
        {"label": t("scored"), "value": _number(data.scored)},
    ]
    personas = []
    for row in data.personas.itertuples(index=False):
        if pd.isna(row.frequency_365d) or pd.isna(row.recency_days):
            words = t("no_orders_words")
        else:
            words = t(
                "profile_words",
                recency=_number(row.recency_days),
                orders=_number(row.frequency_365d, 0 if float(row.frequency_365d).is_integer() else 1),
                spend=_number(row.monetary_365d),
            )
        personas.append(
            {
                "name": texts.persona(row.persona, lang),
                "key": row.persona,
                "customers": _number(row.customers),
                "share": f"{row.share:.0%}",
                "profile": words,
                "action": texts.action(row.persona, lang),
            }
        )
    persona_chart = charts.bar(
        [p["name"] for p in personas],
        [int(c) for c in data.personas["customers"]] if len(data.personas) else [],
        title=t("personas"),
        colours=[charts.PALETTE[i % len(charts.PALETTE)] for i in range(len(personas))],
        horizontal=True,
        height=max(200, 40 * len(personas) + 60),
    )

    def tag_chart(info: TagInfo, *, title: str | None = None) -> dict[str, Any] | None:
        counts = data.counts_of(info.key)
        if counts.empty:
            return None
        raw = [None if pd.isna(v) else str(v) for v in counts["value"]]
        kinds = list(counts["kind"]) if "kind" in counts.columns else ["value"] * len(raw)
        labels = [
            t("other_values", n=v)
            if kind == "other"
            else v
            if kind == "bin" and v is not None
            else texts.value(info.key, v, lang, value_type=info.value_type)
            for v, kind in zip(raw, kinds, strict=True)
        ]
        labels = _short_labels(labels)
        return charts.bar(
            labels,
            [int(c) for c in counts["customers"]],
            title=title or texts.tag(info.key, lang),
            colours=_colours(info, [v or "" for v in raw]),
            horizontal=info.value_type != "number",
            height=max(180, 26 * len(labels) + 70) if info.value_type != "number" else 220,
        )

    churn = None
    churn_over_time = None
    if data.churn_tag:
        counts = data.counts_of(data.churn_tag)
        counts = counts[counts["value"].notna()]
        if len(counts):
            churn = charts.donut(
                [texts.value(data.churn_tag, v, lang) for v in counts["value"]],
                [int(c) for c in counts["customers"]],
                title=t("churn_distribution"),
                colours=_colours(None, list(counts["value"])),
            )
        history = data.churn_history
        if len(history):
            wide = history.pivot_table(index="day", columns="value", values="customers", fill_value=0)
            info = next(tg for tg in data.tags if tg.key == data.churn_tag)
            order = [v for v in (info.values or ()) if v in wide.columns] + [
                v for v in wide.columns if v not in (info.values or ())
            ]
            churn_over_time = charts.stacked(
                list(wide.index),
                {texts.value(data.churn_tag, v, lang): [int(x) for x in wide[v]] for v in order},
                title=t("churn_over_time"),
                colours={
                    texts.value(data.churn_tag, v, lang): charts.TIER_COLOURS.get(v, "#888") for v in order
                },
            )
    funnel = None
    lifecycle = next((tg for tg in data.tags if tg.key == "lifecycle_stage"), None)
    if lifecycle is not None:
        counts = data.counts_of(lifecycle.key)
        counts = counts[counts["value"].notna()]
        if len(counts):
            funnel = charts.funnel(
                [texts.value(lifecycle.key, v, lang) for v in counts["value"]],
                [int(c) for c in counts["customers"]],
                title=t("lifecycle_funnel"),
            )
    value_tiers = [
        chart
        for info in data.tags
        if info.value_type == "tier" and "value" in info.key
        for chart in [tag_chart(info)]
        if chart
    ]
    every_tag = []
    for info in data.tags:
        chart = tag_chart(info)
        if chart is not None:
            every_tag.append({"key": info.key, "label": texts.tag(info.key, lang), "chart": chart})
    delivery = [
        {"label": t(STATUS_KEYS.get(status, f"status_{status}")), "value": _number(n), "status": status}
        for status, n in data.outbox.items()
    ]
    return {
        "campaigns": [campaign_context(c, data.tags, texts, lang) for c in data.campaigns],
        "cards": cards,
        "personas": personas,
        "persona_chart": persona_chart if personas else None,
        "churn_chart": churn,
        "churn_over_time": churn_over_time,
        "funnel": funnel,
        "value_tiers": value_tiers,
        "every_tag": every_tag,
        "delivery": delivery,
        "dead_letters": data.outbox.get("dead", 0),
    }


# -------------------------------------------------------------------------------------- campaigns
def _effect_words(value: float, kind: str) -> str:
    """A difference in rates as percentage points, a difference in means as a number."""
    return f"{value * 100:+.1f} pp" if kind == "rate" else f"{value:+,.2f}"


def _outcome_words(value: float, kind: str) -> str:
    return f"{value:.1%}" if kind == "rate" else f"{value:,.2f}"


def _effect_row(e: dict[str, Any], kind: str, t: Any) -> dict[str, Any]:
    low, high = e["ci_low"], e["ci_high"]
    verdict = "effect_up" if low > 0 else "effect_down" if high < 0 else "effect_unclear"
    return {
        "arm": e["arm"],
        "control": e["control"],
        "difference": _effect_words(e["difference"], kind),
        "ci": f"[{_effect_words(low, kind)}, {_effect_words(high, kind)}]",
        "p": f"{e['p_value']:.2g}",
        "lift": "-" if e.get("relative_lift") is None else f"{e['relative_lift']:+.0%}",
        "verdict": verdict,
        "verdict_label": t(verdict),
    }


def campaign_context(result: Any, tags: list[TagInfo], texts: Texts, lang: str) -> dict[str, Any]:
    """One campaign in words: arms and their sizes, the primary outcome per arm, each treatment's effect
    against control with its 95 % interval (and a chart of it), breakdowns by the tags recorded at
    assignment (uplift tier first where the campaign recorded it), warnings."""

    def t(key: str, **kw: Any) -> str:
        return texts.ui_text(key, lang, **kw)

    report = result.report or {}
    outcome = (report.get("outcomes") or [None])[0]
    kind = outcome["kind"] if outcome else "rate"
    means = {a["arm"]: a for a in (outcome or {}).get("arms", [])}
    arms = [
        {
            "name": arm,
            "control": arm == result.control,
            "assigned": _number(result.assigned.get(arm, 0)),
            "outcome": _outcome_words(means[arm]["mean"], kind) if arm in means else "-",
            "measured": _number(means[arm]["n"]) if arm in means else "-",
        }
        for arm in result.arms
    ]
    effects = [_effect_row(e, kind, t) for e in (outcome or {}).get("effects", [])]
    chart = None
    if outcome and outcome["effects"]:
        scale = 100.0 if kind == "rate" else 1.0
        chart = charts.effects(
            [f"{e['arm']} vs {e['control']}" for e in outcome["effects"]],
            [e["difference"] * scale for e in outcome["effects"]],
            [e["ci_low"] * scale for e in outcome["effects"]],
            [e["ci_high"] * scale for e in outcome["effects"]],
            title=t("campaign_effect", outcome=outcome["outcome"]),
            unit="pp" if kind == "rate" else "",
        )
    kinds = {tg.key: tg.value_type for tg in tags}
    breakdowns = []
    columns = list((outcome or {}).get("breakdowns", {}))
    for col in sorted(columns, key=lambda c: c != "uplift_tier"):
        rows = []
        for row in outcome["breakdowns"][col]:
            rows.append(
                {
                    "value": texts.value(col, row["value"], lang, value_type=kinds.get(col, "")),
                    "n": _number(row["n"]),
                    "effects": [_effect_row(e, kind, t) for e in row["effects"]],
                }
            )
        if rows:
            breakdowns.append({"key": col, "label": texts.tag(col, lang), "rows": rows})
    status = report.get("status") or {}
    if result.report is None:
        state = t("campaign_not_evaluable")
    elif status.get("complete"):
        state = t("campaign_complete", as_of=_day(status.get("as_of")))
    else:
        state = t(
            "campaign_open",
            days=status.get("days_observed", 0),
            window=_day(status.get("window_end")),
            as_of=_day(status.get("as_of")),
        )
    return {
        "name": result.name,
        "description": result.description,
        "period": f"{result.start or '-'} - {result.end or '-'}",
        "audience": result.audience or "-",
        "state": state,
        "not_evaluable": result.not_evaluable,
        "outcome": f"{outcome['outcome']} ({t('outcome_' + kind)})" if outcome else "",
        "arms": arms,
        "effects": effects,
        "chart": chart,
        "breakdowns": breakdowns,
        "warnings": report.get("warnings") or [],
    }


# ------------------------------------------------------------------------------------ model health
# Quality metrics on a 0-1 scale share one trend chart; counts and base rates describe the data, not the
# model, and would flatten every other line.
_NOT_QUALITY = ("_n", "positive_rate", "buyer_rate", "share", "ari_vs_champion")


def trend_metrics(model: ModelHealth) -> list[str]:
    out = []
    for name in model.metric_names:
        if name == "n" or name == "k" or name.endswith(_NOT_QUALITY):
            continue
        values = [v.metrics.get(name) for v in model.versions if v.metrics.get(name) is not None]
        if values and all(0.0 <= float(x) <= 1.0 for x in values):
            out.append(name)
    return out


def _metric(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return _number(value)
    return _number(value, 4)


def models_context(
    models: list[ModelHealth],
    drift: pd.DataFrame,
    freshness: list[ViewFreshness],
    texts: Texts,
    lang: str,
    *,
    psi_warning: float,
) -> dict[str, Any]:
    def t(key: str, **kw: Any) -> str:
        return texts.ui_text(key, lang, **kw)

    cards = []
    for model in models:
        champion = model.champion
        card: dict[str, Any] = {"kind": model.kind, "name": model.name, "error": model.error}
        if champion is None:
            card["missing"] = t("no_model")
            cards.append(card)
            continue
        metric_names = model.metric_names
        trended = trend_metrics(model)
        card.update(
            version=champion.version,
            promoted_at=(champion.promoted_at or champion.created.isoformat(timespec="seconds")).replace(
                "T", " "
            ),
            promoted_by=champion.promoted_by or "-",
            service=champion.service,
            gate=champion.gate,
            metrics=[(m, _metric(champion.metrics.get(m))) for m in metric_names],
            trend=charts.lines(
                [f"v{v.version}" for v in model.versions],
                {m: [v.metrics.get(m) for v in model.versions] for m in trended},
                title=t("metric_trend"),
            )
            if trended
            else None,
        )
        cards.append(card)
    drift_rows = []
    drift_chart = None
    if not drift.empty:
        worst = drift.max(axis=1, skipna=True).sort_values(ascending=False)
        for feature, value in worst.items():
            drift_rows.append(
                {
                    "feature": texts.feature(str(feature), lang),
                    "key": str(feature),
                    "values": [_number(drift.loc[feature, k], 3) for k in drift.columns],
                    "warn": bool(value > psi_warning),
                }
            )
        top = worst.dropna().head(20)  # NaN (no window found) is no bar, and is not valid JSON
        drift_chart = charts.bar(
            [texts.feature(str(f), lang) for f in top.index],
            [round(float(v), 4) for v in top.to_numpy()],
            title=t("drift"),
            colours=["#d64545" if v > psi_warning else charts.PALETTE[0] for v in top.to_numpy()],
            horizontal=True,
            height=max(220, 22 * len(top) + 70),
        )
    return {
        "cards": cards,
        "drift_models": list(drift.columns),
        "drift_rows": drift_rows,
        "drift_chart": drift_chart,
        "drift_warnings": sum(r["warn"] for r in drift_rows),
        "psi_warning": psi_warning,
        "freshness": [
            {
                "view": f.view,
                "snapshot": _day(f.snapshot),
                "age": _number(f.age_days, 1),
                "ttl": _number(f.ttl_days, 0),
                "status": f.status,
                "status_label": t(f.status),
            }
            for f in freshness
        ],
    }


# ---------------------------------------------------------------------------------------- customer
def _reason_words(reason: dict[str, Any], texts: Texts, lang: str) -> str:
    value = reason.get("value")
    shown = (
        _number(value, 2 if isinstance(value, float) and abs(value) < 10 else 0)
        if isinstance(value, int | float)
        else (value or "-")
    )
    direction = texts.ui_text("raises" if reason.get("contribution", 0) > 0 else "lowers", lang)
    return f"{texts.feature(reason['feature'], lang)} = {shown} ({direction}, {reason.get('contribution', 0):+.2f})"


def _inputs_words(inputs: dict[str, Any], texts: Texts, lang: str) -> str:
    parts = []
    for name, value in inputs.items():
        if isinstance(value, float):
            value = _number(value, 0 if value.is_integer() or abs(value) >= 10 else 2)
        label = texts.feature(name, lang) if name in texts.features else texts.tag(name, lang)
        if name == "persona" and isinstance(value, str):
            value = texts.persona(value, lang)
        parts.append(f"{label} = {value if value is not None else '-'}")
    return "; ".join(parts)


def customer_context(
    customer: Customer, catalog_tags: list[TagInfo], texts: Texts, lang: str
) -> dict[str, Any]:
    def t(key: str, **kw: Any) -> str:
        return texts.ui_text(key, lang, **kw)

    kinds = {tg.key: tg for tg in catalog_tags}

    def tag_label(key: str) -> str:  # a campaign's CRM tag (`persona_campaign_<name>`) is no catalog tag
        name = key.removeprefix(CAMPAIGN_TAG)
        return f"{t('campaign')}: {name}" if name != key and key not in kinds else texts.tag(key, lang)

    tier_tag = {
        kind: next(
            (
                tg.key
                for tg in catalog_tags
                if tg.value_type == "tier" and (tg.model or "").endswith(f"-{kind}")
            ),
            None,
        )
        for kind in ("churn", "conversion")
    }

    def tier_words(kind: str, tier: Any) -> str:
        if not tier:
            return "-"
        return texts.value(tier_tag[kind], str(tier), lang) if tier_tag[kind] else str(tier)

    profile = []
    for key, value in customer.profile.items():
        if isinstance(value, list | tuple | np.ndarray):
            shown = ", ".join(map(str, value))
        elif value is None or pd.isna(value):
            shown = "-"
        elif isinstance(value, pd.Timestamp):
            shown = _day(value)
        else:
            shown = str(value)
        profile.append((texts.feature(key, lang) if key in texts.features else key.replace("_", " "), shown))
    scores = []
    persona = None
    if customer.score is not None:
        item = customer.score
        persona = (item.get("segment") or {}).get("persona")
        for kind in ("churn", "conversion"):
            s = item.get(kind) or {}
            scores.append(
                {
                    "kind": t(kind),
                    "probability": f"{s['probability']:.0%}"
                    if s.get("probability") is not None
                    else t("not_scored"),
                    "tier": tier_words(kind, s.get("tier")),
                    "reasons": [_reason_words(r, texts, lang) for r in s.get("reasons") or []],
                    "note": t(s["not_scored_reason"]) if s.get("not_scored_reason") else "",
                }
            )
    elif customer.batch_scores is not None:
        row = customer.batch_scores
        persona = row.get("persona")
        for kind in ("churn", "conversion"):
            p = row.get(f"{kind}_probability")
            ok = p is not None and not (isinstance(p, float) and math.isnan(p))
            scores.append(
                {
                    "kind": t(kind),
                    "probability": f"{p:.0%}" if ok else t("not_scored"),
                    "tier": tier_words(kind, row.get(f"{kind}_tier")),
                    "reasons": [],
                    "note": "",
                }
            )
    tags = []
    position = {tg.key: i for i, tg in enumerate(catalog_tags)}
    for current in sorted(customer.tags, key=lambda c: position.get(c.tag, len(position))):
        info = kinds.get(current.tag)
        tags.append(
            {
                "label": tag_label(current.tag),
                "key": current.tag,
                "value": texts.value(
                    current.tag, current.value, lang, value_type=info.value_type if info else ""
                ),
                "why": _inputs_words(current.inputs, texts, lang),
                "rule": texts.description(current.tag, lang, info.description if info else ""),
                "produced_by": current.produced_by,
                "since": _day(current.updated_at),
            }
        )
    history = [
        {
            "changed_at": pd.Timestamp(h.changed_at).strftime("%Y-%m-%d %H:%M"),
            "tag": tag_label(h.tag),
            "old": texts.value(
                h.tag, h.old_value, lang, value_type=kinds[h.tag].value_type if h.tag in kinds else ""
            ),
            "new": texts.value(
                h.tag, h.new_value, lang, value_type=kinds[h.tag].value_type if h.tag in kinds else ""
            ),
            "produced_by": h.produced_by,
        }
        for h in customer.history
    ]
    orders = []
    for row in customer.orders.to_dict("records"):
        status = (
            "returned" if row.get("is_returned") else "cancelled" if row.get("is_cancelled") else "completed"
        )
        orders.append(
            {
                "date": _day(row.get("order_ts")),
                "order_id": row.get("order_id", ""),
                "amount": _number(row.get("amount"), 2),
                "category": row.get("category") or "-",
                "status": t(status),
            }
        )
    events = [
        {
            "date": pd.Timestamp(r["event_ts"]).strftime("%Y-%m-%d %H:%M"),
            "event": t(f"event_{r.get('event_type')}")
            if f"event_{r.get('event_type')}" in texts.ui
            else r.get("event_type"),
            "channel": r.get("channel"),
        }
        for r in customer.events.to_dict("records")
    ]
    campaigns = [
        {
            "campaign": a.campaign,
            "description": a.description,
            "arm": a.arm,
            "role": t("control_arm") if a.control else t("treatment_arm"),
            "assigned_at": _day(a.assigned_at),
            "period": f"{a.start or '-'} - {a.end or '-'}",
        }
        for a in customer.campaigns
    ]
    return {
        "campaigns": campaigns,
        "customer_id": customer.customer_id,
        "requested_id": customer.requested_id,
        "withdrawn": customer.consent_withdrawn,
        "known_as": customer.known_as,
        "profile": profile,
        "persona": texts.persona(persona, lang) if persona else None,
        "action": texts.action(persona, lang) if persona else "",
        "scores": scores,
        "live": customer.score is not None,
        "tags": tags,
        "history": history,
        "orders": orders,
        "events": events,
    }
