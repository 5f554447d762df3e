// CudaLoraModel: host-side orchestration of the CUDA training step (kernels in src/ops/cuda/). Shapes, with
// T tokens in the micro-batch, H hidden, nH/nKV heads of d, I the FFN width, r the LoRA rank. A layer is a mixer
// (x -> xmid) then a SwiGLU FFN (xmid -> x'); norms are (1 + w) for Qwen3.5 (zero-centred).
// Attention (Qwen2/Qwen3; Qwen3.5's gated attention adds the gate columns):
//   x (T, H) -> xn = norm(x) -> qkv = xn Wqkv^T (T, (nH + 2 nKV) d [+ nH d gate]) [+ LoRA q/k/v]
//   -> qk = rope(norm_h(q, k)) (T, (nH + nKV) d) -> att = attention(q, k, v) (T, nH d), lse (nH, T)
//   [-> y = att sigmoid(gate)] -> xmid = x + y Wo^T [+ LoRA o]
// Gated DeltaNet (Qwen3.5; nK key heads of dk, nV value heads of dv, conv_dim = 2 nK dk + nV dv):
//   xn -> proj = xn Wqkv^T (T, conv_dim) [+ LoRA], zba = xn [Wz; Wb; Wa]^T (T, nV dv + 2 nV) [+ LoRA]
//   -> convo = conv1d(proj) -> q, k, v = l2norm/repeat(silu(convo)) (T, nV, dk|dv); beta, g from zba's b, a
//   -> go = gated_delta_rule(q, k, v, g, beta) (T, nV dv) -> y = gated_rmsnorm(go, z) -> xmid = x + y Wout^T
// FFN: xn2 = norm(xmid) -> gu = xn2 Wgu^T (T, 2I) [+ LoRA gate/up] -> h = silu(g) u (T, I)
//   -> x' = xmid + h Wd^T [+ LoRA down]
// MoE FFN (E experts of width Im, top k): logits = xn2 Wr^T (T, E) -> route (T, k) -> slots sorted by expert,
//   xs = gathered rows (T k, H) -> per expert gus = xs We_gu^T (2Im), hs = silu(g) u, ys = hs We_d^T (T k, H)
//   -> x' = xmid + sum_j w_j ys_j [+ sigmoid(xn2 . w_sh) shared(xn2)]; LoRA on the shared expert as on a dense FFN,
//   and per expert on gate|up and down (grouped products over the sorted rows)
// LoRA on a target with input a: u = a A^T (T, r), y += s u B^T. The targets sharing an input (q, k, v; gate, up;
// z, b, a) have their A matrices side by side in the flat buffer, so one product makes all their u at once.
#include "model/forward_cuda.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>

#include "core/error.h"

#if TUNE_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#include "core/cuda_graph.h"
#include "core/rng.h"
#include "ops/adamw.h"
#include "ops/attention.h"
#include "ops/conv1d_causal.h"
#include "ops/embedding.h"
#include "ops/fill.h"
#include "ops/flash_attention.h"
#include "ops/gated_delta_rule.h"
#include "ops/gated_rmsnorm.h"
#include "ops/gdn_gates.h"
#include "ops/gdn_qkv.h"
#include "ops/gemm.h"
#include "ops/lm_head_loss.h"
#include "ops/lora_b_bwd.h"
#include "ops/lora_pack.h"
#include "ops/moe_dispatch.h"
#include "ops/moe_route.h"
#include "ops/moe_shared_gate.h"
#include "ops/qk_norm_rope.h"
#include "ops/rmsnorm.h"
#include "ops/sigmoid_gate.h"
#include "ops/swiglu.h"
#include "ops/swiglu_lora_bwd.h"
#endif

namespace tune {

void CudaBatch::append(std::span<const int32_t> ids_, std::span<const int32_t> pos_,
                       std::span<const int32_t> doc_start_, std::span<const int32_t> targets_) {
  const int32_t base = int32_t(ids.size());
  for (size_t t = 0; t < ids_.size(); ++t) {
    ids.push_back(ids_[t]);
    pos.push_back(pos_.empty() ? int32_t(t) : pos_[t]);
    doc_start.push_back(base + (doc_start_.empty() ? 0 : doc_start_[t]));
    targets.push_back(targets_[t]);
  }
}

bool cuda_training_supported(const ModelConfig& c, const LoraConfig& lora, std::string* why) {
  auto fail = [&](const std::string& m) {
    if (why) *why = m;
    return false;
  };
  if (c.has_moe()) {
#if TUNE_CUDA
    if (c.num_experts > cuda::kMoeMaxExperts || c.num_experts_per_tok > cuda::kMoeMaxTopK)
      return fail("MoE layers of " + std::to_string(c.num_experts) + " experts, top " +
                  std::to_string(c.num_experts_per_tok));
#endif
    if (c.moe_intermediate_size % 2 != 0 || c.shared_expert_intermediate_size % 2 != 0)
      return fail("odd expert widths");
  }
  if (c.has_mixer(MixerKind::GatedAttention) && c.attention_bias) return fail("gated attention with q/k/v biases");
  if (c.has_mixer(MixerKind::GatedDeltaNet)) {
    const int64_t nK = c.linear_num_key_heads, nV = c.linear_num_value_heads;
#if TUNE_CUDA
    if (!cuda::gated_delta_rule_supported(c.linear_key_head_dim, c.linear_value_head_dim))
      return fail("Gated DeltaNet head dims " + std::to_string(c.linear_key_head_dim) + "/" +
                  std::to_string(c.linear_value_head_dim));
#endif
    if (nK <= 0 || nV % nK != 0) return fail("value heads that are not a multiple of the key heads");
    if (c.linear_conv_kernel_dim > 8) return fail("DeltaNet convolutions over 8 taps");
  }
  if (lora.dropout > 0) return fail("LoRA dropout");
  if (c.head_dim > 256 || c.rotary_dim > c.head_dim) return fail("head dims over 256");
  if (c.intermediate_size % 2 != 0) return fail("odd FFN widths");
  return true;
}

// Layer l's share grows with the room of the layers from the last one down to l that send for a later layer (all
// but the first), rounded up to 64 KiB copies; then the slots and the needs bound it.
std::vector<int64_t> bring_back_schedule(std::span<const double> room, std::span<const int64_t> spent,
                                         std::span<const int64_t> need, int64_t total) {
  const size_t L = room.size();
  auto sends = [&](size_t l) { return l > 0 && spent[l] > 0; };
  double sum = 0;
  int64_t sending = 0;
  for (size_t l = 0; l < L; ++l)
    if (sends(l)) {
      sum += std::max(room[l], 0.0);
      ++sending;
    }
  const int64_t grain = int64_t(64) << 10;
  std::vector<int64_t> upto(L);
  double acc = 0;
  int64_t sent = 0;
  for (size_t l = L; l-- > 0;) {
    if (sends(l)) acc += sum > 0 ? std::max(room[l], 0.0) : 1.0;  // no room anywhere: even shares
    const double share = sending == 0 ? 1 : sum > 0 ? acc / sum : acc / double(sending);
    const int64_t want = std::min(total, (int64_t(share * double(total)) + grain - 1) / grain * grain);
    // The layer below starts as this one ends: what it needs goes now, as far as the slots allow.
    const int64_t ahead = std::max(want, l > 0 ? need[l - 1] : 0);
    sent = std::min(total, std::max({sent, std::min(ahead, spent[l]), need[l]}));
    upto[l] = sent;
  }
  return upto;
}

#if TUNE_CUDA

namespace {

// Device memory owned by the model; all of it is allocated at construction. A plan-only model (`dry`) counts
// the bytes without allocating.
struct DeviceBuffer {
  void* p = nullptr;
  int64_t bytes = 0;
  bool own = true;  // false: a view into another buffer
  DeviceBuffer() = default;
  DeviceBuffer(int64_t n, bool dry) : bytes(n) {
    if (n > 0 && !dry) CUDA_CHECK(cudaMalloc(&p, size_t(n)));
  }
  static DeviceBuffer view(void* at, int64_t n) {
    DeviceBuffer b;
    b.p = at;
    b.bytes = n;
    b.own = false;
    return b;
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p(o.p), bytes(o.bytes), own(o.own) { o.p = nullptr; o.bytes = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p, o.p);
    std::swap(bytes, o.bytes);
    std::swap(own, o.own);
    return *this;
  }
  ~DeviceBuffer() {
    if (p && own) cudaFree(p);
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
  char* at(int64_t off) const { return static_cast<char*>(p) + off; }
};

constexpr int64_t kAlignElems = 64;  // flat-buffer segments start 256-byte aligned (fp32)

int64_t round_up(int64_t n, int64_t a) {
  return (n + a - 1) / a * a;
}

// The layers drop_w may take: the leading run of attention layers with a dense FFN.
int64_t droppable_layers(const ModelConfig& c) {
  int64_t n = 0;
  while (n < c.num_layers && c.layers[size_t(n)].mixer != MixerKind::GatedDeltaNet &&
         c.layers[size_t(n)].ffn != FfnKind::Moe)
    ++n;
  return n;
}

// t (rows, cols) into device rows `ld` elements apart (0: cols).
void upload(void* dst, const Tensor& t, DType dt, int64_t ld = 0) {
  const Tensor h = t.to(dt, Device::CPU);
  const int64_t cols = h.shape().ndim == 0 ? 1 : h.shape()[-1], es = int64_t(dtype_bytes(dt, 1));
  if (ld == 0 || ld == cols) {
    CUDA_CHECK(cudaMemcpy(dst, h.data(), h.nbytes(), cudaMemcpyHostToDevice));
    return;
  }
  CUDA_CHECK(cudaMemcpy2D(dst, size_t(ld * es), h.data(), size_t(cols * es), size_t(cols * es),
                          size_t(h.numel() / cols), cudaMemcpyHostToDevice));
}

// One LoRA target inside the flat parameter buffer; A offsets of a group are consecutive.
struct LoraSlot {
  bool on = false;
  int64_t a = 0, b = 0;      // float offsets of A (r, in) and B (out, r), per expert for the expert targets
  int64_t in = 0, out = 0;
  int64_t count = 1;         // A/B pairs: the experts for the expert targets, else 1
  int64_t col = 0;           // first column of this target's output in the fused product
  // Gated attention's q_proj: B's rows [0, split) (the queries) go to columns from `col`, the rest (the gates) to
  // columns from `col2`. The adapter interleaves them per head; the device copy of B holds them regrouped.
  int64_t split = 0, col2 = 0, head_dim = 0;
};

// Targets that share an input: their A's form one (n r, in) matrix at `a`. A folded group (kx = n r > 0, see
// ops/lora_pack.h) keeps u = x A^T in kx columns beside each input row and s B in kx columns beside each row of
// the frozen weight, so its forward is one product over in + kx; other groups add s u B^T in a second pass. A
// group whose input gradient is folded (kdx = n r > 0) keeps its A's in kdx rows after the frozen weight's, and
// g = s dy B in kdx columns beside each row of dy, so dy W + g A is one product over N + kdx; other groups add
// g A in a second pass.
struct LoraGroup {
  std::vector<LoraTarget> targets;
  int64_t a = 0, in = 0, kx = 0, kdx = 0;
  int64_t n() const { return int64_t(targets.size()); }
  int64_t ld() const { return in + kx; }  // row stride of the input and of the weight
};

// Row `row` of a split slot's adapter B (per head [query (d) | gate (d)]) -> its row in the device copy.
int64_t split_row(const LoraSlot& sl, int64_t row) {
  const int64_t d = sl.head_dim, h = row / (2 * d), i = row % (2 * d);
  return i < d ? h * d + i : sl.split + h * d + (i - d);
}

struct Layer {
  MixerKind mix = MixerKind::Attention;
  int64_t ld_in = 0;  // width of the mixer's first product: attention's q|k|v[|gate], DeltaNet's conv_dim
  // Attention: w_in = Wqkv (rows q, k, v[, gate]), b_in its bias, wo. DeltaNet: w_in = in_proj_qkv,
  // w_in2 = [in_proj_z; in_proj_b; in_proj_a], wo = out_proj, conv (conv_dim, K), a_log, dt_bias (nV), gnorm (dv).
  DeviceBuffer w_in, b_in, w_in2, wo, wgu, wd, attn_norm, ffn_norm, q_norm, k_norm, conv, a_log, dt_bias, gnorm;
  // MoE: router (E, H), experts' gate|up (E, 2Im, H) and down (E, H, Im); shared expert gate|up (2Ish, H), down
  // (H, Ish) and its gate (H).
  FfnKind ffn = FfnKind::Dense;
  DeviceBuffer router, exp_gu, exp_d, sh_gu, sh_d, sh_gate;
  std::array<LoraSlot, kLoraTargets> lora{};
  LoraGroup in, in2, out, gu, down;  // in2: DeltaNet's z, b, a
};

// Mixer outputs kept in pinned host memory from the forward to the backward, which then skips recomputing them:
// attention layers' output and lse, DeltaNet layers' recurrence output. Layer i of a kind (its index among the
// layers of that kind) uses device slot i % 2; a side stream copies it out after the forward wrote it and brings
// it back before the backward needs it. Each part is T rows of `row` bytes, slots `slot` bytes apart.
struct Kept {
  struct Part {
    char* dev = nullptr;
    int64_t slot = 0, row = 0;
  };
  bool on = false;
  int64_t n = 0;            // layers of this kind
  int64_t layer_bytes = 0;  // host bytes per layer: all parts at the planned T
  std::vector<Part> parts;
  char* host = nullptr;
  std::vector<cudaEvent_t> ready;  // per layer: its last copy (out or in) is done
  char* at(size_t part, int64_t i) const { return parts[part].dev + (on ? i % 2 : 0) * parts[part].slot; }
};

}  // namespace

struct CudaLoraModel::Impl {
  ModelConfig c;
  LoraConfig lc;
  bool dry = false;  // plan only: sizes counted, nothing allocated
  int64_t max_T = 0, H = 0, nH = 0, nKV = 0, d = 0, I = 0, V = 0, Nqkv = 0, Nqk = 0, r = 0;
  // Gated DeltaNet dims: nK/nV heads of dk/dv, Vd = nV dv, Ncv = conv_dim, Nzba = Vd + 2 nV, K conv taps.
  int64_t nK = 0, nV = 0, dk = 0, dv = 0, Vd = 0, Ncv = 0, Nzba = 0, Kc = 0;
  bool has_gdn = false, has_gated = false;
  // MoE dims: E experts, top kx, widths Im (experts) and Ish (shared expert, 0 = none).
  int64_t E = 0, kx = 0, Im = 0, Ish = 0;
  bool has_moe = false;
  int64_t max_in = 0;          // widest mixer input product (ld_qkv adds room for the backward's LoRA columns)
  std::vector<int64_t> att_index;  // per layer: its index among the attention layers (-1 for DeltaNet)
  float s = 0;
  bool flash = false;
  int64_t head_chunk = 256;
  CudaMemoryReport mem;

  DeviceBuffer emb, out_norm, head;  // head empty when tied
  std::vector<Layer> layers;

  // LoRA: fp32 masters, their bf16 copies, fp32 gradients.
  int64_t nparams = 0;
  DeviceBuffer P, Pb, G;

