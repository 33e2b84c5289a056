"""The compute engine behind ingest's aggregation and the feature tables: one Ibis definition, two engines.

`engine: duckdb` (default) runs the Ibis expressions on an embedded DuckDB: all cores, out of core
(spills to `duckdb.temp_directory` beyond `duckdb.memory_limit`), reading parquet in place.
`engine: spark` runs the same expressions on Apache Spark through Ibis's PySpark backend: `local[N]`
inside this process, or a cluster's master (README "Scaling out"). Only small results come back as pandas.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.errors import PersonaError

if TYPE_CHECKING:
    import ibis
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from configs.sections.engine import DuckdbConfig, SparkConfig
    from configs.settings import Settings

log = logging.getLogger(__name__)

ENGINES = ("duckdb", "spark")


class EngineUnavailable(PersonaError):
    """The configured engine cannot start (Spark without Java, a bad master URL...)."""


@dataclass
class Engine:
    """An Ibis connection and what it runs on. `table` registers a pandas frame, `read_parquet` a file."""

    name: str
    con: Any  # ibis.BaseBackend
    session: Any = None  # the SparkSession under engine: spark
    _temp: int = 0  # temporary tables made by `materialize`

    def table(self, frame: pd.DataFrame) -> ibis.Table:
        """A pandas frame as an Ibis table of this engine (small inputs and tests)."""
        import ibis

        return ibis.memtable(_arrow_safe(frame))

    def read_parquet(self, path: Path) -> ibis.Table:
        """A parquet file (or folder of parts) read in place by the engine, not through pandas."""
        return self.con.read_parquet(str(path))

    def execute(self, expr: ibis.Table) -> pd.DataFrame:
        return self.con.execute(expr)

    def batches(self, expr: ibis.Table, *, rows: int) -> pa.RecordBatchReader:
        """`expr`'s result as Arrow batches of at most `rows` rows, in the expression's order (DuckDB
        streams them; Spark collects its result as Arrow first), without a pandas frame."""
        if self.name != "duckdb":
            return self.con.to_pyarrow_batches(expr, chunk_size=rows)
        # Ibis 12's DuckDB batches call a cursor method DuckDB 2.0 removed; a relation's reader streams
        self.con._run_pre_execute_hooks(expr)  # registers the in-memory tables `expr` reads
        return self.con.con.sql(str(self.con.compile(expr))).to_arrow_reader(batch_size=rows)

    def materialize(self, expr: ibis.Table) -> ibis.Table:
        """`expr` computed once and kept by the engine (a temporary table; Spark: a cached view), for
        iterative algorithms whose plans would otherwise grow with every round.

        Not `Table.cache()`: Ibis 12's cache drops its tables with a statement DuckDB 2.0 cannot parse.
        """
        self._temp += 1
        name = f"_persona_tmp_{self._temp}"
        if self.name == "duckdb":
            return self.con.create_table(name, expr, temp=True)
        self.con._run_pre_execute_hooks(expr)  # registers the in-memory tables `expr` reads
        # a local checkpoint cuts the lineage: a cached view would keep every earlier round in its plan
        frame = self.session.sql(str(self.con.compile(expr))).localCheckpoint(eager=True)
        frame.createOrReplaceTempView(name)
        return self.con.table(name)

    def forget(self, table: ibis.Table) -> None:
        """Drop a table made by `materialize` (its memory or spill space is freed now, not at close)."""
        name = table.get_name()
        if self.name == "duckdb":
            # Ibis 12's drop_table renders a statement DuckDB 2.0 cannot parse (as its cache does)
            self.con.raw_sql(f'DROP TABLE IF EXISTS "{name}"')
        else:
            self.session.catalog.dropTempView(name)


def _arrow_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns Arrow (and so every engine) can take: categoricals as their values, lists left alone."""
    cats = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    return frame.assign(**{c: frame[c].astype(object) for c in cats}) if cats else frame


