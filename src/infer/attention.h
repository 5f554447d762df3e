// Causal attention of new query rows against a layer's KV cache, computed as llama.cpp's CPU flash-attention
// kernel (ggml_compute_forward_flash_attn_ext_f16, which llama.cpp runs on the CPU by default) computes it
// for an f16 cache:
//  - a batch of fewer than 64 rows (decode steps, short prompts): per query row, q is rounded to f16; each
//  score
//    is an f16·f16 dot product summed as ggml's AVX-512 build sums it (4 x 16 f32 lanes, then a fixed
//    pairwise reduction), times the scale; an online softmax keeps the running max M and sum S in f32 and the
//    weighted sum of values in f16 (each update v*w + acc fused, then rounded to f16; rescales rounded to
//    f16); the output is that sum / S in f32;
//  - a decode step over 512 or more cache rows: the rows are split into one chunk per thread, each chunk
//    accumulated as above, the chunks combined in f32 (llama.cpp's n_kv is the used rows rounded up to 256,
//    capped by the context size);
//  - 64 rows or more (prompt prefill): f32 throughout: keys converted to f32, scores as sequential fused
//    multiply-adds over the head dimension, softmax per 64-row tile of keys, values accumulated in f32.
// An f32 cache (for comparing with the f32 reference forward) computes each row in double: exact attention.
#pragma once

#include <cstdint>

#include "infer/kv_cache.h"

namespace tune {

// q (T, nH, hd) f32 after RoPE for positions pos0..pos0+T-1, whose keys and values are already in `cache`;
// row t attends to positions [0, pos0 + t]. Query head h reads kv head h / (nH / nKV). out (T, nH, hd) f32.
// Threaded over rows and heads (over cache chunks for the split decode step).
void attention_cached(const KvCache& cache, int64_t layer, const float* q, int64_t T, int64_t pos0,
                      int64_t nH, int64_t nKV, int64_t hd, float scale, float* out);

}  // namespace tune
