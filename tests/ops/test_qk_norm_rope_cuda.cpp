// qk_norm_rope on CUDA against the CPU reference composed in double (per-head rmsnorm, then rope; backward:
// rope by the negative angle, then rmsnorm's backward): strided rows inside a fused qkv buffer, with and without
// the q/k norms, zero-centred weights, partial rotary dims, head dims 16 to 256. bf16 storage: one rounding of
// each output (kBf16Rtol) on O(1) values.
#include "cuda_test_util.h"
#include "ops/qk_norm_rope.h"
#include "ops/rmsnorm.h"
#include "ops/rope.h"

namespace tune {

#ifdef TUNE_CUDA
TEST(QkNormRopeCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  struct Case {
    int64_t T, nQ, nK, d, rot;
    bool norm, zc;
  };
  for (Case c : {Case{7, 4, 2, 128, 128, true, false}, Case{33, 3, 1, 24, 24, true, false},
                 Case{5, 2, 2, 64, 32, true, true}, Case{19, 2, 1, 256, 64, false, false},
                 Case{64, 16, 8, 128, 128, true, false}, Case{11, 7, 2, 128, 128, true, true},
                 Case{9, 5, 3, 256, 64, true, true}}) {
    SCOPED_TRACE(testing::Message() << "T " << c.T << " heads " << c.nQ << "/" << c.nK << " d " << c.d << " rot "
                                    << c.rot << " norm " << c.norm << " zc " << c.zc);
    const int64_t heads = c.nQ + c.nK, src_stride = (heads + c.nK) * c.d + 8, dst_stride = heads * c.d;
    const Tensor src = test::rounded(test::randn({c.T, src_stride}, 1, 2.0f), DType::BF16);
    const Tensor dy = test::rounded(test::randn({c.T, dst_stride}, 2), DType::BF16);
    const Tensor wq = test::randn({c.d}, 3, 0.3f, 1.0f), wk = test::randn({c.d}, 4, 0.3f, 1.0f);
    std::vector<int32_t> pos(static_cast<size_t>(c.T));
    for (int64_t t = 0; t < c.T; ++t) pos[size_t(t)] = int32_t((t * 3701) % 300000);  // large positions: long-context angles
    const double eps = 1e-6, theta = 1e6;

    // Reference: gather the heads into (T, heads, d), then the CPU ops per head row.
    const std::vector<double> s = test::doubles(src), g = test::doubles(dy), wqd = test::doubles(wq),
                              wkd = test::doubles(wk);
    std::vector<double> x(size_t(c.T * heads * c.d)), y(x.size()), gd(x.size()), dx(x.size()), dw(size_t(c.d));
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t j = 0; j < heads * c.d; ++j) {
        x[size_t(t * heads * c.d + j)] = s[size_t(t * src_stride + j)];
        gd[size_t(t * heads * c.d + j)] = g[size_t(t * dst_stride + j)];
      }
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t h = 0; h < heads; ++h) {
        const size_t o = size_t((t * heads + h) * c.d);
        const double* w = h < c.nQ ? wqd.data() : wkd.data();
        if (c.norm) cpu::rmsnorm_fwd(x.data() + o, w, eps, c.zc, y.data() + o, 1, c.d);
        else std::copy(x.begin() + long(o), x.begin() + long(o + size_t(c.d)), y.begin() + long(o));
      }
    cpu::rope(y.data(), pos.data(), c.T, heads, c.d, c.rot, theta, +1);
    cpu::rope(gd.data(), pos.data(), c.T, heads, c.d, c.rot, theta, -1);
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t h = 0; h < heads; ++h) {
        const size_t o = size_t((t * heads + h) * c.d);
        const double* w = h < c.nQ ? wqd.data() : wkd.data();
        if (c.norm) cpu::rmsnorm_bwd(x.data() + o, w, gd.data() + o, eps, c.zc, dx.data() + o, dw.data(), 1, c.d);
        else std::copy(gd.begin() + long(o), gd.begin() + long(o + size_t(c.d)), dx.begin() + long(o));
      }

    const Tensor srcd = test::on_cuda(src, DType::BF16), dyd = test::on_cuda(dy, DType::BF16);
    const Tensor wqd_ = test::on_cuda(wq, DType::F32), wkd_ = test::on_cuda(wk, DType::F32);
    const Tensor posd = test::ints_on_cuda(pos);
    cuda::QkNormRope p{c.T, c.nQ, c.nK, c.d, c.rot};
    p.wq = c.norm ? static_cast<const float*>(wqd_.data()) : nullptr;
    p.wk = c.norm ? static_cast<const float*>(wkd_.data()) : nullptr;
    p.eps = float(eps);
    p.zero_centered = c.zc;
    const Tensor table = Tensor::empty(DType::F32, {c.T, c.rot}, Device::CUDA);
    cuda::rope_table(posd.ptr<int32_t>(), c.T, c.rot, theta, table.ptr<float>());
    p.rope = table.ptr<float>();
    Tensor out = test::poisoned({c.T, dst_stride}, DType::BF16);
    cuda::qk_norm_rope_fwd(p, srcd.data(), src_stride, out.data(), dst_stride);
    test::expect_all_close("y", out, y, 1e-3, test::kBf16Rtol);
    // dx lands in src's layout; the columns past the q/k heads keep the poison-free values they had.
    Tensor dxd = test::on_cuda(src, DType::BF16);
    cuda::qk_norm_rope_bwd(p, srcd.data(), src_stride, dyd.data(), dst_stride, dxd.data(), src_stride);
    std::vector<double> want = s;
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t j = 0; j < heads * c.d; ++j) want[size_t(t * src_stride + j)] = dx[size_t(t * heads * c.d + j)];
    test::expect_all_close("dx", dxd, want, 1e-3, test::kBf16Rtol);
    // The q heads' gradient as the fused attention leaves it (QkNormRope::dq): fp32 rows (T, nQ, d) and a scale, a
    // power of two so that dx is the same; dy's q columns then hold values that must not be read.
    Tensor dqf = Tensor::empty(DType::F32, {c.T, c.nQ * c.d}), dy2 = dy.clone();
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t j = 0; j < c.nQ * c.d; ++j) {
        dqf.f32()[t * c.nQ * c.d + j] = dy.f32()[t * dst_stride + j] * 8.0f;
        dy2.f32()[t * dst_stride + j] = 1e4f;
      }
    const Tensor dqd = test::on_cuda(dqf, DType::F32), dy2d = test::on_cuda(dy2, DType::BF16);
    cuda::QkNormRope pf = p;
    pf.dq = dqd.ptr<float>();
    pf.dq_scale = 0.125f;
    Tensor dxf = test::on_cuda(src, DType::BF16);
    cuda::qk_norm_rope_bwd(pf, srcd.data(), src_stride, dy2d.data(), dst_stride, dxf.data(), src_stride);
    test::expect_all_close("dx from an fp32 dq", dxf, want, 1e-3, test::kBf16Rtol);
  }
}

#else

TEST(QkNormRopeCuda, BuiltWithoutCuda) { GTEST_SKIP() << "built without CUDA"; }

#endif

}  // namespace tune
