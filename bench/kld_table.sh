#!/usr/bin/env bash
# The KLD table of bench/RESULTS.md: a seeded qwen3-0.6b-shaped model (f32 safetensors; RMSNorm weights spread
# lognormally with `tune init --norm-spread`, so input channels carry unequal energy as in trained models) is
# exported to Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q3_K_M and Q2_K, and Q4_K_M / Q3_K_M / Q2_K again with an importance
# matrix; `tune kld` then scores every file against the f32 base over the second half of each chunk, as
# llama-perplexity --kl-divergence does. The imatrix text and the KLD text are different lines of the
# tokenizer corpus. Prints a markdown table and leaves kld.json in $OUT.
#
#   bench/kld_table.sh                      # defaults below; every setting can be overridden from the environment
#   TUNE=build/tune CHUNKS=2 OUT=/tmp/kld bench/kld_table.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TUNE=${TUNE:-$ROOT/build/tune}
OUT=${OUT:-/tmp/tune_kld_table}
PRESET=${PRESET:-qwen3-0.6b}
CONFIG=${CONFIG:-}  # a config.json to use instead of the preset
SEED=${SEED:-1}
SPREAD=${SPREAD:-1.0}
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-3}
TOKDIR=${TOKDIR:-$ROOT/.testdata/qwen3}
CORPUS=${CORPUS:-$ROOT/tests/data/tokenizer/corpus.txt}
TYPES=${TYPES:-"Q8_0 Q6_K Q5_K_M Q4_K_M Q3_K_M Q2_K"}
IMATRIX_TYPES=${IMATRIX_TYPES:-"Q4_K_M Q3_K_M Q2_K"}

mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

shape=(--preset "$PRESET")
[ -n "$CONFIG" ] && shape=(--config "$CONFIG")
log "model: ${shape[*]}, seed $SEED, norm spread $SPREAD"
"$TUNE" init "${shape[@]}" --out "$OUT/base" --seed "$SEED" --dtype f32 --norm-spread "$SPREAD" >&2
cp "$TOKDIR/tokenizer.json" "$TOKDIR/tokenizer_config.json" "$OUT/base/"

# About 60k tokens each, far more than CHUNKS x CTX; lines 1-1000 and 5001-6000 of the corpus do not overlap.
sed -n '1,1000p' "$CORPUS" > "$OUT/imatrix.txt"
sed -n '5001,6000p' "$CORPUS" > "$OUT/kld.txt"

log "imatrix ($CHUNKS chunks of $CTX)"
"$TUNE" imatrix --model "$OUT/base" --data "$OUT/imatrix.txt" --out "$OUT/imatrix.gguf" --ctx "$CTX" \
  --chunks "$CHUNKS" >&2

models=()
for t in $TYPES; do
  log "export $t"
  "$TUNE" export --model "$OUT/base" --gguf "$t" --out "$OUT/$t.gguf" 2>/dev/null >&2
  models+=(--model "$OUT/$t.gguf")
done
for t in $IMATRIX_TYPES; do
  log "export $t with imatrix"
  "$TUNE" export --model "$OUT/base" --gguf "$t" --imatrix "$OUT/imatrix.gguf" --out "$OUT/$t-imatrix.gguf" \
    2>/dev/null >&2
  models+=(--model "$OUT/$t-imatrix.gguf")
done

log "kld ($CHUNKS chunks of $CTX)"
"$TUNE" kld --base "$OUT/base" "${models[@]}" --data "$OUT/kld.txt" --ctx "$CTX" --chunks "$CHUNKS" --json \
  > "$OUT/kld.json"
log "done"

python3 - "$OUT/kld.json" <<'EOF'
import json, os, sys
rows = json.load(open(sys.argv[1]))
rows = rows if isinstance(rows, list) else [rows]
print("| file | mean KLD | median KLD | 99% KLD | max KLD | same top | PPL(Q)/PPL(base) |")
print("|---|---:|---:|---:|---:|---:|---:|")
for r in rows:
    name = os.path.basename(r.get("model", "model")).removesuffix(".gguf").replace("-imatrix", " + imatrix")
    print(f"| {name} | {r['mean_kld']:.6f} ± {r['mean_kld_err']:.6f} | {r['median_kld']:.6f} | {r['p99_kld']:.6f} "
          f"| {r['max_kld']:.6f} | {100 * r['top1_agreement']:.2f}% | {r['ppl_ratio']:.6f} |")
print(f"\n{rows[0]['tokens']} scored tokens; PPL(base) {rows[0]['ppl_base']:.2f}")
EOF