  // Batch inputs.
  DeviceBuffer ids, pos, doc_start, rows, targets, loss, rope;  // rope: rope_table's (T, rotary_dim) angles
  // Checkpoints: the input of each layer and the final hidden state, (L + 1) x (T, H) bf16. On the device, or,
  // with offload, the first n_off in pinned host memory through two rotating device slots (a side stream copies
  // each new one out during the forward and brings the next one back during the backward) and the rest in device
  // slots of their own.
  DeviceBuffer ckpt;
  int64_t n_off = 0;
  void* host_ckpt = nullptr;
  cudaStream_t side = nullptr;
  std::vector<cudaEvent_t> ready;  // per checkpoint: its copy (out or in) is done / its slot may be reused
  // Kept mixer outputs (plan option keep_attention): attention layers' att and lse, DeltaNet layers' go; with
  // them, `att`, `lse` and `go` hold two slots each.
  Kept k_att, k_go;
  std::vector<int64_t> gdn_index;  // per layer: its index among the DeltaNet layers (-1 for attention)
  // Per-layer activations (recomputed in the backward) and gradients. The FFN is token-wise, so it runs in chunks
  // of `ffn_T` tokens (xn2, u_gu, u_d, gu, h, dh are chunk-sized): long sequences need no full-length FFN buffers.
  // ybuf: the out-projection's input when it is not att (gated attention, DeltaNet).
  DeviceBuffer xn, qkv, qk, att, lse, ybuf, xmid, xn2, u_in, u_in2, u_o, u_gu, u_d, g_lora, dres, dres_b, dxn,
      region;
  // Kept on the device from the forward to the backward (plan options keep_mid / keep_qkv): the first keep_mid
  // attention layers' mixer output xmid (T, H) and the first keep_qkv ones' q|k|v[|gate] product (T, ld_qkv); the
  // backward then skips their o and q|k|v products. qkv_p / mid_p: the current layer's (a kept slot or the shared
  // buffer).
  DeviceBuffer kept_mid, kept_qkv;
  int64_t keep_mid = 0, keep_qkv = 0;
  // Plan option bus_qkv: q|k|v products of attention layers keep_qkv + 1 + 2 j (j < k_qkv.n) through the host, in
  // two device slots (bus_qkv).
  Kept k_qkv;
  DeviceBuffer bus_qkv;
  // Plan option keep_u: attention layer a's o LoRA u (max_T, r) and layer l's down LoRA u (max_T, r), written by
  // the forward and read by the backward in place of u_o / u_d.
  DeviceBuffer kept_uo, kept_ud;
  // Plan option keep_gu: the last keep_gu dense FFN layers' gate|up product (max_T, ld_gu), written by the
  // forward in place of the region's chunk and read by the backward, which skips remaking it. gu_index: per layer,
  // its slot or -1; slot i (gu_slot bytes) at arena + i gu_slot, the last layer's first.
  std::vector<int64_t> gu_index;
  int64_t n_gu = 0, gu_slot = 0;
  // Plan option drop_w: dropped layer j's frozen matrices (w_block bytes: w_in, wo, wgu, wd) lie at arena +
  // (drop_w - 1 - j) w_block, under the gate|up slots the forward fills after layer j is done, and at host_w +
  // the same offset. The backward brings back the first reload_bytes (what the slots overwrite) on the side stream,
  // w_upto[l] bytes by the time layer l's backward starts (bring_back_schedule), and re-packs their LoRA columns
  // (pack_first[j], pack_count[j] of the pack segments) before layer j's. w_sent: bytes enqueued; w_ready[j]: layer
  // j's last byte is in; bwd_mark: recorded as each layer's backward starts.
  DeviceBuffer arena;
  int64_t drop_w = 0, w_block = 0, reload_bytes = 0, w_sent = 0;
  void* host_w = nullptr;
  std::vector<int64_t> pack_first, pack_count, w_upto;
  std::vector<cudaEvent_t> w_ready;
  cudaEvent_t bwd_mark = nullptr;
  // Each backward times what the next one's schedule shares out: per layer l, its work on the main stream past
  // its waits (t_layer[2 l], t_layer[2 l + 1]) and its copies of matrices on the side stream (t_copy, w_copied
  // bytes); timed_T: its tokens (0 before the first).
  std::vector<cudaEvent_t> t_layer, t_copy;
  std::vector<int64_t> w_copied;
  int64_t timed_T = 0;
  // The step recorded for replay (plan option graphs): the main stream's work between its waits and records of
  // events as CUDA graphs, and those waits and records and the side stream's work as the host issues them (a
  // graph's own copies between host and device measured 10-13% slower than the side stream's, and the bus is
  // what the backward waits for). For the last batch shape (T tokens, n trained, the gradient scale) `runs` steps
  // ran eagerly; once two have (the GEMM plans made, the bring-back schedule timed), the next is recorded and it
  // and every later one of the shape replay the program. recording: the host issues nothing, it appends.
  struct Action {
    enum Kind { kGraph, kRecord, kWait, kCopy } kind = kGraph;
    cudaGraphExec_t graph = nullptr;
    cudaEvent_t event = nullptr;
    cudaStream_t stream = nullptr;  // the stream recording, waiting or copying (null: main; copies: side)
    void* dst = nullptr;            // kCopy
    const void* src = nullptr;
    size_t bytes = 0;
    cudaMemcpyKind dir = cudaMemcpyDefault;
  };
  struct StepProgram {
    int64_t T = 0, n = 0;
    float scale = 0;
    int runs = 0;
    bool ready = false;
    std::vector<Action> actions;
  } program;
  bool graphs = false, recording = false;
  int64_t graph_steps = 0;
  bool keep_u = false;
  char *qkv_p = nullptr, *mid_p = nullptr;
  // Gated DeltaNet: zba (T, Nzba), convo (T, Ncv), gq, gk (T, nV, dk), gv (T, nV, dv), go (T, Vd) bf16; beta, gdec
  // and their gradients (T, nV) f32; the recurrence's workspace.
  DeviceBuffer zba, convo, gq, gk, gv, go, beta, gdec, dbeta, dgdec, gdr_ws;
  // MoE, FFN-chunk sized (C tokens, C k slots): router logits (C, E) f32, selection (C, k), the sort, the sorted
  // rows xs (C k, H) (their gradient in the backward), gus (C k, 2Im), hs and dhs (C k, Im), ys and dys (C k, H);
  // the shared expert's sh_gu (C, 2Ish), sh_h, dsh_h (C, Ish), sh_y, dsh_y (C, H) and gate logits (C) f32.
  DeviceBuffer m_logits, m_dlogits, m_dlogits_b, m_experts, m_weights, m_dweights, m_offsets, m_order, m_slot,
      m_sort_ws, xs, gus, hs, dhs, ys, dys, sh_gub, sh_h, dsh_h, sh_y, dsh_y, sh_logit;
  // Expert LoRA (C k, r): u = xs A_gu^T and hs A_d^T per expert, and their gradients' g = s dy B.
  DeviceBuffer e_ugu, e_ud, e_ggu, e_gd;
  std::vector<int32_t> m_offsets_host;  // m_offsets read back (sized with the plan: no allocation in a step)
  std::vector<int64_t> m_counts;        // rows per expert of the chunk being processed (host)
  int64_t ffn_T = 0;
  // `region` is shared by phases that never overlap: the FFN (gu, and h, whose space dh takes once down's backward
  // has read h), the mixer backward and the output head's workspace. Attention backward: datt at 0, dqk, dqkv,
  // then fa_ws (a view) past every mixer's buffers.
  // DeltaNet backward: dzba at 0, dY, dGO, dq, dk, dv, dconv; dproj (T, Ncv) reuses the space from dY once dY .. dv
  // are spent.
  int64_t off_h = 0, off_dqk = 0, off_dqkv = 0;
  int64_t off_gy = 0, off_ggo = 0, off_gq = 0, off_gk = 0, off_gv = 0, off_gconv = 0;
  DeviceBuffer fa_ws;
  // lora_b_bwd's partial sums: the most any group needs (mixer groups over T rows, FFN groups over a chunk).
  DeviceBuffer lb_ws;
  // lora_pack's segments (device) for the folded groups: n_pack of them, none over pack_elems elements.
  DeviceBuffer pack_segs;
  int64_t n_pack = 0, pack_elems = 0;
  // Row strides: q|k|v[|gate] products and their gradient (ld_in plus the in group's kdx columns, at most),
  // dres_b (H plus the out and down groups' kdx columns) and the FFN's gate|up product and its gradient (2I plus
  // the gu group's kdx columns).
  int64_t ld_qkv = 0, ld_dres = 0, ld_gu = 0;
  // Contiguous q/k/v copies for head dims the fused attention does not cover (the reference kernel's layout).
  DeviceBuffer cq, ck, cv, cdq, cdk, cdv;

  // Layer l's gate|up product (and its gradient) for the FFN chunk from row t0: its kept slot, or the region.
  void* gu(int64_t l, int64_t t0) const {
    const int64_t i = gu_index[size_t(l)];
    return i < 0 ? region.p : arena.at(i * gu_slot + t0 * ld_gu * 2);
  }
  void* h() const { return region.at(off_h); }
  void* dh() const { return region.at(off_h); }  // (T, I): h (T, ld_h) is spent when it is written
  void* datt() const { return region.p; }
  void* dqk() const { return region.at(off_dqk); }
  void* dqkv() const { return region.at(off_dqkv); }
  // The device copy of checkpoint l (for the first n_off, one of two rotating slots).
  void* x_at(int64_t l) const {
    return ckpt.at((l < n_off ? l % 2 : l - n_off + std::min<int64_t>(n_off, 2)) * max_T * H * 2);
  }
  char* host_at(int64_t l) const { return static_cast<char*>(host_ckpt) + l * max_T * H * 2; }
  // Attention layer a's output (T, nH d) and lse (nH, T); DeltaNet layer g's recurrence output (T, Vd).
  void* att_at(int64_t a) const { return k_att.at(0, a); }
  float* lse_at(int64_t a) const { return reinterpret_cast<float*>(k_att.at(1, a)); }
  void* go_at(int64_t g) const { return k_go.at(0, g); }
  const void* head_w() const { return c.tie_word_embeddings ? emb.p : head.p; }
  const uint16_t* Ab(int64_t off) const { return Pb.as<uint16_t>() + off; }
  float norm_eps() const { return float(c.rms_norm_eps); }
  bool zc() const { return c.norm_zero_centered; }

  ~Impl() {
    for (cudaEvent_t e : ready) cudaEventDestroy(e);
    for (const auto* v : {&w_ready, &t_layer, &t_copy})
      for (cudaEvent_t e : *v) cudaEventDestroy(e);
    if (bwd_mark) cudaEventDestroy(bwd_mark);
    for (const Action& a : program.actions)
      if (a.graph) cudaGraphExecDestroy(a.graph);
    if (host_w) cudaFreeHost(host_w);
    if (side) cudaStreamDestroy(side);
    if (host_ckpt) cudaFreeHost(host_ckpt);
    for (const Kept* k : {&k_att, &k_go, &k_qkv}) {
      for (cudaEvent_t e : k->ready) cudaEventDestroy(e);
      if (k->host) cudaFreeHost(k->host);
    }
  }

  DeviceBuffer dev(int64_t bytes) const { return DeviceBuffer(bytes, dry); }

  void init_shape(const ModelConfig& config, const LoraConfig& lora, const CudaPlanOptions& o) {
    std::string why;
    if (!cuda_training_supported(config, lora, &why))
      throw UnsupportedError("training on CUDA does not support " + why + " yet",
                             "use --device cpu for this model or these LoRA settings");
    c = config;
    lc = lora;
    max_T = o.max_tokens;
    H = c.hidden_size;
    nH = c.num_heads;
    nKV = c.num_kv_heads;
    d = c.head_dim;
    I = c.intermediate_size;
    V = c.vocab_size;
    Nqkv = (nH + 2 * nKV) * d;
    Nqk = (nH + nKV) * d;
    has_gdn = c.has_mixer(MixerKind::GatedDeltaNet);
    has_gated = c.has_mixer(MixerKind::GatedAttention);
    if (has_gdn) {
      nK = c.linear_num_key_heads;
      nV = c.linear_num_value_heads;
      dk = c.linear_key_head_dim;
      dv = c.linear_value_head_dim;
      Vd = nV * dv;
      Ncv = 2 * nK * dk + Vd;
      Nzba = Vd + 2 * nV;
      Kc = c.linear_conv_kernel_dim;
    }
    has_moe = c.has_moe();
    if (has_moe) {
      E = c.num_experts;
      kx = c.num_experts_per_tok;
      Im = c.moe_intermediate_size;
      Ish = c.shared_expert_intermediate_size;
    }
    att_index.assign(size_t(c.num_layers), -1);
    gdn_index.assign(size_t(c.num_layers), -1);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      if (c.layers[size_t(l)].mixer == MixerKind::GatedDeltaNet) gdn_index[size_t(l)] = k_go.n++;
      else att_index[size_t(l)] = k_att.n++;
    }
    max_in = std::max(has_gated ? Nqkv + nH * d : Nqkv, Ncv);
    r = lora.rank;
    s = float(lora.scale());
    flash = cuda::flash_attention_supported(d);
    ffn_T = std::min(max_T, o.ffn_chunk > 0 ? o.ffn_chunk : int64_t(16384));
    n_off = o.offload ? c.num_layers + 1 - std::clamp<int64_t>(o.keep_ckpt, 0, c.num_layers + 1) : 0;
    k_att.on = o.keep_attention && flash && k_att.n > 0;  // the reference attention keeps no lse: it recomputes
    k_go.on = o.keep_attention && k_go.n > 0;
    keep_mid = std::clamp<int64_t>(o.keep_mid, 0, k_att.n);
    keep_qkv = std::clamp<int64_t>(o.keep_qkv, 0, keep_mid);
    k_qkv.n = std::clamp<int64_t>(o.bus_qkv, 0, (k_att.n - keep_qkv) / 2);
    k_qkv.on = k_qkv.n > 0;
    keep_u = o.keep_u;
    // The MoE step reads its routing back to the host and the reference attention copies synchronously: neither
    // can be captured.
    graphs = o.graphs && !has_moe && (flash || k_att.n == 0);
    gu_index.assign(size_t(c.num_layers), -1);
    n_gu = 0;
    int64_t first_gu = c.num_layers;  // the first layer keeping gate|up
    for (int64_t l = c.num_layers - 1; l >= 0 && n_gu < o.keep_gu; --l)
      if (c.layers[size_t(l)].ffn != FfnKind::Moe) {
        gu_index[size_t(l)] = n_gu++;
        first_gu = l;
      }
    // Dropped layers: attention and dense FFN layers, all before the first that keeps gate|up.
    drop_w = std::clamp<int64_t>(o.drop_w, 0, std::min(first_gu, droppable_layers(c)));
    layers.resize(size_t(c.num_layers));
    for (int64_t l = 0; l < c.num_layers; ++l) {
      layers[size_t(l)].mix = c.layers[size_t(l)].mixer;
      layers[size_t(l)].ffn = c.layers[size_t(l)].ffn;
      const MixerKind mix = layers[size_t(l)].mix;
      layers[size_t(l)].ld_in = mix == MixerKind::GatedDeltaNet    ? Ncv
                                : mix == MixerKind::GatedAttention ? Nqkv + nH * d
                                                                   : Nqkv;
    }
  }

  // The frozen matrices of an attention layer with a dense FFN: bytes of w_in, wo, wgu and wd.
  std::array<int64_t, 4> dense_matrix_bytes(const Layer& ly) const {
    return {(ly.ld_in + ly.in.kdx) * ly.in.ld() * 2, (H + ly.out.kdx) * ly.out.ld() * 2,
            (2 * I + ly.gu.kdx) * ly.gu.ld() * 2, (H + ly.down.kdx) * ly.down.ld() * 2};
  }

  void alloc_weights() {
    const int64_t L = c.num_layers;
    emb = dev(V * H * 2);
    out_norm = dev(H * 4);
    if (!c.tie_word_embeddings) head = dev(V * H * 2);
    mem.weights += emb.bytes + out_norm.bytes + head.bytes;
    // The arena: the kept gate|up slots, over the dropped layers' matrices.
    gu_slot = round_up(max_T * ld_gu * 2, 256);
    w_block = 0;
    for (int64_t j = 0; j < drop_w; ++j) {
      int64_t b = 0;
      for (int64_t m : dense_matrix_bytes(layers[size_t(j)])) b += round_up(m, 256);
      w_block = std::max(w_block, b);
    }
    arena = dev(std::max(drop_w * w_block, n_gu * gu_slot));
    mem.activations += arena.bytes;
    mem.host_weights = drop_w * w_block;
    for (int64_t l = 0; l < L; ++l) {
      Layer& ly = layers[size_t(l)];
      // A dropped layer's matrices: views into the arena.
      char* at = l < drop_w && arena.p ? static_cast<char*>(arena.p) + (drop_w - 1 - l) * w_block : nullptr;
      auto mat = [&](int64_t bytes) {
        if (l >= drop_w) return dev(bytes);
        DeviceBuffer v = DeviceBuffer::view(at, bytes);
        if (at) at += round_up(bytes, 256);
        return v;
      };
      if (ly.mix == MixerKind::GatedDeltaNet) {
        ly.w_in = dev(Ncv * H * 2);
        ly.w_in2 = dev(Nzba * H * 2);
        ly.wo = dev(H * Vd * 2);
        ly.conv = dev(Ncv * Kc * 4);
        ly.a_log = dev(nV * 4);
        ly.dt_bias = dev(nV * 4);
        ly.gnorm = dev(dv * 4);
      } else {
        const std::array<int64_t, 4> mb = dense_matrix_bytes(ly);
        ly.w_in = mat(mb[0]);
        if (c.attention_bias) ly.b_in = dev(Nqkv * 2);
        ly.wo = mat(mb[1]);
        if (c.qk_norm) {
          ly.q_norm = dev(d * 4);
          ly.k_norm = dev(d * 4);
        }
      }
      if (ly.ffn == FfnKind::Moe) {
        ly.router = dev(E * H * 2);
        ly.exp_gu = dev(E * 2 * Im * H * 2);
        ly.exp_d = dev(E * H * Im * 2);
        if (Ish > 0) {
          ly.sh_gu = dev(2 * Ish * H * 2);
          ly.sh_d = dev(H * Ish * 2);
          ly.sh_gate = dev(H * 2);
        }
      } else {
        const std::array<int64_t, 4> mb = dense_matrix_bytes(ly);
        ly.wgu = mat(mb[2]);
        ly.wd = mat(mb[3]);
      }
      ly.attn_norm = dev(H * 4);
      ly.ffn_norm = dev(H * 4);
      for (const DeviceBuffer* b :
           {&ly.w_in, &ly.b_in, &ly.w_in2, &ly.wo, &ly.wgu, &ly.wd, &ly.attn_norm, &ly.ffn_norm, &ly.q_norm, &ly.k_norm,
            &ly.conv, &ly.a_log, &ly.dt_bias, &ly.gnorm, &ly.router, &ly.exp_gu, &ly.exp_d, &ly.sh_gu, &ly.sh_d,
            &ly.sh_gate})
        if (b->own) mem.weights += b->bytes;
    }
  }

