// CudaLoraModel: host-side orchestration of the CUDA training step (kernels in src/ops/cuda/). Shapes, with
// T tokens in the micro-batch, H hidden, nH/nKV heads of d, I the FFN width, r the LoRA rank:
//   x (T, H) -> xn = norm(x) -> qkv = xn Wqkv^T (T, (nH + 2 nKV) d) [+ LoRA q/k/v] -> qk = rope(norm_h(q, k))
//   (T, (nH + nKV) d) -> att = attention(q, k, v) (T, nH d), lse (nH, T) -> xmid = x + att Wo^T [+ LoRA o]
//   -> xn2 = norm(xmid) -> gu = xn2 Wgu^T (T, 2I) [+ LoRA gate/up] -> h = silu(g) u (T, I)
//   -> x' = xmid + h Wd^T [+ LoRA down]
// LoRA on a target with input a: u = a A^T (T, r), y += s u B^T. The targets sharing an input (q, k, v; gate, up)
// have their A matrices side by side in the flat buffer, so one product makes all their u at once.
#include "model/forward_cuda.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

#if TUNE_CUDA
#include <cuda_runtime.h>

#include "core/cuda_check.h"
#include "ops/adamw.h"
#include "ops/attention.h"
#include "ops/embedding.h"
#include "ops/fill.h"
#include "ops/flash_attention.h"
#include "ops/gemm.h"
#include "ops/lm_head_loss.h"
#include "ops/qk_norm_rope.h"
#include "ops/rmsnorm.h"
#include "ops/swiglu.h"
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
  for (const LayerSpec& ls : c.layers) {
    if (ls.mixer != MixerKind::Attention) return fail("Qwen3.5 layers (gated attention, Gated DeltaNet)");
    if (ls.ffn != FfnKind::Dense) return fail("MoE layers");
  }
  if (c.norm_zero_centered) return fail("zero-centred norms");
  for (int t = int(LoraTarget::ExpertsGateUp); t < kLoraTargets; ++t)
    if (lora.targets[size_t(t)]) return fail(std::string("the LoRA target ") + lora_target_short(LoraTarget(t)));
  if (lora.dropout > 0) return fail("LoRA dropout");
  if (c.head_dim > 256 || c.rotary_dim > c.head_dim) return fail("head dims over 256");
  if (c.intermediate_size % 2 != 0) return fail("odd FFN widths");
  return true;
}

CudaPlanOptions cuda_plan_options(const ModelConfig& c, const LoraConfig& lora, int64_t max_tokens,
                                  int64_t budget_bytes) {
  CudaPlanOptions o;
  o.max_tokens = max_tokens;
  const int64_t T = max_tokens, H = c.hidden_size, L = c.num_layers;
  const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim, I = c.intermediate_size;
  const int64_t C = std::min<int64_t>(T, 16384);
  int64_t weights = c.vocab_size * H * (c.tie_word_embeddings ? 1 : 2);
  weights += L * (H * (q + 2 * kv) + q * H + 3 * H * I);
  weights *= 2;
  // Full-length activations (see alloc_activations) plus the FFN chunk and the attention backward's scratch.
  const int64_t act = T * (2 * (5 * H + (q + 2 * kv) + (q + kv) + q) + 4 * H + 4 * c.num_heads + 4 * c.rotary_dim) +
                      std::max(C * 8 * I, T * 2 * (q + (q + kv) + (q + 2 * kv))) + T * q * 4;
  const int64_t ckpt = (L + 1) * T * H * 2;
  (void)lora;
#if TUNE_CUDA
  if (budget_bytes <= 0) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) budget_bytes = int64_t(free_b);
  }
#endif
  // 5% and 1 GiB for the GEMM workspace, LoRA state and allocator slack.
  o.offload = budget_bytes > 0 && weights + act + ckpt > budget_bytes * 95 / 100 - (int64_t(1) << 30);
  // Keeping the attention outputs costs pinned host memory and bus traffic (both directions once per step): only
  // when it is a modest share of the host's memory and the bus is not busy with checkpoints.
  const int64_t att_bytes = L * T * c.num_heads * (c.head_dim * 2 + 4);
  const int64_t host = int64_t(sysconf(_SC_PHYS_PAGES)) * int64_t(sysconf(_SC_PAGE_SIZE));
  o.keep_attention = !o.offload && att_bytes <= std::min<int64_t>(host / 8, int64_t(16) << 30);
  return o;
}

#if TUNE_CUDA

namespace {

// Device memory owned by the model; all of it is allocated at construction.
struct DeviceBuffer {
  void* p = nullptr;
  int64_t bytes = 0;
  DeviceBuffer() = default;
  explicit DeviceBuffer(int64_t n) : bytes(n) {
    if (n > 0) CUDA_CHECK(cudaMalloc(&p, size_t(n)));
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; o.bytes = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p, o.p);
    std::swap(bytes, o.bytes);
    return *this;
  }
  ~DeviceBuffer() {
    if (p) cudaFree(p);
  }
  template <class T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

constexpr int64_t kAlignElems = 64;  // flat-buffer segments start 256-byte aligned (fp32)

int64_t round_up(int64_t n, int64_t a) {
  return (n + a - 1) / a * a;
}

void upload(void* dst, const Tensor& t, DType dt) {
  const Tensor h = t.to(dt, Device::CPU);
  CUDA_CHECK(cudaMemcpy(dst, h.data(), h.nbytes(), cudaMemcpyHostToDevice));
}

// One LoRA target inside the flat parameter buffer; A offsets of a group are consecutive.
struct LoraSlot {
  bool on = false;
  int64_t a = 0, b = 0;      // float offsets of A (r, in) and B (out, r)
  int64_t in = 0, out = 0;
  int64_t col = 0;           // first column of this target's output in the fused product
};

// Targets that share an input: their A's form one (n r, in) matrix at `a`.
struct LoraGroup {
  std::vector<LoraTarget> targets;
  int64_t a = 0, in = 0;
  int64_t n() const { return int64_t(targets.size()); }
};

struct Layer {
  DeviceBuffer wqkv, bqkv, wo, wgu, wd, attn_norm, ffn_norm, q_norm, k_norm;
  std::array<LoraSlot, kLoraTargets> lora{};
  LoraGroup qkv, gu;
};

}  // namespace

