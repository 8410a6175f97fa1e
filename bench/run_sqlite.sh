#!/usr/bin/env bash
# SQLite benchmark: offload's SQLite store against Huey's SqliteHuey (see sqlite_bench.py's docstring).
#   bench/run_sqlite.sh            full run (20000 jobs, 3 repeats, 60 s idle windows)
#   bench/run_sqlite.sh --smoke    quick check for CI (300 jobs, 1 repeat, 3 s idle windows)
# Other options go to sqlite_bench.py (--jobs, --repeat, --concurrency, --libs, ...).
# Makes bench/.venv-peers-sqlite (BENCH_PEERS_SQLITE_VENV overrides the path) with
# huey and this offload, so that both run from one interpreter and one sqlite3
# module. Needs nothing else: each library gets its own database file in a temp
# folder, created and removed by the benchmark.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
PY=${PYTHON:-python3}
VENV=${BENCH_PEERS_SQLITE_VENV:-$HERE/.venv-peers-sqlite}

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  echo '*' >"$VENV/.gitignore" # never committed, wherever it is made
fi
stamp="$VENV/.installed-$(cat "$REPO/pyproject.toml" "$0" | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check huey -e "$REPO"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

exec "$VENV/bin/python" "$HERE/sqlite_bench.py" "$@"
