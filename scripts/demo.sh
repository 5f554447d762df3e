#!/usr/bin/env bash
# tune's main job on its embedded default, end to end on the CPU in a few minutes: build tune, create a small
# seeded Qwen3-architecture model with the real Qwen3 tokenizer (nothing downloaded from a model hub), fine-tune
# it with LoRA on a Q&A set made from Debian's public-domain bsdgames quiz (European capitals) until it answers
# the set, save the PEFT adapter, merge it, plot the loss, and ask the merged model the questions.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
bash scripts/fetch_testdata.sh >/dev/null
tune=./build/tune
out=${TUNE_DEMO_DIR:-out/demo}
rm -rf "$out" && mkdir -p "$out"

# 1. The model: tiny-qwen3 shape (4 layers, hidden 128, the real 151,936-token vocabulary), seeded weights.
$tune init --preset tiny-qwen3 --seed 1 --std 0.2 --out "$out/model"
cp .testdata/qwen3/tokenizer.json .testdata/qwen3/tokenizer_config.json "$out/model/"
$tune info "$out/model"

# 2. The data: twelve "What is the capital of X?" -> "Y." chats from the quiz file (country:capital lines).
grep -v '[[{]' .testdata/bsdgames/quiz/europe | head -12 |
  awk -F: '{split($2, a, "|"); printf "{\"messages\":[{\"role\":\"user\",\"content\":\"What is the capital of %s?\"},{\"role\":\"assistant\",\"content\":\"%s.\"}]}\n", $1, a[1]}' \
  >"$out/qa.jsonl"
$tune data preview --model "$out/model" --data "$out/qa.jsonl" --seq-len 64 --no-thinking --limit 1

# 3. LoRA fine-tuning (r 16 on all seven projections, AdamW, cosine schedule), then merge and plot.
$tune train --model "$out/model" --data "$out/qa.jsonl" --out "$out/run" --steps 120 --lr 5e-3 --scheduler cosine \
  --warmup-steps 5 --batch-size 4 --seq-len 64 --lora-r 16 --no-thinking --pack none --save-every 60
$tune merge --model "$out/model" --adapter "$out/run/adapter" --out "$out/merged"
$tune plot "$out/run/train_log.jsonl" --out "$out/loss.png"

# 4. Ask the merged model every question of the set.
right=0
while IFS=: read -r country capitals; do
  want="${capitals%%|*}."
  got=$($tune generate --model "$out/merged" --chat --no-thinking --max-tokens 12 \
    --prompt "What is the capital of $country?")
  [ "$got" = "$want" ] && right=$((right + 1))
  printf '  %-40s %-16s (expected %s)\n' "What is the capital of $country?" "$got" "$want"
done < <(grep -v '[[{]' .testdata/bsdgames/quiz/europe | head -12)
echo "demo: the fine-tuned model answers $right of 12; adapter in $out/run/adapter, merged model in $out/merged,"
echo "      loss curve in $out/loss.png"
