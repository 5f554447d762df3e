// The FFN backward between its two frozen products, fused (CUDA, training path): the SwiGLU backward, the
// backward of the gate and up LoRAs' second products, and the down LoRA's A gradient, all from one read of
// the SwiGLU's inputs and dh. In terms of the ops it fuses (each with its CPU reference):
//   swiglu_bwd:  dg, du from g, u, dh (gu's columns overwritten with dgu), h = silu(g) u
//   lora_b_bwd:  gate: dB_gate += s dg^T u_gate, g_gate = s dg B_gate; up likewise with du
//   dA_down += gd^T h, gd = s dy_down B_down (the down LoRA's g, from its own lora_b_bwd)
// Unfused, dgu (T, 2I) is written and then read back whole by the LoRA's kernel, and h (T, I) is written for
// a product that reads it back; here each 32-row chunk of a 128-column block goes through shared memory once.
#pragma once

#include <cstdint>

namespace tune::cuda {

struct SwigluLoraBwd {
  int64_t T = 0, I = 0, r = 0;
  void* gu = nullptr;  // (T, 2I) bf16 [ldgu]: each row's gate then up projection; overwritten with dg | du
  int64_t ldgu = 0;
  const void* dh = nullptr;  // (T, I) bf16 [lddh]
  int64_t lddh = 0;
  const void* u = nullptr;  // (T, 2r) bf16 [ldu]: the gate LoRA's u, then the up LoRA's
  int64_t ldu = 0;
  const void* b_gate = nullptr;  // (I, r) bf16
  const void* b_up = nullptr;    // (I, r) bf16
  float* db_gate = nullptr;      // (I, r) fp32, +=
  float* db_up = nullptr;        // (I, r) fp32, +=
  void* g = nullptr;             // (T, 2r) bf16 [ldg], overwritten: s [dg B_gate | du B_up]
  int64_t ldg = 0;
  float s = 1.0f;
  const void* gd = nullptr;  // (T, r) bf16 [ldgd], or null: no down LoRA
  int64_t ldgd = 0;
  float* da = nullptr;  // (r, I) fp32, += gd^T h
};

// Whether the kernel takes these shapes (r 16; I, the strides and addresses in whole 16-byte units).
bool swiglu_lora_bwd_supported(const SwigluLoraBwd& p);
// Workspace bytes for calls of up to T rows (g's fp32 accumulator).
int64_t swiglu_lora_bwd_workspace_bytes(int64_t T, int64_t r);
// Not deterministic to the last fp32 bit: the column blocks' shares of g and the row splits' shares of dB and
// dA are added by atomics.
void swiglu_lora_bwd(const SwigluLoraBwd& p, void* workspace, int64_t workspace_bytes,
                     void* stream = nullptr);

}  // namespace tune::cuda