  // Lays out the LoRA parameters, per layer and group: the group's A's side by side, then each target's B
  // (absent targets skipped), each segment aligned. Groups: attention [q k v] [o] or DeltaNet [qkv] [z b a]
  // [out]; then [gate up] [down].
  void plan_lora() {
    int64_t off = 0;
    auto take = [&](int64_t n) {
      const int64_t o = off;
      off += round_up(n, kAlignElems);
      return o;
    };
    for (int64_t l = 0; l < c.num_layers; ++l) {
      Layer& ly = layers[size_t(l)];
      // fold: the group may keep its LoRA inside the frozen product (its input buffer has room for u); fold_dx:
      // inside its input gradient's product (its output gradient's buffer has room for g).
      auto group = [&](LoraGroup& g, std::initializer_list<LoraTarget> ts, int64_t in, bool fold = false,
                       bool fold_dx = false) {
        g.in = in;
        int64_t col = 0;
        for (LoraTarget t : ts) {
          LoraSlot& sl = ly.lora[size_t(t)];
          sl.in = in;
          sl.out = LoraAdapter::target_shape(c, l, t).second;
          sl.col = col;
          if (t == LoraTarget::Q && ly.mix == MixerKind::GatedAttention) {
            sl.split = nH * d;
            sl.col2 = Nqkv;
            sl.head_dim = d;
          }
          col += sl.split ? sl.split : sl.out;
          if (lc.targets[size_t(t)] && sl.out > 0) {
            sl.on = true;
            g.targets.push_back(t);
          }
        }
        const bool aligned = g.n() > 0 && g.n() * r % 8 == 0;  // 16-byte rows for the products
        g.kx = fold && aligned ? g.n() * r : 0;
        g.kdx = fold_dx && aligned ? g.n() * r : 0;
        g.a = off;
        for (size_t i = 0; i < g.targets.size(); ++i) ly.lora[size_t(g.targets[i])].a = g.a + int64_t(i) * r * in;
        take(g.n() * r * in);
        for (LoraTarget t : g.targets) ly.lora[size_t(t)].b = take(ly.lora[size_t(t)].out * r);
      };
      if (ly.mix == MixerKind::GatedDeltaNet) {
        group(ly.in, {LoraTarget::LinQkv}, H);
        group(ly.in2, {LoraTarget::LinZ, LoraTarget::LinB, LoraTarget::LinA}, H);
        group(ly.out, {LoraTarget::LinOut}, Vd);
      } else {
        group(ly.in, {LoraTarget::Q, LoraTarget::K, LoraTarget::V}, H, true, true);
        group(ly.out, {LoraTarget::O}, nH * d, false, !has_moe);
      }
      if (ly.ffn == FfnKind::Moe) {  // the shared expert's, the FFN's dense part; then each expert's pair
        group(ly.gu, {LoraTarget::SharedGate, LoraTarget::SharedUp}, H);
        group(ly.down, {LoraTarget::SharedDown}, Ish);
        for (auto [t, in, out] : {std::tuple{LoraTarget::ExpertsGateUp, H, 2 * Im}, {LoraTarget::ExpertsDown, Im, H}}) {
          LoraSlot& sl = ly.lora[size_t(t)];
          if (!lc.targets[size_t(t)]) continue;
          sl.on = true;
          sl.in = in;
          sl.out = out;
          sl.count = E;
          sl.a = take(E * r * in);
          sl.b = take(E * out * r);
        }
      } else {
        group(ly.gu, {LoraTarget::Gate, LoraTarget::Up}, H, true, true);
        group(ly.down, {LoraTarget::Down}, I, true, !has_moe);
      }
    }
    // dres_b is the output gradient of both o and down; MoE layers read it at stride H, so a model with them
    // folds neither.
    ld_qkv = max_in;
    ld_dres = H;
    ld_gu = 2 * I;
    for (const Layer& ly : layers) {
      if (ly.mix != MixerKind::GatedDeltaNet) ld_qkv = std::max(ld_qkv, ly.ld_in + ly.in.kdx);
      ld_dres = std::max({ld_dres, H + ly.out.kdx, H + ly.down.kdx});
      ld_gu = std::max(ld_gu, 2 * I + ly.gu.kdx);
    }
    nparams = off;
    P = dev(nparams * 4);
    Pb = dev(nparams * 2);
    G = dev(nparams * 4);
    if (!dry) {
      CUDA_CHECK(cudaMemset(P.p, 0, size_t(P.bytes)));
      CUDA_CHECK(cudaMemset(G.p, 0, size_t(G.bytes)));
    }
    mem.lora = P.bytes + Pb.bytes + G.bytes;
  }

