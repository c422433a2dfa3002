#!/usr/bin/env bash
# `make run`: a local fleet (gateway + 2 workers) serving the default model, in the foreground.
# Ctrl-C drains and stops everything. Extra arguments go to `flotilla up`.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-stories260K-q8_0.gguf}"
shift || true
exec build/bin/flotilla up --model "$MODEL" --ctx-size 512 "$@"
