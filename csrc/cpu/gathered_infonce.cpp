// InfoNCE of normalised queries against a positive row and shared negative rows gathered from
// a frozen table, on the CPU.
//
// The negative rows are read straight from the table, one at a time, and reused across every
// query, so the [B, M, E] tensor of the expanded form never exists; the forward keeps only the
// [B, 1 + M] logits for the backward. All sums run in a fixed order, so results do not depend
// on the number of threads.
#include "backends.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace eager_ext::cpu {
namespace {

constexpr float kNormEps = 1e-12f;  // as torch.nn.functional.normalize

// Sixteen independent partial sums let the compiler vectorise without reassociating floats;
// the clones pick the widest vector unit the CPU has at run time.
__attribute__((target_clones("avx512f", "avx2", "default")))
float dot(const float* a, const float* b, int64_t n) {
  constexpr int kLanes = 16;
  float partial[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int lane = 0; lane < kLanes; ++lane) partial[lane] += a[i + lane] * b[i + lane];
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (int lane = 0; lane < kLanes; ++lane) sum += partial[lane];
  return sum;
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void add_scaled(float* target, float scale, const float* source, int64_t n) {
  for (int64_t i = 0; i < n; ++i) target[i] += scale * source[i];
}

template <typename T>
void load_row(const T* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

// Copies columns [begin, begin + width) of row `index` of a [rows, dim] tensor (unit column
// stride) to float32.
void load_span(const at::Tensor& matrix, int64_t index, int64_t begin, int64_t width, float* dst) {
  const int64_t offset = index * matrix.stride(0) + begin;
  switch (matrix.scalar_type()) {
    case at::kFloat: std::memcpy(dst, matrix.const_data_ptr<float>() + offset, width * sizeof(float)); break;
    case at::kHalf: load_row(matrix.const_data_ptr<c10::Half>() + offset, width, dst); break;
    case at::kBFloat16: load_row(matrix.const_data_ptr<c10::BFloat16>() + offset, width, dst); break;
    default: TORCH_CHECK(false, "gathered_infonce: unsupported dtype ", matrix.scalar_type());
  }
}

// Copies a whole row to float32 and returns its inverse norm, clamped like F.normalize.
float load_row_inverse_norm(const at::Tensor& matrix, int64_t index, float* dst) {
  const int64_t dim = matrix.size(1);
  load_span(matrix, index, 0, dim, dst);
  return 1.0f / std::max(std::sqrt(dot(dst, dst, dim)), kNormEps);
}

struct NormalisedQueries {
  std::vector<float> rows;      // [batch, dim], unit norm
  std::vector<float> norms;     // [batch], clamped norm of the raw query
};

NormalisedQueries normalise_queries(const at::Tensor& query) {
  const int64_t batch = query.size(0), dim = query.size(1);
  NormalisedQueries q{std::vector<float>(batch * dim), std::vector<float>(batch)};
  for (int64_t b = 0; b < batch; ++b) {
    float* row = q.rows.data() + b * dim;
    const float inverse_norm = load_row_inverse_norm(query, b, row);
    q.norms[b] = 1.0f / inverse_norm;
    for (int64_t i = 0; i < dim; ++i) row[i] *= inverse_norm;
  }
  return q;
}

std::vector<float> row_weights(const at::Tensor& valid, float grad_loss) {
  const bool* is_valid = valid.const_data_ptr<bool>();
  const int64_t batch = valid.size(0);
  const int64_t count = std::count(is_valid, is_valid + batch, true);
  std::vector<float> weights(batch, 0.0f);
  for (int64_t b = 0; b < batch; ++b)
    if (is_valid[b]) weights[b] = grad_loss / static_cast<float>(count);
  return weights;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> gathered_infonce_forward(
    const at::Tensor& query, const at::Tensor& table, const at::Tensor& positive_ids,
    const at::Tensor& negative_ids, double temperature, const at::Tensor& valid) {
  const int64_t batch = query.size(0), dim = query.size(1), negatives = negative_ids.size(0);
  const int64_t columns = 1 + negatives;
  const float inverse_temperature = static_cast<float>(1.0 / temperature);
  const NormalisedQueries q = normalise_queries(query);
  at::Tensor logits = at::empty({batch, columns}, query.options().dtype(at::kFloat));
  float* out = logits.data_ptr<float>();
  const int64_t* positive = positive_ids.const_data_ptr<int64_t>();
  const int64_t* negative = negative_ids.const_data_ptr<int64_t>();

  std::vector<float> row(dim);
  for (int64_t b = 0; b < batch; ++b) {
    const float scale = load_row_inverse_norm(table, positive[b], row.data()) * inverse_temperature;
    out[b * columns] = dot(q.rows.data() + b * dim, row.data(), dim) * scale;
  }
  at::parallel_for(0, negatives, 16, [&](int64_t first, int64_t last) {
    std::vector<float> negative_row(dim);
    for (int64_t j = first; j < last; ++j) {
      const float scale =
          load_row_inverse_norm(table, negative[j], negative_row.data()) * inverse_temperature;
      for (int64_t b = 0; b < batch; ++b)
        out[b * columns + 1 + j] = dot(q.rows.data() + b * dim, negative_row.data(), dim) * scale;
    }
  });

  const bool* is_valid = valid.const_data_ptr<bool>();
  double total = 0.0;
  int64_t count = 0;
  for (int64_t b = 0; b < batch; ++b) {
    if (!is_valid[b]) continue;
    const float* logit_row = out + b * columns;
    const float max_logit = *std::max_element(logit_row, logit_row + columns);
    double sum = 0.0;
    for (int64_t c = 0; c < columns; ++c) sum += std::exp(static_cast<double>(logit_row[c] - max_logit));
    total += max_logit + std::log(sum) - logit_row[0];
    ++count;
  }
  at::Tensor loss = at::zeros({}, query.options().dtype(at::kFloat));
  if (count > 0) loss.fill_(total / static_cast<double>(count));
  return {loss, logits};
}

at::Tensor gathered_infonce_backward(const at::Tensor& grad_loss, const at::Tensor& query,
                                     const at::Tensor& table, const at::Tensor& positive_ids,
                                     const at::Tensor& negative_ids, double temperature,
                                     const at::Tensor& valid, const at::Tensor& logits) {
  const int64_t batch = query.size(0), dim = query.size(1), negatives = negative_ids.size(0);
  const int64_t columns = 1 + negatives;
  const float inverse_temperature = static_cast<float>(1.0 / temperature);
  const std::vector<float> weights = row_weights(valid, grad_loss.item<float>());
  const float* logit = logits.const_data_ptr<float>();
  const int64_t* positive = positive_ids.const_data_ptr<int64_t>();
  const int64_t* negative = negative_ids.const_data_ptr<int64_t>();

  // d(loss)/d(logit)[b, c] = w_b (softmax_bc - [c == 0]), folded with 1/temperature and the
  // inverse norm of column c's table row, so the gradient of q-hat is a plain weighted row sum.
  std::vector<float> coefficient(batch * columns);
  std::vector<float> row(dim);
  std::vector<float> negative_inverse_norm(negatives);
  for (int64_t j = 0; j < negatives; ++j)
    negative_inverse_norm[j] = load_row_inverse_norm(table, negative[j], row.data());
  std::vector<float> dqhat(batch * dim, 0.0f);
  for (int64_t b = 0; b < batch; ++b) {
    const float* logit_row = logit + b * columns;
    const float max_logit = *std::max_element(logit_row, logit_row + columns);
    double sum = 0.0;
    for (int64_t c = 0; c < columns; ++c) sum += std::exp(static_cast<double>(logit_row[c] - max_logit));
    for (int64_t c = 0; c < columns; ++c) {
      const float softmax = static_cast<float>(std::exp(static_cast<double>(logit_row[c] - max_logit)) / sum);
      coefficient[b * columns + c] = weights[b] * (softmax - (c == 0 ? 1.0f : 0.0f)) * inverse_temperature;
    }
    for (int64_t j = 0; j < negatives; ++j) coefficient[b * columns + 1 + j] *= negative_inverse_norm[j];
    const float positive_scale =
        coefficient[b * columns] * load_row_inverse_norm(table, positive[b], row.data());
    for (int64_t i = 0; i < dim; ++i) dqhat[b * dim + i] = positive_scale * row[i];
  }
  // Each thread owns a slice of columns, so every element sums the negatives in index order.
  constexpr int64_t kSlice = 256;
  at::parallel_for(0, (dim + kSlice - 1) / kSlice, 1, [&](int64_t first, int64_t last) {
    std::vector<float> slice(kSlice);
    for (int64_t s = first; s < last; ++s) {
      const int64_t begin = s * kSlice, width = std::min(kSlice, dim - begin);
      for (int64_t j = 0; j < negatives; ++j) {
        load_span(table, negative[j], begin, width, slice.data());
        for (int64_t b = 0; b < batch; ++b)
          add_scaled(dqhat.data() + b * dim + begin, coefficient[b * columns + 1 + j], slice.data(), width);
      }
    }
  });

  const NormalisedQueries q = normalise_queries(query);
  at::Tensor grad = at::empty({batch, dim}, query.options().dtype(at::kFloat));
  float* g = grad.data_ptr<float>();
  for (int64_t b = 0; b < batch; ++b) {
    const float* qhat = q.rows.data() + b * dim;
    const float* dq = dqhat.data() + b * dim;
    // Gradient of x / max(|x|, eps): the radial part vanishes unless the norm was clamped.
    const bool clamped = q.norms[b] <= kNormEps;
    const float radial = clamped ? 0.0f : dot(qhat, dq, dim);
    for (int64_t i = 0; i < dim; ++i) g[b * dim + i] = (dq[i] - qhat[i] * radial) / q.norms[b];
  }
  return grad.to(query.scalar_type());
}

}  // namespace eager_ext::cpu