struct CudaLoraModel::Impl {
  ModelConfig c;
  LoraConfig lc;
  int64_t max_T = 0, H = 0, nH = 0, nKV = 0, d = 0, I = 0, V = 0, Nqkv = 0, Nqk = 0, r = 0;
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
  DeviceBuffer ids, pos, doc_start, rows, targets, loss, rope;  // rope: (T, rotary_dim / 2) (cos, sin)
  // Checkpoints: the input of each layer and the final hidden state, (L + 1) x (T, H) bf16. On the device, or,
  // with offload, in pinned host memory with two device slots: a side stream copies each new checkpoint out
  // during the forward and brings the next one back during the backward.
  DeviceBuffer ckpt;
  bool offload = false;
  void* host_ckpt = nullptr;
  cudaStream_t side = nullptr;
  std::vector<cudaEvent_t> ready;  // per checkpoint: its copy (out or in) is done / its slot may be reused
  // With keep_att, each layer's attention output and lse also go to pinned host memory during the forward and come
  // back for the backward, which then skips the attention forward; `att` and `lse` hold two layers' slots.
  bool keep_att = false;
  void* host_att = nullptr;
  std::vector<cudaEvent_t> att_ready;
  // Per-layer activations (recomputed in the backward) and gradients. The FFN is token-wise, so it runs in chunks
  // of `ffn_T` tokens (xn2, u_gu, u_d, gu, h, dh are chunk-sized): long sequences need no full-length FFN buffers.
  DeviceBuffer xn, qkv, qk, att, lse, xmid, xn2, u_qkv, u_o, u_gu, u_d, g_lora, dres, dres_b, dxn, region;
  int64_t ffn_T = 0;
  // `region` is shared by phases that never overlap: the FFN (gu, h, dh), the attention backward (datt, dqk,
  // dqkv) and the output head's workspace.
  int64_t off_h = 0, off_dh = 0, off_dqk = 0, off_dqkv = 0;
  DeviceBuffer fa_ws;
  // Contiguous q/k/v copies for head dims the fused attention does not cover (the reference kernel's layout).
  DeviceBuffer cq, ck, cv, cdq, cdk, cdv;
  DeviceBuffer dnorm;  // double scratch

  void* gu() const { return region.p; }
  void* h() const { return region.as<char>() + off_h; }
  void* dh() const { return region.as<char>() + off_dh; }
  void* datt() const { return region.p; }
  void* dqk() const { return region.as<char>() + off_dqk; }
  void* dqkv() const { return region.as<char>() + off_dqkv; }
  // The device copy of checkpoint l (a slot of two with offload).
  void* x_at(int64_t l) const { return ckpt.as<char>() + (offload ? l % 2 : l) * max_T * H * 2; }
  char* host_at(int64_t l) const { return static_cast<char*>(host_ckpt) + l * max_T * H * 2; }
  // Layer l's attention output (T, nH d) and lse (nH, T): the one buffer, or slot l % 2 with keep_att.
  int64_t att_layer_bytes() const { return max_T * nH * d * 2 + nH * max_T * 4; }
  void* att_at(int64_t l) const { return att.as<char>() + (keep_att ? l % 2 : 0) * max_T * nH * d * 2; }
  float* lse_at(int64_t l) const { return lse.as<float>() + (keep_att ? l % 2 : 0) * nH * max_T; }
  const void* head_w() const { return c.tie_word_embeddings ? emb.p : head.p; }
  const uint16_t* Ab(int64_t off) const { return Pb.as<uint16_t>() + off; }

  ~Impl() {
    for (cudaEvent_t e : ready) cudaEventDestroy(e);
    if (side) cudaStreamDestroy(side);
    if (host_ckpt) cudaFreeHost(host_ckpt);
    for (cudaEvent_t e : att_ready) cudaEventDestroy(e);
    if (host_att) cudaFreeHost(host_att);
  }

  void init_shape(const ModelConfig& config, const LoraConfig& lora, const CudaPlanOptions& o) {
    const int64_t max_tokens = o.max_tokens;
    std::string why;
    if (!cuda_training_supported(config, lora, &why))
      throw UnsupportedError("training on CUDA does not support " + why + " yet",
                             "use --device cpu for this model or these LoRA settings");
    c = config;
    lc = lora;
    max_T = max_tokens;
    H = c.hidden_size;
    nH = c.num_heads;
    nKV = c.num_kv_heads;
    d = c.head_dim;
    I = c.intermediate_size;
    V = c.vocab_size;
    Nqkv = (nH + 2 * nKV) * d;
    Nqk = (nH + nKV) * d;
    r = lora.rank;
    s = float(lora.scale());
    flash = cuda::flash_attention_supported(d);
    ffn_T = std::min(max_T, o.ffn_chunk > 0 ? o.ffn_chunk : int64_t(16384));
    offload = o.offload;
    keep_att = o.keep_attention && flash;  // the reference attention keeps no lse: it always recomputes
  }

