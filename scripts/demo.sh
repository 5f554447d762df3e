#!/usr/bin/env bash
# tune's main job on its embedded default: builds tune, creates a small seeded random Qwen3 model (no download),
# shows what it is, and computes its logits for a prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
out=${TUNE_DEMO_DIR:-out/demo}
mkdir -p "$out"
./build/tune init --preset tiny-qwen3 --seed 1 --std 0.1 --out "$out/model"
./build/tune info "$out/model"
# "Hello, world!" in the Qwen3 tokenizer's ids.
./build/tune logits --model "$out/model" --ids "9707 11 1879 0" --out "$out/logits.safetensors"
