#!/usr/bin/env bash
# Create or refresh .venv from the lock file. Installs uv first if the machine has none.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
  UV=(python3 -m uv)
else
  echo "bootstrap: installing uv with pip" >&2
  python3 -m pip install --quiet --disable-pip-version-check uv
  UV=(python3 -m uv)
fi
# Precompile bytecode: where PYTHONDONTWRITEBYTECODE is set, every process would otherwise recompile
# feast, mlflow and bentoml from source (tens of seconds per start-up on 2 cores).
# --extra spark: engine: spark and its tests (PySpark); the serving image leaves it out.
"${UV[@]}" sync --frozen --quiet --compile-bytecode --extra spark