  void alloc_weights() {
    const int64_t L = c.num_layers;
    emb = DeviceBuffer(V * H * 2);
    out_norm = DeviceBuffer(H * 4);
    if (!c.tie_word_embeddings) head = DeviceBuffer(V * H * 2);
    mem.weights += emb.bytes + out_norm.bytes + head.bytes;
    layers.resize(size_t(L));
    for (Layer& ly : layers) {
      ly.wqkv = DeviceBuffer(Nqkv * H * 2);
      if (c.attention_bias) ly.bqkv = DeviceBuffer(Nqkv * 2);
      ly.wo = DeviceBuffer(H * nH * d * 2);
      ly.wgu = DeviceBuffer(2 * I * H * 2);
      ly.wd = DeviceBuffer(H * I * 2);
      ly.attn_norm = DeviceBuffer(H * 4);
      ly.ffn_norm = DeviceBuffer(H * 4);
      if (c.qk_norm) {
        ly.q_norm = DeviceBuffer(d * 4);
        ly.k_norm = DeviceBuffer(d * 4);
      }
      mem.weights += ly.wqkv.bytes + ly.bqkv.bytes + ly.wo.bytes + ly.wgu.bytes + ly.wd.bytes +
                     ly.attn_norm.bytes + ly.ffn_norm.bytes + ly.q_norm.bytes + ly.k_norm.bytes;
    }
  }

  // Lays out the LoRA parameters: per layer [A_q A_k A_v] B_q B_k B_v A_o B_o [A_gate A_up] B_gate B_up A_down
  // B_down (absent targets skipped), each segment aligned.
  void plan_lora() {
    int64_t off = 0;
    auto take = [&](int64_t n) {
      const int64_t o = off;
      off += round_up(n, kAlignElems);
      return o;
    };
    for (int64_t l = 0; l < c.num_layers; ++l) {
      Layer& ly = layers[size_t(l)];
      auto group = [&](LoraGroup& g, std::initializer_list<LoraTarget> ts, int64_t in) {
        g.in = in;
        int64_t col = 0;
        for (LoraTarget t : ts) {
          LoraSlot& sl = ly.lora[size_t(t)];
          sl.in = in;
          sl.out = LoraAdapter::target_shape(c, l, t).second;
          sl.col = col;
          col += sl.out;
          if (lc.targets[size_t(t)]) {
            sl.on = true;
            g.targets.push_back(t);
          }
        }
        g.a = off;
        for (size_t i = 0; i < g.targets.size(); ++i) ly.lora[size_t(g.targets[i])].a = g.a + int64_t(i) * r * in;
        take(g.n() * r * in);
        for (LoraTarget t : g.targets) ly.lora[size_t(t)].b = take(ly.lora[size_t(t)].out * r);
      };
      group(ly.qkv, {LoraTarget::Q, LoraTarget::K, LoraTarget::V}, H);
      LoraGroup o, dn;
      group(o, {LoraTarget::O}, nH * d);
      group(ly.gu, {LoraTarget::Gate, LoraTarget::Up}, H);
      group(dn, {LoraTarget::Down}, I);
    }
    nparams = off;
    P = DeviceBuffer(nparams * 4);
    Pb = DeviceBuffer(nparams * 2);
    G = DeviceBuffer(nparams * 4);
    CUDA_CHECK(cudaMemset(P.p, 0, size_t(P.bytes)));
    CUDA_CHECK(cudaMemset(G.p, 0, size_t(G.bytes)));
    mem.lora = P.bytes + Pb.bytes + G.bytes;
  }

