"""`spark-submit` entry point: build the feature tables on Apache Spark (engine: spark).

    spark-submit --master spark://host:7077 --py-files dist/persona-0.1.0-py3-none-any.whl \\
        deploy/spark/features_job.py --config deploy/spark/cluster.yaml [--snapshot 2025-12-01 ...]

or locally, in this project's environment: `python -m features.spark_job --config FILE`. The session
spark-submit made is reused, so its master and properties win over `spark:` in the config. Only the
driver runs Python: the feature tables are Ibis expressions compiled to Spark SQL, so the executors
need no Python packages. Exit status 2 with a one-line message on bad input or configuration.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from configs.settings import ConfigError, load_settings
from core.errors import PersonaError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spark_job", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML merged over configs/base.yaml (as `persona --config`)")
    parser.add_argument("--snapshot", action="append", type=date.fromisoformat, help="YYYY-MM-DD; repeat")
    args = parser.parse_args(argv)
    from features.build import build_features

    try:
        settings = load_settings(args.config, engine="spark")
        report = build_features(settings, snapshots=args.snapshot)
    except (PersonaError, ConfigError) as exc:
        print(f"spark_job: {exc}", file=sys.stderr)
        return 2
    print(
        f"{len(report.snapshots)} snapshot(s), data as of {report.as_of:%Y-%m-%d %H:%M} UTC, engine {report.engine}"
    )
    for name, (path, rows) in report.written.items():
        print(f"  {name}: {rows:,} rows -> {path}")
    for name, reason in report.skipped.items():
        print(f"  {name}: not built ({reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
