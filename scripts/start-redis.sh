#!/usr/bin/env bash
# Start a local redis-server for the Feast online store (configs/redis.yaml), on loopback, no persistence.
#   scripts/start-redis.sh [PORT]      (default 6379; data and log under data/redis/)
# Stop it with: redis-cli -p PORT shutdown nosave
set -euo pipefail
port="${1:-6379}"
if ! command -v redis-server >/dev/null 2>&1; then
  echo "start-redis: redis-server not found; run \`make services\` (scripts/install-services.sh)" >&2
  exit 1
fi
dir="${PERSONA_DATA_DIR:-data}/redis"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
  --daemonize yes --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log"
for _ in $(seq 1 50); do
  if redis-cli -p "$port" ping >/dev/null 2>&1; then
    echo "redis listening on 127.0.0.1:$port (PERSONA_CONFIG=configs/redis.yaml to use it)"
    exit 0
  fi
  sleep 0.1
done
echo "start-redis: redis-server did not answer on port $port; see $dir/redis-$port.log" >&2
exit 1