def spark_properties(config: SparkConfig) -> dict[str, str]:
    """Persona's Spark properties, then `spark.conf` over them: the one list both the engine's session
    and Feast's Spark offline store are built from."""
    return {
        "spark.app.name": config.app_name,
        "spark.sql.session.timeZone": "UTC",  # feature times are UTC (Feast compares them as text)
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # a small job on a laptop: 200 shuffle partitions (Spark's default) cost more than they save
        "spark.sql.shuffle.partitions": "8",
        **config.conf,
    }


def spark_session(config: SparkConfig) -> SparkSession:
    """A SparkSession for `config`: UTC session time (feature times are UTC), UI off, quiet logs.

    Reuses the active session (e.g. the one spark-submit made) so a cluster's settings win.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - pyspark is a dependency
        raise EngineUnavailable(f"engine: spark needs pyspark ({exc})") from None
    builder = SparkSession.builder
    # under spark-submit (its gateway is already up) the --master given there wins
    if not SparkSession.getActiveSession() and "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(config.master)
    for key, value in spark_properties(config).items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM's start-up errors arrive as assorted exception types
        raise EngineUnavailable(
            f"spark: cannot start a session (master {config.master}): {str(exc).splitlines()[0]}",
            hint="Java 17 must be installed (`make services` installs it) and spark.master reachable",
        ) from None
    session.sparkContext.setLogLevel("ERROR")
    return session


def _missing_parents(folder: Path) -> list[Path]:
    """The ancestors of `folder` that do not exist yet, deepest first."""
    missing = []
    for parent in folder.absolute().parents:
        if parent.exists():
            break
        missing.append(parent)
    return missing


def _duckdb(config: DuckdbConfig, data_dir: Path) -> tuple[Any, list[Path]]:
    """A DuckDB connection and the folders made for its spill folder (removed on close if still empty)."""
    import ibis

    # DuckDB makes the spill folder itself when it first spills, but not its parents: without them the
    # first spill fails. They are made here and removed on close when nothing spilled, so a failed run
    # leaves nothing behind in data_dir.
    temp = Path(config.temp_directory.format(data_dir=data_dir))
    made = _missing_parents(temp)
    temp.parent.mkdir(parents=True, exist_ok=True)
    con = ibis.duckdb.connect()
    con.raw_sql(f"SET temp_directory = '{temp.as_posix()}'")
    con.raw_sql("SET TimeZone = 'UTC'")  # naive times are UTC here, as in the Spark session
    con.raw_sql("SET preserve_insertion_order = false")  # lets DuckDB stream without buffering order
    if config.threads:
        con.raw_sql(f"SET threads = {int(config.threads)}")
    con.raw_sql(f"SET memory_limit = '{config.memory_limit or default_memory_limit()}'")
    return con, made


def default_memory_limit() -> str:
    """A third of the machine's memory. DuckDB's own default (80 %) lets one query take nearly all of
    it, while the process also holds pandas frames and some DuckDB operators allocate outside its
    buffer manager: at a million customers `features build` passed 16 GB of 24 before spilling."""
    import psutil

    return f"{psutil.virtual_memory().total // 3 // 2**20}MiB"


@contextmanager
def open_engine(settings: Settings | None = None, *, name: str | None = None) -> Iterator[Engine]:
    """The configured engine (or `name`), closed afterwards. Without settings: DuckDB's defaults."""
    from configs.sections.engine import DuckdbConfig, SparkConfig

    chosen = name or (settings.engine if settings is not None else "duckdb")
    if chosen not in ENGINES:
        raise EngineUnavailable(f"engine: unknown engine {chosen!r}; use one of {', '.join(ENGINES)}")
    data_dir = settings.data_dir if settings is not None else Path("data")
    if chosen == "duckdb":
        con, made = _duckdb(settings.duckdb if settings is not None else DuckdbConfig(), data_dir)
        try:
            yield Engine("duckdb", con)
        finally:
            con.disconnect()
            for folder in made:  # deepest first; one that now holds anything stays
                with contextlib.suppress(OSError):
                    folder.rmdir()
        return
    import ibis

    session = spark_session(settings.spark if settings is not None else SparkConfig())
    # the session outlives the connection: starting a JVM costs seconds, and spark-submit owns its session
    yield Engine("spark", ibis.pyspark.connect(session), session=session)
