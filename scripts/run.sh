#!/usr/bin/env bash
# Serve the embedded default (SQLite, in-process worker thread, in-memory stream bus) with uvicorn on
# http://127.0.0.1:${PORT:-8000}. `make run` calls this after scripts/bootstrap.sh; the worker thread
# starts inside the server process (config/asgi.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export DJANGO_SETTINGS_MODULE="${DJANGO_SETTINGS_MODULE:-config.settings}"
export VERITY_MODE="${VERITY_MODE:-embedded}"
export HF_HUB_OFFLINE=1
PORT="${PORT:-8000}"

echo "==> database: migrate"
$PY manage.py migrate --noinput -v0
echo "==> domain packs: load"
$PY manage.py packs_load
echo "==> demo users (log in with these)"
$PY manage.py demo_setup
if [[ "${DEBUG:-}" =~ ^(0|false|no|off)$ ]]; then
  echo "==> static files: collect"
  $PY manage.py collectstatic --noinput -v0
fi
echo "==> serving Verity on http://127.0.0.1:${PORT}/ (Ctrl-C to stop)"
exec .venv/bin/uvicorn config.asgi:application --host 127.0.0.1 --port "$PORT" --no-access-log
