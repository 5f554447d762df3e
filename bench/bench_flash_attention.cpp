// Forward and backward time of the fused attention kernels (ops/flash_attention.h) on Qwen training shapes, and
// once the scalar kernels of ops/attention.h on the first shape as the baseline. TFLOP/s are counted as the
// FlashAttention papers count them: forward 4 * d * nH * (sum over documents of L^2) / 2 (two matmuls, causal
// half of the square), backward 2.5 times the forward. q/k/v and their gradients are column blocks of one fused
// (T, (nH + 2 nKV) d) buffer, as the model lays them out; the backward time includes its D/clear and dq passes.
// Median of REPS timed runs (CUDA events) after 3 warm-ups, random bf16 inputs of variance 1.
// Usage: bench_flash_attention [REPS] [--scalar]  (--scalar: also time the scalar kernels, seconds per call)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#ifdef TUNE_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#include "cuda_timing.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "ops/attention.h"
#include "ops/flash_attention.h"
#endif

#ifdef TUNE_CUDA
namespace {

struct BenchShape {
  const char* name;
  int64_t docs, len, nH, nKV, d;  // `docs` documents of `len` tokens packed into T = docs * len
};

// A device array of n bf16 values, uniform with mean 0 and variance 1 (cheaper to draw than normals).
void* random_bf16(size_t n, uint64_t seed) {
  std::vector<uint16_t> h(n);
  tune::Rng rng(seed);
  for (uint16_t& x : h) x = tune::f32_to_bf16(3.4641016f * (rng.uniform() - 0.5f));
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, n * 2));
  CUDA_CHECK(cudaMemcpy(p, h.data(), n * 2, cudaMemcpyHostToDevice));
  return p;
}

void* device_bytes(size_t n) {
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, n));
  return p;
}

int32_t* doc_starts_on_device(int64_t docs, int64_t len) {
  std::vector<int32_t> s(size_t(docs * len));
  for (size_t t = 0; t < s.size(); ++t) s[t] = int32_t(int64_t(t) / len * len);
  int32_t* p = static_cast<int32_t*>(device_bytes(s.size() * 4));
  CUDA_CHECK(cudaMemcpy(p, s.data(), s.size() * 4, cudaMemcpyHostToDevice));
  return p;
}

void run(const BenchShape& b, int reps) {
  using namespace tune::cuda;
  const int64_t T = b.docs * b.len, W = (b.nH + 2 * b.nKV) * b.d, od = b.nH * b.d;
  const FlashAttnShape s{T, b.nH, b.nKV, b.d, W, W, W, od};
  auto* qkv = static_cast<uint16_t*>(random_bf16(size_t(T * W), 1));
  void* d_o = random_bf16(size_t(T * od), 2);
  void* o = device_bytes(size_t(T * od) * 2);
  void* dqkv = device_bytes(size_t(T * W) * 2);
  auto* lse = static_cast<float*>(device_bytes(size_t(b.nH * T) * 4));
  void* ws = device_bytes(flash_attention_bwd_workspace_bytes(s));
  int32_t* ds = doc_starts_on_device(b.docs, b.len);
  auto* dq = static_cast<uint16_t*>(dqkv);
  const float scale = float(1.0 / std::sqrt(double(b.d)));
  const auto fwd = [&] {
    flash_attention_fwd(qkv, qkv + od, qkv + od + b.nKV * b.d, ds, scale, o, lse, s, nullptr);
  };
  const auto bwd = [&] {
    flash_attention_bwd(qkv, qkv + od, qkv + od + b.nKV * b.d, o, d_o, lse, ds, scale, dq, dq + od,
                        dq + od + b.nKV * b.d, ws, s, nullptr);
  };
  const double tf = median_ms(fwd, 3, reps), tb = median_ms(bwd, 3, reps);
  CUDA_CHECK(cudaGetLastError());
  const double flops = 4.0 * double(b.d) * double(b.nH) * double(b.docs) * double(b.len) * double(b.len) / 2;
  std::printf("%-38s T %5lld  fwd %8.3f ms %6.1f TFLOP/s   bwd %8.3f ms %6.1f TFLOP/s\n", b.name, (long long)T, tf,
              flops / tf * 1e-9, tb, 2.5 * flops / tb * 1e-9);
  for (void* p : {static_cast<void*>(qkv), d_o, o, dqkv, static_cast<void*>(lse), ws, static_cast<void*>(ds)})
    CUDA_CHECK(cudaFree(p));
}

// The scalar kernels (ops/attention.h) on contiguous q/k/v, one timed run each.
void run_scalar(const BenchShape& b) {
  const int64_t T = b.docs * b.len, od = b.nH * b.d, kd = b.nKV * b.d;
  void* q = random_bf16(size_t(T * od), 3);
  void* k = random_bf16(size_t(T * kd), 4);
  void* v = random_bf16(size_t(T * kd), 5);
  void* d_o = random_bf16(size_t(T * od), 6);
  void *o = device_bytes(size_t(T * od) * 2), *dq = device_bytes(size_t(T * od) * 2);
  void *dk = device_bytes(size_t(T * kd) * 2), *dv = device_bytes(size_t(T * kd) * 2);
  int32_t* ds = doc_starts_on_device(b.docs, b.len);
  const float scale = float(1.0 / std::sqrt(double(b.d)));
  const double tf = median_ms(
      [&] { tune::cuda::attention_fwd(q, k, v, ds, scale, o, T, b.nH, b.nKV, b.d, tune::DType::BF16); }, 0, 1);
  const double tb = median_ms(
      [&] {
        tune::cuda::attention_bwd(q, k, v, ds, scale, d_o, dq, dk, dv, T, b.nH, b.nKV, b.d, tune::DType::BF16);
      },
      0, 1);
  const double flops = 4.0 * double(b.d) * double(b.nH) * double(b.docs) * double(b.len) * double(b.len) / 2;
  std::printf("%-38s T %5lld  fwd %8.3f ms %6.1f TFLOP/s   bwd %8.3f ms %6.1f TFLOP/s  (scalar kernels)\n", b.name,
              (long long)T, tf, flops / tf * 1e-9, tb, 2.5 * flops / tb * 1e-9);
  for (void* p : {q, k, v, d_o, o, dq, dk, dv, static_cast<void*>(ds)}) CUDA_CHECK(cudaFree(p));
}

}  // namespace
#endif

int main(int argc, char** argv) {
#ifndef TUNE_CUDA
  (void)argc, (void)argv;
  std::printf("bench_flash_attention: built without CUDA\n");
  return 0;
#else
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  const bool scalar = argc > 2 && std::string(argv[2]) == "--scalar";
  const BenchShape shapes[] = {
      {"qwen3 0.6b/1.7b: 4 x 2048, 16/8 heads", 4, 2048, 16, 8, 128},
      {"qwen3 4b/8b: 4 x 2048, 32/8 heads", 4, 2048, 32, 8, 128},
      {"one document of 8192, 16/8 heads", 1, 8192, 16, 8, 128},
      {"32 documents of 256, 16/8 heads", 32, 256, 16, 8, 128},
      {"qwen3.5 d256: 4 x 2048, 8/2 heads", 4, 2048, 8, 2, 256},
      {"d64: 4 x 2048, 16/8 heads", 4, 2048, 16, 8, 64},
  };
  try {
    for (const BenchShape& b : shapes) run(b, reps);
    if (scalar) run_scalar(shapes[0]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_flash_attention: %s\n", e.what());
    return 1;
  }
  return 0;
#endif
}
