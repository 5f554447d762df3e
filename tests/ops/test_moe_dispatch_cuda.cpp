// moe_dispatch on CUDA against the CPU reference: the sort equal to the CPU's (ints, exactly) up to 2048
// experts and 4M slots; gather exact; combine, its backward and the scatter-add within bf16 tolerance of the
// reference in double on bf16-rounded inputs, into NaN-poisoned outputs, accumulating or not; odd H (scalar
// path), H % 8 == 0 (16-byte path) and the real shapes (T 4096, k 8, E 256 and 128, H 2048). Calls alternate
// between a created stream and the default one. Reruns must give identical bits (no atomics in any output).
#include <cstring>

#include "cuda_test_util.h"
#include "moe_routing.h"
#include "ops/moe_dispatch.h"

#ifdef TUNE_CUDA
#include "core/cuda_check.h"
#endif

namespace tune {

#ifdef TUNE_CUDA
namespace {

template <class V>
void expect_identical(const char* what, const std::vector<V>& got, const std::vector<V>& want) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_TRUE(std::memcmp(&got[i], &want[i], sizeof(V)) == 0)
        << what << "[" << i << "]: got " << got[i] << ", want " << want[i];
}

struct Sort {
  std::vector<int32_t> offsets, order, slot_row;
};

Sort sort_on_device(const std::vector<int32_t>& experts, int64_t T, int64_t k, int64_t E, void* stream,
                    Tensor* order_d, Tensor* slot_row_d) {
  const int64_t n = T * k;
  const Tensor ex = test::ints_on_cuda(experts);
  Tensor off = test::ints_on_cuda(std::vector<int32_t>(size_t(E + 1), -1));
  *order_d = test::ints_on_cuda(std::vector<int32_t>(size_t(n), -1));
  *slot_row_d = test::ints_on_cuda(std::vector<int32_t>(size_t(n), -1));
  const Tensor ws =
      Tensor::empty(DType::U8, {int64_t(cuda::moe_sort_workspace_bytes(T, k, E))}, Device::CUDA);
  cuda::moe_sort(ex.ptr<int32_t>(), T, k, E, off.ptr<int32_t>(), order_d->ptr<int32_t>(),
                 slot_row_d->ptr<int32_t>(), ws.data(), stream);
  CUDA_CHECK(cudaStreamSynchronize(cudaStream_t(stream)));
  return {test::ints(off), test::ints(*order_d), test::ints(*slot_row_d)};
}

void expect_sort_matches_cpu(const std::vector<int32_t>& experts, int64_t T, int64_t k, int64_t E,
                             void* stream, Tensor* order_d, Tensor* slot_row_d) {
  Sort want{std::vector<int32_t>(size_t(E + 1)), std::vector<int32_t>(size_t(T * k)),
            std::vector<int32_t>(size_t(T * k))};
  cpu::moe_sort(experts.data(), T, k, E, want.offsets.data(), want.order.data(), want.slot_row.data());
  const Sort got = sort_on_device(experts, T, k, E, stream, order_d, slot_row_d);
  expect_identical("offsets", got.offsets, want.offsets);
  expect_identical("order", got.order, want.order);
  expect_identical("slot_row", got.slot_row, want.slot_row);
}

// fp32 sums of k terms of O(1) bf16 values: |err| ~ k 2^-24 |terms|, far below this atol; the bf16 store of
// the result is the rtol.
constexpr double kSumAtol = 1e-5;

struct Case {
  int64_t T, k, E, H;
};

void run_case(const Case& c, uint64_t seed, void* stream) {
  const int64_t T = c.T, k = c.k, E = c.E, H = c.H, n = T * k;
  const cudaStream_t st = cudaStream_t(stream);
  const std::vector<int32_t> experts = test::moe_routing(T, k, E, seed);
  Tensor order_d, slot_d;
  expect_sort_matches_cpu(experts, T, k, E, stream, &order_d, &slot_d);
  // The device results equal the CPU's, so the reference below may use them.
  const std::vector<int32_t> order = test::ints(order_d), slot_row = test::ints(slot_d);
  const int32_t* ord = order_d.ptr<int32_t>();
  const int32_t* slr = slot_d.ptr<int32_t>();

  const Tensor x = test::rounded(test::randn({T, H}, seed + 1), DType::BF16);
  const Tensor ys = test::rounded(test::randn({n, H}, seed + 2), DType::BF16);
  const Tensor dout = test::rounded(test::randn({T, H}, seed + 3), DType::BF16);
  const Tensor base = test::rounded(test::randn({T, H}, seed + 4), DType::BF16);
  Tensor w = Tensor::empty(DType::F32, {T, k});
  Rng rng(seed + 5);
  for (int64_t i = 0; i < n; ++i) w.f32()[i] = 0.05f + rng.uniform();
  const std::vector<double> xd = test::doubles(x), ysd = test::doubles(ys), doutd = test::doubles(dout),
                            based = test::doubles(base), wd = test::doubles(w);
  const Tensor x_c = test::on_cuda(x, DType::BF16), ys_c = test::on_cuda(ys, DType::BF16),
               dout_c = test::on_cuda(dout, DType::BF16), w_c = test::on_cuda(w, DType::F32);
  const float* wp = w_c.ptr<float>();

  {  // gather: a copy, so exact
    std::vector<double> want(size_t(n * H));
    cpu::moe_gather(xd.data(), T, H, k, order.data(), n, want.data());
    Tensor xs = test::poisoned({n, H}, DType::BF16);
    cuda::moe_gather(x_c.data(), T, H, k, ord, n, xs.data(), stream);
    CUDA_CHECK(cudaStreamSynchronize(st));
    test::expect_all_close("xs", xs, want, 0, 0);
  }
  for (bool acc : {false, true}) {
    SCOPED_TRACE(acc ? "accumulate" : "overwrite");
    std::vector<double> want = based;
    cpu::moe_combine_fwd(ysd.data(), slot_row.data(), wd.data(), T, k, H, want.data(), acc);
    Tensor out = acc ? test::on_cuda(base, DType::BF16) : test::poisoned({T, H}, DType::BF16);
    cuda::moe_combine_fwd(ys_c.data(), slr, wp, T, k, H, out.data(), acc, stream);
    CUDA_CHECK(cudaStreamSynchronize(st));
    test::expect_all_close("out", out, want, kSumAtol, test::kBf16Rtol);

    // The gradient of the gather, with ys standing in for dxs.
    std::vector<double> want_dx = based;
    cpu::moe_scatter_add(ysd.data(), slot_row.data(), T, k, H, want_dx.data(), acc);
    Tensor dx = acc ? test::on_cuda(base, DType::BF16) : test::poisoned({T, H}, DType::BF16);
    cuda::moe_scatter_add(ys_c.data(), slr, T, k, H, dx.data(), acc, stream);
    CUDA_CHECK(cudaStreamSynchronize(st));
    test::expect_all_close("dx", dx, want_dx, kSumAtol, test::kBf16Rtol);
  }
  {
    std::vector<double> want_dys(size_t(n * H)), want_dw(static_cast<size_t>(n));
    cpu::moe_combine_bwd(doutd.data(), ysd.data(), slot_row.data(), wd.data(), T, k, H, want_dys.data(),
                         want_dw.data());
    Tensor dys = test::poisoned({n, H}, DType::BF16), dw = test::poisoned({T, k}, DType::F32);
    cuda::moe_combine_bwd(dout_c.data(), ys_c.data(), slr, wp, T, k, H, dys.data(), dw.ptr<float>(), stream);
    CUDA_CHECK(cudaStreamSynchronize(st));
    // dys: one fp32 product, then the bf16 store.
    test::expect_all_close("dys", dys, want_dys, 1e-6, test::kBf16Rtol);
    // dweights: an fp32 sum of H exact products (bf16 x bf16) of O(1) values, per thread then a block tree,
    // at most ~16 deep for these H: |err| <= 16 2^-24 sum |g y| ~ 16 6e-8 0.64 H ~ 6e-7 H.
    test::expect_all_close("dweights", dw, want_dw, 2e-6 * double(H), 1e-5);
    // Rerun: the same bits.
    Tensor dw2 = test::poisoned({T, k}, DType::F32);
    cuda::moe_combine_bwd(dout_c.data(), ys_c.data(), slr, wp, T, k, H, dys.data(), dw2.ptr<float>(), stream);
    CUDA_CHECK(cudaStreamSynchronize(st));
    expect_identical("dweights rerun", test::doubles(dw2), test::doubles(dw));
  }
}

}  // namespace

