// Forward and backward time of the chunked gated delta rule kernels (ops/gated_delta_rule.h) on the Qwen3.5
// training shape: 4 documents of 2048 packed into T = 8192, nV = 16 value heads, dk = dv = 128, bf16 q/k/v.
// Median of REPS timed runs (CUDA events) after 3 warm-ups. The backward recomputes the forward's chunk states.
// Usage: bench_gated_delta_rule [REPS]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <vector>

#ifdef TUNE_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#include "cuda_timing.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "ops/gated_delta_rule.h"

namespace {

void* upload(const void* h, size_t bytes) {
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, bytes));
  CUDA_CHECK(cudaMemcpy(p, h, bytes, cudaMemcpyHostToDevice));
  return p;
}

// n bf16 values; rows of `d` L2-normalized times `scale` when d > 0 (q and k as the model prepares them).
void* random_bf16(size_t n, int64_t d, float scale, uint64_t seed) {
  std::vector<float> f(n);
  tune::Rng rng(seed);
  for (float& x : f) x = rng.normal();
  if (d > 0)
    for (size_t r = 0; r < n; r += size_t(d)) {
      double ss = 0;
      for (int64_t i = 0; i < d; ++i) ss += double(f[r + i]) * f[r + i];
      for (int64_t i = 0; i < d; ++i) f[r + i] = float(f[r + i] * scale / std::sqrt(ss + 1e-6));
    }
  std::vector<uint16_t> h(n);
  for (size_t i = 0; i < n; ++i) h[i] = tune::f32_to_bf16(f[i]);
  return upload(h.data(), n * 2);
}

void run(int reps) {
  using namespace tune::cuda;
  const int64_t docs = 4, len = 2048, T = docs * len, nV = 16, dk = 128, dv = 128;
  void* q = random_bf16(size_t(T * nV * dk), dk, float(1.0 / std::sqrt(double(dk))), 1);
  void* k = random_bf16(size_t(T * nV * dk), dk, 1.0f, 2);
  void* v = random_bf16(size_t(T * nV * dv), 0, 1.0f, 3);
  void* d_o = random_bf16(size_t(T * nV * dv), 0, 1.0f, 4);
  std::vector<float> gh(size_t(T * nV)), bh(size_t(T * nV));
  tune::Rng rng(5);
  for (float& x : gh) x = float(-0.7 * std::log1p(std::exp(double(rng.normal()))));
  for (float& x : bh) x = float(1.0 / (1.0 + std::exp(-double(rng.normal()))));
  auto* g = static_cast<float*>(upload(gh.data(), gh.size() * 4));
  auto* beta = static_cast<float*>(upload(bh.data(), bh.size() * 4));
  std::vector<int32_t> dsh(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) dsh[size_t(t)] = int32_t(t / len * len);
  auto* ds = static_cast<int32_t*>(upload(dsh.data(), dsh.size() * 4));
  void *o = nullptr, *dq = nullptr, *dkk = nullptr, *dvv = nullptr, *ws = nullptr;
  float *dg = nullptr, *db = nullptr;
  const size_t ws_bytes = gated_delta_rule_workspace_bytes(T, nV, dk, dv, true);
  for (void** p : {&o, &dq, &dkk, &dvv}) CUDA_CHECK(cudaMalloc(p, size_t(T * nV * 128) * 2));
  CUDA_CHECK(cudaMalloc(&dg, size_t(T * nV) * 4));
  CUDA_CHECK(cudaMalloc(&db, size_t(T * nV) * 4));
  CUDA_CHECK(cudaMalloc(&ws, ws_bytes));
  const double tf = median_ms(
      [&] { gated_delta_rule_fwd(q, k, v, g, beta, ds, o, ws, T, nV, dk, dv, nullptr); }, 3, reps);
  const double tb = median_ms(
      [&] { gated_delta_rule_bwd(q, k, v, g, beta, ds, d_o, dq, dkk, dvv, dg, db, ws, T, nV, dk, dv, nullptr); }, 3,
      reps);
  CUDA_CHECK(cudaGetLastError());
  std::printf("gated delta rule: %lld x %lld, nV %lld, dk %lld, dv %lld  fwd %8.3f ms  bwd %8.3f ms  workspace %.0f MiB\n",
              (long long)docs, (long long)len, (long long)nV, (long long)dk, (long long)dv, tf, tb,
              double(ws_bytes) / (1 << 20));
  for (void* p : {q, k, v, d_o, o, dq, dkk, dvv, ws, static_cast<void*>(g), static_cast<void*>(beta),
                  static_cast<void*>(dg), static_cast<void*>(db), static_cast<void*>(ds)})
    CUDA_CHECK(cudaFree(p));
}

}  // namespace
#endif

int main(int argc, char** argv) {
#ifndef TUNE_CUDA
  (void)argc, (void)argv;
  std::printf("bench_gated_delta_rule: built without CUDA\n");
  return 0;
#else
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  try {
    run(reps);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gated_delta_rule: %s\n", e.what());
    return 1;
  }
  return 0;
#endif
}
