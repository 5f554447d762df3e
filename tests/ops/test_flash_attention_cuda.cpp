// Fused attention on CUDA (ops/flash_attention.h, bf16) against the CPU reference in double run on the same
// bf16-rounded inputs: one document with and without doc_start, packed documents of odd lengths (a query tile
// spanning several documents, T not a multiple of any tile), batch rows, GQA 1:1 / 2:1 / 4:1, head dims 64, 128
// and 256, q/k/v and dq/dk/dv as column blocks of one fused buffer with padded o rows, and a long document for
// the backward's accumulation. On Hopper the d128 cases run the wgmma kernels (flash_attention_wgmma.cu), elsewhere
// the mma.sync ones. Outputs start as NaN, so an element never written fails.
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "ops/attention.h"
#include "ops/flash_attention.h"

namespace tune {

namespace {

struct Case {
  const char* name;
  int64_t nH, nKV, d;
  std::vector<int32_t> docs;  // document lengths; T is their sum
  bool null_doc_start;        // one document, passed as a null doc_start
  bool fused;                 // q/k/v and dq/dk/dv inside (T, (nH + 2 nKV) d) buffers; o/d_o rows padded
};

#ifdef TUNE_CUDA

// bf16 outputs: one rounding of each stored value (2^-9 relative) plus bf16 P and dS fed to the tensor cores;
// the relative L2 error of a whole tensor stays well under this.
constexpr double kRelL2 = 1e-2;
// lse is fp32 arithmetic on the same inputs as the reference (fp32 sums of exact bf16 products, ex2/lg2
// approximations of a few ulp): absolute, in nats.
constexpr double kLseAbs = 1e-3;

std::vector<int32_t> doc_starts(const std::vector<int32_t>& docs) {
  std::vector<int32_t> s;
  for (int32_t len : docs) {
    const int32_t b = int32_t(s.size());
    for (int32_t i = 0; i < len; ++i) s.push_back(b);
  }
  return s;
}

double rel_l2(const std::vector<double>& got, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);  // NaN when an element is NaN
}

// Where a (T, heads, d) tensor is farthest from the reference, for the failure message.
std::string worst_at(const std::vector<double>& got, const std::vector<double>& ref, int64_t heads, int64_t d) {
  size_t w = 0;
  double we = -1;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double e = std::isnan(got[i]) ? INFINITY : std::fabs(got[i] - ref[i]);
    if (e > we) we = e, w = i;
  }
  const int64_t i = int64_t(w);
  return "; worst at t " + std::to_string(i / (heads * d)) + " head " + std::to_string(i / d % heads) + " dim " +
         std::to_string(i % d) + ": got " + std::to_string(got[w]) + ", want " + std::to_string(ref[w]);
}

// Log-sum-exp of the scaled scores of every (h, t), in double: (nH, T).
std::vector<double> lse_reference(const std::vector<double>& q, const std::vector<double>& k,
                                  const std::vector<int32_t>& starts, double scale, int64_t T, int64_t nH,
                                  int64_t nKV, int64_t d) {
  std::vector<double> lse(static_cast<size_t>(nH * T)), x(static_cast<size_t>(T));
  for (int64_t h = 0; h < nH; ++h) {
    const int64_t kh = h / (nH / nKV);
    for (int64_t t = 0; t < T; ++t) {
      double mx = -INFINITY, sum = 0;
      for (int64_t s = starts[size_t(t)]; s <= t; ++s) {
        double dot = 0;
        for (int64_t j = 0; j < d; ++j) dot += q[size_t((t * nH + h) * d + j)] * k[size_t((s * nKV + kh) * d + j)];
        x[size_t(s)] = dot * scale;
        mx = std::max(mx, x[size_t(s)]);
      }
      for (int64_t s = starts[size_t(t)]; s <= t; ++s) sum += std::exp(x[size_t(s)] - mx);
      lse[size_t(h * T + t)] = mx + std::log(sum);
    }
  }
  return lse;
}