  void alloc_activations() {
    const int64_t T = max_T, L = c.num_layers, C = ffn_T;
    auto bf = [&](int64_t n) {
      DeviceBuffer b(n * 2);
      mem.activations += b.bytes;
      return b;
    };
    auto f32 = [&](int64_t n) {
      DeviceBuffer b(n * 4);
      mem.activations += b.bytes;
      return b;
    };
    ids = DeviceBuffer(T * 4);
    pos = DeviceBuffer(T * 4);
    doc_start = DeviceBuffer(T * 4);
    rows = DeviceBuffer(T * 4);
    targets = DeviceBuffer(T * 4);
    loss = DeviceBuffer(T * 4);
    mem.activations += 6 * T * 4;
    rope = f32(T * c.rotary_dim);
    ckpt = DeviceBuffer((offload ? 2 : L + 1) * T * H * 2);
    mem.checkpoints = ckpt.bytes;
    if (offload) {
      CUDA_CHECK(cudaHostAlloc(&host_ckpt, size_t((L + 1) * T * H * 2), cudaHostAllocDefault));
      mem.host_checkpoints += (L + 1) * T * H * 2;
      ready.resize(size_t(L + 1));
      for (cudaEvent_t& e : ready) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    }
    xn = bf(T * H);
    qkv = bf(T * Nqkv);
    qk = bf(T * Nqk);
    const int64_t att_slots = keep_att ? 2 : 1;
    att = bf(att_slots * T * nH * d);
    lse = f32(att_slots * nH * T);
    if (offload || keep_att) CUDA_CHECK(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking));
    if (keep_att) {
      CUDA_CHECK(cudaHostAlloc(&host_att, size_t(L * att_layer_bytes()), cudaHostAllocDefault));
      mem.host_checkpoints += L * att_layer_bytes();
      att_ready.resize(size_t(L));
      for (cudaEvent_t& e : att_ready) CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    }
    xmid = bf(T * H);
    xn2 = bf(C * H);
    u_qkv = bf(T * 3 * r);
    u_o = bf(T * r);
    u_gu = bf(C * 2 * r);
    u_d = bf(C * r);
    g_lora = bf(T * 3 * r);
    dres = f32(T * H);
    dres_b = bf(T * H);
    dxn = bf(T * H);
    auto al = [](int64_t b) { return round_up(b, 256); };
    off_h = al(C * 2 * I * 2);
    off_dh = off_h + al(C * I * 2);
    const int64_t ffn = off_dh + al(C * I * 2);
    off_dqk = al(T * nH * d * 2);
    off_dqkv = off_dqk + al(T * Nqk * 2);
    const int64_t attn = off_dqkv + al(T * Nqkv * 2);
    // The head's chunk: as many rows as fit in the larger of the two other phases, at least 64, at most 1024.
    const int64_t other = std::max(ffn, attn);
    head_chunk = 1024;
    while (head_chunk > 64 && cuda::lm_head_loss_workspace_bytes(head_chunk, H, V) > other) head_chunk /= 2;
    region = DeviceBuffer(std::max(other, cuda::lm_head_loss_workspace_bytes(head_chunk, H, V)));
    mem.activations += region.bytes;
    if (flash) {
      fa_ws = DeviceBuffer(int64_t(cuda::flash_attention_bwd_workspace_bytes(fa_shape(T))));
    } else {
      cq = bf(T * nH * d);
      ck = bf(T * nKV * d);
      cv = bf(T * nKV * d);
      cdq = bf(T * nH * d);
      cdk = bf(T * nKV * d);
      cdv = bf(T * nKV * d);
    }
    dnorm = DeviceBuffer(8);
    mem.workspace = fa_ws.bytes + cuda::gemm_workspace_bytes();
  }

  cuda::FlashAttnShape fa_shape(int64_t T) const {
    cuda::FlashAttnShape f;
    f.T = T;
    f.nH = nH;
    f.nKV = nKV;
    f.d = d;
    f.q_stride = Nqk;
    f.k_stride = Nqk;
    f.v_stride = Nqkv;
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
  // D (T, K) [ldd] (+)= dy (T, N) [ldy] W, W (N, K) bf16: the input gradient of a linear.
  static void mm_t(int64_t T, int64_t N, int64_t K, const void* dy, int64_t ldy, const void* W, void* D, int64_t ldd,
                   float beta = 0.0f) {
    cuda::gemm(T, K, N, 1.0f, {dy, ldy, false}, {W, K, false}, DType::BF16, beta, beta != 0.0f ? D : nullptr, D,
               ldd, DType::BF16);
  }

  // LoRA forward of a group with input a (T, in): u = a A_grp^T (T, n r); y[:, col_t] += s u_t B_t^T.
  void lora_fwd(const Layer& ly, const LoraGroup& g, int64_t T, const void* a, int64_t lda, void* u, void* y,
                int64_t ldy) {
    if (g.n() == 0) return;
    const int64_t nr = g.n() * r;
    cuda::gemm(T, nr, g.in, 1.0f, {a, lda, false}, {Ab(g.a), g.in, true}, DType::BF16, 0.0f, nullptr, u, nr,
               DType::BF16);
    for (int64_t i = 0; i < g.n(); ++i) {
      const LoraSlot& sl = ly.lora[size_t(g.targets[size_t(i)])];
      void* yc = static_cast<char*>(y) + sl.col * 2;
      cuda::gemm(T, sl.out, r, s, {static_cast<const char*>(u) + i * r * 2, nr, false}, {Ab(sl.b), r, true},
                 DType::BF16, 1.0f, yc, yc, ldy, DType::BF16);
    }
  }

  // LoRA backward of a group, given dy (T, ldy) of the fused output, the input a and the forward's u:
  // dB_t += s dy_t^T u_t, g_t = s dy_t B_t (left in g_lora for lora_dx), dA_grp += g^T a.
  void lora_bwd(const Layer& ly, const LoraGroup& g, int64_t T, const void* dy, int64_t ldy, const void* a,
                int64_t lda, const void* u) {
    if (g.n() == 0) return;
    const int64_t nr = g.n() * r;
    float* Gp = G.as<float>();
    for (int64_t i = 0; i < g.n(); ++i) {
      const LoraSlot& sl = ly.lora[size_t(g.targets[size_t(i)])];
      const void* dyc = static_cast<const char*>(dy) + sl.col * 2;
      cuda::gemm(sl.out, r, T, s, {dyc, ldy, true}, {static_cast<const char*>(u) + i * r * 2, nr, false},
                 DType::BF16, 1.0f, Gp + sl.b, Gp + sl.b, r, DType::F32);
      cuda::gemm(T, r, sl.out, s, {dyc, ldy, false}, {Ab(sl.b), r, false}, DType::BF16, 0.0f, nullptr,
                 g_lora.as<char>() + i * r * 2, nr, DType::BF16);
    }
    cuda::gemm(nr, g.in, T, 1.0f, {g_lora.p, nr, true}, {a, lda, false}, DType::BF16, 1.0f, Gp + g.a, Gp + g.a,
               g.in, DType::F32);
  }

  // da (T, in) += g A_grp with the g of the group's lora_bwd; runs after the base product that overwrites da.
  void lora_dx(const LoraGroup& g, int64_t T, void* da, int64_t ldda) {
    if (g.n() == 0) return;
    const int64_t nr = g.n() * r;
    cuda::gemm(T, g.in, nr, 1.0f, {g_lora.p, nr, false}, {Ab(g.a), g.in, false}, DType::BF16, 1.0f, da, da, ldda,
               DType::BF16);
  }

  LoraGroup single(const Layer& ly, LoraTarget t) const {
    LoraGroup g;
    const LoraSlot& sl = ly.lora[size_t(t)];
    g.in = sl.in;
    g.a = sl.a;
    if (sl.on) g.targets.push_back(t);
    return g;
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
    p.eps = float(c.rms_norm_eps);
    p.rope = rope.as<float>();
    return p;
  }

  float attn_scale() const { return float(1.0 / std::sqrt(double(d))); }

  // Attention forward (layer l's att, lse) from qk and qkv's v.
  void attention_fwd(int64_t l, int64_t T) {
    void* att_p = att_at(l);
    float* lse_p = lse_at(l);
    const char* v = qkv.as<char>() + Nqk * 2;
    if (flash) {
      cuda::flash_attention_fwd(qk.p, qk.as<char>() + nH * d * 2, v, doc_start.as<int32_t>(), attn_scale(), att_p,
                                lse_p, fa_shape(T), nullptr);
      return;
    }
    CUDA_CHECK(cudaMemcpy2D(cq.p, nH * d * 2, qk.p, Nqk * 2, nH * d * 2, T, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D(ck.p, nKV * d * 2, qk.as<char>() + nH * d * 2, Nqk * 2, nKV * d * 2, T,
                            cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D(cv.p, nKV * d * 2, v, Nqkv * 2, nKV * d * 2, T, cudaMemcpyDeviceToDevice));
    cuda::attention_fwd(cq.p, ck.p, cv.p, doc_start.as<int32_t>(), attn_scale(), att_p, T, nH, nKV, d, DType::BF16);
  }

  // Attention backward of layer l: datt -> dqk (q, k parts) and dqkv's v part.
  void attention_bwd(int64_t l, int64_t T) {
    const char* v = qkv.as<char>() + Nqk * 2;
    char* dv = static_cast<char*>(dqkv()) + Nqk * 2;
    if (flash) {
      cuda::flash_attention_bwd(qk.p, qk.as<char>() + nH * d * 2, v, att_at(l), datt(), lse_at(l),
                                doc_start.as<int32_t>(), attn_scale(), dqk(), static_cast<char*>(dqk()) + nH * d * 2,
                                dv, fa_ws.p, fa_shape(T), nullptr);
      return;
    }
    cuda::attention_bwd(cq.p, ck.p, cv.p, doc_start.as<int32_t>(), attn_scale(), datt(), cdq.p, cdk.p, cdv.p, T, nH,
                        nKV, d, DType::BF16);
    CUDA_CHECK(cudaMemcpy2D(dqk(), Nqk * 2, cdq.p, nH * d * 2, nH * d * 2, T, cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D(static_cast<char*>(dqk()) + nH * d * 2, Nqk * 2, cdk.p, nKV * d * 2, nKV * d * 2, T,
                            cudaMemcpyDeviceToDevice));
    CUDA_CHECK(cudaMemcpy2D(dv, Nqkv * 2, cdv.p, nKV * d * 2, nKV * d * 2, T, cudaMemcpyDeviceToDevice));
  }

  // Attention half of layer l from x_in: xn, qkv, qk, att, lse and xmid = x_in + attention. In the backward's
  // recompute with keep_att, att and lse are already back from the host and the attention itself is skipped.
  void attn_fwd(int64_t l, int64_t T, const void* x_in, bool recompute) {
    const Layer& ly = layers[size_t(l)];
    cuda::rmsnorm_fwd(x_in, ly.attn_norm.p, float(c.rms_norm_eps), false, xn.p, T, H, DType::BF16, DType::F32);
    mm(T, Nqkv, H, xn.p, H, ly.wqkv.p, qkv.p, Nqkv, 0.0f, nullptr, ly.bqkv.p);
    lora_fwd(ly, ly.qkv, T, xn.p, H, u_qkv.p, qkv.p, Nqkv);
    cuda::qk_norm_rope_fwd(qk_params(ly, T), qkv.p, Nqkv, qk.p, Nqk);
    if (!(recompute && keep_att)) {
      if (!recompute) att_slot_free(l);
      attention_fwd(l, T);
      if (!recompute) save_att(l, T);
    }
    mm(T, H, nH * d, att_at(l), nH * d, ly.wo.p, xmid.p, H, 1.0f, x_in);
    lora_fwd(ly, single(ly, LoraTarget::O), T, att_at(l), nH * d, u_o.p, xmid.p, H);
  }

  // FFN of the n tokens from t0, forward: xn2, gu, h of the chunk (and the LoRA u's); x_out rows += when given.
  void ffn_fwd(int64_t l, int64_t t0, int64_t n, void* x_out) {
    const Layer& ly = layers[size_t(l)];
    const char* xm = xmid.as<char>() + t0 * H * 2;
    cuda::rmsnorm_fwd(xm, ly.ffn_norm.p, float(c.rms_norm_eps), false, xn2.p, n, H, DType::BF16, DType::F32);
    mm(n, 2 * I, H, xn2.p, H, ly.wgu.p, gu(), 2 * I);
    lora_fwd(ly, ly.gu, n, xn2.p, H, u_gu.p, gu(), 2 * I);
    cuda::swiglu_fused_fwd(gu(), h(), n, I);
    const LoraGroup dn = single(ly, LoraTarget::Down);
    if (x_out) {
      char* xo = static_cast<char*>(x_out) + t0 * H * 2;
      mm(n, H, I, h(), I, ly.wd.p, xo, H, 1.0f, xm);
      lora_fwd(ly, dn, n, h(), I, u_d.p, xo, H);
    } else if (dn.n() > 0) {
      cuda::gemm(n, r, I, 1.0f, {h(), I, false}, {Ab(dn.a), I, true}, DType::BF16, 0.0f, nullptr, u_d.p, r,
                 DType::BF16);
    }
  }

  // FFN backward of the chunk [t0, t0 + n) after ffn_fwd(l, t0, n, nullptr): dres/dres_b rows hold dL/dx_out on
  // entry, dL/dxmid on exit.
  void ffn_bwd(int64_t l, int64_t t0, int64_t n) {
    const Layer& ly = layers[size_t(l)];
    const char* dy = dres_b.as<char>() + t0 * H * 2;
    char* dx = dxn.as<char>() + t0 * H * 2;
    const LoraGroup dn = single(ly, LoraTarget::Down);
    lora_bwd(ly, dn, n, dy, H, h(), I, u_d.p);
    mm_t(n, H, I, dy, H, ly.wd.p, dh(), I);
    lora_dx(dn, n, dh(), I);
    cuda::swiglu_fused_bwd(gu(), dh(), gu(), n, I);  // dgu overwrites gu in place
    void* dgu = gu();
    lora_bwd(ly, ly.gu, n, dgu, 2 * I, xn2.p, H, u_gu.p);
    mm_t(n, 2 * I, H, dgu, 2 * I, ly.wgu.p, dx, H);
    lora_dx(ly.gu, n, dx, H);
    cuda::rmsnorm_bwd_residual(xmid.as<char>() + t0 * H * 2, ly.ffn_norm.as<float>(), dx, float(c.rms_norm_eps),
                               false, dres.as<float>() + t0 * H, dres_b.as<char>() + t0 * H * 2, n, H);
  }

  // Attention backward of layer l (after attn_fwd): dres/dres_b hold dL/dxmid on entry, dL/dx_in on exit.
  void attn_bwd(int64_t l, int64_t T, const void* x_in) {
    const Layer& ly = layers[size_t(l)];
    lora_bwd(ly, single(ly, LoraTarget::O), T, dres_b.p, H, att_at(l), nH * d, u_o.p);
    mm_t(T, H, nH * d, dres_b.p, H, ly.wo.p, datt(), nH * d);
    lora_dx(single(ly, LoraTarget::O), T, datt(), nH * d);
    attention_bwd(l, T);
    cuda::qk_norm_rope_bwd(qk_params(ly, T), qkv.p, Nqkv, dqk(), Nqk, dqkv(), Nqkv);
    lora_bwd(ly, ly.qkv, T, dqkv(), Nqkv, xn.p, H, u_qkv.p);
    mm_t(T, Nqkv, H, dqkv(), Nqkv, ly.wqkv.p, dxn.p, H);
    lora_dx(ly.qkv, T, dxn.p, H);
    cuda::rmsnorm_bwd_residual(x_in, ly.attn_norm.as<float>(), dxn.p, float(c.rms_norm_eps), false,
                               dres.as<float>(), dres_b.p, T, H);
  }

  // Checkpoint traffic with offload (no-ops otherwise). After the main stream wrote checkpoint l: copy it out.
  void save_ckpt(int64_t l, int64_t T) {
    if (!offload) return;
    CUDA_CHECK(cudaEventRecord(ready[size_t(l)], nullptr));
    CUDA_CHECK(cudaStreamWaitEvent(side, ready[size_t(l)]));
    CUDA_CHECK(cudaMemcpyAsync(host_at(l), x_at(l), size_t(T * H * 2), cudaMemcpyDeviceToHost, side));
    CUDA_CHECK(cudaEventRecord(ready[size_t(l)], side));
  }
  // Before the main stream overwrites the slot of checkpoint l (it holds l - 2): that one's copy-out is done.
  void slot_free(int64_t l) {
    if (offload && l >= 2) CUDA_CHECK(cudaStreamWaitEvent(nullptr, ready[size_t(l - 2)]));
  }
  // Backward: bring checkpoint l back once the main stream is done with the slot's previous content (l + 2).
  void prefetch_ckpt(int64_t l, int64_t T) {
    if (!offload || l < 0) return;
    CUDA_CHECK(cudaEventRecord(ready[size_t(l)], nullptr));
    CUDA_CHECK(cudaStreamWaitEvent(side, ready[size_t(l)]));
    CUDA_CHECK(cudaMemcpyAsync(x_at(l), host_at(l), size_t(T * H * 2), cudaMemcpyHostToDevice, side));
    CUDA_CHECK(cudaEventRecord(ready[size_t(l)], side));
  }
  void wait_ckpt(int64_t l) {
    if (offload) CUDA_CHECK(cudaStreamWaitEvent(nullptr, ready[size_t(l)]));
  }

  // The same traffic for layer l's attention output and lse (keep_att), with slots of two layers.
  void copy_att(int64_t l, int64_t T, cudaMemcpyKind kind) {
    char* host = static_cast<char*>(host_att) + l * att_layer_bytes();
    const size_t ob = size_t(T * nH * d * 2);
    CUDA_CHECK(cudaEventRecord(att_ready[size_t(l)], nullptr));
    CUDA_CHECK(cudaStreamWaitEvent(side, att_ready[size_t(l)]));
    const size_t lb = size_t(nH * T * 4);  // lse is (nH, T) for the batch's T
    if (kind == cudaMemcpyDeviceToHost) {
      CUDA_CHECK(cudaMemcpyAsync(host, att_at(l), ob, kind, side));
      CUDA_CHECK(cudaMemcpyAsync(host + ob, lse_at(l), lb, kind, side));
    } else {
      CUDA_CHECK(cudaMemcpyAsync(att_at(l), host, ob, kind, side));
      CUDA_CHECK(cudaMemcpyAsync(lse_at(l), host + ob, lb, kind, side));
    }
    CUDA_CHECK(cudaEventRecord(att_ready[size_t(l)], side));
  }
  void save_att(int64_t l, int64_t T) {
    if (keep_att) copy_att(l, T, cudaMemcpyDeviceToHost);
  }
  void att_slot_free(int64_t l) {
    if (keep_att && l >= 2) CUDA_CHECK(cudaStreamWaitEvent(nullptr, att_ready[size_t(l - 2)]));
  }

  double forward_backward(const CudaBatch& b, float grad_scale) {
    const int64_t T = b.size(), L = c.num_layers;
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
    CUDA_CHECK(cudaMemcpy(ids.p, b.ids.data(), size_t(T) * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(pos.p, b.pos.data(), size_t(T) * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(doc_start.p, b.doc_start.data(), size_t(T) * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(rows.p, rws.data(), size_t(n) * 4, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(targets.p, tgs.data(), size_t(n) * 4, cudaMemcpyHostToDevice));

    cuda::rope_table(pos.as<int32_t>(), T, c.rotary_dim, c.rope_theta, rope.as<float>());
    int32_t bad = 0;
    cuda::embedding_fwd(ids.as<int32_t>(), emb.p, DType::BF16, x_at(0), DType::BF16, T, V, H, &bad);
    save_ckpt(0, T);
    for (int64_t l = 0; l < L; ++l) {
      attn_fwd(l, T, x_at(l), false);
      slot_free(l + 1);
      for (int64_t t0 = 0; t0 < T; t0 += ffn_T) ffn_fwd(l, t0, std::min(ffn_T, T - t0), x_at(l + 1));
      save_ckpt(l + 1, T);
    }
    if (n == 0) {
      CUDA_CHECK(cudaDeviceSynchronize());
      return 0;
    }

    // Head: xf = norm(x_L) into xn; the loss's gradient w.r.t. xf lands in dres (f32), then through the norm.
    const float eps = float(c.rms_norm_eps);
    cuda::rmsnorm_fwd(x_at(L), out_norm.p, eps, false, xn.p, T, H, DType::BF16, DType::F32);
    CUDA_CHECK(cudaMemsetAsync(dres.p, 0, size_t(T * H * 4)));
    cuda::lm_head_loss(xn.p, head_w(), rows.as<int32_t>(), targets.as<int32_t>(), n, H, V, grad_scale,
                       dres.as<float>(), loss.as<float>(), head_chunk, region.p);
    cuda::cast_f32_to_bf16(dres.as<float>(), dxn.p, T * H);
    CUDA_CHECK(cudaMemsetAsync(dres.p, 0, size_t(T * H * 4)));
    cuda::rmsnorm_bwd_residual(x_at(L), out_norm.as<float>(), dxn.p, eps, false, dres.as<float>(), dres_b.p, T, H);
    // x_L and x_{L-1} are still in their slots; each layer's backward brings the one below back meanwhile.
    for (int64_t l = L - 1; l >= 0; --l) {
      if (l < L - 1) wait_ckpt(l);
      prefetch_ckpt(l - 1, T);
      // The last two layers' attention outputs are still in their slots; layer l - 1's comes back meanwhile.
      if (keep_att && l <= L - 3) CUDA_CHECK(cudaStreamWaitEvent(nullptr, att_ready[size_t(l)]));
      if (keep_att && l >= 1 && l - 1 <= L - 3) copy_att(l - 1, T, cudaMemcpyHostToDevice);
      attn_fwd(l, T, x_at(l), true);
      for (int64_t t0 = 0; t0 < T; t0 += ffn_T) {
        const int64_t nt = std::min(ffn_T, T - t0);
        ffn_fwd(l, t0, nt, nullptr);
        ffn_bwd(l, t0, nt);
      }
      attn_bwd(l, T, x_at(l));
    }
    std::vector<float> losses(static_cast<size_t>(n));
    CUDA_CHECK(cudaMemcpy(losses.data(), loss.p, size_t(n) * 4, cudaMemcpyDeviceToHost));
    double sum = 0;
    for (float v : losses) sum += double(v);
    return sum;
  }

  void upload_weights(const Model& m) {
    const ModelWeights& w = m.weights;
    upload(emb.p, w.token_embd, DType::BF16);
    upload(out_norm.p, w.output_norm, DType::F32);
    if (!c.tie_word_embeddings) upload(head.p, w.output, DType::BF16);
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const LayerWeights& lw = w.layers[size_t(l)];
      Layer& ly = layers[size_t(l)];
      const int64_t qn = nH * d * H, kn = nKV * d * H;
      upload(ly.wqkv.p, lw.attn_q, DType::BF16);
      upload(ly.wqkv.as<char>() + qn * 2, lw.attn_k, DType::BF16);
      upload(ly.wqkv.as<char>() + (qn + kn) * 2, lw.attn_v, DType::BF16);
      if (c.attention_bias) {
        upload(ly.bqkv.p, lw.attn_q_bias, DType::BF16);
        upload(ly.bqkv.as<char>() + nH * d * 2, lw.attn_k_bias, DType::BF16);
        upload(ly.bqkv.as<char>() + Nqk * 2, lw.attn_v_bias, DType::BF16);
      }
      upload(ly.wo.p, lw.attn_output, DType::BF16);
      upload(ly.wgu.p, lw.ffn_gate, DType::BF16);
      upload(ly.wgu.as<char>() + I * H * 2, lw.ffn_up, DType::BF16);
      upload(ly.wd.p, lw.ffn_down, DType::BF16);
      upload(ly.attn_norm.p, lw.attn_norm, DType::F32);
      upload(ly.ffn_norm.p, lw.ffn_norm, DType::F32);
      if (c.qk_norm) {
        upload(ly.q_norm.p, lw.attn_q_norm, DType::F32);
        upload(ly.k_norm.p, lw.attn_k_norm, DType::F32);
      }
    }
  }

  void random_weights(uint64_t seed) {
    uint64_t k = seed * 1000003ull;
    auto normal = [&](const DeviceBuffer& b) { cuda::fill_normal(b.p, DType::BF16, b.bytes / 2, ++k, 0.0f, 0.02f); };
    auto ones = [&](const DeviceBuffer& b) { cuda::fill_constant(b.p, DType::F32, b.bytes / 4, 1.0f); };
    normal(emb);
    ones(out_norm);
    if (!c.tie_word_embeddings) normal(head);
    for (Layer& ly : layers) {
      normal(ly.wqkv);
      if (ly.bqkv.p) normal(ly.bqkv);
      normal(ly.wo);
      normal(ly.wgu);
      normal(ly.wd);
      ones(ly.attn_norm);
      ones(ly.ffn_norm);
      if (ly.q_norm.p) {
        ones(ly.q_norm);
        ones(ly.k_norm);
      }
    }
    CUDA_CHECK(cudaDeviceSynchronize());
  }

  void upload_adapter(const LoraAdapter& a) {
    std::vector<float> host(size_t(nparams), 0.0f);
    for (int64_t l = 0; l < c.num_layers; ++l)
      for (int t = 0; t < kLoraTargets; ++t) {
        const LoraSlot& sl = layers[size_t(l)].lora[size_t(t)];
        if (!sl.on) continue;
        const LoraWeights& w = a.layers[size_t(l)][size_t(t)];
        TUNE_CHECK(w.defined() && w.A.numel() == r * sl.in && w.B.numel() == sl.out * r)
            << "CUDA LoRA layout differs from the adapter at layer " << l << " target " << lora_target_short(LoraTarget(t));
        std::memcpy(host.data() + sl.a, w.A.f32(), size_t(w.A.numel()) * 4);
        std::memcpy(host.data() + sl.b, w.B.f32(), size_t(w.B.numel()) * 4);
      }
    CUDA_CHECK(cudaMemcpy(P.p, host.data(), size_t(nparams) * 4, cudaMemcpyHostToDevice));
    cuda::cast_f32_to_bf16(P.as<float>(), Pb.p, nparams);
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
        std::memcpy(w.B.f32(), hp.data() + sl.b, size_t(w.B.numel()) * 4);
        if (w.dA.defined()) std::memcpy(w.dA.f32(), hg.data() + sl.a, size_t(w.dA.numel()) * 4);
        if (w.dB.defined()) std::memcpy(w.dB.f32(), hg.data() + sl.b, size_t(w.dB.numel()) * 4);
      }
  }
};

CudaLoraModel::CudaLoraModel(const Model& model, const LoraAdapter& adapter, const CudaPlanOptions& plan)
    : impl_(std::make_unique<Impl>()) {
  impl_->init_shape(model.config, adapter.config, plan);
  impl_->alloc_weights();
  impl_->plan_lora();
  impl_->alloc_activations();
  impl_->upload_weights(model);
  impl_->upload_adapter(adapter);
}

CudaLoraModel::CudaLoraModel(const ModelConfig& config, const LoraAdapter& adapter, uint64_t seed,
                             const CudaPlanOptions& plan)
    : impl_(std::make_unique<Impl>()) {
  impl_->init_shape(config, adapter.config, plan);
  impl_->alloc_weights();
  impl_->plan_lora();
  impl_->alloc_activations();
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
void CudaLoraModel::params_changed() { cuda::cast_f32_to_bf16(impl_->P.as<float>(), impl_->Pb.p, impl_->nparams); }
float* CudaLoraModel::params() { return impl_->P.as<float>(); }
float* CudaLoraModel::grads() { return impl_->G.as<float>(); }
int64_t CudaLoraModel::num_params() const { return impl_->nparams; }
int64_t CudaLoraModel::max_tokens() const { return impl_->max_T; }
std::vector<int64_t> CudaLoraModel::param_offsets() const {
  std::vector<int64_t> offs;
  for (const Layer& ly : impl_->layers)
    for (const LoraSlot& sl : ly.lora)
      if (sl.on) {
        offs.push_back(sl.a);
        offs.push_back(sl.b);
      }
  return offs;
}
const CudaMemoryReport& CudaLoraModel::memory() const { return impl_->mem; }

#else  // !TUNE_CUDA

struct CudaLoraModel::Impl {};

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
std::vector<int64_t> CudaLoraModel::param_offsets() const { no_cuda(); }
const CudaMemoryReport& CudaLoraModel::memory() const { no_cuda(); }

#endif

}  // namespace tune
