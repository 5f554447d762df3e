#!/usr/bin/env bash
# Makes the inputs of check_peft_load.py with tune (run here, after building): for several golden models, tune
# trains a LoRA adapter on pre-tokenized data, merges it (f32), and writes its logits with the adapter and of the
# merged model. Usage: tools/reference/peft_check_inputs.sh OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
tune=./build/tune
rm -rf "$out" && mkdir -p "$out"
run_case() {  # run_case NAME GOLDEN TARGETS EXTRA_FLAGS
  local name=$1 golden=$2 targets=$3 extra=$4 d=$out/$1
  mkdir -p "$d"
  cp -r "tests/data/golden/$golden" "$d/base"
  cp .testdata/qwen3/tokenizer.json .testdata/qwen3/tokenizer_config.json "$d/base/"
  local vocab
  vocab=$(python3 -c "import json;print(json.load(open('$d/base/config.json'))['vocab_size'])")
  python3 - "$d/data.jsonl" "$vocab" <<'PY'
import json, random, sys
random.seed(1)
with open(sys.argv[1], "w") as f:
    for _ in range(8):
        ids = [random.randrange(int(sys.argv[2])) for _ in range(12)]
        f.write(json.dumps({"input_ids": ids, "labels": [-100] * 3 + ids[3:]}) + "\n")
PY
  $tune train --model "$d/base" --data "$d/data.jsonl" --out "$d/run" --steps 15 --lr 1e-2 --lora-r 4 \
    --target "$targets" --batch-size 2 --seq-len 32 --quiet $extra >/dev/null
  $tune merge --model "$d/base" --adapter "$d/run/adapter" --out "$d/merged" --dtype f32 >/dev/null
  echo "5 1 9 3 7 2 8 4 6 0 11" > "$d/ids.txt"
  $tune logits --model "$d/base" --adapter "$d/run/adapter" --ids "@$d/ids.txt" --out "$d/tune_adapter_logits.safetensors" >/dev/null
  $tune logits --model "$d/merged" --ids "@$d/ids.txt" --out "$d/tune_merged_logits.safetensors" >/dev/null
  # The checks need no tokenizer (11 MB each): keep the carried folder small.
  rm -rf "$d/run/checkpoint-"* "$d/data.jsonl" "$d"/base/tokenizer*.json "$d"/merged/tokenizer*.json
}
run_case qwen3_all7 qwen3_gqa2_odd_untied_sharded q,k,v,o,gate,up,down ""
run_case qwen2_all7_rslora qwen2_gqa3_odd_untied_eps1e-5 q,k,v,o,gate,up,down "--rslora"
run_case qwen3_tied_qv qwen3_mha_hd16_tied q,v ""
run_case qwen3moe_attn qwen3moe_e6_top3_nonorm_mixed_untied q,k,v,o ""
run_case qwen3moe_all qwen3moe_e6_top3_nonorm_mixed_untied q,k,v,o,gate,up,down ""
echo "inputs in $out"
