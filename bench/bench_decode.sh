#!/usr/bin/env bash
# Decode speed, tune's CPU engine against llama.cpp (node-llama-cpp's prebuilt CPU build under .testdata/node) on
# the same GGUFs: the qwen3-0.6b shape with seeded random weights (tune init --preset qwen3-0.6b), exported as
# Q4_K_M and Q8_0. Each run times, for each file, bench_decode (tune) then bench/llama_decode.mjs (llama.cpp):
# the same prompt ids, the same number of greedy decode steps, the same thread count. Runs alternate so both see
# the same machine load; the summary gives the median and the range over runs.
#   bench/bench_decode.sh [RUNS=3] [THREADS=2] [GEN_TOKENS=64] [PROMPT_TOKENS=32]
# Environment: TUNE_BUILD (default ./build: the tune binary and bench_decode), BENCH_DIR (default
# out/bench_decode: models and results).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
threads=${2:-2}
gen=${3:-64}
prompt=${4:-32}
build=${TUNE_BUILD:-build}
dir=${BENCH_DIR:-out/bench_decode}
mkdir -p "$dir"

if [ ! -f "$dir/q06_q4km.gguf" ] || [ ! -f "$dir/q06_q8.gguf" ]; then
  "$build/tune" init --preset qwen3-0.6b --seed 1 --dtype bf16 --out "$dir/model" >/dev/null
  if [ -f .testdata/qwen3/tokenizer.json ]; then
    cp .testdata/qwen3/tokenizer.json .testdata/qwen3/tokenizer_config.json "$dir/model/"
  fi
  "$build/tune" export --model "$dir/model" --gguf Q4_K_M --out "$dir/q06_q4km.gguf" >/dev/null 2>&1
  "$build/tune" export --model "$dir/model" --gguf Q8_0 --out "$dir/q06_q8.gguf" >/dev/null 2>&1
fi

results="$dir/results.jsonl"
: >"$results"
for run in $(seq 1 "$runs"); do
  for model in q06_q4km q06_q8; do
    args=(--prompt-tokens "$prompt" --gen-tokens "$gen" --threads "$threads")
    "$build/bench_decode" "$dir/$model.gguf" "${args[@]}" | tee -a "$results"
    node bench/llama_decode.mjs "$dir/$model.gguf" "${args[@]}" 2>/dev/null | tee -a "$results"
  done
done

python3 - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\nmodel            engine      decode tok/s: median (min..max)   prefill tok/s (median)")
by = {}
for r in rows:
    by.setdefault((r["model"].split("/")[-1], r["engine"]), []).append(r)
for (model, engine), rs in sorted(by.items()):
    d = [r["decode_tok_s"] for r in rs]
    p = [r["prefill_tok_s"] for r in rs]
    print(f"{model:16} {engine:10} {statistics.median(d):8.2f} ({min(d):.2f}..{max(d):.2f})  {statistics.median(p):10.1f}")
for model in sorted({m for m, _ in by}):
    t = statistics.median(r["decode_tok_s"] for r in by[(model, "tune")])
    l = statistics.median(r["decode_tok_s"] for r in by[(model, "llama.cpp")])
    print(f"{model}: tune / llama.cpp decode = {t / l:.2f}x")
EOF
