#!/bin/bash
# The same LoRA fine-tune (200 steps, same data, options and seed) on the CPU and on the GPU, for a golden model
# (tests/data/golden, small head dim: the reference attention kernel) and a seeded model with head dim 128 (the
# fused attention); writes both logs, one plot per model with both curves, and the largest per-step difference.
# The data are number sequences with a per-record stride (learnable, so the loss falls over the run).
# usage: bench/loss_curve_cuda.sh TUNE_BINARY TOKENIZER_DIR OUT_DIR   (TOKENIZER_DIR: tokenizer.json and
#        tokenizer_config.json, e.g. .testdata/qwen3 after scripts/fetch_testdata.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
tune=$1 tok=$2 out=$3
mkdir -p "$out"
python3 - "$out/data.jsonl" <<'PY'
import json, random, sys
random.seed(0)
with open(sys.argv[1], "w") as f:
    for _ in range(256):
        k, s, n = random.randint(1, 7), random.randint(0, 150), random.randint(16, 60)
        ids = [(s + k * t) % 150 for t in range(n)]
        f.write(json.dumps({"input_ids": ids, "labels": ids}) + "\n")
PY
mkdir -p "$out/golden" "$out/seeded"
cp tests/data/golden/qwen3_gqa4_hd24_untied/config.json tests/data/golden/qwen3_gqa4_hd24_untied/model.safetensors \
  "$out/golden/"
cat >"$out/seeded.json" <<'JSON'
{"model_type":"qwen3","vocab_size":160,"hidden_size":256,"num_hidden_layers":4,"num_attention_heads":4,
 "num_key_value_heads":2,"head_dim":128,"intermediate_size":512,"tie_word_embeddings":true,"rms_norm_eps":1e-6,
 "rope_theta":1000000,"max_position_embeddings":4096}
JSON
"$tune" init --config "$out/seeded.json" --seed 3 --std 0.05 --out "$out/seeded" >/dev/null
for m in golden seeded; do
  cp "$tok/tokenizer.json" "$tok/tokenizer_config.json" "$out/$m/"
  for dev in cpu cuda; do
    "$tune" train --model "$out/$m" --data "$out/data.jsonl" --out "$out/$m-$dev" --device $dev --steps 200 \
      --batch-size 4 --seq-len 64 --lr 2e-3 --scheduler cosine --warmup-steps 10 --lora-r 16 --seed 1 --quiet
  done
  "$tune" plot "$out/$m-cpu/train_log.jsonl" "$out/$m-cuda/train_log.jsonl" --labels cpu,cuda \
    --out "$out/loss_${m}_cpu_vs_cuda.svg"
  python3 - "$out/$m-cpu/train_log.jsonl" "$out/$m-cuda/train_log.jsonl" "$m" <<'PY'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
d = max(abs(x - y) / x for x, y in zip(a, b))
print(f"{sys.argv[3]}: {len(a)} steps, loss cpu {a[0]:.4f} -> {a[-1]:.4f}, cuda {b[0]:.4f} -> {b[-1]:.4f}, "
      f"largest per-step relative difference {d:.2e}")
PY
done
