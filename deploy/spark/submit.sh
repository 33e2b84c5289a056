#!/usr/bin/env bash
# Build Persona's feature tables on a Spark cluster: a wheel of the project for the driver, then
# spark-submit. Only the driver runs Python (the features are Ibis expressions compiled to Spark SQL),
# so executors need Java and Spark only. Usage: deploy/spark/submit.sh [--master URL] [-- job args]
#   deploy/spark/submit.sh --master spark://spark-master:7077 -- --config deploy/spark/cluster.yaml
set -euo pipefail
cd "$(dirname "$0")/../.."
MASTER="${SPARK_MASTER:-local[2]}"
if [ "${1:-}" = "--master" ]; then MASTER="$2"; shift 2; fi
[ "${1:-}" = "--" ] && shift
[ $# -eq 0 ] && set -- --config deploy/spark/cluster.yaml
uv build --wheel --quiet --out-dir dist
WHEEL="$(ls -t dist/persona-*.whl | head -1)"
# client mode: the driver runs here, in the environment made by `uv sync --extra spark`
exec "${SPARK_SUBMIT:-spark-submit}" --master "$MASTER" --deploy-mode client \
  --conf spark.sql.session.timeZone=UTC --py-files "$WHEEL" \
  deploy/spark/features_job.py "$@"