// Copies a (T, cols) f32 host tensor into columns [col, col + cols) of the (T, W) f32 host tensor `dst`.
void put_columns(Tensor& dst, const Tensor& src, int64_t col) {
  const int64_t T = src.size(0), cols = src.numel() / T, W = dst.size(1);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < cols; ++j) dst.f32()[t * W + col + j] = src.f32()[t * cols + j];
}

// Columns [col, col + cols) of a (T, W) device tensor, as doubles (T * cols).
std::vector<double> get_columns(const Tensor& src, int64_t col, int64_t cols) {
  const std::vector<double> all = test::doubles(src);
  const int64_t T = src.size(0), W = src.size(1);
  std::vector<double> out(size_t(T * cols));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < cols; ++j) out[size_t(t * cols + j)] = all[size_t(t * W + col + j)];
  return out;
}

void run_case(const Case& c, uint64_t seed) {
  const std::vector<int32_t> starts = doc_starts(c.docs);
  const int64_t T = int64_t(starts.size()), nH = c.nH, nKV = c.nKV, d = c.d;
  const float scale = float(1.0 / std::sqrt(double(d)));
  const Tensor q = test::rounded(test::randn({T, nH * d}, seed, 1.5f), DType::BF16);
  const Tensor k = test::rounded(test::randn({T, nKV * d}, seed + 1, 1.5f), DType::BF16);
  const Tensor v = test::rounded(test::randn({T, nKV * d}, seed + 2), DType::BF16);
  const Tensor d_o = test::rounded(test::randn({T, nH * d}, seed + 3), DType::BF16);

  const std::vector<double> qd = test::doubles(q), kd = test::doubles(k), vd = test::doubles(v),
                            dod = test::doubles(d_o);
  std::vector<double> o_ref(qd.size()), dq_ref(qd.size()), dk_ref(kd.size()), dv_ref(vd.size());
  cpu::attention_fwd(qd.data(), kd.data(), vd.data(), starts.data(), double(scale), o_ref.data(), T, nH, nKV, d);
  cpu::attention_bwd(qd.data(), kd.data(), vd.data(), starts.data(), double(scale), dod.data(), dq_ref.data(),
                     dk_ref.data(), dv_ref.data(), T, nH, nKV, d);
  const std::vector<double> lse_ref = lse_reference(qd, kd, starts, double(scale), T, nH, nKV, d);

  // Device layout: fused (T, W) buffers for q/k/v and their gradients, o and d_o rows padded by `pad`, or plain
  // contiguous tensors.
  const int64_t W = (nH + 2 * nKV) * d, pad = c.fused ? 24 : 0, o_stride = nH * d + pad;
  cuda::FlashAttnShape shape{T, nH, nKV, d, nH * d, nKV * d, nKV * d, o_stride};
  Tensor qkv, dqkv, qc, kc, vc, dqc, dkc, dvc;
  const void *qp, *kp, *vp;
  void *dqp, *dkp, *dvp;
  if (c.fused) {
    Tensor host = Tensor::empty(DType::F32, {T, W});
    put_columns(host, q, 0);
    put_columns(host, k, nH * d);
    put_columns(host, v, (nH + nKV) * d);
    qkv = test::on_cuda(host, DType::BF16);
    dqkv = test::poisoned({T, W}, DType::BF16);
    char* base = static_cast<char*>(qkv.data());
    char* dbase = static_cast<char*>(dqkv.data());
    qp = base, kp = base + nH * d * 2, vp = base + (nH + nKV) * d * 2;
    dqp = dbase, dkp = dbase + nH * d * 2, dvp = dbase + (nH + nKV) * d * 2;
    shape.q_stride = shape.k_stride = shape.v_stride = W;
  } else {
    qc = test::on_cuda(q, DType::BF16), kc = test::on_cuda(k, DType::BF16), vc = test::on_cuda(v, DType::BF16);
    dqc = test::poisoned(q.shape(), DType::BF16), dkc = test::poisoned(k.shape(), DType::BF16),
    dvc = test::poisoned(v.shape(), DType::BF16);
    qp = qc.data(), kp = kc.data(), vp = vc.data(), dqp = dqc.data(), dkp = dkc.data(), dvp = dvc.data();
  }
  // d_o with o's row stride; its padding is NaN, so a kernel reading past a row poisons the gradients.
  Tensor d_o_host = Tensor::empty(DType::F32, {T, o_stride});
  for (int64_t i = 0; i < d_o_host.numel(); ++i) d_o_host.f32()[i] = std::numeric_limits<float>::quiet_NaN();
  put_columns(d_o_host, d_o, 0);
  const Tensor doc = test::on_cuda(d_o_host, DType::BF16);
  Tensor o = test::poisoned({T, o_stride}, DType::BF16), lse = test::poisoned({nH, T}, DType::F32);
  Tensor starts_c;
  if (!c.null_doc_start) starts_c = test::ints_on_cuda(starts);
  const int32_t* ds = c.null_doc_start ? nullptr : starts_c.ptr<int32_t>();
  const Tensor ws =
      Tensor::empty(DType::U8, {int64_t(cuda::flash_attention_bwd_workspace_bytes(shape))}, Device::CUDA);

  cuda::flash_attention_fwd(qp, kp, vp, ds, scale, o.data(), lse.ptr<float>(), shape, nullptr);
  cuda::flash_attention_bwd(qp, kp, vp, o.data(), doc.data(), lse.ptr<float>(), ds, scale, dqp, dkp, dvp,
                            ws.data(), shape, nullptr);

  const std::vector<double> o_got = get_columns(o, 0, nH * d);
  std::vector<double> dq_got, dk_got, dv_got;
  if (c.fused) {
    dq_got = get_columns(dqkv, 0, nH * d);
    dk_got = get_columns(dqkv, nH * d, nKV * d);
    dv_got = get_columns(dqkv, (nH + nKV) * d, nKV * d);
  } else {
    dq_got = test::doubles(dqc), dk_got = test::doubles(dkc), dv_got = test::doubles(dvc);
  }
  const std::vector<double> lse_got = test::doubles(lse);
  double lse_err = 0;
  for (size_t i = 0; i < lse_ref.size(); ++i) {
    const double e = std::fabs(lse_got[i] - lse_ref[i]);
    lse_err = std::isnan(e) || e > lse_err ? e : lse_err;
  }
  const double eo = rel_l2(o_got, o_ref), edq = rel_l2(dq_got, dq_ref), edk = rel_l2(dk_got, dk_ref),
               edv = rel_l2(dv_got, dv_ref);
  std::printf("[ flash    ] %-40s T %5lld: rel L2 o %.2e dq %.2e dk %.2e dv %.2e, lse max abs %.2e\n", c.name,
              (long long)T, eo, edq, edk, edv, lse_err);
  EXPECT_LE(eo, kRelL2) << "o" << worst_at(o_got, o_ref, nH, d);
  EXPECT_LE(edq, kRelL2) << "dq" << worst_at(dq_got, dq_ref, nH, d);
  EXPECT_LE(edk, kRelL2) << "dk" << worst_at(dk_got, dk_ref, nKV, d);
  EXPECT_LE(edv, kRelL2) << "dv" << worst_at(dv_got, dv_ref, nKV, d);
  EXPECT_LE(lse_err, kLseAbs) << "lse" << worst_at(lse_got, lse_ref, 1, T);
  // Without dq the accumulators stay in the workspace: dq = scale * acc, (T, nH, d) fp32.
  cuda::flash_attention_bwd(qp, kp, vp, o.data(), doc.data(), lse.ptr<float>(), ds, scale, nullptr, dkp, dvp,
                            ws.data(), shape, nullptr);
  const Tensor acc = Tensor::wrap(ws.data(), DType::F32, {T, nH * d}, nullptr, Device::CUDA);
  std::vector<double> dq_acc = test::doubles(acc);
  for (double& x : dq_acc) x *= double(scale);
  EXPECT_LE(rel_l2(dq_acc, dq_ref), kRelL2) << "dq left in the workspace" << worst_at(dq_acc, dq_ref, nH, d);
  if (pad > 0) {  // the padding of o's rows is left alone
    const std::vector<double> o_pad = get_columns(o, nH * d, pad);
    int64_t written = 0;
    for (double x : o_pad) written += !std::isnan(x);
    EXPECT_EQ(written, 0) << "elements of o's row padding written";
  }
}
#endif

