#!/usr/bin/env bash
# Installs llama.cpp's prebuilt CPU runtime from npm (node-llama-cpp, MIT) under .testdata/node/, pinned, for
# tests/gguf/test_llama_cpp (an independent check of tune's GGUF export). Idempotent: does nothing when the
# pinned versions are already there. Needs node >= 18 and npm; no GPU variants are installed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.testdata/node"
version=3.22.1
stamp="$dir/.done-$version"
if [[ -f "$stamp" && -d "$dir/node_modules/node-llama-cpp" && -d "$dir/node_modules/@node-llama-cpp/linux-x64" ]]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch_llama_node.sh: npm not found (apt-get install npm)" >&2; exit 1; }
mkdir -p "$dir"
cd "$dir"
[[ -f package.json ]] || echo '{"name":"tune-llama-node","private":true,"type":"module"}' > package.json
npm install --no-audit --no-fund --omit=optional --ignore-scripts --save-exact \
  "node-llama-cpp@$version" "@node-llama-cpp/linux-x64@$version" >&2
touch "$stamp"
