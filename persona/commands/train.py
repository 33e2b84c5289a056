"""CLI: train, compare, promote, retrain, schedule (training stage). Heavy imports stay inside commands."""

from __future__ import annotations

import click

from artifacts.registry import KINDS
from persona.commands._common import print_table, require_data_dir, settings_from, sqlite_file


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
    elif outcome.kind == "uplift":
        base = outcome.extra.get("baseline") or {}
        m = outcome.metrics
        nums = (
            f"test Qini {m['qini']:.4f}, AUUC {m['auuc']:.4f} (random ranking {base.get('qini', float('nan')):.4f} / "
            f"{base.get('auuc', float('nan')):.4f}); {outcome.extra.get('selection', '')}"
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


def _print_history(settings, kind: str | None) -> None:  # type: ignore[no-untyped-def]
    """The promotion history as a table, oldest first."""
    import json

    from training.registry import history

    events = history(settings, kind)
    if not events:
        click.echo("no promotion history yet" + (f" for {kind}" if kind else ""))
        return
    click.echo(
        f"{'time (UTC)':<19}  {'event':<8} {'model':<20} {'from':>5} -> {'to':<5} {'decision':<8} actor"
    )
    for e in events:
        click.echo(
            f"{e.at:%Y-%m-%d %H:%M:%S}  {e.event:<8} {e.model:<20} {('v' + e.from_version) if e.from_version else '-':>5}"
            f" -> {('v' + e.to_version) if e.to_version else '-':<5} {e.decision or '':<8} {e.actor}"
        )
        click.echo(f"{'':<21}reason: {e.reason}")
        shown = {k: v for k, v in e.metrics.items() if v is not None and k != "floors"}
        if shown:
            click.echo(f"{'':<21}compared: {json.dumps(shown, sort_keys=True, default=str)}")


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
                if kind != "all":  # asked for this model alone: that it cannot be trained is the answer
                    raise
                click.echo(f"{one}: skipped ({exc.message})")
                continue
            click.echo(_summary(outcome))

    @cli.command("compare")
    @click.argument("kind", required=False, type=click.Choice(KINDS))
    @click.option("--wide", is_flag=True, help="Every column in full (default: fit the terminal).")
    @click.pass_context
    def compare_cmd(ctx: click.Context, kind: str | None, wide: bool) -> None:
        """Table of registered versions: aliases, FeatureService, gate decision, held-out metrics."""
        from training.registry import compare

        settings = settings_from(ctx)
        require_data_dir(settings)
        tracking = sqlite_file(settings.url(settings.mlflow.tracking_uri))
        if tracking is not None and not tracking.is_file():
            click.echo(f"no registered models yet: {tracking} does not exist (persona train all)")
            return
        frame = compare(settings, (kind,) if kind else KINDS)
        if frame.empty:
            click.echo("no registered models yet (persona train all)")
            return
        shown = frame.dropna(axis=1, how="all")
        numeric = [c for c in shown.columns if shown[c].dtype.kind in "fiu"]
        print_table(
            shown.astype(object).where(shown.notna(), None).to_dict("records"),
            list(shown.columns),
            wide=wide,
            numeric_columns=numeric,
        )

    @cli.command("promote")
    @click.argument("kind", required=False, type=click.Choice(KINDS))
    @click.option(
        "--force",
        "version",
        type=int,
        metavar="VERSION",
        help="Make VERSION champion whatever the gate said (needs --reason; recorded in the history).",
    )
    @click.option("--reason", default="", help="Why (required with --force; recorded with a rollback).")
    @click.option("--rollback", is_flag=True, help="Give champion back to the version it replaced.")
    @click.option("--history", is_flag=True, help="Print every gate decision and champion move, in order.")
    @click.pass_context
    def promote_cmd(
        ctx: click.Context, kind: str | None, version: int | None, reason: str, rollback: bool, history: bool
    ) -> None:
        """Force a promotion (`promote KIND --force N --reason "..."`), roll back (`promote --rollback
        [KIND]`) or show the promotion history (`promote --history [KIND]`)."""
        from artifacts.registry import champion_version
        from training.registry import promote_forced
        from training.registry import rollback as do_rollback

        settings = settings_from(ctx)
        if sum([rollback, version is not None, history]) != 1:
            raise click.UsageError(
                'give one of --force N --reason "..." (with KIND), --rollback [KIND] or --history [KIND]'
            )
        if history:
            _print_history(settings, kind)
            return
        if rollback:
            kinds = (kind,) if kind else KINDS
            done = 0
            for one in kinds:
                if kind is None and champion_version(settings, one) is None:
                    continue
                before, after = do_rollback(settings, one, reason=reason)
                click.echo(f"{one}: champion v{before} -> v{after} (rollback)")
                done += 1
            if not done:
                click.echo("no champion to roll back")
            return
        if kind is None:
            raise click.UsageError(f"--force needs KIND ({', '.join(KINDS)})")
        if not reason.strip():
            raise click.UsageError('--force needs --reason "why" (it is recorded in the promotion history)')
        before = promote_forced(settings, kind, version=str(version), reason=reason)
        click.echo(f"{kind}: champion v{before or '-'} -> v{version} (forced: {reason.strip()})")

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