// One suite of cases per TEST, so that a sanitizer run can pick small ones; seeds differ per case.
void run_cases(uint64_t seed, const std::vector<Case>& cases) {
#ifndef TUNE_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  TUNE_REQUIRE_CUDA();
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].name);
    run_case(cases[i], seed + 10 * i);
  }
#endif
}

}  // namespace

TEST(FlashAttentionCuda, OneDocument) {
  run_cases(100, {{"one document, null doc_start, 2:1, d128", 4, 2, 128, {333}, true, false},
                   // dq and dk of a one-token document are 0 (P = 1, so dS = dP - D = 0) and those of a few
                   // tokens nearly so: they are measured beside a longer document, not by their own tiny norm.
                   {"documents of 1, 3, 1, 2 and 57 tokens", 2, 1, 128, {1, 3, 1, 2, 57}, false, false},
                   {"one document of 64, 1:1, d128", 2, 2, 128, {64}, false, false}});
}

TEST(FlashAttentionCuda, PackedDocuments) {
  run_cases(200, {{"packed odd documents, 4:1, d128", 8, 2, 128, {1, 7, 64, 65, 200, 3, 130, 1}, false, false},
                   {"batch rows 3 x 160, 1:1, d64", 2, 2, 64, {160, 160, 160}, false, false},
                   {"packed documents, 8:1, d128", 8, 1, 128, {300, 129, 40}, false, false},
                   {"packed documents, 2:1, d64", 4, 2, 64, {5, 129, 70, 33}, false, false}});
}

