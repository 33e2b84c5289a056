"""Batch scoring: every customer of the latest feature snapshot, in vectorised chunks, through the same
models, catalog and write-back (tag store + outbox) as the online service."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from artifacts.catalog import latest_feature_chunks
from configs.settings import Settings
from core.progress import track
from models.tag_engine import format_values
from serving.scoring import KINDS, complete_inputs, load_state, run_models, unset_absent
from serving.tagging import distribution_text, tag_value_counts
from serving.writeback import record_and_enqueue


@dataclass
class BatchSummary:
    customers: int = 0
    scored_churn: int = 0
    scored_conversion: int = 0
    queued_changes: int = 0
    no_crm_record: int = 0  # customers with changes queued but no key the CRM knows (reported, not sent)
    score_seconds: float = 0.0  # models + tags only
    write_seconds: float = 0.0  # tag store + outbox
    snapshot: str | None = None
    as_of: str | None = None  # the data's clock (the online store's materialized end)
    snapshot_age_days: float | None = None  # age of the scored snapshot at `as_of`
    stale: bool = False  # the snapshot is older than a feature view's TTL at `as_of`
    model_versions: dict[str, str] = field(default_factory=dict)
    not_loaded: dict[str, str] = field(default_factory=dict)  # kind -> why (no champion): not scored
    scores_path: Path | None = None
    distribution: str = ""
    changes_by_tag: dict[str, int] = field(default_factory=dict)  # tag -> changes queued
    # (tag, old value, new value) -> customers, for the tags `moves_of` names (personas, risk tiers)
    moves: dict[tuple[str, str | None, str | None], int] = field(default_factory=dict)

    @property
    def customers_per_second(self) -> float:
        return self.customers / self.score_seconds if self.score_seconds else 0.0


def score_frame(state, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, object]:  # type: ignore[no-untyped-def]
    """Score one chunk: returns (tags as CRM strings, tag inputs, model outputs). Pure given `state`."""

    features = frame.reset_index(drop=True)
    # every customer of an offline snapshot has a row in each table that was built: features were found
    has = {kind: np.ones(len(features), dtype=bool) for kind in KINDS}
    outputs = run_models(state, features, has_features=has)
    tag_input = pd.concat([features, outputs.frame()], axis=1)
    absent = complete_inputs(state.catalog, {}, len(features))  # inputs of sources that are absent
    absent = {k: v for k, v in absent.items() if k not in tag_input.columns}
    if absent:
        tag_input = pd.concat([tag_input, pd.DataFrame(absent)], axis=1)
    tags = unset_absent(
        format_values(state.catalog.evaluate(tag_input, state.cutpoints), state.catalog), state
    )
    tags.insert(0, "customer_id", features["customer_id"].astype(str).to_numpy())
    return tags, tag_input, outputs


def score_everyone(  # type: ignore[no-untyped-def]
    settings: Settings,
    *,
    write_back: bool = True,
    state=None,
    only_tags: set[str] | None = None,
    moves_of: tuple[str, ...] = (),
    also=None,  # type: ignore[no-untyped-def]
) -> BatchSummary:
    """Score all customers of the latest snapshot in chunks of `serving.batch_chunk_size`.

    `only_tags` limits what is recorded and queued to those tags (every tag is still evaluated, since
    a tag may read earlier ones); `moves_of` names tags whose value moves are counted. `also(conn, changes,
    tags)` runs in the transaction that records each chunk's changes (triggers enqueue there)."""

    state = state or load_state(settings)
    summary = BatchSummary(model_versions=state.versions, not_loaded=dict(state.missing))
    chunks = latest_feature_chunks(settings, chunk_size=settings.serving.batch_chunk_size)
    now = datetime.now(UTC)  # when the tag changes are recorded (bookkeeping, not the data's clock)
    produced_by = state.produced_by()
    counts: dict = {}  # tag -> value -> customers, chunk by chunk
    scores_dir = settings.path("{data_dir}/scores")
    path = scores_dir / "latest.parquet"
    tmp = path.with_suffix(f".parquet.{os.getpid()}.tmp")  # open all run long: one per process
    writer = ScoresWriter(tmp)
    try:
        for part in track(chunks, description="scoring customers"):
            part = part[~part["customer_id"].astype(str).isin(state.withdrawn)].reset_index(drop=True)
            if summary.snapshot is None and "event_timestamp" in part.columns and len(part):
                _describe_snapshot(summary, state, pd.Timestamp(part["event_timestamp"].iloc[0]))
            if part.empty:
                continue
            summary.customers += len(part)
            t0 = time.perf_counter()
            tags, tag_input, outputs = score_frame(state, part)
            summary.score_seconds += time.perf_counter() - t0
            summary.scored_churn += int(np.isfinite(outputs.churn_probability).sum())
            summary.scored_conversion += int(np.isfinite(outputs.conversion_probability).sum())
            tag_value_counts(tags, into=counts)
            scores = outputs.frame()
            scores.insert(0, "customer_id", tags["customer_id"].to_numpy())
            writer.write(scores)
            if write_back:
                _write_back(
                    summary,
                    state,
                    tags=tags,
                    tag_input=tag_input,
                    now=now,
                    produced_by=produced_by,
                    only_tags=only_tags,
                    moves_of=moves_of,
                    also=also,
                )
        if writer.rows:
            writer.close()
            tmp.replace(path)  # atomic: a failed run keeps the previous scores
            summary.scores_path = path
            summary.distribution = distribution_text(counts, summary.customers)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    return summary


