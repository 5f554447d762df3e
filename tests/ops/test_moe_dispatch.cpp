// moe_dispatch on the CPU: the sort's properties (a stable permutation grouped by expert, offsets the counts'
// exclusive scan, slot_row the inverse of order, experts with no rows), combine and scatter against loops
// over the sorted rows, combine's gradients by central differences, the gather/scatter adjoint identity, and
// the whole sort -> gather -> per-expert map -> combine path against the per-token sum of model/forward.cpp.
#include <cmath>

#include "grad_check.h"
#include "moe_routing.h"
#include "ops/moe_dispatch.h"

namespace tune {

namespace {

struct Sorted {
  std::vector<int32_t> offsets, order, slot_row;
};

Sorted sorted(const std::vector<int32_t>& experts, int64_t T, int64_t k, int64_t E) {
  Sorted s{std::vector<int32_t>(size_t(E + 1)), std::vector<int32_t>(size_t(T * k)),
           std::vector<int32_t>(size_t(T * k))};
  cpu::moe_sort(experts.data(), T, k, E, s.offsets.data(), s.order.data(), s.slot_row.data());
  return s;
}

struct Case {
  int64_t T, k, E;
};

void expect_near_all(const char* what, const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], 1e-12 * (1 + std::fabs(want[i]))) << what << "[" << i << "]";
}

}  // namespace

TEST(MoeDispatch, SortIsAStablePermutationGroupedByExpert) {
  for (const Case& c : {Case{1, 1, 1}, Case{5, 1, 3}, Case{7, 2, 9}, Case{13, 3, 10}, Case{40, 4, 64},
                        Case{3, 8, 200}, Case{100, 8, 128}, Case{64, 6, 6}}) {
    SCOPED_TRACE(testing::Message() << "T " << c.T << " k " << c.k << " E " << c.E);
    const int64_t n = c.T * c.k;
    const std::vector<int32_t> ex = test::moe_routing(c.T, c.k, c.E, 7);
    const Sorted s = sorted(ex, c.T, c.k, c.E);
    std::vector<int32_t> count(size_t(c.E));
    for (int32_t e : ex) ++count[size_t(e)];
    if (c.E > 3 && test::moe_routing_closes(c.E, c.k)) {
      EXPECT_EQ(count[3], 0) << "expert 3 should own no rows";
    }
    EXPECT_EQ(s.offsets[0], 0);
    for (int64_t e = 0; e < c.E; ++e)
      EXPECT_EQ(s.offsets[size_t(e + 1)] - s.offsets[size_t(e)], count[size_t(e)]);
    std::vector<char> seen(static_cast<size_t>(n));
    for (int64_t e = 0; e < c.E; ++e)
      for (int32_t r = s.offsets[size_t(e)]; r < s.offsets[size_t(e + 1)]; ++r) {
        const int32_t i = s.order[size_t(r)];
        ASSERT_TRUE(i >= 0 && i < n && !seen[size_t(i)]) << "order[" << r << "] = " << i;
        seen[size_t(i)] = 1;
        EXPECT_EQ(ex[size_t(i)], e) << "row " << r;
        EXPECT_EQ(s.slot_row[size_t(i)], r);
        if (r > s.offsets[size_t(e)]) {
          EXPECT_LT(s.order[size_t(r - 1)], i) << "unstable at row " << r;
        }
      }
  }
}

// Combine, its backward and the scatter-add against loops over the sorted rows (order instead of slot_row,
// a different summation order), with and without accumulation.
TEST(MoeDispatch, CombineAndScatterMatchRowLoops) {
  const int64_t T = 9, k = 3, E = 11, H = 5, n = T * k;
  const std::vector<int32_t> ex = test::moe_routing(T, k, E, 3);
  const Sorted s = sorted(ex, T, k, E);
  const auto ys = test::randv(size_t(n * H), 4), w = test::randv(size_t(n), 5, 0.3, 0.5),
             dout = test::randv(size_t(T * H), 6), base = test::randv(size_t(T * H), 7);
  for (bool acc : {false, true}) {
    std::vector<double> out = base, dx = base, want_out = acc ? base : std::vector<double>(base.size());
    std::vector<double> want_dx = want_out;
    for (int64_t r = 0; r < n; ++r) {
      const int64_t i = s.order[size_t(r)], t = i / k;
      for (int64_t c = 0; c < H; ++c) {
        want_out[size_t(t * H + c)] += w[size_t(i)] * ys[size_t(r * H + c)];
        want_dx[size_t(t * H + c)] += ys[size_t(r * H + c)];
      }
    }
    cpu::moe_combine_fwd(ys.data(), s.slot_row.data(), w.data(), T, k, H, out.data(), acc);
    cpu::moe_scatter_add(ys.data(), s.slot_row.data(), T, k, H, dx.data(), acc);
    expect_near_all(acc ? "out (accumulate)" : "out", out, want_out);
    expect_near_all(acc ? "dx (accumulate)" : "dx", dx, want_dx);
  }
  std::vector<double> dys(size_t(n * H)), dw(static_cast<size_t>(n)), want_dys(dys.size()),
      want_dw(dw.size());
  for (int64_t r = 0; r < n; ++r) {
    const int64_t i = s.order[size_t(r)], t = i / k;
    for (int64_t c = 0; c < H; ++c) {
      want_dys[size_t(r * H + c)] = w[size_t(i)] * dout[size_t(t * H + c)];
      want_dw[size_t(i)] += dout[size_t(t * H + c)] * ys[size_t(r * H + c)];
    }
  }
  cpu::moe_combine_bwd(dout.data(), ys.data(), s.slot_row.data(), w.data(), T, k, H, dys.data(), dw.data());
  expect_near_all("dys", dys, want_dys);
  expect_near_all("dweights", dw, want_dw);
}

