"""`persona score --all` and `persona tags fit` hold one chunk of customers at a time: scoring the
session's world in chunks of a few customers records, queues and writes exactly what one chunk of
everyone does, and the cut points fitted on only the columns they read equal those fitted on the whole
latest frame."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.service.conftest import env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_BOOKKEEPING = (
    "id",
    "changed_at",
    "updated_at",
    "created_at",
    "next_attempt_at",
    "idempotency_key",
    "change_id",
)


def _score(world: Path, tmp: Path, chunk_size: int) -> tuple[object, pd.DataFrame, dict[str, pd.DataFrame]]:
    """Score a copy of the world (its own state database, nothing tagged yet) in chunks of `chunk_size`."""
    from configs.settings import load_settings
    from serving.batch import score_everyone
    from serving.scoring import load_state

    data_dir = tmp / f"chunk{chunk_size}"
    shutil.copytree(world, data_dir, ignore=shutil.ignore_patterns("state", "scores"))
    with env(PERSONA_DATA_DIR=str(data_dir), PERSONA_SERVING__BATCH_CHUNK_SIZE=str(chunk_size)):
        settings = load_settings()
        assert settings.serving.batch_chunk_size == chunk_size
        summary = score_everyone(settings, write_back=True, state=load_state(settings))
    scores = pd.read_parquet(summary.scores_path)
    engine = sa.create_engine(settings.url(settings.state_url))
    tables = {}
    for name, order in (("tag_current", "tag, customer_id"), ("tag_history", "id"), ("crm_outbox", "id")):
        frame = pd.read_sql(f"SELECT * FROM {name} ORDER BY {order}", engine)  # noqa: S608 - fixed names
        tables[name] = frame.drop(columns=[c for c in _BOOKKEEPING if c in frame.columns])
    engine.dispose()
    return summary, scores, tables


def test_scoring_in_small_chunks_equals_one_chunk(world: Path, tmp_path: Path) -> None:
    whole, whole_scores, whole_tables = _score(world, tmp_path, 1_000_000)
    small, small_scores, small_tables = _score(world, tmp_path, 37)
    assert whole.customers > 3 * 37, "the world must span several chunks of 37"
    pd.testing.assert_frame_equal(small_scores, whole_scores)
    for name, frame in whole_tables.items():
        assert len(frame), f"{name} is empty: nothing was recorded"
        # the order of changes within a customer's tag is kept (ids rise); across chunks rows interleave
        keys = ["customer_id", "tag"] if "customer_id" in frame else list(frame.columns)
        pd.testing.assert_frame_equal(
            small_tables[name].sort_values(keys, kind="stable", ignore_index=True),
            frame.sort_values(keys, kind="stable", ignore_index=True),
        )
    for field in (
        "customers",
        "scored_churn",
        "scored_conversion",
        "queued_changes",
        "no_crm_record",
        "snapshot",
        "as_of",
        "snapshot_age_days",
        "stale",
        "distribution",
        "changes_by_tag",
        "moves",
    ):
        assert getattr(small, field) == getattr(whole, field), field


def test_cut_points_fitted_on_their_columns_equal_the_whole_frame(world: Path, tmp_path: Path) -> None:
    from artifacts.catalog import latest_feature_frame, load_catalog
    from configs.settings import load_settings
    from models.tag_engine import fit_cutpoints, read_cutpoints
    from training.tag_cutpoints import cutpoint_columns, fit_and_save

    with env(PERSONA_DATA_DIR=str(world), PERSONA_TAGS__CUTPOINTS=str(tmp_path / "cutpoints.json")):
        settings = load_settings()
        catalog = load_catalog(settings)
        assert catalog.cutpoints and cutpoint_columns(catalog) < set(latest_feature_frame(settings).columns)
        saved = read_cutpoints(fit_and_save(settings, catalog=catalog))
        whole = fit_cutpoints(catalog, latest_feature_frame(settings))
    assert saved["cutpoints"] == whole["cutpoints"] and saved["snapshot"] == whole["snapshot"]