def _describe_snapshot(summary: BatchSummary, state, snapshot: pd.Timestamp) -> None:  # type: ignore[no-untyped-def]
    """The scored snapshot, its age at the data's clock and whether a feature view's TTL has passed."""
    summary.snapshot = snapshot.date().isoformat()
    if state.as_of is not None:
        # staleness against the data's clock, as the online answers judge it
        from features.feast_io import view_ttls

        as_of = pd.Timestamp(state.as_of)
        summary.as_of = as_of.isoformat()
        age = as_of - snapshot
        summary.snapshot_age_days = round(age / pd.Timedelta(days=1), 2)
        ttls = [t for t in view_ttls(state.store, list(dict.fromkeys(state.services.values()))).values() if t]
        summary.stale = bool(ttls) and age > min(ttls)


def _write_back(  # type: ignore[no-untyped-def]
    summary: BatchSummary, state, *, tags, tag_input, now, produced_by, only_tags, moves_of, also
) -> None:
    """Record one chunk's tags and queue its changes in one transaction (the changes of one chunk are
    what is held at once)."""
    t1 = time.perf_counter()
    tag_input = tag_input.assign(customer_id=tags["customer_id"].to_numpy())
    written = (
        tags if only_tags is None else tags[["customer_id", *[c for c in tags.columns if c in only_tags]]]
    )
    changes = record_and_enqueue(
        state.tag_store.engine,
        tag_store=state.tag_store,
        tags=written,
        produced_by=produced_by,
        inputs=tag_input,
        at=now,
        as_of=None if state.as_of is None else pd.Timestamp(state.as_of).to_pydatetime(),
        also=None if also is None else (lambda conn, changes, frame=tags: also(conn, changes, frame)),
    )
    summary.queued_changes += len(changes)
    for change in changes:
        summary.changes_by_tag[change.tag] = summary.changes_by_tag.get(change.tag, 0) + 1
        if change.tag in moves_of:
            move = (change.tag, change.old_value, change.new_value)
            summary.moves[move] = summary.moves.get(move, 0) + 1
    if state.record_keys is not None and changes:
        records = state.record_keys.records_for({c.customer_id for c in changes})
        summary.no_crm_record += sum(1 for keys in records.values() if not keys)
    summary.write_seconds += time.perf_counter() - t1


class ScoresWriter:
    """Scores appended chunk by chunk to one Parquet file, read back as the concatenated frames would be
    written whole: the first chunk fixes the schema (a text column with no value in it is text, not
    null), later chunks are cast to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._schema: pa.Schema | None = None

    def write(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        if self._writer is None:
            fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
            self._schema = pa.schema(fields, metadata=table.schema.metadata)
            table = table.cast(self._schema)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, self._schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def print_summary(summary: BatchSummary) -> None:
    click.echo(
        f"scored {summary.customers:,} customers of snapshot {summary.snapshot} "
        f"({summary.customers_per_second:,.0f} customers/s for models + tags); "
        f"churn scored for {summary.scored_churn:,}, conversion for {summary.scored_conversion:,}"
    )
    if summary.as_of:
        click.echo(f"data as of {summary.as_of}: the snapshot is {summary.snapshot_age_days:g} days old")
    if summary.stale:
        click.secho(
            "warning: the snapshot is older than a feature view's TTL: build features for a later snapshot",
            fg="yellow",
        )
    click.echo(f"models: {summary.model_versions}")
    for kind, why in summary.not_loaded.items():  # once per model, not once per customer
        click.echo(f"{kind}: not scored ({why}); its tags stay unset")
    click.echo(f"tag changes queued for the CRM: {summary.queued_changes:,} ({summary.write_seconds:.1f}s)")
    if summary.no_crm_record:
        click.echo(
            f"  {summary.no_crm_record:,} of these customers have no record the CRM knows (no CRM contact id, "
            "no crm.record_key key): their changes wait as unmatched and are sent once they have one"
        )
    if summary.scores_path:
        click.echo(f"scores written to {summary.scores_path}")
    if summary.distribution:
        click.echo("\ndistribution of each tag over the customers scored:")
        click.echo(summary.distribution)
