// C++ tests of the CPU kernels against brute-force loops written here, independent of the
// kernels' tiling, BLAS calls and partial sums.
#include <gtest/gtest.h>

#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/ones.h>

#include <cmath>
#include <limits>
#include <vector>

#include "backends.h"

namespace {

using eager_ext::cpu::gathered_infonce_forward;
using eager_ext::cpu::rq_encode;
using eager_ext::cpu::summary_gather;

// Sequential residual quantization with direct squared distances in double precision.
std::vector<int64_t> brute_force_codes(const at::Tensor& x, const at::Tensor& codebooks) {
  const int64_t n = x.size(0), d = x.size(1), levels = codebooks.size(0), k = codebooks.size(1);
  auto xa = x.accessor<float, 2>();
  auto ca = codebooks.accessor<float, 3>();
  std::vector<int64_t> codes(n * levels);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> residual(d);
    for (int64_t j = 0; j < d; ++j) residual[j] = xa[i][j];
    for (int64_t l = 0; l < levels; ++l) {
      int64_t best = 0;
      double best_distance = std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < k; ++c) {
        double distance = 0;
        for (int64_t j = 0; j < d; ++j) distance += std::pow(residual[j] - ca[l][c][j], 2);
        if (distance < best_distance) best_distance = distance, best = c;
      }
      codes[i * levels + l] = best;
      for (int64_t j = 0; j < d; ++j) residual[j] -= ca[l][best][j];
    }
  }
  return codes;
}

TEST(RqEncode, MatchesBruteForceOnIntegerData) {
  // Small integers keep every distance exact, so even ties must agree.
  at::manual_seed(7);
  const at::Tensor x = at::randint(-3, 4, {1000, 13}).to(at::kFloat);
  const at::Tensor codebooks = at::randint(-2, 3, {3, 17, 13}).to(at::kFloat);
  const auto [codes, norm] = rq_encode(x, codebooks);
  const std::vector<int64_t> expected = brute_force_codes(x, codebooks);
  ASSERT_EQ(codes.numel(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i)
    ASSERT_EQ(codes.data_ptr<int64_t>()[i], expected[i]) << "entry " << i;
}

TEST(RqEncode, ResidualNormIsWhatTheCodesLeave) {
  at::manual_seed(1);
  const at::Tensor x = at::randn({300, 20});
  const at::Tensor codebooks = at::randn({2, 8, 20});
  const auto [codes, norm] = rq_encode(x, codebooks);
  for (int64_t i = 0; i < x.size(0); ++i) {
    double sum = 0;
    for (int64_t j = 0; j < x.size(1); ++j) {
      double r = x[i][j].item<float>();
      for (int64_t l = 0; l < 2; ++l) r -= codebooks[l][codes[i][l].item<int64_t>()][j].item<float>();
      sum += r * r;
    }
    ASSERT_NEAR(norm[i].item<float>(), sum, 1e-3 * (1 + sum));
  }
}

TEST(RqEncode, TiesGoToTheSmallerIndex) {
  const at::Tensor x = at::tensor({0.5f, 0.0f}).reshape({1, 2});
  const at::Tensor codebooks = at::tensor({1.0f, 0.0f, 0.0f, 0.0f, 1.0f, 0.0f}).reshape({1, 3, 2});
  const auto [codes, norm] = rq_encode(x, codebooks);
  EXPECT_EQ(codes[0][0].item<int64_t>(), 0);
}

TEST(RqEncode, EmptyInput) {
  const auto [codes, norm] = rq_encode(at::randn({0, 4}), at::randn({2, 3, 4}));
  EXPECT_EQ(codes.size(0), 0);
  EXPECT_EQ(codes.size(1), 2);
}

TEST(SummaryGather, CopiesTheRowAtEachPosition) {
  const at::Tensor hidden = at::randn({3, 4, 5});
  const at::Tensor positions = at::tensor({3, 0, 2}, at::kLong);
  const at::Tensor out = summary_gather(hidden, positions);
  for (int64_t b = 0; b < 3; ++b)
    EXPECT_TRUE(out[b].equal(hidden[b][positions[b].item<int64_t>()]));
}

TEST(GatheredInfonce, ForwardMatchesBruteForce) {
  at::manual_seed(3);
  const at::Tensor query = at::randn({4, 6}), table = at::randn({9, 6});
  const at::Tensor positive = at::tensor({0, 8, 3, 3}, at::kLong);
  const at::Tensor negative = at::tensor({1, 2, 8, 8, 0}, at::kLong);
  const at::Tensor valid = at::ones({4}, at::kBool);
  const double temperature = 0.1;
  const auto [loss, logits] =
      gathered_infonce_forward(query, table, positive, negative, temperature, valid);
  auto cosine = [](const at::Tensor& a, const at::Tensor& b) {
    double ab = 0, aa = 0, bb = 0;
    for (int64_t i = 0; i < a.size(0); ++i) {
      const double x = a[i].item<float>(), y = b[i].item<float>();
      ab += x * y, aa += x * x, bb += y * y;
    }
    return ab / std::sqrt(aa * bb);
  };
  double expected = 0;
  for (int64_t b = 0; b < 4; ++b) {
    std::vector<double> row{cosine(query[b], table[positive[b].item<int64_t>()]) / temperature};
    for (int64_t j = 0; j < 5; ++j)
      row.push_back(cosine(query[b], table[negative[j].item<int64_t>()]) / temperature);
    double sum = 0;
    for (double v : row) sum += std::exp(v);
    expected += std::log(sum) - row[0];
    for (size_t c = 0; c < row.size(); ++c) ASSERT_NEAR(logits[b][c].item<float>(), row[c], 1e-4);
  }
  EXPECT_NEAR(loss.item<float>(), expected / 4, 1e-4);
}

}  // namespace
