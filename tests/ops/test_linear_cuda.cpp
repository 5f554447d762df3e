// linear on CUDA (cuBLAS, fp32 compute) against the CPU reference in double: odd shapes, bias, accumulate_dx,
// dw and db accumulating, f32 and bf16 activations with f32 or bf16 parameter gradients. The f32 tolerances
// would fail under TF32 (~1e-3 relative), so they also check that fp32 stays fp32.
#include <cmath>

#include "cuda_test_util.h"
#include "ops/linear.h"

namespace tune {

TEST(LinearCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  struct Case {
    int64_t T, K, N;
  };
  for (const Case& c : {Case{5, 7, 3}, Case{1, 33, 17}, Case{37, 300, 129}, Case{64, 4096, 65}}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      for (DType gdt : {DType::F32, DType::BF16}) {
        if (dt == DType::F32 && gdt == DType::BF16) continue;
        for (bool bias : {false, true}) {
          for (bool acc : {false, true}) {
            SCOPED_TRACE(testing::Message()
                         << c.T << "x" << c.K << "x" << c.N << " " << dtype_name(dt) << " grads "
                         << dtype_name(gdt) << (bias ? " bias" : "") << (acc ? " accumulate" : ""));
            const int64_t T = c.T, K = c.K, N = c.N;
            const Tensor x = test::rounded(test::randn({T, K}, 41), dt),
                         w = test::rounded(test::randn({N, K}, 42), dt);
            const Tensor b = test::rounded(test::randn({N}, 43), dt),
                         dy = test::rounded(test::randn({T, N}, 44), dt);
            const Tensor dx0 = test::rounded(test::randn({T, K}, 45), dt),
                         dw0 = test::rounded(test::randn({N, K}, 46), gdt);
            const Tensor db0 = test::rounded(test::randn({N}, 47), gdt);
            const std::vector<double> xd = test::doubles(x), wd = test::doubles(w), bd = test::doubles(b),
                                      dyd = test::doubles(dy);
            std::vector<double> y_ref(size_t(T * N)),
                dx_ref = test::doubles(dx0), dw_ref = test::doubles(dw0), db_ref = test::doubles(db0);
            cpu::linear_fwd(xd.data(), wd.data(), bias ? bd.data() : nullptr, y_ref.data(), T, K, N);
            cpu::linear_bwd(xd.data(), wd.data(), dyd.data(), dx_ref.data(), acc, dw_ref.data(),
                            bias ? db_ref.data() : nullptr, T, K, N);

            const Tensor xc = test::on_cuda(x, dt), wc = test::on_cuda(w, dt), bc = test::on_cuda(b, dt),
                         dyc = test::on_cuda(dy, dt);
            Tensor y = test::poisoned({T, N}, dt);
            linear_fwd(xc, wc, bias ? &bc.view() : nullptr, y);
            Tensor dx = acc ? test::on_cuda(dx0, dt) : test::poisoned({T, K}, dt);
            Tensor dw = test::on_cuda(dw0, gdt), db = test::on_cuda(db0, gdt);
            linear_bwd(xc, wc, dyc, &dx.view(), acc, &dw.view(), bias ? &db.view() : nullptr);

            // Each output sums n products of unit-size terms, |value| ~ sqrt(n): f32 absolute error ~ 1e-5
            // sqrt(n) at most; bf16 stores add one rounding (relative) of each output.
            auto tol = [&](const char* what, const Tensor& got, const std::vector<double>& ref, int64_t n,
                           DType t) {
              const double s = std::sqrt(double(n) + 1.0);
              test::expect_all_close(what, got, ref, t == DType::F32 ? 1e-5 * s : 1e-3 * s,
                                     t == DType::F32 ? 1e-5 : test::kBf16Rtol);
            };
            tol("y", y, y_ref, K, dt);
            tol("dx", dx, dx_ref, N, dt);
            tol("dw", dw, dw_ref, T, gdt);
            if (bias) tol("db", db, db_ref, T, gdt);
          }
        }
      }
    }
  }
}

TEST(LinearCuda, OnlySomeGradients) {
  TUNE_REQUIRE_CUDA();
  const int64_t T = 6, K = 5, N = 4;
  const Tensor x = test::randn({T, K}, 51), w = test::randn({N, K}, 52), dy = test::randn({T, N}, 53);
  const std::vector<double> xd = test::doubles(x), wd = test::doubles(w), dyd = test::doubles(dy);
  std::vector<double> dw_ref(size_t(N * K), 0.0);
  cpu::linear_bwd<double>(xd.data(), wd.data(), dyd.data(), nullptr, false, dw_ref.data(), nullptr, T, K, N);
  Tensor dw = test::on_cuda(Tensor::zeros(DType::F32, {N, K}), DType::F32);
  linear_bwd(test::on_cuda(x, DType::F32), test::on_cuda(w, DType::F32), test::on_cuda(dy, DType::F32),
             nullptr, false, &dw.view(), nullptr);
  test::expect_all_close("dw", dw, dw_ref, 1e-5, 1e-5);
}

}  // namespace tune
