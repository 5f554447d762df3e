// Shared-memory tile layouts of the LoRA B-backward kernels (lora_b_bwd.cu, swiglu_lora_bwd.cu): rows are
// XOR-swizzled by 16-byte chunk, so that ldmatrix's eight row addresses hit distinct banks. Included by .cu
// files only.
#pragma once

#include <cstdint>

#include "ops/cuda/mma_ptx.cuh"

namespace tune::cuda {

// Byte offset of 16-byte chunk c of row n in a tile of R-wide bf16 rows (u, B).
template <int R>
__device__ __forceinline__ uint32_t rchunk(int n, int c) {
  constexpr int cpr = R / 8;
  return uint32_t(n * R * 2 + ((c ^ ((n / (8 / cpr)) % cpr)) << 4));
}

// Byte offset of chunk c (of 16) of row t in a sub-tile of 128 bf16 columns (an output gradient's, or g, u, dh).
__device__ __forceinline__ uint32_t ychunk(int t, int c) {
  return uint32_t(t * 256 + ((c ^ (t & 7)) << 4));
}

// mma B-operand fragments of a k16 x 8 NT block of a tile in the rchunk<R> layout: rows k0..k0 + 15, 16-byte
// chunks from c0; f[nt] holds n8 block nt (one ldmatrix.trans of four 8x8 matrices per two blocks).
template <int R, int NT>
__device__ __forceinline__ void ldsm_b_frags(uint32_t tile, int k0, int c0, int lane, uint32_t (&f)[NT][2]) {
  const int lj = lane >> 3, li = lane & 7;
#pragma unroll
  for (int q = 0; q < NT / 2; ++q) {
    uint32_t r4[4];
    ldsm_x4_t(tile + rchunk<R>(k0 + (lj & 1) * 8 + li, c0 + 2 * q + (lj >> 1)), r4);
    f[2 * q][0] = r4[0], f[2 * q][1] = r4[1], f[2 * q + 1][0] = r4[2], f[2 * q + 1][1] = r4[3];
  }
}

}  // namespace tune::cuda