  void alloc_activations() {
    const int64_t T = max_T, L = c.num_layers, C = ffn_T;
    auto bf = [&](int64_t n) {
      DeviceBuffer b = dev(n * 2);
      mem.activations += b.bytes;
      return b;
    };
    auto f32 = [&](int64_t n) {
      DeviceBuffer b = dev(n * 4);
      mem.activations += b.bytes;
      return b;
    };
    const auto i32 = f32;  // same size
    ids = i32(T);
    pos = i32(T);
    doc_start = i32(T);
    rows = i32(T);
    targets = i32(T);
    loss = f32(T);
    rope = f32(T * c.rotary_dim);
    ckpt = dev((L + 1 - n_off + std::min<int64_t>(n_off, 2)) * T * H * 2);
    mem.checkpoints = ckpt.bytes;
    if (n_off > 0) {
      mem.host_checkpoints += n_off * T * H * 2;
      if (!dry) {
        CUDA_CHECK(cudaHostAlloc(&host_ckpt, size_t(n_off * T * H * 2), cudaHostAllocDefault));
        ready.resize(size_t(L + 1));
        for (cudaEvent_t& e : ready) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      }
    }
    // Row strides of the folded groups' inputs (with their LoRA columns): xn, xn2, h.
    int64_t ld_xn = H, ld_xn2 = H, ld_h = I;
    for (const Layer& ly : layers) {
      ld_xn = std::max(ld_xn, ly.in.ld());
      ld_xn2 = std::max(ld_xn2, ly.gu.ld());
      ld_h = std::max(ld_h, ly.down.ld());
    }
    xn = bf(T * ld_xn);
    qkv = bf(T * ld_qkv);
    qk = bf(T * Nqk);
    att = bf((k_att.on ? 2 : 1) * T * nH * d);
    lse = f32((k_att.on ? 2 : 1) * nH * T);
    k_att.parts = {{att.at(0), T * nH * d * 2, nH * d * 2}, {lse.at(0), nH * T * 4, nH * 4}};
    ybuf = bf(T * std::max(has_gated ? nH * d : 0, Vd));
    xmid = bf(T * H);
    kept_mid = bf(keep_mid * T * H);
    kept_qkv = bf(keep_qkv * T * ld_qkv);
    bus_qkv = bf(k_qkv.on ? 2 * T * ld_qkv : 0);
    k_qkv.parts = {{bus_qkv.at(0), T * ld_qkv * 2, ld_qkv * 2}};
    kept_uo = bf(keep_u ? k_att.n * T * r : 0);
    kept_ud = bf(keep_u ? L * T * r : 0);
    xn2 = bf(C * ld_xn2);
    u_in = bf(T * 3 * r);
    u_o = bf(T * r);
    u_gu = bf(C * 2 * r);
    u_d = bf(C * r);
    g_lora = bf(T * 3 * r);
    dres = f32(T * H);
    dres_b = bf(T * ld_dres);
    dxn = bf(T * H);
    if (has_gdn) {
      u_in2 = bf(T * 3 * r);
      zba = bf(T * Nzba);
      convo = bf(T * Ncv);
      gq = bf(T * nV * dk);
      gk = bf(T * nV * dk);
      gv = bf(T * Vd);
      go = bf((k_go.on ? 2 : 1) * T * Vd);
      k_go.parts = {{go.at(0), T * Vd * 2, Vd * 2}};
      beta = f32(T * nV);
      gdec = f32(T * nV);
      dbeta = f32(T * nV);
      dgdec = f32(T * nV);
      gdr_ws = dev(int64_t(cuda::gated_delta_rule_workspace_bytes(T, nV, dk, dv, true)));
      mem.workspace += gdr_ws.bytes;
    }
    for (Kept* k : {&k_att, &k_go, &k_qkv}) {
      if (!k->on) continue;
      k->layer_bytes = 0;
      for (const Kept::Part& pt : k->parts) k->layer_bytes += T * pt.row;
      mem.host_checkpoints += k->n * k->layer_bytes;
      if (dry) continue;
      CUDA_CHECK(
          cudaHostAlloc(reinterpret_cast<void**>(&k->host), size_t(k->n * k->layer_bytes), cudaHostAllocDefault));
      k->ready.resize(size_t(k->n));
      for (cudaEvent_t& e : k->ready) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    }
    if (drop_w > 0) {
      // Until a backward was timed, every layer that may send takes an even share.
      reload_bytes = std::min(drop_w * w_block, n_gu * gu_slot);
      plan_bring_back(std::vector<double>(size_t(L), 1.0));
      w_copied.assign(size_t(L), 0);
      if (!dry) {
        CUDA_CHECK(cudaHostAlloc(&host_w, size_t(drop_w * w_block), cudaHostAllocDefault));
        w_ready.resize(size_t(drop_w));
        for (cudaEvent_t& e : w_ready) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&bwd_mark, cudaEventDisableTiming));
        t_layer.resize(size_t(2 * L));
        t_copy.resize(size_t(2 * L));
        for (auto* v : {&t_layer, &t_copy})
          for (cudaEvent_t& e : *v) CUDA_CHECK(cudaEventCreate(&e));
      }
    }
    if ((n_off > 0 || k_att.on || k_go.on || k_qkv.on || drop_w > 0) && !dry)
      CUDA_CHECK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
    if (has_moe) {
      const int64_t S = C * kx;
      m_logits = f32(C * E);
      m_dlogits = f32(C * E);
      m_dlogits_b = bf(C * E);
      m_experts = i32(S);
      m_weights = f32(S);
      m_dweights = f32(S);
      m_offsets = i32(E + 1);
      m_offsets_host.resize(size_t(E + 1));
      m_counts.resize(size_t(E));
      m_order = i32(S);
      m_slot = i32(S);
      m_sort_ws = dev(int64_t(cuda::moe_sort_workspace_bytes(C, kx, E)));
      mem.workspace += m_sort_ws.bytes;
      xs = bf(S * H);
      gus = bf(S * 2 * Im);
      hs = bf(S * Im);
      dhs = bf(S * Im);
      ys = bf(S * H);
      dys = bf(S * H);
      if (lc.targets[size_t(LoraTarget::ExpertsGateUp)] || lc.targets[size_t(LoraTarget::ExpertsDown)]) {
        e_ugu = bf(S * r);
        e_ud = bf(S * r);
        e_ggu = bf(S * r);
        e_gd = bf(S * r);
      }
      if (Ish > 0) {
        sh_gub = bf(C * 2 * Ish);
        sh_h = bf(C * Ish);
        dsh_h = bf(C * Ish);
        sh_y = bf(C * H);
        dsh_y = bf(C * H);
        sh_logit = f32(C);
      }
    }
    auto al = [](int64_t b) { return round_up(b, 256); };
    off_h = al(C * ld_gu * 2);
    const int64_t ffn = off_h + al(C * ld_h * 2);
    off_dqk = al(T * nH * d * 2);
    off_dqkv = off_dqk + al(T * Nqk * 2);
    int64_t mixer = off_dqkv + al(T * ld_qkv * 2);
    if (has_gdn) {
      off_gy = al(T * Nzba * 2);
      off_ggo = off_gy + al(T * Vd * 2);
      off_gq = off_ggo + al(T * Vd * 2);
      off_gk = off_gq + al(T * nV * dk * 2);
      off_gv = off_gk + al(T * nV * dk * 2);
      off_gconv = off_gv + al(T * Vd * 2);
      mixer = std::max(mixer, off_gconv + al(T * Ncv * 2));
    }
    // Flash attention's backward workspace (its dQ accumulator) follows the mixer backward's buffers: the FFN's
    // chunk is spent by then.
    const int64_t off_fa = mixer, fa_bytes =
        flash ? int64_t(cuda::flash_attention_bwd_workspace_bytes(fa_shape(T, Nqkv))) : 0;
    mixer += al(fa_bytes);
    // The head's chunk: as many rows as fit in the larger of the two other phases, at least 64, at most 1024.
    const int64_t other = std::max(ffn, mixer);
    head_chunk = 1024;
    while (head_chunk > 64 && cuda::lm_head_loss_workspace_bytes(head_chunk, H, V) > other) head_chunk /= 2;
    region = dev(std::max(other, cuda::lm_head_loss_workspace_bytes(head_chunk, H, V)));
    mem.activations += region.bytes;
    if (flash) {
      fa_ws = DeviceBuffer::view(region.p ? region.at(off_fa) : nullptr, fa_bytes);
    } else {
      cq = bf(T * nH * d);
      ck = bf(T * nKV * d);
      cv = bf(T * nKV * d);
      cdq = bf(T * nH * d);
      cdk = bf(T * nKV * d);
      cdv = bf(T * nKV * d);
    }
    int64_t lb = 0;
    for (const Layer& ly : layers)
      for (const LoraGroup* g : {&ly.in, &ly.in2, &ly.out, &ly.gu, &ly.down}) {
        std::vector<int64_t> rows;
        for (const LoraTarget t : g->targets)
          for (const BPart& p : b_parts(ly.lora[size_t(t)])) rows.push_back(p.rows);
        if (rows.empty() || rows.size() > size_t(cuda::kLoraBMaxParts)) continue;
        if (g == &ly.gu && keep_u) {  // ffn_bwd's fused kernel takes the gate/up LoRA where it can
          const cuda::SwigluLoraBwd f = swiglu_lora(ly, C, region.p, lora_g(ly.down, dres_b.p, H, ld_dres));
          if (cuda::swiglu_lora_bwd_supported(f)) {
            lb = std::max(lb, cuda::swiglu_lora_bwd_workspace_bytes(C, r));
            continue;
          }
        }
        const int64_t n = g == &ly.gu || g == &ly.down ? C : T;
        lb = std::max(lb, cuda::lora_b_bwd_workspace_bytes(n, r, rows.data(), int(rows.size())));
      }
    lb_ws = dev(lb);
    mem.workspace += lb_ws.bytes + cuda::gemm_workspace_bytes();
  }

  // ld_v: the row stride of the qkv buffer, whose v columns the attention reads in place.
  cuda::FlashAttnShape fa_shape(int64_t T, int64_t ld_v) const {
    cuda::FlashAttnShape f;
    f.T = T;
    f.nH = nH;
    f.nKV = nKV;
    f.d = d;
    f.q_stride = Nqk;
    f.k_stride = Nqk;
    f.v_stride = ld_v;
    f.o_stride = nH * d;
    return f;
  }

  // ---- products ----

  // D (T, N) [ld] (+)= a (T, K) [lda] W^T, W (N, K) bf16.
  static void mm(int64_t T, int64_t N, int64_t K, const void* a, int64_t lda, const void* W, void* D, int64_t ldd,
                 float beta = 0.0f, const void* C = nullptr, const void* bias = nullptr) {
    cuda::gemm(T, N, K, 1.0f, {a, lda, false}, {W, K, true}, DType::BF16, beta, beta != 0.0f ? (C ? C : D) : nullptr,
               D, ldd, DType::BF16, bias);
  }
  // D (T, K) [ldd] (+)= dy (T, N) [ldy] W, W (N, K) [ldw] bf16: the input gradient of a linear.
  static void mm_t(int64_t T, int64_t N, int64_t K, const void* dy, int64_t ldy, const void* W, int64_t ldw, void* D,
                   int64_t ldd, float beta = 0.0f) {
    cuda::gemm(T, K, N, 1.0f, {dy, ldy, false}, {W, ldw, false}, DType::BF16, beta, beta != 0.0f ? D : nullptr, D,
               ldd, DType::BF16);
  }

  // A slot's B as (rows, first B row, first output column) parts: one, or two for a split slot.
  struct BPart {
    int64_t rows, row0, col;
  };
  static std::vector<BPart> b_parts(const LoraSlot& sl) {
    if (!sl.split) return {{sl.out, 0, sl.col}};
    return {{sl.split, 0, sl.col}, {sl.out - sl.split, sl.split, sl.col2}};
  }

  // The linear products of a LoRA group g with weight W (N, g.ld()). Forward: y (T, N) [ldy] (+)= a W^T + the
  // targets' s u_t B_t^T in y's columns col_t, a (T, g.ld()) the input; folded groups first put u = a A^T in a's
  // extra columns, the others leave u (T, n r) in `u`.
  void linear_fwd(const Layer& ly, const LoraGroup& g, const void* W, int64_t N, int64_t T, void* a, void* u,
                  void* y, int64_t ldy, float beta = 0.0f, const void* C = nullptr, const void* bias = nullptr) {
    if (g.kx > 0) {
      lora_u(g, T, a, nullptr);
      mm(T, N, g.ld(), a, g.ld(), W, y, ldy, beta, C, bias);
      return;
    }
    mm(T, N, g.in, a, g.in, W, y, ldy, beta, C, bias);
    lora_fwd(ly, g, T, a, u, y, ldy);
  }

  // Where linear_bwd leaves a group's g = s dy B (T, n r): dy's columns past N, or g_lora.
  struct LoraG {
    void* p;
    int64_t ld;
  };
  LoraG lora_g(const LoraGroup& g, void* dy, int64_t N, int64_t ldy) const {
    if (g.kdx > 0) return {static_cast<char*>(dy) + N * 2, ldy};
    return {g_lora.p, g.n() * r};
  }

  // Backward: da (T, in) (+)= dy W (dy (T, N) [ldy]) and the group's share through its LoRA, and the A/B
  // gradients, given the forward's a and u (a's LoRA columns for folded groups). The input gradient does not use
  // the folded columns: dy [W | s B] has as many output columns as [x | u], and cuBLAS tiled an input width plus
  // n r columns worse than it gained by making s dy B in the same pass (bench/RESULTS.md, commit bd1620d).
  // A group with kdx > 0 leaves g in dy's columns [N, N + kdx) (W's rows there hold its A's) and takes
  // dy W + g A as one product. u_kept (T, n r): the forward's u kept apart, read instead of a's columns. b_done:
  // dB and g are made already (swiglu_lora_bwd), only dA and the input gradient are left.
  // a null: the caller adds dA with lora_da once it has a (given u_kept); da null: no input gradient.
  void linear_bwd(const Layer& ly, const LoraGroup& g, const void* W, int64_t N, int64_t T, void* dy, int64_t ldy,
                  const void* a, const void* u, void* da, float beta = 0.0f, const void* u_kept = nullptr,
                  bool b_done = false) {
    const LoraG lg = lora_g(g, dy, N, ldy);
    const bool in_a = g.kx > 0 && !u_kept;
    TUNE_CHECK(a || !in_a) << "linear_bwd: a group's u in its input's columns needs that input";
    if (b_done) {
      if (a) lora_da(g, T, lg.p, lg.ld, a, g.ld());
    } else {
      lora_bwd(ly, g, T, dy, ldy, a, g.ld(), in_a ? static_cast<const char*>(a) + g.in * 2 : u_kept ? u_kept : u,
               in_a ? g.ld() : g.n() * r, lg.p, lg.ld);
    }
    if (!da) return;
    mm_t(T, N + g.kdx, g.in, dy, ldy, W, g.ld(), da, g.in, beta);
    if (g.kdx == 0) lora_dx(g, T, da, g.in);
  }

  // u = a A_grp^T alone (the backward's recompute where the product itself is kept): into a folded group's
  // columns of a, else into u (T, n r).
  void lora_u(const LoraGroup& g, int64_t T, void* a, void* u) {
    if (g.n() == 0) return;
    void* dst = g.kx > 0 ? static_cast<char*>(a) + g.in * 2 : u;
    cuda::gemm(T, g.n() * r, g.in, 1.0f, {a, g.ld(), false}, {Ab(g.a), g.in, true}, DType::BF16, 0.0f, nullptr, dst,
               g.kx > 0 ? g.ld() : g.n() * r, DType::BF16);
  }

  // Unfolded LoRA forward: u = a A_grp^T (T, n r); y[:, col_t] += s u_t B_t^T.
  void lora_fwd(const Layer& ly, const LoraGroup& g, int64_t T, void* a, void* u, void* y, int64_t ldy) {
    lora_u(g, T, a, u);
    lora_add(ly, g, T, u, y, ldy);
  }
  // y[:, col_t] += s u_t B_t^T with u (T, n r) at hand.
  void lora_add(const Layer& ly, const LoraGroup& g, int64_t T, const void* u, void* y, int64_t ldy) {
    if (g.n() == 0) return;
    const int64_t nr = g.n() * r;
    for (int64_t i = 0; i < g.n(); ++i) {
      const LoraSlot& sl = ly.lora[size_t(g.targets[size_t(i)])];
      for (const BPart& p : b_parts(sl)) {
        void* yc = static_cast<char*>(y) + p.col * 2;
        cuda::gemm(T, p.rows, r, s, {static_cast<const char*>(u) + i * r * 2, nr, false},
                   {Ab(sl.b + p.row0 * r), r, true}, DType::BF16, 1.0f, yc, yc, ldy, DType::BF16);
      }
    }
  }

  // A group's B blocks as lora_b_bwd parts (dy, u, B, dB, rows, target), at most kLoraBMaxParts; n = 0 when more.
  struct BParts {
    cuda::LoraBPart p[cuda::kLoraBMaxParts];
    int n = 0;
  };
  BParts b_parts_of(const Layer& ly, const LoraGroup& g, const void* dy, const void* u) const {
    BParts bp;
    for (int64_t i = 0; i < g.n(); ++i) {
      const LoraSlot& sl = ly.lora[size_t(g.targets[size_t(i)])];
      for (const BPart& p : b_parts(sl)) {
        if (bp.n == cuda::kLoraBMaxParts) return BParts{};
        bp.p[bp.n++] = {static_cast<const char*>(dy) + p.col * 2, static_cast<const char*>(u) + i * r * 2,
                        Ab(sl.b + p.row0 * r), G.as<float>() + sl.b + p.row0 * r, p.rows, int(i)};
      }
    }
    return bp;
  }

  // LoRA backward of a group, given dy (T, ldy) of the fused output, the input a [lda] and the forward's u
  // (T, n r) [ldu]: dB_t += s dy_t^T u_t, g_t = s dy_t B_t (into gb (T, n r) [ldg]), dA_grp += g^T a. The first two
  // in one pass over dy (lora_b_bwd) where it takes the shapes, else two products per B block; dA only with a.
  void lora_bwd(const Layer& ly, const LoraGroup& g, int64_t T, const void* dy, int64_t ldy, const void* a,
                int64_t lda, const void* u, int64_t ldu, void* gb, int64_t ldg) {
    if (g.n() == 0) return;
    float* Gp = G.as<float>();
    const BParts bp = b_parts_of(ly, g, dy, u);
    if (bp.n > 0 && cuda::lora_b_bwd_supported(bp.p, bp.n, r, ldy, ldu, gb, ldg)) {
      cuda::lora_b_bwd(bp.p, bp.n, T, r, ldy, ldu, s, gb, ldg, lb_ws.p, lb_ws.bytes);
    } else {
      for (int64_t i = 0; i < g.n(); ++i) {
        const LoraSlot& sl = ly.lora[size_t(g.targets[size_t(i)])];
        float beta = 0.0f;
        for (const BPart& p : b_parts(sl)) {
          const void* dyc = static_cast<const char*>(dy) + p.col * 2;
          float* dB = Gp + sl.b + p.row0 * r;
          cuda::gemm(p.rows, r, T, s, {dyc, ldy, true}, {static_cast<const char*>(u) + i * r * 2, ldu, false},
                     DType::BF16, 1.0f, dB, dB, r, DType::F32);
          void* gi = static_cast<char*>(gb) + i * r * 2;
          cuda::gemm(T, r, p.rows, s, {dyc, ldy, false}, {Ab(sl.b + p.row0 * r), r, false}, DType::BF16, beta,
                     beta != 0.0f ? gi : nullptr, gi, ldg, DType::BF16);
          beta = 1.0f;
        }
      }
    }
    if (a) lora_da(g, T, gb, ldg, a, lda);
  }

  // dA_grp += g^T a: g (T, n r) [ldg] from lora_bwd, a (T, in) [lda] the group's input.
  void lora_da(const LoraGroup& g, int64_t T, const void* gb, int64_t ldg, const void* a, int64_t lda) {
    if (g.n() == 0) return;
    float* Gp = G.as<float>();
    cuda::gemm(g.n() * r, g.in, T, 1.0f, {gb, ldg, true}, {a, lda, false}, DType::BF16, 1.0f, Gp + g.a, Gp + g.a,
               g.in, DType::F32);
  }

  // da (T, in) [ldda] += g A_grp with the g of the group's lora_bwd; runs after the base product that overwrites da.
  void lora_dx(const LoraGroup& g, int64_t T, void* da, int64_t ldda) {
    if (g.n() == 0) return;
    const int64_t nr = g.n() * r;
    cuda::gemm(T, g.in, nr, 1.0f, {g_lora.p, nr, false}, {Ab(g.a), g.in, false}, DType::BF16, 1.0f, da, da, ldda,
               DType::BF16);
  }

  cuda::QkNormRope qk_params(const Layer& ly, int64_t T) const {
    cuda::QkNormRope p;
    p.T = T;
    p.nQ = nH;
    p.nK = nKV;
    p.d = d;
    p.rotary_dim = c.rotary_dim;
    p.wq = c.qk_norm ? ly.q_norm.as<float>() : nullptr;
    p.wk = c.qk_norm ? ly.k_norm.as<float>() : nullptr;
    p.eps = norm_eps();
    p.zero_centered = zc();
    p.rope = rope.as<float>();
    return p;
  }

  float attn_scale() const { return float(1.0 / std::sqrt(double(d))); }

  // Attention forward (attention layer a's att, lse) from qk and qkv's v (row stride ld).
  void attention_fwd(int64_t a, int64_t T, int64_t ld) {
    void* att_p = att_at(a);
    float* lse_p = lse_at(a);
    const char* v = qkv_p + Nqk * 2;
    if (flash) {
      cuda::flash_attention_fwd(qk.p, qk.at(nH * d * 2), v, doc_start.as<int32_t>(), attn_scale(), att_p, lse_p,
                                fa_shape(T, ld), nullptr);
      return;
    }
    CUDA_CHECK(cudaMemcpy2D(cq.p, nH * d * 2, qk.p, Nqk * 2, nH * d * 2, T, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D(ck.p, nKV * d * 2, qk.at(nH * d * 2), Nqk * 2, nKV * d * 2, T, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D(cv.p, nKV * d * 2, v, ld * 2, nKV * d * 2, T, cudaMemcpyDeviceToDevice));
    cuda::attention_fwd(cq.p, ck.p, cv.p, doc_start.as<int32_t>(), attn_scale(), att_p, T, nH, nKV, d, DType::BF16);
  }

  // Attention backward of attention layer a: datt -> dqk (q, k parts) and dqkv's v part (row stride ld).
  void attention_bwd(int64_t a, int64_t T, int64_t ld) {
    const char* v = qkv_p + Nqk * 2;
    char* dv_p = static_cast<char*>(dqkv()) + Nqk * 2;
    if (flash) {
      // dq stays in the workspace's fp32 accumulators, which qk_norm_rope_bwd reads (attn_bwd).
      cuda::flash_attention_bwd(qk.p, qk.at(nH * d * 2), v, att_at(a), datt(), lse_at(a), doc_start.as<int32_t>(),
                                attn_scale(), nullptr, static_cast<char*>(dqk()) + nH * d * 2, dv_p, fa_ws.p,
                                fa_shape(T, ld), nullptr);
      return;
    }
    cuda::attention_bwd(cq.p, ck.p, cv.p, doc_start.as<int32_t>(), attn_scale(), datt(), cdq.p, cdk.p, cdv.p, T, nH,
                        nKV, d, DType::BF16);
    CUDA_CHECK(cudaMemcpy2D(dqk(), Nqk * 2, cdq.p, nH * d * 2, nH * d * 2, T, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D(static_cast<char*>(dqk()) + nH * d * 2, Nqk * 2, cdk.p, nKV * d * 2, nKV * d * 2, T,
                            cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D(dv_p, ld * 2, cdv.p, nKV * d * 2, nKV * d * 2, T, cudaMemcpyDeviceToDevice));
  }

  // Points qkv_p / mid_p at layer l's kept slots or the shared buffers.
  void use_layer(int64_t l) {
    const int64_t a = att_index[size_t(l)], j = bus_index(a);
    qkv_p = kept_qkv_layer(a) ? kept_qkv.at(a * max_T * ld_qkv * 2)
            : j >= 0          ? k_qkv.at(0, j)
                              : static_cast<char*>(qkv.p);
    mid_p = kept_mid_layer(a) ? kept_mid.at(a * max_T * H * 2) : static_cast<char*>(xmid.p);
  }
  // Whether attention layer a (-1: not an attention layer) keeps its q|k|v product / xmid on the device.
  bool kept_qkv_layer(int64_t a) const { return a >= 0 && a < keep_qkv; }
  // Attention layer a's index among the layers whose q|k|v goes through the host, or -1.
  int64_t bus_index(int64_t a) const {
    const int64_t i = a - keep_qkv - 1;
    return k_qkv.on && a >= 0 && i >= 0 && i % 2 == 0 && i / 2 < k_qkv.n ? i / 2 : -1;
  }
  bool kept_mid_layer(int64_t a) const { return a >= 0 && a < keep_mid; }
  // Attention layer a's o LoRA u; layer l's down LoRA u from row t0 (the kept slots, or the shared buffers).
  void* uo_at(int64_t a) const { return keep_u ? kept_uo.at(a * max_T * r * 2) : u_o.p; }
  void* ud_at(int64_t l, int64_t t0) const { return keep_u ? kept_ud.at((l * max_T + t0) * r * 2) : u_d.p; }

  // The mixer of layer l from x_in: xn, its activations and xmid = x_in + mixer(xn).
  void mixer_fwd(int64_t l, int64_t T, const void* x_in, bool recompute) {
    const Layer& ly = layers[size_t(l)];
    cuda::rmsnorm_fwd(x_in, ly.attn_norm.p, norm_eps(), zc(), xn.p, T, H, DType::BF16, DType::F32, ly.in.ld());
    if (ly.mix == MixerKind::GatedDeltaNet) {
      gdn_fwd(ly, gdn_index[size_t(l)], T, x_in, recompute);
    } else {
      attn_fwd(ly, att_index[size_t(l)], T, x_in, recompute);
    }
  }

  // Attention half of attention layer a: qkv, qk, att, lse [, ybuf] and xmid. In the backward's recompute with
  // kept outputs, att and lse are already back from the host and the attention itself is skipped.
  void attn_fwd(const Layer& ly, int64_t a, int64_t T, const void* x_in, bool recompute) {
    // qkv's rows are ld_qkv apart like dqkv's (which has room for the backward's g): the attention reads v and
    // writes dv at one stride.
    const int64_t ld = ld_qkv, j = bus_index(a);
    if (recompute && (kept_qkv_layer(a) || j >= 0)) {
      lora_u(ly.in, T, xn.p, u_in.p);  // the product is kept: only u
    } else {
      linear_fwd(ly, ly.in, ly.w_in.p, ly.ld_in, T, xn.p, u_in.p, qkv_p, ld, 0.0f, nullptr, ly.b_in.p);
      if (j >= 0) kept_save(k_qkv, j, T);
    }
    cuda::qk_norm_rope_fwd(qk_params(ly, T), qkv_p, ld, qk.p, Nqk);
    if (!(recompute && k_att.on)) {
      attention_fwd(a, T, ld);
      if (!recompute) kept_save(k_att, a, T);
    }
    void* y = att_at(a);
    if (ly.mix == MixerKind::GatedAttention) {
      cuda::sigmoid_gate_fwd(att_at(a), nH * d, qkv_p + Nqkv * 2, ld, ybuf.p, nH * d, T, nH * d);
      y = ybuf.p;
    }
    void* uo = uo_at(a);  // o's group is never folded: u is in its own buffer
    if (recompute && keep_u) {
      if (!kept_mid_layer(a)) {
        mm(T, H, ly.out.in, y, ly.out.in, ly.wo.p, mid_p, H, 1.0f, x_in);
        lora_add(ly, ly.out, T, uo, mid_p, H);
      }
    } else if (recompute && kept_mid_layer(a)) {
      lora_u(ly.out, T, y, uo);
    } else {
      linear_fwd(ly, ly.out, ly.wo.p, H, T, y, uo, mid_p, H, 1.0f, x_in);
    }
  }

  // Gated DeltaNet half of DeltaNet layer g: proj (in qkv), zba, convo, gq/gk/gv, beta, gdec, go, ybuf and xmid.
  // In the backward's recompute with kept outputs, go is back from the host and the recurrence is skipped (its
  // backward recomputes the chunk states itself).
  void gdn_fwd(const Layer& ly, int64_t g, int64_t T, const void* x_in, bool recompute) {
    linear_fwd(ly, ly.in, ly.w_in.p, Ncv, T, xn.p, u_in.p, qkv_p, Ncv);
    linear_fwd(ly, ly.in2, ly.w_in2.p, Nzba, T, xn.p, u_in2.p, zba.p, Nzba);
    cuda::conv1d_causal_fwd(qkv_p, ly.conv.p, doc_start.as<int32_t>(), convo.p, T, Ncv, Kc, DType::BF16, DType::F32);
    cuda::gdn_qkv_fwd(convo.p, Ncv, gq.p, gk.p, gv.p, T, nK, nV, dk, dv);
    cuda::gdn_gates_fwd(zba.at(Vd * 2), Nzba, ly.a_log.as<float>(), ly.dt_bias.as<float>(), beta.as<float>(),
                        gdec.as<float>(), T, nV);
    if (!(recompute && k_go.on)) {
      cuda::gated_delta_rule_fwd(gq.p, gk.p, gv.p, gdec.as<float>(), beta.as<float>(), doc_start.as<int32_t>(),
                                 go_at(g), gdr_ws.p, T, nV, dk, dv, nullptr);
      if (!recompute) kept_save(k_go, g, T);
    }
    cuda::gated_rmsnorm_fwd(go_at(g), zba.p, Nzba, ly.gnorm.as<float>(), norm_eps(), ybuf.p, T, nV, dv);
    linear_fwd(ly, ly.out, ly.wo.p, H, T, ybuf.p, u_o.p, mid_p, H, 1.0f, x_in);
  }

  // FFN of the n tokens from t0, forward: xn2, gu, h of the chunk (and the LoRA u's); x_out rows += when given.
  void ffn_fwd(int64_t l, int64_t t0, int64_t n, void* x_out) {
    const Layer& ly = layers[size_t(l)];
    const char* xm = mid_p + t0 * H * 2;
    cuda::rmsnorm_fwd(xm, ly.ffn_norm.p, norm_eps(), zc(), xn2.p, n, H, DType::BF16, DType::F32, ly.gu.ld());
    if (ly.ffn == FfnKind::Moe) {
      moe_fwd(ly, n, xm, x_out ? static_cast<char*>(x_out) + t0 * H * 2 : nullptr);
      return;
    }
    void* gu_p = gu(l, t0);
    if (!x_out && gu_index[size_t(l)] >= 0) {
      lora_u(ly.gu, n, xn2.p, u_gu.p);  // the product is kept: only u
    } else {
      linear_fwd(ly, ly.gu, ly.wgu.p, 2 * I, n, xn2.p, u_gu.p, gu_p, ld_gu);
    }
    // The backward's recompute with the down LoRA's u kept needs no h here: ffn_bwd's SwiGLU backward remakes it.
    if (x_out || !keep_u) cuda::swiglu_fused_fwd(gu_p, h(), n, I, ly.down.ld(), ld_gu);
    if (x_out) {
      char* xo = static_cast<char*>(x_out) + t0 * H * 2;
      void* ud = ud_at(l, t0);
      linear_fwd(ly, ly.down, ly.wd.p, H, n, h(), ud, xo, H, 1.0f, xm);
      if (keep_u && ly.down.kx > 0)  // a folded group's u is in h's columns
        CUDA_CHECK(cudaMemcpy2DAsync(ud, size_t(r * 2), static_cast<char*>(h()) + I * 2, size_t(ly.down.ld() * 2),
                                     size_t(r * 2), size_t(n), cudaMemcpyDeviceToDevice, nullptr));
    } else if (!keep_u) {  // the backward needs u only
      lora_u(ly.down, n, h(), u_d.p);
    }
  }

  // The fused SwiGLU + gate/up LoRA backward of n rows of ly's FFN (gu_p its gate|up product, dh() its
  // output gradient; gd the down LoRA's g): p.r = 0 where the LoRA is not on exactly gate and up, unsplit.
  cuda::SwigluLoraBwd swiglu_lora(const Layer& ly, int64_t n, void* gu_p, const LoraG& gd) {
    cuda::SwigluLoraBwd p;
    const LoraGroup& g = ly.gu;
    if (g.n() != 2 || g.targets[0] != LoraTarget::Gate || g.targets[1] != LoraTarget::Up) return p;
    const LoraSlot &sg = ly.lora[size_t(LoraTarget::Gate)], &su = ly.lora[size_t(LoraTarget::Up)];
    if (sg.split || su.split || sg.col != 0 || su.col != I) return p;
    float* Gp = G.as<float>();
    const LoraG lg = lora_g(g, gu_p, 2 * I, ld_gu);
    p.T = n, p.I = I, p.r = r;
    p.gu = gu_p, p.ldgu = ld_gu;
    p.dh = dh(), p.lddh = I;
    p.u = g.kx > 0 ? static_cast<const void*>(xn2.at(g.in * 2)) : u_gu.p;  // as linear_bwd finds it
    p.ldu = g.kx > 0 ? g.ld() : 2 * r;
    p.b_gate = Ab(sg.b), p.b_up = Ab(su.b);
    p.db_gate = Gp + sg.b, p.db_up = Gp + su.b;
    p.g = lg.p, p.ldg = lg.ld;
    p.s = s;
    if (ly.down.n() > 0) p.gd = gd.p, p.ldgd = gd.ld, p.da = Gp + ly.down.a;
    return p;
  }

  // FFN backward of the chunk [t0, t0 + n) after ffn_fwd(l, t0, n, nullptr): dres/dres_b rows hold dL/dx_out on
  // entry, dL/dxmid on exit.
  void ffn_bwd(int64_t l, int64_t t0, int64_t n) {
    const Layer& ly = layers[size_t(l)];
    char* dy = dres_b.at(t0 * ld_dres * 2);
    char* dx = dxn.at(t0 * H * 2);
    if (ly.ffn == FfnKind::Moe) {
      moe_bwd(ly, n, dy, dx);  // ld_dres is H with MoE layers
      cuda::rmsnorm_bwd_residual(mid_p + t0 * H * 2, ly.ffn_norm.as<float>(), dx, norm_eps(), zc(),
                                 dres.as<float>() + t0 * H, dy, n, H);
      return;
    }
    void* gu_p = gu(l, t0);
    bool b_done = false;  // the gate/up LoRA's dB and g made with the SwiGLU backward
    if (keep_u) {
      // h (T, I) comes from the SwiGLU backward and serves the down LoRA's dA only: inside the fused kernel, or
      // written over dh once read.
      linear_bwd(ly, ly.down, ly.wd.p, H, n, dy, ld_dres, nullptr, u_d.p, dh(), 0.0f, ud_at(l, t0));
      const LoraG lg = lora_g(ly.down, dy, H, ld_dres);
      cuda::SwigluLoraBwd f = swiglu_lora(ly, n, gu_p, lg);
      if (cuda::swiglu_lora_bwd_supported(f)) {
        cuda::swiglu_lora_bwd(f, lb_ws.p, lb_ws.bytes);
        b_done = true;
      } else {
        const bool need_h = ly.down.n() > 0;
        cuda::swiglu_fused_bwd(gu_p, dh(), gu_p, n, I, ld_gu, need_h ? dh() : nullptr);  // dgu over gu
        lora_da(ly.down, n, lg.p, lg.ld, dh(), I);
      }
    } else {
      linear_bwd(ly, ly.down, ly.wd.p, H, n, dy, ld_dres, h(), u_d.p, dh());
      cuda::swiglu_fused_bwd(gu_p, dh(), gu_p, n, I, ld_gu);  // dgu overwrites gu in place
    }
    linear_bwd(ly, ly.gu, ly.wgu.p, 2 * I, n, gu_p, ld_gu, xn2.p, u_gu.p, dx, 0.0f, nullptr, b_done);
    cuda::rmsnorm_bwd_residual(mid_p + t0 * H * 2, ly.ffn_norm.as<float>(), dx, norm_eps(), zc(),
                               dres.as<float>() + t0 * H, dy, n, H, ld_dres);
  }

  // Expert LoRA over the sorted rows (m_counts per expert), for expert pair slot sl (A (E, r, in), B (E, out, r)):
  // forward u = a A_e^T (rows, r), y += s u B_e^T; backward dB_e += s dy_e^T u_e, g = s dy B_e, dA_e += g_e^T a_e,
  // and da += g A_e (after the base product wrote da).
  void expert_lora_fwd(const LoraSlot& sl, const void* a, void* u, void* y) {
    if (!sl.on) return;
    cuda::gemm_grouped(E, m_counts.data(), r, sl.in, a, sl.in, Ab(sl.a), r * sl.in, true, 1.0f, 0.0f, u, r);
    cuda::gemm_grouped(E, m_counts.data(), sl.out, r, u, r, Ab(sl.b), sl.out * r, true, s, 1.0f, y, sl.out);
  }
  void expert_lora_bwd(const LoraSlot& sl, const void* dy, const void* a, const void* u, void* g) {
    if (!sl.on) return;
    float* Gp = G.as<float>();
    cuda::gemm_grouped_wgrad(E, m_counts.data(), sl.out, r, dy, sl.out, u, r, s, Gp + sl.b, sl.out * r);
    cuda::gemm_grouped(E, m_counts.data(), r, sl.out, dy, sl.out, Ab(sl.b), sl.out * r, false, s, 0.0f, g, r);
    cuda::gemm_grouped_wgrad(E, m_counts.data(), r, sl.in, g, r, a, sl.in, 1.0f, Gp + sl.a, r * sl.in);
  }
  void expert_lora_dx(const LoraSlot& sl, const void* g, void* da) {
    if (!sl.on) return;
    cuda::gemm_grouped(E, m_counts.data(), sl.in, r, g, r, Ab(sl.a), r * sl.in, false, 1.0f, 1.0f, da, sl.in);
  }

  // MoE FFN of n tokens from xn2 (the chunk's normed input): routing, the sort (its per-expert counts read back to
  // the host for the grouped products), experts, shared expert; x_out rows = xm + the FFN when given.
  void moe_fwd(const Layer& ly, int64_t n, const void* xm, void* x_out) {
    const int64_t S = n * kx;
    cuda::gemm(n, E, H, 1.0f, {xn2.p, H, false}, {ly.router.p, H, true}, DType::BF16, 0.0f, nullptr, m_logits.p, E,
               DType::F32);
    cuda::moe_route_fwd(m_logits.p, c.norm_topk_prob, m_experts.as<int32_t>(), m_weights.p, n, E, kx, DType::F32);
    cuda::moe_sort(m_experts.as<int32_t>(), n, kx, E, m_offsets.as<int32_t>(), m_order.as<int32_t>(),
                   m_slot.as<int32_t>(), m_sort_ws.p);
    CUDA_CHECK(cudaMemcpy(m_offsets_host.data(), m_offsets.p, size_t(E + 1) * 4, cudaMemcpyDeviceToHost));
    for (int64_t e = 0; e < E; ++e) m_counts[size_t(e)] = m_offsets_host[size_t(e + 1)] - m_offsets_host[size_t(e)];
    cuda::moe_gather(xn2.p, n, H, kx, m_order.as<int32_t>(), S, xs.p);
    cuda::gemm_grouped(E, m_counts.data(), 2 * Im, H, xs.p, H, ly.exp_gu.p, 2 * Im * H, true, 1.0f, 0.0f, gus.p,
                       2 * Im);
    expert_lora_fwd(ly.lora[size_t(LoraTarget::ExpertsGateUp)], xs.p, e_ugu.p, gus.p);
    cuda::swiglu_fused_fwd(gus.p, hs.p, S, Im);
    cuda::gemm_grouped(E, m_counts.data(), H, Im, hs.p, Im, ly.exp_d.p, H * Im, true, 1.0f, 0.0f, ys.p, H);
    expert_lora_fwd(ly.lora[size_t(LoraTarget::ExpertsDown)], hs.p, e_ud.p, ys.p);
    if (Ish > 0) {
      linear_fwd(ly, ly.gu, ly.sh_gu.p, 2 * Ish, n, xn2.p, u_gu.p, sh_gub.p, 2 * Ish);
      cuda::swiglu_fused_fwd(sh_gub.p, sh_h.p, n, Ish);
      linear_fwd(ly, ly.down, ly.sh_d.p, H, n, sh_h.p, u_d.p, sh_y.p, H);
    }
    if (x_out) {
      CUDA_CHECK(cudaMemcpyAsync(x_out, xm, size_t(n * H * 2), cudaMemcpyDeviceToDevice));
      cuda::moe_combine_fwd(ys.p, m_slot.as<int32_t>(), m_weights.as<float>(), n, kx, H, x_out, true);
    }
    // Without x_out (the backward's recompute) only the gate's logits.
    if (Ish > 0) cuda::moe_shared_gate_fwd(xn2.p, ly.sh_gate.p, sh_y.p, n, H, sh_logit.as<float>(), x_out);
  }

  // MoE FFN backward after moe_fwd(..., nullptr): dy (n, H) -> dx (n, H), the gradient w.r.t. xn2.
  void moe_bwd(const Layer& ly, int64_t n, const void* dy, void* dx) {
    const int64_t S = n * kx;
    cuda::moe_combine_bwd(dy, ys.p, m_slot.as<int32_t>(), m_weights.as<float>(), n, kx, H, dys.p,
                          m_dweights.as<float>());
    const LoraSlot &lgu = ly.lora[size_t(LoraTarget::ExpertsGateUp)], &ld = ly.lora[size_t(LoraTarget::ExpertsDown)];
    expert_lora_bwd(ld, dys.p, hs.p, e_ud.p, e_gd.p);
    cuda::gemm_grouped(E, m_counts.data(), Im, H, dys.p, H, ly.exp_d.p, H * Im, false, 1.0f, 0.0f, dhs.p, Im);
    expert_lora_dx(ld, e_gd.p, dhs.p);
    cuda::swiglu_fused_bwd(gus.p, dhs.p, gus.p, S, Im);  // dgus in place
    expert_lora_bwd(lgu, gus.p, xs.p, e_ugu.p, e_ggu.p);  // before xs becomes dxs
    cuda::gemm_grouped(E, m_counts.data(), H, 2 * Im, gus.p, 2 * Im, ly.exp_gu.p, 2 * Im * H, false, 1.0f, 0.0f,
                       xs.p, H);
    expert_lora_dx(lgu, e_ggu.p, xs.p);
    cuda::moe_scatter_add(xs.p, m_slot.as<int32_t>(), n, kx, H, dx, false);
    cuda::moe_route_bwd(m_logits.p, c.norm_topk_prob, m_experts.as<int32_t>(), m_dweights.p, m_dlogits.p, n, E, kx,
                        DType::F32);
    cuda::cast_f32_to_bf16(m_dlogits.as<float>(), m_dlogits_b.p, n * E);
    mm_t(n, E, H, m_dlogits_b.p, E, ly.router.p, H, dx, H, 1.0f);
    if (Ish > 0) {
      cuda::moe_shared_gate_bwd(ly.sh_gate.p, sh_y.p, sh_logit.as<float>(), dy, n, H, dsh_y.p, dx);
      linear_bwd(ly, ly.down, ly.sh_d.p, H, n, dsh_y.p, H, sh_h.p, u_d.p, dsh_h.p);
      cuda::swiglu_fused_bwd(sh_gub.p, dsh_h.p, sh_gub.p, n, Ish);
      linear_bwd(ly, ly.gu, ly.sh_gu.p, 2 * Ish, n, sh_gub.p, 2 * Ish, xn2.p, u_gu.p, dx, 1.0f);
    }
  }

  // Mixer backward of layer l (after mixer_fwd): dres/dres_b hold dL/dxmid on entry, dL/dx_in on exit, except
  // for the first layer, whose input gradient would only reach the frozen embedding.
  void mixer_bwd(int64_t l, int64_t T, const void* x_in) {
    const Layer& ly = layers[size_t(l)];
    void* dx = l > 0 ? dxn.p : nullptr;
    if (ly.mix == MixerKind::GatedDeltaNet) {
      gdn_bwd(ly, gdn_index[size_t(l)], T, dx);
    } else {
      attn_bwd(ly, att_index[size_t(l)], T, dx);
    }
    if (!dx) return;
    cuda::rmsnorm_bwd_residual(x_in, ly.attn_norm.as<float>(), dxn.p, norm_eps(), zc(), dres.as<float>(), dres_b.p,
                               T, H, ld_dres);
  }

  // Attention backward: dres_b -> dx (the gradient w.r.t. the normed input; null: none).
  void attn_bwd(const Layer& ly, int64_t a, int64_t T, void* dx) {
    const int64_t ld = ld_qkv;
    const bool gated = ly.mix == MixerKind::GatedAttention;
    const void* y = gated ? ybuf.p : att_at(a);
    linear_bwd(ly, ly.out, ly.wo.p, H, T, dres_b.p, ld_dres, y, uo_at(a), datt());
    if (gated)  // datt becomes the gradient of the ungated output, in place; the gate's lands in dqkv
      cuda::sigmoid_gate_bwd(att_at(a), nH * d, qkv_p + Nqkv * 2, ld, datt(), nH * d, datt(), nH * d,
                             static_cast<char*>(dqkv()) + Nqkv * 2, ld, T, nH * d);
    attention_bwd(a, T, ld);
    cuda::QkNormRope p = qk_params(ly, T);
    if (flash) {
      p.dq = fa_ws.as<float>();
      p.dq_scale = attn_scale();
    }
    cuda::qk_norm_rope_bwd(p, qkv_p, ld, dqk(), Nqk, dqkv(), ld);
    linear_bwd(ly, ly.in, ly.w_in.p, ly.ld_in, T, dqkv(), ld, xn.p, u_in.p, dx);
  }

  // Gated DeltaNet backward: dres_b -> dx (null: none).
  void gdn_bwd(const Layer& ly, int64_t g, int64_t T, void* dx) {
    char *dzba = region.at(0), *dY = region.at(off_gy), *dGO = region.at(off_ggo), *dq = region.at(off_gq),
         *dk_p = region.at(off_gk), *dv_p = region.at(off_gv), *dconv = region.at(off_gconv);
    char* dproj = dY;  // dY .. dv are spent once conv1d's backward runs
    linear_bwd(ly, ly.out, ly.wo.p, H, T, dres_b.p, ld_dres, ybuf.p, u_o.p, dY);
    cuda::gated_rmsnorm_bwd(go_at(g), zba.p, Nzba, ly.gnorm.as<float>(), norm_eps(), dY, dGO, dzba, T, nV, dv);
    cuda::gated_delta_rule_bwd(gq.p, gk.p, gv.p, gdec.as<float>(), beta.as<float>(), doc_start.as<int32_t>(), dGO, dq,
                               dk_p, dv_p, dgdec.as<float>(), dbeta.as<float>(), gdr_ws.p, T, nV, dk, dv, nullptr);
    cuda::gdn_gates_bwd(zba.at(Vd * 2), Nzba, ly.a_log.as<float>(), ly.dt_bias.as<float>(), dbeta.as<float>(),
                        dgdec.as<float>(), dzba + Vd * 2, Nzba, T, nV);
    cuda::gdn_qkv_bwd(convo.p, Ncv, dq, dk_p, dv_p, dconv, Ncv, T, nK, nV, dk, dv);
    cuda::conv1d_causal_bwd(qkv_p, ly.conv.p, doc_start.as<int32_t>(), dconv, dproj, nullptr, T, Ncv, Kc, DType::BF16,
                            DType::F32);
    linear_bwd(ly, ly.in2, ly.w_in2.p, Nzba, T, dzba, Nzba, xn.p, u_in2.p, dx);
    linear_bwd(ly, ly.in, ly.w_in.p, Ncv, T, dproj, Ncv, xn.p, u_in.p, dx, 1.0f);
  }

  // The steps' operations between streams (the main stream is null), issued, or appended to the program while it
  // is recorded: the main stream's close the graph being captured and open the next.
  void record(cudaEvent_t e, cudaStream_t s) { cross_stream({.kind = Action::kRecord, .event = e, .stream = s}); }
  void wait(cudaStream_t s, cudaEvent_t e) { cross_stream({.kind = Action::kWait, .event = e, .stream = s}); }
  void copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind dir) {
    cross_stream({.kind = Action::kCopy, .stream = side, .dst = dst, .src = src, .bytes = bytes, .dir = dir});
  }
  void cross_stream(const Action& a) {
    if (!recording) return issue(a);
    if (!a.stream) end_graph();
    program.actions.push_back(a);
    if (!a.stream) begin_graph();
  }
  void issue(const Action& a) {
    switch (a.kind) {
      case Action::kGraph: CUDA_CHECK(cudaGraphLaunch(a.graph, cudaStreamPerThread)); break;
      case Action::kRecord: CUDA_CHECK(cudaEventRecord(a.event, a.stream)); break;
      case Action::kWait: CUDA_CHECK(cudaStreamWaitEvent(a.stream, a.event)); break;
      case Action::kCopy: CUDA_CHECK(cudaMemcpyAsync(a.dst, a.src, a.bytes, a.dir, a.stream)); break;
    }
  }
  void begin_graph() { CUDA_CHECK(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeThreadLocal)); }
  // Ends the capture; a graph with work becomes the program's next action, its small memsets (cuBLASLt's) made
  // kernel nodes.
  void end_graph() {
    cudaGraph_t g = nullptr;
    CUDA_CHECK(cudaStreamEndCapture(cudaStreamPerThread, &g));
    size_t nodes = 0;
    cudaGraphExec_t exec = nullptr;
    cudaError_t e = cudaGraphGetNodes(g, nullptr, &nodes);
    if (e == cudaSuccess && nodes > 0) {
      try {
        graph_memsets_to_kernels(g);
      } catch (...) {
        cudaGraphDestroy(g);
        throw;
      }
      e = cudaGraphInstantiate(&exec, g, 0);
    }
    cudaGraphDestroy(g);
    CUDA_CHECK(e);
    if (exec) program.actions.push_back({.kind = Action::kGraph, .graph = exec});
  }

  // Checkpoint traffic for the first n_off (no-ops for the others). After the main stream wrote checkpoint l: copy
  // it out.
  void save_ckpt(int64_t l, int64_t T) {
    if (l >= n_off) return;
    record(ready[size_t(l)], nullptr);
    wait(side, ready[size_t(l)]);
    copy(host_at(l), x_at(l), size_t(T * H * 2), cudaMemcpyDeviceToHost);
    record(ready[size_t(l)], side);
  }
  // Before the main stream overwrites the slot of checkpoint l (it holds l - 2): that one's copy-out is done.
  void slot_free(int64_t l) {
    if (l < n_off && l >= 2) wait(nullptr, ready[size_t(l - 2)]);
  }
  // Backward: bring checkpoint l back once the main stream is done with the slot's previous content (l + 2). The
  // last two offloaded ones were never overwritten.
  bool refetched(int64_t l) const { return l >= 0 && l < n_off - 2; }
  void prefetch_ckpt(int64_t l, int64_t T) {
    if (!refetched(l)) return;
    record(ready[size_t(l)], nullptr);
    wait(side, ready[size_t(l)]);
    copy(x_at(l), host_at(l), size_t(T * H * 2), cudaMemcpyHostToDevice);
    record(ready[size_t(l)], side);
  }
  void wait_ckpt(int64_t l) {
    if (refetched(l)) wait(nullptr, ready[size_t(l)]);
  }

  // The same traffic for kept mixer outputs (layer i of k's kind), once the main stream got this far.
  void kept_copy(Kept& k, int64_t i, int64_t T, cudaMemcpyKind kind) {
    record(k.ready[size_t(i)], nullptr);
    wait(side, k.ready[size_t(i)]);
    char* host = k.host + i * k.layer_bytes;
    for (size_t p = 0; p < k.parts.size(); ++p) {
      const size_t bytes = size_t(T * k.parts[p].row);  // the batch's T rows: lse is (nH, T) for it too
      char* dev = k.at(p, i);
      copy(kind == cudaMemcpyDeviceToHost ? host : dev, kind == cudaMemcpyDeviceToHost ? dev : host, bytes, kind);
      host += bytes;
    }
    record(k.ready[size_t(i)], side);
  }
  // Forward of layer l, at its start: the copy-outs of the slots it overwrites are done (its q|k|v product's and
  // mixer output's, its output checkpoint's). Issued together, they make one break between a replayed step's
  // graphs where they made up to three; the copies were queued a layer or more before.
  void slots_free(int64_t l) {
    const int64_t a = att_index[size_t(l)], g = gdn_index[size_t(l)];
    if (a >= 0 && bus_index(a) >= 0) kept_slot_free(k_qkv, bus_index(a));
    if (a >= 0) kept_slot_free(k_att, a);
    if (g >= 0) kept_slot_free(k_go, g);
    slot_free(l + 1);
  }
  // Forward: before overwriting slot i % 2, the copy-out of i - 2 is done; after writing it, copy it out.
  void kept_slot_free(const Kept& k, int64_t i) {
    if (k.on && i >= 2) wait(nullptr, k.ready[size_t(i - 2)]);
  }
  void kept_save(Kept& k, int64_t i, int64_t T) {
    if (k.on) kept_copy(k, i, T, cudaMemcpyDeviceToHost);
  }
  // Backward of layer i: the last two are still in their slots; i's copy-in is done, i - 1's starts.
  void kept_fetch(Kept& k, int64_t i, int64_t T) {
    if (!k.on || i < 0) return;
    if (i <= k.n - 3) wait(nullptr, k.ready[size_t(i)]);
    if (fetches_below(k, i)) kept_copy(k, i - 1, T, cudaMemcpyHostToDevice);
  }
  // Whether the backward of layer i of k's kind brings i - 1 back (the last two never left their slots).
  static bool fetches_below(const Kept& k, int64_t i) { return k.on && i >= 1 && i - 1 <= k.n - 3; }

  // Dropped layer j's matrices end w_end(j) bytes into the arena; w_dropped(l): the slots overwrite some of l's.
  int64_t w_end(int64_t j) const { return std::min((drop_w - j) * w_block, reload_bytes); }
  bool w_dropped(int64_t l) const { return l < drop_w && (drop_w - 1 - l) * w_block < reload_bytes; }

  // Bytes the backward of layer l brings in for layer l - 1 beside the matrices (prefetch_ckpt, kept_fetch).
  int64_t fetch_bytes(int64_t l, int64_t T) const {
    auto kept = [&](const Kept& k, int64_t i) { return fetches_below(k, i) ? k.layer_bytes / max_T * T : 0; };
    const int64_t a = att_index[size_t(l)];
    return (refetched(l - 1) ? T * H * 2 : 0) + kept(k_att, a) + kept(k_go, gdn_index[size_t(l)]) +
           kept(k_qkv, bus_index(a));
  }

  // w_upto from the bus's room beside each layer's own copies. The gate|up slots of the layers after l (slot i
  // holds the i-th from the last) are spent when l's backward starts.
  void plan_bring_back(const std::vector<double>& room) {
    const int64_t L = c.num_layers;
    std::vector<int64_t> spent(static_cast<size_t>(L)), need(static_cast<size_t>(L));
    int64_t slots = 0;
    for (int64_t l = L - 1; l >= 0; --l) {
      spent[size_t(l)] = std::min(slots * gu_slot, reload_bytes);
      need[size_t(l)] = w_dropped(l) ? w_end(l) : 0;
      slots += gu_index[size_t(l)] >= 0;
    }
    w_upto = bring_back_schedule(room, spent, need, reload_bytes);
  }

  // This backward's schedule, from the room each layer's time in the last one (of timed_T tokens; 0: none yet)
  // left on the bus, at the rate the matrices' copies ran, beside the layer's own copies. An eager step runs it
  // once its forward is queued, so that the host reads the last backward's events while the device works; a
  // recorded step's schedule comes from it just before the recording.
  void retime_bring_back() {
    if (drop_w == 0 || timed_T == 0) return;
    const int64_t L = c.num_layers, T = timed_T;
    auto ms = [](cudaEvent_t a, cudaEvent_t b) {
      float t = 0;
      CUDA_CHECK(cudaEventSynchronize(b));
      CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
      return double(t);
    };
    double copy_ms = 0, copied = 0;
    for (int64_t l = 0; l < L; ++l)
      if (w_copied[size_t(l)] > 0) {
        copy_ms += ms(t_copy[size_t(2 * l)], t_copy[size_t(2 * l + 1)]);
        copied += double(w_copied[size_t(l)]);
      }
    if (copy_ms <= 0) return;
    std::vector<double> room(static_cast<size_t>(L));
    for (int64_t l = 0; l < L; ++l)
      room[size_t(l)] = std::max(0.0, ms(t_layer[size_t(2 * l)], t_layer[size_t(2 * l + 1)]) * copied / copy_ms -
                                          double(fetch_bytes(l, T)));
    plan_bring_back(room);
  }

  // Backward of layer l, after its own copies were queued: the matrices' bytes up to w_upto[l] on the side stream,
  // in copies that end at each dropped layer's last byte; a dropped layer then waits for its own and re-packs its
  // LoRA columns. Marks the start of the layer's work (t_layer).
  void bring_back(int64_t l) {
    if (drop_w == 0) return;
    const int64_t upto = w_upto[size_t(l)];
    if (!recording) w_copied[size_t(l)] = upto - w_sent;  // the bytes its timing events (below) cover
    if (upto > w_sent) {
      record(bwd_mark, nullptr);
      wait(side, bwd_mark);
      if (!recording) record(t_copy[size_t(2 * l)], side);
    }
    while (w_sent < upto) {
      int64_t b = upto;
      for (int64_t j = 0; j < drop_w; ++j)
        if (w_end(j) > w_sent) b = std::min(b, w_end(j));
      copy(arena.at(w_sent), static_cast<char*>(host_w) + w_sent, size_t(b - w_sent), cudaMemcpyHostToDevice);
      for (int64_t j = 0; j < drop_w; ++j)
        if (w_end(j) == b) record(w_ready[size_t(j)], side);
      w_sent = b;
    }
    if (w_copied[size_t(l)] > 0 && !recording) record(t_copy[size_t(2 * l + 1)], side);
    if (w_dropped(l)) {
      wait(nullptr, w_ready[size_t(l)]);
      if (pack_count[size_t(l)] > 0)
        cuda::lora_pack(P.as<float>(), static_cast<const cuda::LoraPackSeg*>(pack_segs.p) + pack_first[size_t(l)],
                        pack_count[size_t(l)], pack_elems);
    }
    if (!recording) record(t_layer[size_t(2 * l)], nullptr);
  }

  double forward_backward(const CudaBatch& b, float grad_scale) {
    const int64_t T = b.size();
    if (T == 0) return 0;
    if (T > max_T)
      throw ConfigError("a micro-batch of " + std::to_string(T) + " tokens exceeds the planned " +
                            std::to_string(max_T),
                        "lower --batch-size or --seq-len");
    std::vector<int32_t> rws, tgs;
    for (int64_t t = 0; t < T; ++t) {
      const int32_t id = b.ids[size_t(t)];
      if (id < 0 || id >= V)
        throw ConfigError("token id " + std::to_string(id) + " at position " + std::to_string(t) +
                              " is outside the vocabulary of " + std::to_string(V),
                          "the data was tokenized for another model");
      const int32_t y = b.targets[size_t(t)];
      if (y == -100) continue;
      if (y < 0 || y >= V)
        throw ConfigError("target id " + std::to_string(y) + " at position " + std::to_string(t) +
                              " is outside the vocabulary", "the data was tokenized for another model");
      rws.push_back(int32_t(t));
      tgs.push_back(y);
    }
    const int64_t n = int64_t(rws.size());
    if (n == 0) return 0;  // nothing trained: no loss, no gradient
    CUDA_CHECK(cudaMemcpy(ids.p, b.ids.data(), size_t(T) * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(pos.p, b.pos.data(), size_t(T) * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(doc_start.p, b.doc_start.data(), size_t(T) * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(rows.p, rws.data(), size_t(n) * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(targets.p, tgs.data(), size_t(n) * 4, cudaMemcpyHostToDevice));
    if (program.T != T || program.n != n || program.scale != grad_scale) {
      drop_program();
      program.T = T, program.n = n, program.scale = grad_scale;
    }
    if (!program.ready && graphs && program.runs >= 2) {
      retime_bring_back();
      record_step(T, n, grad_scale);
    }
    if (program.ready) {
      for (const Action& a : program.actions) issue(a);
      ++graph_steps;
    } else {
      step(T, n, grad_scale);
      ++program.runs;
      timed_T = T;
    }
    std::vector<float> losses(static_cast<size_t>(n));
    CUDA_CHECK(cudaMemcpy(losses.data(), loss.p, size_t(n) * 4, cudaMemcpyDeviceToHost));
    double sum = 0;
    for (float v : losses) sum += double(v);
    return sum;
  }

  void drop_program() {
    for (const Action& a : program.actions)
      if (a.graph) CUDA_CHECK(cudaGraphExecDestroy(a.graph));
    program = StepProgram{};
  }

  // Records step() into the program. The bring-back schedule stays as the last eager step timed it.
  void record_step(int64_t T, int64_t n, float grad_scale) {
    recording = true;
    try {
      begin_graph();
      step(T, n, grad_scale);
      end_graph();
    } catch (...) {
      recording = false;
      cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
      if (cudaStreamIsCapturing(cudaStreamPerThread, &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
        cudaGraph_t g = nullptr;
        cudaStreamEndCapture(cudaStreamPerThread, &g);
        if (g) cudaGraphDestroy(g);
      }
      drop_program();
      throw;
    }
    recording = false;
    program.ready = true;
  }

  // The device work of a step on the uploaded batch (T tokens, n of them trained): forward, head, backward.
  void step(int64_t T, int64_t n, float grad_scale) {
    const int64_t L = c.num_layers;
    cuda::rope_table(pos.as<int32_t>(), T, c.rotary_dim, c.rope_theta, rope.as<float>());
    // The ids were checked on the host.
    cuda::embedding_fwd(ids.as<int32_t>(), emb.p, DType::BF16, x_at(0), DType::BF16, T, V, H, nullptr);
    save_ckpt(0, T);
    for (int64_t l = 0; l < L; ++l) {
      use_layer(l);
      slots_free(l);
      mixer_fwd(l, T, x_at(l), false);
      for (int64_t t0 = 0; t0 < T; t0 += ffn_T) ffn_fwd(l, t0, std::min(ffn_T, T - t0), x_at(l + 1));
      save_ckpt(l + 1, T);
    }

    // Head: xf = norm(x_L) into xn; the loss's gradient w.r.t. xf lands in dres (f32), then through the norm.
    const float eps = norm_eps();
    cuda::rmsnorm_fwd(x_at(L), out_norm.p, eps, zc(), xn.p, T, H, DType::BF16, DType::F32);
    CUDA_CHECK(cudaMemsetAsync(dres.p, 0, size_t(T * H * 4)));
    cuda::lm_head_loss(xn.p, head_w(), rows.as<int32_t>(), targets.as<int32_t>(), n, H, V, grad_scale,
                       dres.as<float>(), loss.as<float>(), head_chunk, region.p);
    cuda::cast_f32_to_bf16(dres.as<float>(), dxn.p, T * H);
    CUDA_CHECK(cudaMemsetAsync(dres.p, 0, size_t(T * H * 4)));
    cuda::rmsnorm_bwd_residual(x_at(L), out_norm.as<float>(), dxn.p, eps, zc(), dres.as<float>(), dres_b.p, T, H,
                               ld_dres);
    // The device checkpoints and the last two offloaded are in their slots; each layer's backward brings the one
    // below back meanwhile.
    if (!recording) retime_bring_back();
    w_sent = 0;
    for (int64_t l = L - 1; l >= 0; --l) {
      wait_ckpt(l);
      prefetch_ckpt(l - 1, T);
      kept_fetch(k_att, att_index[size_t(l)], T);
      kept_fetch(k_go, gdn_index[size_t(l)], T);
      kept_fetch(k_qkv, bus_index(att_index[size_t(l)]), T);
      bring_back(l);
      use_layer(l);
      mixer_fwd(l, T, x_at(l), true);
      for (int64_t t0 = 0; t0 < T; t0 += ffn_T) {
        const int64_t nt = std::min(ffn_T, T - t0);
        ffn_fwd(l, t0, nt, nullptr);
        ffn_bwd(l, t0, nt);
      }
      mixer_bwd(l, T, x_at(l));
      if (drop_w > 0 && !recording) record(t_layer[size_t(2 * l + 1)], nullptr);
    }
  }

  void upload_weights(const Model& m) {
    const ModelWeights& w = m.weights;
    upload(emb.p, w.token_embd, DType::BF16);
    upload(out_norm.p, w.output_norm, DType::F32);
    if (!c.tie_word_embeddings) upload(head.p, w.output, DType::BF16);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const LayerWeights& lw = w.layers[size_t(l)];
      Layer& ly = layers[size_t(l)];
      if (ly.mix == MixerKind::GatedDeltaNet) {
        upload(ly.w_in.p, lw.ssm_qkv, DType::BF16);
        upload(ly.w_in2.p, lw.ssm_gate, DType::BF16);
        upload(ly.w_in2.at(Vd * H * 2), lw.ssm_beta, DType::BF16);
        upload(ly.w_in2.at((Vd + nV) * H * 2), lw.ssm_alpha, DType::BF16);
        upload(ly.wo.p, lw.ssm_out, DType::BF16);
        upload(ly.conv.p, lw.ssm_conv1d, DType::F32);
        upload(ly.a_log.p, lw.ssm_a_log, DType::F32);
        upload(ly.dt_bias.p, lw.ssm_dt_bias, DType::F32);
        upload(ly.gnorm.p, lw.ssm_norm, DType::F32);
      } else {
        const int64_t ldw = ly.in.ld();  // w_in's row stride
        if (ly.mix == MixerKind::GatedAttention) {
          // q_proj rows interleave [query_h | gate_h] per head: the queries go first, the gates after v.
          const Tensor q = lw.attn_q.to(DType::BF16, Device::CPU);
          const size_t row = size_t(H) * 2, pitch = size_t(ldw) * 2;
          for (int64_t hh = 0; hh < nH; ++hh) {
            const char* src = static_cast<const char*>(q.data()) + hh * 2 * d * int64_t(row);
            CUDA_CHECK(cudaMemcpy2D(ly.w_in.at(hh * d * ldw * 2), pitch, src, row, row, size_t(d),
                                    cudaMemcpyHostToDevice));
            CUDA_CHECK(cudaMemcpy2D(ly.w_in.at((Nqkv + hh * d) * ldw * 2), pitch, src + d * int64_t(row), row, row,
                                    size_t(d), cudaMemcpyHostToDevice));
          }
        } else {
          upload(ly.w_in.p, lw.attn_q, DType::BF16, ldw);
        }
        upload(ly.w_in.at(nH * d * ldw * 2), lw.attn_k, DType::BF16, ldw);
        upload(ly.w_in.at((nH + nKV) * d * ldw * 2), lw.attn_v, DType::BF16, ldw);
        if (c.attention_bias) {
          upload(ly.b_in.p, lw.attn_q_bias, DType::BF16);
          upload(ly.b_in.at(nH * d * 2), lw.attn_k_bias, DType::BF16);
          upload(ly.b_in.at(Nqk * 2), lw.attn_v_bias, DType::BF16);
        }
        upload(ly.wo.p, lw.attn_output, DType::BF16, ly.out.ld());
        if (c.qk_norm) {
          upload(ly.q_norm.p, lw.attn_q_norm, DType::F32);
          upload(ly.k_norm.p, lw.attn_k_norm, DType::F32);
        }
      }
      if (ly.ffn == FfnKind::Moe) {
        upload(ly.router.p, lw.ffn_gate_inp, DType::BF16);
        // Expert e's gate rows then its up rows, as the fused SwiGLU reads them.
        const Tensor g = lw.ffn_gate_exps.to(DType::BF16, Device::CPU), u = lw.ffn_up_exps.to(DType::BF16, Device::CPU);
        const int64_t part = Im * H * 2;
        const char *gp = static_cast<const char*>(g.data()), *up = static_cast<const char*>(u.data());
        for (int64_t e = 0; e < E; ++e) {
          CUDA_CHECK(cudaMemcpy(ly.exp_gu.at(e * 2 * part), gp + e * part, size_t(part), cudaMemcpyHostToDevice));
          CUDA_CHECK(cudaMemcpy(ly.exp_gu.at((e * 2 + 1) * part), up + e * part, size_t(part), cudaMemcpyHostToDevice));
        }
        upload(ly.exp_d.p, lw.ffn_down_exps, DType::BF16);
        if (Ish > 0) {
          upload(ly.sh_gu.p, lw.ffn_gate_shexp, DType::BF16);
          upload(ly.sh_gu.at(Ish * H * 2), lw.ffn_up_shexp, DType::BF16);
          upload(ly.sh_d.p, lw.ffn_down_shexp, DType::BF16);
          upload(ly.sh_gate.p, lw.ffn_gate_inp_shexp, DType::BF16);
        }
      } else {
        upload(ly.wgu.p, lw.ffn_gate, DType::BF16, ly.gu.ld());
        upload(ly.wgu.at(I * ly.gu.ld() * 2), lw.ffn_up, DType::BF16, ly.gu.ld());
        upload(ly.wd.p, lw.ffn_down, DType::BF16, ly.down.ld());
      }
      upload(ly.attn_norm.p, lw.attn_norm, DType::F32);
      upload(ly.ffn_norm.p, lw.ffn_norm, DType::F32);
    }
    zero_lora_columns();
    save_dropped();
  }

  // The dropped layers' matrices into their host copy, once their values are in place (the LoRA columns are
  // re-packed after every copy back).
  void save_dropped() {
    if (drop_w > 0) CUDA_CHECK(cudaMemcpy(host_w, arena.p, size_t(drop_w * w_block), cudaMemcpyDeviceToHost));
  }

  // A folded group's weight: its layer, the weight (rows, g->ld(); kdx rows of A's after them) and the group.
  struct FoldedWeight {
    const Layer* ly;
    const DeviceBuffer* w;
    int64_t rows;
    const LoraGroup* g;
  };
  std::vector<FoldedWeight> folded_weights() const {
    std::vector<FoldedWeight> v;
    for (const Layer& ly : layers)
      for (auto [w, rows, g] : {std::tuple{&ly.w_in, ly.ld_in, &ly.in}, {&ly.wo, H, &ly.out},
                                {&ly.wgu, 2 * I, &ly.gu}, {&ly.wd, H, &ly.down}})
        if (g->kx > 0 || g->kdx > 0) v.push_back({&ly, w, rows, g});
    return v;
  }

  // Zeros the LoRA columns of the folded weights (rows no target covers keep them so).
  void zero_lora_columns() {
    for (const FoldedWeight& f : folded_weights())
      if (f.g->kx > 0)
        CUDA_CHECK(
            cudaMemset2D(f.w->at(f.g->in * 2), size_t(f.g->ld() * 2), 0, size_t(f.g->kx * 2), size_t(f.rows)));
  }

  // What lora_pack copies into the folded weights: per target and B part, s B at its output rows' LoRA columns;
  // per group with kdx, its A's at the rows after the weight's own.
  void plan_pack() {
    std::vector<cuda::LoraPackSeg> segs;
    pack_first.assign(size_t(drop_w), 0);
    pack_count.assign(size_t(drop_w), 0);
    for (const FoldedWeight& f : folded_weights()) {
      const LoraGroup& g = *f.g;
      const int64_t l = f.ly - layers.data(), first = int64_t(segs.size());
      for (int64_t i = 0; i < g.n() && g.kx > 0; ++i) {
        const LoraSlot& sl = f.ly->lora[size_t(g.targets[size_t(i)])];
        for (const BPart& p : b_parts(sl))
          segs.push_back({sl.b + p.row0 * r, f.w->at((p.col * g.ld() + g.in + i * r) * 2), g.ld(), p.rows, r, s});
      }
      if (g.kdx > 0) segs.push_back({g.a, f.w->at(f.rows * g.ld() * 2), g.ld(), g.kdx, g.in, 1.0f});
      if (l < drop_w) {  // a layer's segments are consecutive
        if (pack_count[size_t(l)] == 0) pack_first[size_t(l)] = first;
        pack_count[size_t(l)] += int64_t(segs.size()) - first;
      }
    }
    for (const cuda::LoraPackSeg& sg : segs) pack_elems = std::max(pack_elems, sg.rows * sg.width);
    n_pack = int64_t(segs.size());
    pack_segs = dev(std::max<int64_t>(n_pack, 1) * int64_t(sizeof(cuda::LoraPackSeg)));
    if (!dry && n_pack > 0)
      CUDA_CHECK(cudaMemcpy(pack_segs.p, segs.data(), segs.size() * sizeof(cuda::LoraPackSeg), cudaMemcpyHostToDevice));
  }

  // After the fp32 masters changed: their bf16 copies and the folded weights' s B columns.
  void params_changed() {
    cuda::cast_f32_to_bf16(P.as<float>(), Pb.p, nparams);
    cuda::lora_pack(P.as<float>(), static_cast<const cuda::LoraPackSeg*>(pack_segs.p), n_pack, pack_elems);
  }

  // Matrices ~ N(0, 0.02) (MoE: router, experts and the shared expert too); norms the identity (weight 1, or 0
  // when zero-centred); DeltaNet: A_log 0 and dt_bias 1
  // (decays near exp(-1.3) per token), the conv taps N(0, 0.02) plus 1 on the current position, gated norm 1.
  void random_weights(uint64_t seed) {
    uint64_t k = seed * 1000003ull;
    auto normal = [&](const DeviceBuffer& b) {
      if (b.p) cuda::fill_normal(b.p, DType::BF16, b.bytes / 2, ++k, 0.0f, 0.02f);
    };
    auto constant = [&](const DeviceBuffer& b, float v) {
      if (b.p) cuda::fill_constant(b.p, DType::F32, b.bytes / 4, v);
    };
    const float norm_one = zc() ? 0.0f : 1.0f;
    normal(emb);
    constant(out_norm, norm_one);
    normal(head);
    for (Layer& ly : layers) {
      for (const DeviceBuffer* b : {&ly.w_in, &ly.b_in, &ly.w_in2, &ly.wo, &ly.wgu, &ly.wd, &ly.router, &ly.exp_gu,
                                    &ly.exp_d, &ly.sh_gu, &ly.sh_d, &ly.sh_gate})
        normal(*b);  // the folded LoRA columns too: zeroed below
      for (const DeviceBuffer* b : {&ly.attn_norm, &ly.ffn_norm, &ly.q_norm, &ly.k_norm}) constant(*b, norm_one);
      if (ly.mix == MixerKind::GatedDeltaNet) {
        std::vector<float> taps(static_cast<size_t>(Ncv * Kc));
        Rng rng(++k);
        for (int64_t i = 0; i < Ncv * Kc; ++i)
          taps[size_t(i)] = 0.02f * rng.normal() + (i % Kc == Kc - 1 ? 1.0f : 0.0f);
        CUDA_CHECK(cudaMemcpy(ly.conv.p, taps.data(), taps.size() * 4, cudaMemcpyHostToDevice));
        constant(ly.a_log, 0.0f);
        constant(ly.dt_bias, 1.0f);
        constant(ly.gnorm, 1.0f);
      }
    }
    zero_lora_columns();
    save_dropped();
    CUDA_CHECK(cudaDeviceSynchronize());
  }

  void upload_adapter(const LoraAdapter& a) {
    std::vector<float> host(size_t(nparams), 0.0f);
    for (int64_t l = 0; l < c.num_layers; ++l)
      for (int t = 0; t < kLoraTargets; ++t) {
        const LoraSlot& sl = layers[size_t(l)].lora[size_t(t)];
        if (!sl.on) continue;
        const LoraWeights& w = a.layers[size_t(l)][size_t(t)];
        TUNE_CHECK(w.defined() && w.A.numel() == sl.count * r * sl.in && w.B.numel() == sl.count * sl.out * r)
            << "CUDA LoRA layout differs from the adapter at layer " << l << " target "
            << lora_target_short(LoraTarget(t));
        std::memcpy(host.data() + sl.a, w.A.f32(), size_t(w.A.numel()) * 4);
        copy_b(sl, w.B.f32(), host.data() + sl.b, true);
      }
    CUDA_CHECK(cudaMemcpy(P.p, host.data(), size_t(nparams) * 4, cudaMemcpyHostToDevice));
    params_changed();
  }

  // B (out, r) between the adapter's row order and the device's (regrouped for split slots).
  void copy_b(const LoraSlot& sl, const float* src, float* dst, bool to_device) const {
    if (!sl.split) {
      std::memcpy(dst, src, size_t(sl.count * sl.out * r) * 4);
      return;
    }
    for (int64_t row = 0; row < sl.out; ++row) {
      const int64_t dev_row = split_row(sl, row);
      const int64_t from = to_device ? row : dev_row, to = to_device ? dev_row : row;
      std::memcpy(dst + to * r, src + from * r, size_t(r) * 4);
    }
  }

  void download_adapter(LoraAdapter& a) const {
    std::vector<float> hp(static_cast<size_t>(nparams)), hg(static_cast<size_t>(nparams));
    CUDA_CHECK(cudaMemcpy(hp.data(), P.p, size_t(nparams) * 4, cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaMemcpy(hg.data(), G.p, size_t(nparams) * 4, cudaMemcpyDeviceToHost));
    for (int64_t l = 0; l < c.num_layers; ++l)
      for (int t = 0; t < kLoraTargets; ++t) {
        const LoraSlot& sl = layers[size_t(l)].lora[size_t(t)];
        if (!sl.on) continue;
        LoraWeights& w = a.layers[size_t(l)][size_t(t)];
        std::memcpy(w.A.f32(), hp.data() + sl.a, size_t(w.A.numel()) * 4);
        copy_b(sl, hp.data() + sl.b, w.B.f32(), false);
        if (w.dA.defined()) std::memcpy(w.dA.f32(), hg.data() + sl.a, size_t(w.dA.numel()) * 4);
        if (w.dB.defined()) copy_b(sl, hg.data() + sl.b, w.dB.f32(), false);
      }
  }
};

CudaPlanOptions cuda_plan_options(const ModelConfig& c, const LoraConfig& lora, int64_t max_tokens,
                                  int64_t budget_bytes) {
  CudaPlanOptions o;
  o.max_tokens = max_tokens;
  // The model's own plan, counted without allocating: everything on the device, no attention kept.
  CudaLoraModel::Impl plan;
  plan.dry = true;
  plan.init_shape(c, lora, o);
  plan.plan_lora();
  plan.alloc_weights();
  plan.alloc_activations();
  // Device bytes beside the plan: the optimizer's state, and what the CUDA runtime and cuBLAS take as kernels
  // load (a 256 MiB allowance). Of the device's free memory, 5% and 1 GiB more stay free for allocator slack and
  // the CUDA context; a budget the user gives is taken as it is.
  const int64_t extra = cuda_optimizer_bytes(plan.nparams) + (int64_t(256) << 20);
  int64_t usable = budget_bytes;
  if (budget_bytes <= 0) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) usable = int64_t(free_b) * 95 / 100 - (int64_t(1) << 30);
  }
  // Keeping the mixer outputs costs pinned host memory, bus traffic (both directions once per step, beside any
  // offloaded checkpoints) and a second device slot per kind: only when it is a modest share of the host's memory.
  const int64_t att_bytes =
      plan.max_T * (plan.k_att.n * plan.nH * (plan.d * 2 + 4) + plan.k_go.n * plan.Vd * 2);
  const int64_t host = int64_t(sysconf(_SC_PHYS_PAGES)) * int64_t(sysconf(_SC_PAGE_SIZE));
  const int64_t pinned_cap = std::min<int64_t>(host / 8, int64_t(16) << 30);  // kept activations' host bytes
  o.keep_attention = att_bytes <= pinned_cap;
  // Then, while memory lasts: the o and down LoRA u's (two products over wide inputs saved per 2 T r 2 bytes,
  // worth more than a checkpoint's bus traffic); as few offloaded checkpoints as make the plan fit (the first
  // layers' ones: each frees its slot beyond the two the offloaded ones rotate through); attention layers'
  // activations: the mixer outputs (one o product saved per T H 2 bytes), then the q|k|v products (one product per
  // T (nH + 2 nKV) d 2 bytes). Where the bus has room, more checkpoints are offloaded to make room for those.
  if (usable > 0) {
    // A checkpoint and an xmid are the same size.
    const int64_t T = plan.max_T, L1 = c.num_layers + 1, ckpt = T * plan.H * 2, mid = ckpt,
                  qkv = T * plan.ld_qkv * 2;
    int64_t slack = usable - plan.mem.total() - extra;
    if (o.keep_attention) slack -= T * (plan.nH * (plan.d * 2 + 4) + (plan.k_go.n > 0 ? plan.Vd * 2 : 0));
    const int64_t u_bytes = (plan.k_att.n + c.num_layers) * T * plan.r * 2;
    o.keep_u = slack + (L1 - 2) * ckpt >= u_bytes;
    if (o.keep_u) slack -= u_bytes;
    // The bus has room when the forward's copies with every checkpoint offloaded (and the kept mixer outputs)
    // take no longer than its frozen products: at about 40 GB/s (a setting under the pinned-copy rates the GPU
    // machine measured, 55 GB/s one way and 50 GB/s each way at once, bench/RESULTS.md) against 400 TFLOP/s (those
    // products run at 700 or more there, RESULTS.md under d4d3bd3). By this, qwen3-4b x 4096 tokens has room and
    // qwen3-0.6b x 8192 has not. Measured (bench/RESULTS.md): offloading every checkpoint to keep more activations
    // made the first 1.6-1.9% faster; offloading all instead of 6 of 29 made the second 3.5% slower.
    double flops = 0;
    for (const Layer& ly : plan.layers) {
      flops += ly.mix == MixerKind::GatedDeltaNet
                   ? double(plan.H) * double(plan.Ncv + plan.Nzba) + double(plan.Vd) * double(plan.H)
                   : double(plan.H) * double(ly.ld_in) + double(plan.nH * plan.d) * double(plan.H);
      flops += 3.0 * double(plan.H) *
               double(ly.ffn == FfnKind::Moe ? plan.kx * plan.Im + plan.Ish : plan.I);
    }
    flops *= 2.0 * double(T);
    const double bus = double((o.keep_attention ? att_bytes : 0) + L1 * ckpt);
    const bool bus_room = bus / 40e9 <= flops / 400e12;
    const int64_t need = slack < 0 ? std::min<int64_t>(L1, 2 + (-slack + ckpt - 1) / ckpt) : 0;
    const int64_t room = bus_room ? slack + (L1 - 2) * ckpt : need > 0 ? slack + (need - 2) * ckpt : slack;
    const int64_t gu = T * plan.ld_gu * 2;
    const int64_t dense = std::count_if(c.layers.begin(), c.layers.end(),
                                        [](const LayerSpec& ls) { return ls.ffn != FfnKind::Moe; });
    if (room > 0) {
      o.keep_mid = std::clamp<int64_t>(room / mid, 0, plan.k_att.n);
      o.keep_qkv = std::clamp<int64_t>((room - o.keep_mid * mid) / qkv, 0, o.keep_mid);
      // Beyond every attention layer's: dense FFN layers' gate|up products (one product saved per T ld_gu 2
      // bytes, as a q|k|v product saves one per its own bytes).
      if (o.keep_qkv == plan.k_att.n) {
        o.keep_gu = std::clamp<int64_t>((room - o.keep_mid * mid - o.keep_qkv * qkv) / gu, 0, dense);
      }
    }
    // The bus time the forward's products leave beyond that carries more q|k|v products through the host: every
    // other layer after the device-kept ones (the bus takes about one of them per layer beside a layer's other
    // copies), in two device slots paid for with two device-kept ones; worth it for more than two.
    if (bus_room && o.keep_qkv >= 2) {
      const int64_t kq = o.keep_qkv - 2;
      const int64_t by_bus = int64_t((flops / 400e12 * 40e9 - bus) / double(qkv));
      const int64_t by_host = (pinned_cap - (o.keep_attention ? att_bytes : 0)) / qkv;
      const int64_t n = std::min({(plan.k_att.n - kq) / 2, by_bus, by_host});
      if (n > 2) {
        o.keep_qkv = kq;
        o.bus_qkv = n;
      }
    }
    // Offloaded: what the kept activations need beyond the slack, at least what the plan itself needs.
    const int64_t over = o.keep_mid * mid + (o.keep_qkv + (o.bus_qkv > 0 ? 2 : 0)) * qkv + o.keep_gu * gu - slack;
    const int64_t n_off = over > 0 ? std::min<int64_t>(L1, 2 + (over + ckpt - 1) / ckpt) : 0;
    if (n_off > 0) {
      o.offload = true;
      o.keep_ckpt = L1 - n_off;
    }
    // With every attention layer's xmid kept, the first layers' frozen matrices may make room for more gate|up
    // products (drop_w): their device memory holds the last layers' products from the forward to the backward,
    // which brings the matrices back into the device beside what the forward sent out. The backward takes about
    // 1.8 times the forward (bench/RESULTS.md: 108.7 against 58.1 ms at qwen3-4b x 4096 and 10.4 GiB, 1.75-1.81
    // times with 10 layers dropped); at that, 13 dropped layers measured fastest there, 16 left the bus the
    // bottleneck. Their host copies count against the pinned-memory cap beside the kept activations'.
    const int64_t prefix = droppable_layers(c);
    if (bus_room && o.keep_mid == plan.k_att.n && prefix > 0) {
      int64_t wb = 0;
      for (int64_t m : plan.dense_matrix_bytes(plan.layers[0])) wb += round_up(m, 256);
      const double back = bus + double(o.bus_qkv * qkv);
      const int64_t pinned = (o.keep_attention ? att_bytes : 0) + o.bus_qkv * qkv;  // host copies under the cap
      int64_t w = std::min({prefix, int64_t((1.8 * flops / 400e12 * 40e9 - back) / double(wb)),
                            std::max<int64_t>(pinned_cap - pinned, 0) / wb});
      for (; w > 0; --w) {  // the most the gate|up slots can cover, all after the dropped layers
        const int64_t n = std::min(o.keep_gu + w * wb / gu, dense);
        if (n > o.keep_gu && c.num_layers - n >= w) {
          o.keep_gu = n;
          o.drop_w = w;
          break;
        }
      }
    }
  }
  return o;
}

CudaLoraModel::CudaLoraModel(const Model& model, const LoraAdapter& adapter, const CudaPlanOptions& plan)
    : impl_(std::make_unique<Impl>()) {
  impl_->init_shape(model.config, adapter.config, plan);
  impl_->plan_lora();
  impl_->alloc_weights();
  impl_->alloc_activations();
  impl_->plan_pack();
  impl_->upload_weights(model);
  impl_->upload_adapter(adapter);
}

CudaLoraModel::CudaLoraModel(const ModelConfig& config, const LoraAdapter& adapter, uint64_t seed,
                             const CudaPlanOptions& plan)
    : impl_(std::make_unique<Impl>()) {
  impl_->init_shape(config, adapter.config, plan);
  impl_->plan_lora();
  impl_->alloc_weights();
  impl_->alloc_activations();
  impl_->plan_pack();
  impl_->random_weights(seed);
  impl_->upload_adapter(adapter);
}

CudaLoraModel::~CudaLoraModel() = default;

void CudaLoraModel::upload_adapter(const LoraAdapter& a) { impl_->upload_adapter(a); }
void CudaLoraModel::download_adapter(LoraAdapter& a) const { impl_->download_adapter(a); }
void CudaLoraModel::zero_grad() { CUDA_CHECK(cudaMemsetAsync(impl_->G.p, 0, size_t(impl_->G.bytes))); }
double CudaLoraModel::forward_backward(const CudaBatch& b, float grad_scale) {
  return impl_->forward_backward(b, grad_scale);
}
void CudaLoraModel::params_changed() { impl_->params_changed(); }
float* CudaLoraModel::params() { return impl_->P.as<float>(); }
float* CudaLoraModel::grads() { return impl_->G.as<float>(); }
int64_t CudaLoraModel::num_params() const { return impl_->nparams; }
int64_t CudaLoraModel::max_tokens() const { return impl_->max_T; }
void CudaLoraModel::copy_flat(float* dev, std::vector<Tensor>& host, bool to_device) const {
  const Impl& m = *impl_;
  std::vector<float> flat(static_cast<size_t>(m.nparams), 0.0f);
  if (!to_device) CUDA_CHECK(cudaMemcpy(flat.data(), dev, flat.size() * 4, cudaMemcpyDeviceToHost));
  size_t i = 0;
  for (const Layer& ly : m.layers)
    for (const LoraSlot& sl : ly.lora) {
      if (!sl.on) continue;
      TUNE_CHECK(i + 2 <= host.size() && host[i].numel() == sl.count * m.r * sl.in &&
                 host[i + 1].numel() == sl.count * sl.out * m.r)
          << "CUDA optimizer layout differs from the host optimizer's";
      float *a = host[i].f32(), *b = host[i + 1].f32();
      if (to_device) {
        std::memcpy(flat.data() + sl.a, a, size_t(sl.count * m.r * sl.in) * 4);
        m.copy_b(sl, b, flat.data() + sl.b, true);
      } else {
        std::memcpy(a, flat.data() + sl.a, size_t(sl.count * m.r * sl.in) * 4);
        m.copy_b(sl, flat.data() + sl.b, b, false);
      }
      i += 2;
    }
  TUNE_CHECK(i == host.size()) << "CUDA optimizer layout differs from the host optimizer's";
  if (to_device) CUDA_CHECK(cudaMemcpy(dev, flat.data(), flat.size() * 4, cudaMemcpyHostToDevice));
}
const CudaMemoryReport& CudaLoraModel::memory() const { return impl_->mem; }
int64_t CudaLoraModel::graph_steps() const { return impl_->graph_steps; }

#else  // !TUNE_CUDA

struct CudaLoraModel::Impl {};

CudaPlanOptions cuda_plan_options(const ModelConfig&, const LoraConfig&, int64_t max_tokens, int64_t) {
  CudaPlanOptions o;
  o.max_tokens = max_tokens;
  return o;
}

namespace {
[[noreturn]] void no_cuda() {
  throw UnsupportedError("this build of tune has no CUDA support", "rebuild on a machine with the CUDA toolkit (nvcc)");
}
}  // namespace

CudaLoraModel::CudaLoraModel(const Model&, const LoraAdapter&, const CudaPlanOptions&) { no_cuda(); }
CudaLoraModel::CudaLoraModel(const ModelConfig&, const LoraAdapter&, uint64_t, const CudaPlanOptions&) { no_cuda(); }
CudaLoraModel::~CudaLoraModel() = default;
void CudaLoraModel::upload_adapter(const LoraAdapter&) { no_cuda(); }
void CudaLoraModel::download_adapter(LoraAdapter&) const { no_cuda(); }
void CudaLoraModel::zero_grad() { no_cuda(); }
double CudaLoraModel::forward_backward(const CudaBatch&, float) { no_cuda(); }
void CudaLoraModel::params_changed() { no_cuda(); }
float* CudaLoraModel::params() { no_cuda(); }
float* CudaLoraModel::grads() { no_cuda(); }
int64_t CudaLoraModel::num_params() const { no_cuda(); }
int64_t CudaLoraModel::max_tokens() const { no_cuda(); }
void CudaLoraModel::copy_flat(float*, std::vector<Tensor>&, bool) const { no_cuda(); }
const CudaMemoryReport& CudaLoraModel::memory() const { no_cuda(); }
int64_t CudaLoraModel::graph_steps() const { no_cuda(); }

#endif

}  // namespace tune
