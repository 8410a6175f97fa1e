#!/usr/bin/env bash
# Every benchmark in one run on this machine: SQLite (offload vs Huey's SqliteHuey),
# PostgreSQL (vs Procrastinate and SAQ) and Redis (vs Celery, RQ, Dramatiq, Huey, arq,
# SAQ and TaskIQ), then offload alone with and without each feature (bench/features_bench.py,
# run with the project's .venv, which ./run makes). Each installs its peers into its own virtualenv under bench/ on first
# use, starts its own throwaway servers, prints a Markdown table with offload's ratio to
# the best peer on each line, and writes bench/results/<engine>-<date>.json.
#   bench/run_all.sh            full run (about 3 hours on 2 cores: the engines run def and
#                               async tasks, each with 60 s idle windows; the dashboard pages
#                               with 1,000,000 jobs stored take about 20 minutes)
#   bench/run_all.sh --smoke    a few hundred jobs per workload (a few minutes), as CI runs it
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
for engine in sqlite pg redis; do
  echo "== $engine"
  bash "$HERE/run_$engine.sh" "$@"
done
echo "== what each feature costs the jobs that use it (offload alone)"
"${OFFLOAD_PYTHON:-$(dirname "$HERE")/.venv/bin/python}" "$HERE/features_bench.py" "$@"
echo "== live events: their latency, and what events, history and follow-ups cost (offload before/after)"
"${OFFLOAD_PYTHON:-$(dirname "$HERE")/.venv/bin/python}" "$HERE/events_bench.py" "$@"
echo "== searching and filtering with many jobs stored (the management API)"
"${OFFLOAD_PYTHON:-$(dirname "$HERE")/.venv/bin/python}" "$HERE/search_bench.py" "$@"
echo "== every dashboard page with many jobs stored" && "${OFFLOAD_PYTHON:-$(dirname "$HERE")/.venv/bin/python}" "$HERE/dashboard_pages.py" "$@"
echo "== the conversion service: one person's ten documents, then many people at once (the one-minute rule)"
"${OFFLOAD_PYTHON:-$(dirname "$HERE")/.venv/bin/python}" "$HERE/convert_load.py" "$@"
echo "== ways to drive LibreOffice: a run per file, one run for many, a warm instance"
"${OFFLOAD_PYTHON:-$(dirname "$HERE")/.venv/bin/python}" "$HERE/convert_strategies.py" "$@"
