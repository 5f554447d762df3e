// gdn_qkv on CUDA against the CPU reference in double, bf16 storage: conv rows wider than the q | k | v
// parts, dconv with its own stride (the columns past the parts must keep their values), nV = nK, 2 nK and 4
// nK, head dims that allow no vectors (scalar loads), 8-byte vectors (dims <= 128), 16-byte vectors (256),
// and the real shapes.
#include "cuda_test_util.h"
#include "ops/gdn_qkv.h"

namespace tune {

#ifdef TUNE_CUDA
TEST(GdnQkvCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  struct Case {
    int64_t T, nK, nV, dk, dv, pad;
  };
  for (Case c :
       {Case{5, 2, 6, 5, 3, 3}, Case{7, 1, 3, 6, 10, 2}, Case{9, 4, 8, 64, 32, 4}, Case{3, 2, 8, 16, 24, 0},
        Case{3, 2, 4, 256, 256, 8}, Case{100, 16, 16, 128, 128, 0}, Case{100, 16, 32, 128, 128, 8}}) {
    SCOPED_TRACE(testing::Message() << "T " << c.T << " heads " << c.nK << "/" << c.nV << " dims " << c.dk
                                    << "/" << c.dv << " pad " << c.pad);
    const int64_t W = 2 * c.nK * c.dk + c.nV * c.dv, ld = W + c.pad, ld_d = ld + 8;
    const Tensor conv = test::rounded(test::randn({c.T, ld}, 1, 2.0f), DType::BF16);
    const Tensor dq = test::rounded(test::randn({c.T, c.nV * c.dk}, 2), DType::BF16),
                 dk = test::rounded(test::randn({c.T, c.nV * c.dk}, 3), DType::BF16),
                 dv = test::rounded(test::randn({c.T, c.nV * c.dv}, 4), DType::BF16);
    const Tensor base = test::rounded(test::randn({c.T, ld_d}, 5), DType::BF16);  // dconv before the call

    const std::vector<double> cd = test::doubles(conv), dqd = test::doubles(dq), dkd = test::doubles(dk),
                              dvd = test::doubles(dv);
    std::vector<double> q_ref(size_t(c.T * c.nV * c.dk)), k_ref(q_ref.size()),
        v_ref(size_t(c.T * c.nV * c.dv));
    cpu::gdn_qkv_fwd(cd.data(), ld, q_ref.data(), k_ref.data(), v_ref.data(), c.T, c.nK, c.nV, c.dk, c.dv);
    std::vector<double> dconv_ref = test::doubles(base);
    cpu::gdn_qkv_bwd(cd.data(), ld, dqd.data(), dkd.data(), dvd.data(), dconv_ref.data(), ld_d, c.T, c.nK,
                     c.nV, c.dk, c.dv);

    // bf16: one rounding of each output (kBf16Rtol). fp32 math: errors ~1e-7 of the largest term of a sum,
    // far below atol for these magnitudes (q ~ 1/dk, gradients ~ 1e-3 and up).
    const double atol = 1e-5, rtol = test::kBf16Rtol;
    const Tensor convc = test::on_cuda(conv, DType::BF16);
    Tensor q = test::poisoned({c.T, c.nV, c.dk}, DType::BF16),
           k = test::poisoned({c.T, c.nV, c.dk}, DType::BF16),
           v = test::poisoned({c.T, c.nV, c.dv}, DType::BF16);
    cuda::gdn_qkv_fwd(convc.data(), ld, q.data(), k.data(), v.data(), c.T, c.nK, c.nV, c.dk, c.dv);
    test::expect_all_close("q", q, q_ref, atol, rtol);
    test::expect_all_close("k", k, k_ref, atol, rtol);
    test::expect_all_close("v", v, v_ref, atol, rtol);

    const Tensor dqc = test::on_cuda(dq, DType::BF16), dkc = test::on_cuda(dk, DType::BF16),
                 dvc = test::on_cuda(dv, DType::BF16);
    Tensor dconv = test::poisoned_cols(base, 0, W, DType::BF16);
    cuda::gdn_qkv_bwd(convc.data(), ld, dqc.data(), dkc.data(), dvc.data(), dconv.data(), ld_d, c.T, c.nK,
                      c.nV, c.dk, c.dv);
    test::expect_all_close("dconv", dconv, dconv_ref, atol, rtol);
  }
}

#else

TEST(GdnQkvCuda, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without CUDA";
}

#endif

}  // namespace tune
