"""DuckDB and Spark compute the same feature tables, row for row and bit for bit (issue 17).

Generated and ingested data (a few hundred persons with the generator's mess), then the one Ibis
definition of every feature table run by `persona features build` on each engine over the same clean
parquet files. Spark runs for real in local mode (Java 17: `make services` installs it when missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.build import FEATURE_TABLES, build_features

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java 17 (make services)")

SNAPSHOTS = [date(2024, 10, 1), date(2025, 4, 1), date(2025, 10, 1), date(2025, 12, 1)]
CREATED = pd.Timestamp("2026-01-02", tz="UTC").to_pydatetime()


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    from configs.settings import load_settings
    from features.ingest import run_ingest
    from features.synthetic.generate import generate

    data_dir = tmp_path_factory.mktemp("engines") / "data"
    settings = load_settings(data_dir=str(data_dir), sources={"as_of": "2026-01-01T00:00:00Z"})
    generate(settings.generator.model_copy(update={"customers": 600}), out=data_dir / "raw")
    run_ingest(settings)
    return data_dir


def _build(data_dir, engine: str) -> dict[str, pd.DataFrame]:
    from configs.settings import load_settings

    settings = load_settings(data_dir=str(data_dir), engine=engine, sources={"as_of": "2026-01-01T00:00:00Z"})
    report = build_features(settings, snapshots=SNAPSHOTS, created=CREATED)
    assert report.engine == engine
    return {name: pd.read_parquet(path) for name, (path, _) in report.written.items()}


# In `make test`, not `slow` (issue 17 asks it there): generate + ingest + a Spark JVM, about 90 s on one
# of the two workers
def test_duckdb_and_spark_build_identical_feature_tables(clean_dir):
    on_duckdb = _build(clean_dir, "duckdb")
    on_spark = _build(clean_dir, "spark")
    assert set(on_duckdb) == set(on_spark) == set(FEATURE_TABLES)
    for name, table in on_duckdb.items():
        assert len(table) > 1000, name  # enough rows to mean something: customers x snapshots
        pd.testing.assert_frame_equal(table, on_spark[name], check_exact=True, obj=name)
    # the money columns really vary (the comparison is not between two columns of zeros or NaN)
    transactions = on_duckdb["customer_transactions"]
    assert transactions["monetary_365d"].nunique() > 100
    assert transactions["recency_days"].notna().sum() > 500
    assert on_duckdb["customer_leads"]["lead_source"].notna().any()


def test_unknown_engine_is_a_config_error(clean_dir):
    from configs.settings import ConfigError, load_settings

    with pytest.raises(ConfigError, match="engine"):
        load_settings(data_dir=str(clean_dir), engine="pandas")


ROOT = Path(__file__).resolve().parents[2]


def _job_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYSPARK_PYTHON": sys.executable}


@pytest.mark.slow  # a second Spark JVM, started by spark-submit: about 40 s
def test_spark_submit_entry_point_builds_the_same_tables(clean_dir, tmp_path):
    config = tmp_path / "spark.yaml"
    config.write_text(
        f"data_dir: {clean_dir}\nsources: {{as_of: '2026-01-01T00:00:00Z'}}\n"
        "spark: {master: 'local[2]', conf: {spark.driver.memory: 1g}}\n",
        encoding="utf-8",
    )
    submit = Path(sys.executable).parent / "spark-submit"
    args = [str(submit), "--master", "local[1]", "deploy/spark/features_job.py", "--config", str(config)]
    args += [f"--snapshot={d.isoformat()}" for d in SNAPSHOTS]
    done = subprocess.run(args, cwd=ROOT, env=_job_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "engine spark" in done.stdout
    by_job = pd.read_parquet(clean_dir / "features" / "customer_transactions.parquet").drop(columns="created")
    on_duckdb = _build(clean_dir, "duckdb")["customer_transactions"].drop(columns="created")
    pd.testing.assert_frame_equal(by_job, on_duckdb, check_exact=True)


def test_spark_job_bad_config_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "nope.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "features.spark_job", "--config", str(missing)],
        cwd=ROOT,
        env=_job_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"spark_job: config file not found: {missing}"


def _random_lines(n: int, seed: int = 1) -> pd.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    stamps = pd.to_datetime(rng.integers(1_700_000_000, 1_730_000_000, n), unit="s", utc=True)
    return pd.DataFrame(
        {
            "order_id": pd.Series([f"o{i}" for i in rng.integers(0, n // 3, n)], dtype="string"),
            "order_ts": pd.Series(stamps).astype("datetime64[us, UTC]"),
            "quantity": rng.choice([-2, -1, 1, 1, 2, 3, 12], n).astype("float64"),
            "unit_price": np.round(rng.gamma(2, 5, n), 2),
            "discount": np.where(rng.random(n) < 0.2, np.round(rng.random(n) * 3, 2), 0.0),
            "category": pd.Series(rng.choice(["a", "b", "c", None], n), dtype="string"),
            "status": pd.Series(
                rng.choice(["completed", "returned", "cancelled"], n, p=[0.9, 0.05, 0.05]), dtype="string"
            ),
        }
    )


@pytest.mark.slow  # a Spark JVM (shared with the other tests of this module when run together)
def test_order_line_aggregation_is_identical_on_duckdb_and_spark():
    from features.engine import open_engine
    from features.ingest import aggregate_order_lines
    from features.schemas import Statuses

    lines = _random_lines(20_000)
    statuses = Statuses(completed=("completed",), returned=("returned",), cancelled=("cancelled",))
    on_duckdb = aggregate_order_lines(lines, statuses=statuses, return_prefixes=("C",))
    with open_engine(name="spark") as spark:
        on_spark = aggregate_order_lines(lines, statuses=statuses, return_prefixes=("C",), engine=spark)
    pd.testing.assert_frame_equal(on_duckdb, on_spark, check_exact=True)
    # and the totals are the lines' own: purchase lines' quantity x price, per order, to the cent
    purchase = lines[(lines["quantity"] > 0)]
    expected = (purchase["quantity"] * purchase["unit_price"]).groupby(purchase["order_id"]).sum()
    got = on_duckdb.set_index("order_id")["gross"].reindex(expected.index)
    assert (got - expected).abs().max() < 1e-6
    assert on_duckdb["order_id"].is_unique and len(on_duckdb) > 5_000


@pytest.mark.slow  # a Spark JVM (shared with the other tests of this module when run together)
def test_identity_resolution_is_identical_on_duckdb_and_spark():
    import numpy as np

    from features.engine import open_engine
    from features.identity import resolve

    # chains across kinds (contact - email - phone - email ...), singletons, shared phones
    rng = np.random.default_rng(7)
    n = 600
    records = pd.DataFrame(
        {
            "contact_id": [f"C{i}" if i % 3 == 0 else None for i in rng.integers(0, 80, n)],
            "email": [f"e{i}@x.cn" if i % 2 == 0 else None for i in rng.integers(0, 180, n)],
            "phone": [f"+86{i}" for i in rng.integers(0, 300, n)],
        }
    ).astype("string")
    on_duckdb = resolve(records, salt="engines-salt")
    with open_engine(name="spark") as spark:
        on_spark = resolve(records, salt="engines-salt", engine=spark)
    pd.testing.assert_frame_equal(on_duckdb, on_spark, check_exact=True)
    persons = on_duckdb["customer_id"].nunique()
    assert 10 < persons < n  # keys do link records, and not everything into one person
    assert set(on_duckdb["match_rule"]) == {"new", "contact_id", "email_exact", "phone_e164"}


@pytest.mark.slow  # a Spark JVM (shared with the other tests of this module when run together)
def test_ingest_resolution_of_repeated_keys_is_identical_on_spark():
    """Ingest resolves one record per repeated single key (orders, events): on Spark as on DuckDB,
    and as resolving every record."""
    import numpy as np

    from features.engine import open_engine
    from features.identity import resolve
    from features.ingest import resolve_records

    rng = np.random.default_rng(11)
    n = 800
    multi = rng.random(n) < 0.2  # contacts with several keys; the rest hold one, as orders and events
    kind = rng.integers(0, 3, n)

    def keys(j: int, prefix: str, pool: int):
        values = np.char.add(prefix, rng.integers(0, pool, n).astype(str)).astype(object)
        return pd.array(np.where(multi | (kind == j), values, None), dtype="string[pyarrow]")

    records = pd.DataFrame(
        {"contact_id": keys(0, "C", 60), "email": keys(1, "e@x.cn", 120), "phone": keys(2, "+86", 200)}
    )
    everything = resolve(records, salt="engines-salt")
    with open_engine(name="spark") as spark:
        on_spark = resolve_records(records, salt="engines-salt", engine=spark)
    pd.testing.assert_frame_equal(on_spark, everything, check_exact=True)
    assert 10 < everything["customer_id"].nunique() < n
