"""CLI: train, compare, promote, retrain, schedule (training stage). Heavy imports stay inside commands."""

from __future__ import annotations

import click

from persona.commands._common import settings_from

KINDS = ("segments", "churn", "conversion", "clv", "recommend")


def _summary(outcome) -> str:
    d = outcome.decision
    head = f"{outcome.kind}: v{outcome.version} (run {outcome.run_id[:8]}, {outcome.service})"
    if outcome.kind == "clv":
        base = outcome.extra.get("baselines") or {}
        m = outcome.metrics
        nums = (
            f"test MAE {m['mae']:.2f}, total {m['total_ratio']:.2f}, top-10% capture "
            f"{m['capture_top_decile']:.3f} (BG/NBD x GG MAE "
            f"{base.get('bgnbd_gamma_gamma', {}).get('mae', float('nan')):.2f}, naive rate "
            f"{base.get('naive_rate', {}).get('mae', float('nan')):.2f})"
        )
    elif outcome.kind == "recommend":
        base, m, k = outcome.extra.get("baselines") or {}, outcome.metrics, outcome.extra.get("k", 3)
        nums = f"test recall@{k} {m.get(f'recall_at_{k}', float('nan')):.3f}, NDCG@{k} " + (
            f"{m.get(f'ndcg_at_{k}', float('nan')):.3f}, new-to-customer recall@{k} "
            f"{m.get(f'new_recall_at_{k}', float('nan')):.3f} ("
            + ", ".join(f"{n} {b.get(f'recall_at_{k}', float('nan')):.3f}" for n, b in base.items())
            + ")"
        )
    elif outcome.kind == "segments":
        nums = ", ".join(
            f"{k} {v:.3f}" for k, v in outcome.metrics.items() if k in ("silhouette", "ari_vs_champion")
        )
    else:
        base = outcome.extra.get("baseline") or {}
        nums = (
            f"test ROC-AUC {outcome.metrics['roc_auc']:.3f}, PR-AUC {outcome.metrics['pr_auc']:.3f} "
            f"(baseline {base.get('roc_auc', float('nan')):.3f} / {base.get('pr_auc', float('nan')):.3f})"
        )
        window = outcome.extra.get("window") or {}
        if "test_positive_rate" in window:
            # labels only where the whole horizon is observed: the three rates should be alike
            nums += "\n  positive rate " + " / ".join(
                f"{name} {window[f'{name}_positive_rate']:.3f} ({window[f'{name}_last_snapshot'][:10]})"
                for name in ("train", "valid", "test")
            )
    verdict = (
        "champion" if outcome.promoted else ("passes the gate" if d.promote else "challenger (not promoted)")
    )
    return f"{head}: {nums}\n  -> {verdict}: {d.reason}"


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""

    @cli.command("train")
    @click.argument("kind", type=click.Choice([*KINDS, "all"]))
    @click.option("--no-promote", is_flag=True, help="Register as challenger only; never move champion.")
    @click.pass_context
    def train_cmd(ctx: click.Context, kind: str, no_promote: bool) -> None:
        """Train KIND from the Feast FeatureService, log it to MLflow, register it and run the gate."""
        from core.errors import StageSkipped
        from core.progress import track
        from training.jobs import train_model

        settings = settings_from(ctx)
        kinds = KINDS if kind == "all" else (kind,)
        for one in track(kinds, total=len(kinds), description="training"):
            try:
                outcome = train_model(settings, one, promote=not no_promote)
            except StageSkipped as exc:  # e.g. conversion without leads: said once, not an error
                click.echo(f"{one}: skipped ({exc.message})")
                continue
            click.echo(_summary(outcome))

    @cli.command("compare")
    @click.argument("kind", required=False, type=click.Choice(KINDS))
    @click.pass_context
    def compare_cmd(ctx: click.Context, kind: str | None) -> None:
        """Table of registered versions: aliases, FeatureService, gate decision, held-out metrics."""
        import pandas as pd

        from training.registry import compare

        frame = compare(settings_from(ctx), (kind,) if kind else KINDS)
        if frame.empty:
            click.echo("no registered models yet (persona train all)")
            return
        shown = frame.dropna(axis=1, how="all").fillna("")
        with pd.option_context(
            "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4f}".format
        ):
            click.echo(shown.to_string(index=False))

    @cli.command("promote")
    @click.argument("kind", required=False, type=click.Choice(KINDS))
    @click.option(
        "--version", "version", type=int, help="Force this version to champion (recorded as manual)."
    )
    @click.option("--rollback", is_flag=True, help="Give champion back to the version it replaced.")
    @click.pass_context
    def promote_cmd(ctx: click.Context, kind: str | None, version: int | None, rollback: bool) -> None:
        """Force a promotion (`promote KIND --version N`) or roll back (`promote --rollback [KIND]`)."""
        from artifacts.registry import champion_version
        from training.registry import promote_manual
        from training.registry import rollback as do_rollback

        settings = settings_from(ctx)
        if rollback == (version is not None):
            raise click.UsageError("give either --version N (with KIND) or --rollback [KIND]")
        if rollback:
            kinds = (kind,) if kind else KINDS
            done = 0
            for one in kinds:
                if kind is None and champion_version(settings, one) is None:
                    continue
                before, after = do_rollback(settings, one)
                click.echo(f"{one}: champion v{before} -> v{after} (rollback)")
                done += 1
            if not done:
                click.echo("no champion to roll back")
            return
        if kind is None:
            raise click.UsageError("--version needs KIND (segments, churn or conversion)")
        before = promote_manual(settings, kind, version=str(version))
        click.echo(f"{kind}: champion v{before or '-'} -> v{version} (manual)")

    @cli.command("retrain")
    @click.option("--skip-build", is_flag=True, help="Use the feature tables and Feast registry as they are.")
    @click.option(
        "--then-refresh",
        is_flag=True,
        help="Afterwards run `persona refresh --all`, so the CRM gets the new champions' tags.",
    )
    @click.pass_context
    def retrain_cmd(ctx: click.Context, skip_build: bool, then_refresh: bool) -> None:
        """Build features, apply/materialize Feast, train and gate all models, then move champions."""
        from training.retrain import retrain

        settings = settings_from(ctx)
        report = retrain(settings, build=not skip_build, say=click.echo)
        moved = ", ".join(f"{k} v{a}" for k, (_, a) in report.promoted.items()) or "none"
        click.echo(f"retrain done: {len(report.outcomes)} trained, champions moved: {moved}")
        for note in report.notes:
            click.echo(f"  note: {note}")
        if then_refresh:
            from persona.commands.refresh import run_refresh

            run_refresh(settings, everything=True)
