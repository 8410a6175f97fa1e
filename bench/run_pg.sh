#!/usr/bin/env bash
# PostgreSQL benchmark: offload against procrastinate and SAQ (see pg_bench.py's docstring).
#   bench/run_pg.sh            full run (20000 jobs, 3 repeats, def and async tasks)
#   bench/run_pg.sh --smoke    quick check for CI (300 jobs, 1 repeat; about 40 s)
# Other options go to pg_bench.py (--jobs, --repeat, --kinds, --concurrency, --libs, ...).
# Makes bench/.venv-peers with procrastinate, saq[postgres], redis-py and this
# offload, so that all three run from one interpreter; needs PostgreSQL's binaries
# (initdb, pg_ctl) and redis-server (the jobs' side server), which it installs with
# apt-get if they are missing.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
PY=${PYTHON:-python3}
VENV=${BENCH_PEERS_VENV:-$HERE/.venv-peers}

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  echo "installing PostgreSQL (the benchmark starts its own throwaway cluster)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi

if ! command -v redis-server >/dev/null; then
  echo "installing redis-server (the jobs' side server is a throwaway one)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.installed-$(cat "$REPO/pyproject.toml" "$0" | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    procrastinate 'saq[postgres]' redis -e "$REPO[postgres]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

exec "$VENV/bin/python" "$HERE/pg_bench.py" "$@"
