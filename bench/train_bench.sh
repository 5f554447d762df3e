#!/bin/bash
# tune bench train and the transformers+PEFT baseline (bench/hf_baseline.py) on the same shapes, one after the
# other in the same run, on the GPU machine; appends one JSON line per shape to OUT (the format of
# bench/results.jsonl) and prints both sides.
# usage: bench/train_bench.sh TUNE_BINARY COMMIT OUT.jsonl PRESET:BATCH[:SEQ_LEN[:EXTRA_TUNE_FLAGS]] ...
set -euo pipefail
cd "$(dirname "$0")/.."
tune=$1 commit=$2 out=$3
shift 3
for spec in "$@"; do
  IFS=: read -r preset batch seq extra <<<"$spec"
  seq=${seq:-2048}
  t=$("$tune" bench train --preset "$preset" --batch-size "$batch" --seq-len "$seq" --steps 8 --warmup 3 --json $extra)
  b=$(python3 bench/hf_baseline.py --preset "$preset" --batch-size "$batch" --seq-len "$seq" --steps 8 --warmup 3 \
      2>/dev/null | tail -1 || true)
  python3 - "$t" "$b" "$commit" "$out" "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" "$extra" <<'PY'
import datetime, json, sys
t = json.loads(sys.argv[1])
# A preset the baseline script has no shape for (e.g. the Qwen3.5 MoE) records tune alone.
b = json.loads(sys.argv[2]) if sys.argv[2].strip() else {"oom": None, "skipped": True}
row = {"date": datetime.date.today().isoformat(), "commit": sys.argv[3], "device": b.get("device", sys.argv[5]),
       "preset": t["preset"], "batch_size": t["batch_size"], "seq_len": t["seq_len"], "lora_r": t["lora_r"],
       "tune_tokens_per_s": round(t["tokens_per_s"], 1),
       "baseline_tokens_per_s": None if "tokens_per_s" not in b else round(b["tokens_per_s"], 1),
       "tune_peak_gib": round(t["peak_gib"], 3), "baseline_peak_gib": None if "peak_gib" not in b else round(b["peak_gib"], 3),
       "speedup": None if "tokens_per_s" not in b else round(t["tokens_per_s"] / b["tokens_per_s"], 3),
       "baseline": "none for this preset" if b.get("skipped") else
                   "transformers %s + peft %s, torch %s" % (b.get("transformers"), b.get("peft"), b.get("torch")),
       "first_step_s": round(t["first_step_s"], 2), "tune_flags": sys.argv[6]}
print(json.dumps(row))
with open(sys.argv[4], "a") as f:
    f.write(json.dumps(row) + "\n")
PY
done