TEST(FlashAttentionCuda, HeadDim256) {
  run_cases(300, {{"packed documents, 2:1, d256", 4, 2, 256, {77, 123, 1, 64}, false, false},
                   {"one document, null doc_start, 1:1, d256", 2, 2, 256, {190}, true, false}});
}

TEST(FlashAttentionCuda, FusedQkvBuffer) {
  run_cases(400, {{"fused qkv buffer, packed, 2:1, d128", 4, 2, 128, {100, 157}, false, true},
                   {"fused qkv buffer, 4:1, d64", 8, 2, 64, {250}, false, true},
                   {"fused qkv buffer, 2:1, d256", 4, 2, 256, {40, 90}, false, true}});
}

// The backward sums over thousands of query rows per key here.
TEST(FlashAttentionCuda, LongDocument) {
  run_cases(500, {{"long document, 1:1, d128", 2, 2, 128, {4160}, false, false}});
}

TEST(FlashAttentionCuda, HeadDims) {
#ifndef TUNE_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  for (int64_t d : {64, 128, 256}) EXPECT_TRUE(cuda::flash_attention_supported(d)) << d;
  for (int64_t d : {32, 80, 96, 192, 512}) EXPECT_FALSE(cuda::flash_attention_supported(d)) << d;
  // An unsupported head dim is refused before anything is launched.
  const cuda::FlashAttnShape s{16, 2, 2, 96, 192, 192, 192, 192};
  float lse = 0;
  EXPECT_THROW(cuda::flash_attention_fwd(nullptr, nullptr, nullptr, nullptr, 0.1f, nullptr, &lse, s, nullptr),
               InternalError);
#endif
}

}  // namespace tune
