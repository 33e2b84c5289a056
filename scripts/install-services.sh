#!/usr/bin/env bash
# Install the servers the integration tests start, from Debian's packages, when they are missing: Redis,
# PostgreSQL, the Java 17 runtime Spark needs (engine: spark), and the browser the dashboard tests drive
# (chromium + CJK fonts for the Chinese pages; Playwright's own browser download cannot work offline).
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  need+=(postgresql)
fi
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# engine: spark (and its tests) run PySpark 4, which needs a Java 17+ runtime
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
  need+=(openjdk-17-jre-headless)
fi
[ -d /usr/share/fonts/opentype/noto ] && ls /usr/share/fonts/opentype/noto/NotoSansCJK* >/dev/null 2>&1 \
  || need+=(fonts-noto-cjk)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; then
  echo "install-services: need ${need[*]} but cannot install (not root, no sudo); those tests will skip" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "install-services: installing ${need[*]}" >&2
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services; tests start their own on loopback, so stop these.
for s in redis-server postgresql; do $SUDO service "$s" stop >/dev/null 2>&1 || true; done
