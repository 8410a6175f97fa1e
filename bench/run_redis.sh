#!/usr/bin/env bash
# Redis benchmark: offload against Celery, RQ, Dramatiq, Huey, arq, SAQ and TaskIQ
# (see redis_bench.py's docstring).
#   bench/run_redis.sh            full run (20000 jobs, RQ 5000, 3 repeats, def and async tasks)
#   bench/run_redis.sh --smoke    quick check (300 jobs, 1 repeat; about 70 s)
# Other options go to redis_bench.py (--jobs, --repeat, --kinds, --concurrency, --libs, ...);
# --kinds def (or async) alone halves the time.
# Makes bench/.venv-peers-redis (BENCH_PEERS_REDIS_VENV overrides the path) with
# every library and this offload, so that all run from one interpreter; needs
# redis-server, which it installs with apt-get if it is missing. The benchmark
# starts its own throwaway redis-server (a temp folder, a free port, no
# persistence: --save "" --appendonly no) and never touches a Redis already running.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(dirname "$HERE")"
PY=${PYTHON:-python3}
VENV=${BENCH_PEERS_REDIS_VENV:-$HERE/.venv-peers-redis}

if ! command -v redis-server >/dev/null; then
  echo "installing redis-server (the benchmark starts its own throwaway server)"
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
  # One interpreter means one redis-py for all: saq[redis] wants redis<8, and the
  # taskiq-redis that works with redis 7 (1.2.2) needs taskiq 0.12; kombu's
  # redis>=6.4 leaves arq at 0.25 (later arq wants redis<6).
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    'celery[redis]' rq 'dramatiq[redis]' huey arq 'saq[redis]' 'taskiq<0.13' taskiq-redis \
    -e "$REPO[redis]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

exec "$VENV/bin/python" "$HERE/redis_bench.py" "$@"
