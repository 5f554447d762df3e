// Helpers for tests that run llama.cpp through node-llama-cpp (tests/gguf/llama_probs.mjs, installed by
// scripts/fetch_llama_node.sh under .testdata/node): availability, llama.cpp's next-token distributions for a
// GGUF (optionally with a LoRA adapter GGUF), and their largest gap to tune's logits.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace tune::test {

inline const std::string kNodeDir = std::string(TUNE_SOURCE_DIR) + "/.testdata/node";
inline const std::string kProbsScript = std::string(TUNE_SOURCE_DIR) + "/tests/gguf/llama_probs.mjs";

inline bool have_llama_node() {
  namespace fs = std::filesystem;
  return fs::exists(kNodeDir + "/node_modules/node-llama-cpp/dist/index.js") &&
         fs::exists(kNodeDir + "/node_modules/@node-llama-cpp/linux-x64") &&
         std::system("node --version >/dev/null 2>&1") == 0;
}

#define SKIP_WITHOUT_LLAMA_NODE()     \
  if (!tune::test::have_llama_node()) \
  GTEST_SKIP() << "node-llama-cpp not installed: run scripts/fetch_llama_node.sh"

// llama.cpp's distributions at the last `last` positions of `ids` (null after a failure, reported).
inline nlohmann::json llama_next_token(const std::string& gguf, const std::vector<int32_t>& ids, int last,
                                       const std::string& lora = "") {
  std::string cmd = "NODE_LLAMA_DIR='" + kNodeDir + "' node '" + kProbsScript + "' '" + gguf + "' --ids '";
  for (int32_t x : ids) cmd += std::to_string(x) + " ";
  cmd += "' --last " + std::to_string(last);
  if (!lora.empty()) cmd += " --lora '" + lora + "'";
  cmd += " 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    ADD_FAILURE() << "cannot run node";
    return nullptr;
  }
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ADD_FAILURE() << "llama_probs.mjs failed on " << gguf << (lora.empty() ? "" : " + " + lora) << ":\n" << out;
    return nullptr;
  }
  // llama.cpp may log before the JSON line.
  const size_t start = out.find("{\"n_vocab\"");
  if (start == std::string::npos) {
    ADD_FAILURE() << "no JSON from llama_probs.mjs:\n" << out;
    return nullptr;
  }
  nlohmann::json j = nlohmann::json::parse(out.substr(start, out.find('\n', start) - start));
  if (j["positions"].size() != size_t(last)) {
    ADD_FAILURE() << gguf << ": llama.cpp returned " << j["positions"].size() << " positions";
    return nullptr;
  }
  return j;
}

// max over the last `last` positions and the vocabulary of |softmax(tune logits) − llama.cpp's probability|.
// `logits` (T, V) f32.
inline double max_prob_gap(const Tensor& logits, const nlohmann::json& j, int last) {
  const int64_t T = logits.size(0), V = logits.size(1);
  double gap = 0;
  for (int k = 0; k < last; ++k) {
    const int64_t t = T - last + k;
    const float* row = logits.ptr<float>() + t * V;
    const auto& pos = j["positions"][size_t(k)];
    EXPECT_EQ(pos["pos"].get<int64_t>(), t);
    const auto& probs = pos["probs"];
    double mx = row[0], sum = 0;
    for (int64_t v = 1; v < V; ++v) mx = std::max(mx, double(row[v]));
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
    for (int64_t v = 0; v < V; ++v) {
      const double theirs = v < int64_t(probs.size()) ? probs[size_t(v)].get<double>() : 0.0;
      gap = std::max(gap, std::fabs(std::exp(double(row[v]) - mx) / sum - theirs));
    }
  }
  return gap;
}

}  // namespace tune::test
