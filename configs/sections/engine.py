"""The compute engine of ingest and features: DuckDB embedded (default) or Apache Spark."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SparkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # local[N] runs Spark inside this process's JVM; a cluster: spark://host:7077, yarn, k8s://...
    # (with spark-submit, the master given there wins: see deploy/spark/README.md).
    master: str = "local[2]"
    app_name: str = "persona"
    # Any Spark property, passed to the session builder as is (spark.executor.memory, ...).
    conf: dict[str, str] = Field(default_factory=dict)


class DuckdbConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Threads (null = all cores) and memory cap before DuckDB spills to temp_directory.
    threads: int | None = Field(None, gt=0)
    memory_limit: str | None = None  # e.g. "8GB"; null = DuckDB's default (80 % of RAM)
    temp_directory: str = "{data_dir}/tmp/duckdb"


Engine = Literal["duckdb", "spark"]
