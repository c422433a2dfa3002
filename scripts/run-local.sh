#!/usr/bin/env bash
# `make run`: generate with the default model (the fleet comes with `flotilla up`).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-stories260K-q8_0.gguf}"
exec build/bin/flotilla run --model "$MODEL" --ctx-size 512 --prompt "Once upon a time" -n 128