TEST(MoeDispatchCuda, MatchesCpuReference) {
  TUNE_REQUIRE_CUDA();
  cudaStream_t st;
  CUDA_CHECK(cudaStreamCreate(&st));
  int i = 0;
  for (const Case& c : {Case{1, 1, 1, 8}, Case{5, 1, 3, 7}, Case{7, 2, 9, 24}, Case{13, 3, 10, 33},
                        Case{37, 4, 64, 40}, Case{3, 8, 200, 16}, Case{300, 8, 2048, 72}, Case{64, 6, 6, 1},
                        Case{4096, 8, 256, 2048}, Case{4096, 8, 128, 2048}}) {
    void* stream = i++ % 2 ? static_cast<void*>(st) : nullptr;
    SCOPED_TRACE(testing::Message() << "T " << c.T << " k " << c.k << " E " << c.E << " H " << c.H
                                    << (stream ? " (stream)" : " (default stream)"));
    run_case(c, uint64_t(100 + i), stream);
  }
  CUDA_CHECK(cudaStreamDestroy(st));
}

// Larger sorts: more chunks than a block scans at once, chunks longer than the minimum (T k E > 2^22).
TEST(MoeDispatchCuda, LargeSortMatchesCpu) {
  TUNE_REQUIRE_CUDA();
  struct Sizes {
    int64_t T, k, E;
  };
  for (const Sizes& c : {Sizes{262144, 8, 128}, Sizes{65536, 10, 512}, Sizes{500000, 8, 2048}}) {
    SCOPED_TRACE(testing::Message() << "T " << c.T << " k " << c.k << " E " << c.E);
    Tensor order_d, slot_d;
    expect_sort_matches_cpu(test::moe_routing(c.T, c.k, c.E, 41), c.T, c.k, c.E, nullptr, &order_d, &slot_d);
  }
}

#else

TEST(MoeDispatchCuda, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without CUDA";
}

#endif

}  // namespace tune
