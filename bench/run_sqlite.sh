#!/usr/bin/env bash
# SQLite benchmark: offload's SQLite store against Huey's SqliteHuey (see sqlite_bench.py's docstring).
#   bench/run_sqlite.sh            full run (20000 jobs, 3 repeats, 60 s idle windows)
#   bench/run_sqlite.sh --smoke    quick check for CI (300 jobs, 1 repeat, 1 s idle windows)
# Other options go to sqlite_bench.py (--jobs, --repeat, --kinds, --concurrency, --libs, ...).
# Makes bench/.venv-peers-sqlite (BENCH_PEERS_SQLITE_VENV overrides the path) with
# huey, redis-py and this offload, so that both run from one interpreter and one
# sqlite3 module. Each library gets its own database file in a temp folder, created
# and removed by the benchmark; the jobs' side redis-server (a throwaway one, see
# sqlite_bench.py) needs redis-server, installed with apt-get if it is missing.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
PY=${PYTHON:-python3}
VENV=${BENCH_PEERS_SQLITE_VENV:-$HERE/.venv-peers-sqlite}

if ! command -v redis-server >/dev/null; then
  echo "installing redis-server (the jobs' side server is a throwaway one)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  echo '*' >"$VENV/.gitignore" # never committed, wherever it is made
fi
stamp="$VENV/.installed-$(cat "$REPO/pyproject.toml" "$0" | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check huey redis -e "$REPO"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

exec "$VENV/bin/python" "$HERE/sqlite_bench.py" "$@"