TEST(MoeDispatch, CombineGradCheck) {
  for (const Case& c : {Case{5, 3, 7}, Case{4, 1, 2}, Case{3, 4, 4}}) {
    for (double scale : {0.05, 1.0, 20.0}) {
      for (bool acc : {false, true}) {
        SCOPED_TRACE(testing::Message() << "T " << c.T << " k " << c.k << " E " << c.E << " scale " << scale
                                        << (acc ? " accumulate" : ""));
        const int64_t H = 7, n = c.T * c.k;
        const Sorted s = sorted(test::moe_routing(c.T, c.k, c.E, 11), c.T, c.k, c.E);
        auto ys = test::randv(size_t(n * H), 12, scale), w = test::randv(size_t(n), 13, 0.3 * scale, scale);
        const auto g = test::randv(size_t(c.T * H), 14), base = test::randv(size_t(c.T * H), 15);
        auto loss = [&] {
          std::vector<double> out = base;
          cpu::moe_combine_fwd(ys.data(), s.slot_row.data(), w.data(), c.T, c.k, H, out.data(), acc);
          return test::weighted_sum(out, g);
        };
        std::vector<double> dys(ys.size()), dw(w.size());
        cpu::moe_combine_bwd(g.data(), ys.data(), s.slot_row.data(), w.data(), c.T, c.k, H, dys.data(),
                             dw.data());
        test::expect_grad("dys", ys, dys, loss);
        test::expect_grad("dweights", w, dw, loss);
      }
    }
  }
}

// scatter_add is gather's adjoint: <scatter(a), b> = <a, gather(b)> for a (T k, H), b (T, H).
TEST(MoeDispatch, ScatterIsTheGathersAdjoint) {
  for (const Case& c : {Case{6, 2, 5}, Case{17, 4, 33}, Case{1, 1, 1}}) {
    const int64_t H = 9, n = c.T * c.k;
    const Sorted s = sorted(test::moe_routing(c.T, c.k, c.E, 21), c.T, c.k, c.E);
    const auto a = test::randv(size_t(n * H), 22), b = test::randv(size_t(c.T * H), 23);
    std::vector<double> sa(size_t(c.T * H)), gb(size_t(n * H));
    cpu::moe_scatter_add(a.data(), s.slot_row.data(), c.T, c.k, H, sa.data(), false);
    cpu::moe_gather(b.data(), c.T, H, c.k, s.order.data(), n, gb.data());
    const double lhs = test::weighted_sum(sa, b), rhs = test::weighted_sum(a, gb);
    EXPECT_NEAR(lhs, rhs, 1e-12 * (1 + std::fabs(rhs)));
  }
}

// The grouped path reproduces moe_fwd's sum: out[t] = sum_j w_tj f_{e_tj}(x[t]), with expert e's map
// f_e(v) = (e + 1) v + e applied to its block of sorted rows.
TEST(MoeDispatch, GroupedPathMatchesPerTokenSum) {
  const int64_t T = 23, k = 4, E = 16, H = 6, n = T * k;
  const std::vector<int32_t> ex = test::moe_routing(T, k, E, 31);
  const Sorted s = sorted(ex, T, k, E);
  const auto x = test::randv(size_t(T * H), 32), w = test::randv(size_t(n), 33, 0.2, 0.5);
  std::vector<double> xs(size_t(n * H)), out(size_t(T * H)), want(size_t(T * H));
  cpu::moe_gather(x.data(), T, H, k, s.order.data(), n, xs.data());
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = s.offsets[size_t(e)]; r < s.offsets[size_t(e + 1)]; ++r)
      for (int64_t c = 0; c < H; ++c)
        xs[size_t(r * H + c)] = double(e + 1) * xs[size_t(r * H + c)] + double(e);
  cpu::moe_combine_fwd(xs.data(), s.slot_row.data(), w.data(), T, k, H, out.data(), false);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const double e = ex[size_t(t * k + j)];
      for (int64_t c = 0; c < H; ++c)
        want[size_t(t * H + c)] += w[size_t(t * k + j)] * ((e + 1) * x[size_t(t * H + c)] + e);
    }
  expect_near_all("out", out, want);
}

}  // namespace tune
