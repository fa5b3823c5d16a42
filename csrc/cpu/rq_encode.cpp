// Fused residual quantization on the CPU.
//
// Rows are cut into fixed tiles of kTileRows. Per tile and level, one BLAS matmul gives the
// residual-centroid dot products and a fused pass picks the nearest centroid and updates the
// residual while the tile is still in cache, so the [N, K] distance matrix never exists.
// Tile boundaries depend only on the row index, and each tile is computed by one thread with
// single-threaded BLAS, so the result does not depend on the number of threads.
#include "backends.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>

#include <limits>
#include <vector>

namespace eager_ext::cpu {
namespace {

constexpr int64_t kTileRows = 256;

// Index of the smallest distance |c|^2 - 2 r.c (|r|^2 is common to all k), ties to the smaller
// index. Two branch-free passes (distances with per-lane minima, then the first index holding
// the minimum) vectorise, unlike a running argmin whose branch mispredicts; the clones pick the
// widest vector unit the CPU has at run time.
__attribute__((target_clones("avx512f", "avx2", "default")))
int64_t nearest_centroid(const float* dots, const float* centroid_sq_norms, int64_t k,
                         float* distances) {
  constexpr int kLanes = 16;
  float lane_min[kLanes];
  for (int lane = 0; lane < kLanes; ++lane) lane_min[lane] = std::numeric_limits<float>::infinity();
  int64_t j = 0;
  for (; j + kLanes <= k; j += kLanes) {
    for (int lane = 0; lane < kLanes; ++lane) {
      const float distance = centroid_sq_norms[j + lane] - 2.0f * dots[j + lane];
      distances[j + lane] = distance;
      lane_min[lane] = distance < lane_min[lane] ? distance : lane_min[lane];
    }
  }
  float best = std::numeric_limits<float>::infinity();
  for (; j < k; ++j) {
    distances[j] = centroid_sq_norms[j] - 2.0f * dots[j];
    best = distances[j] < best ? distances[j] : best;
  }
  for (int lane = 0; lane < kLanes; ++lane) best = lane_min[lane] < best ? lane_min[lane] : best;
  for (j = 0; j < k; ++j)
    if (distances[j] == best) return j;
  return 0;  // only when every distance is NaN
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void subtract(float* row, const float* centroid, int64_t d) {
  for (int64_t j = 0; j < d; ++j) row[j] -= centroid[j];
}

void encode_tile(const at::Tensor& x, const at::Tensor& codebooks, const at::Tensor& sq_norms,
                 int64_t tile_begin, int64_t tile_end, at::Tensor& residual, at::Tensor& dots,
                 float* distances, int64_t* codes, float* residual_norm) {
  const int64_t rows = tile_end - tile_begin;
  const int64_t levels = codebooks.size(0), k = codebooks.size(1), d = codebooks.size(2);
  at::Tensor tile_residual = residual.narrow(0, 0, rows);
  at::Tensor tile_dots = dots.narrow(0, 0, rows);
  tile_residual.copy_(x.narrow(0, tile_begin, rows));  // converts half inputs to float32
  float* r = tile_residual.data_ptr<float>();
  for (int64_t level = 0; level < levels; ++level) {
    const at::Tensor centroids = codebooks.select(0, level);
    at::mm_out(tile_dots, tile_residual, centroids.t());
    const float* dot_rows = tile_dots.data_ptr<float>();
    const float* norms = sq_norms.data_ptr<float>() + level * k;
    const float* c = centroids.data_ptr<float>();
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t best = nearest_centroid(dot_rows + i * k, norms, k, distances);
      codes[(tile_begin + i) * levels + level] = best;
      subtract(r + i * d, c + best * d, d);
    }
  }
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = r + i * d;
    float sum = 0.0f;
    for (int64_t j = 0; j < d; ++j) sum += row[j] * row[j];
    residual_norm[tile_begin + i] = sum;
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rq_encode(const at::Tensor& x, const at::Tensor& codebooks) {
  const int64_t n = x.size(0), d = x.size(1);
  const int64_t levels = codebooks.size(0), k = codebooks.size(1);
  at::Tensor codes = at::empty({n, levels}, x.options().dtype(at::kLong));
  at::Tensor residual_norm = at::empty({n}, x.options().dtype(at::kFloat));
  if (n == 0) return {codes, residual_norm};

  const at::Tensor centroids = codebooks.to(at::kFloat).contiguous();
  const at::Tensor sq_norms = centroids.pow(2).sum(-1).contiguous();  // [levels, k]
  const int64_t num_tiles = (n + kTileRows - 1) / kTileRows;
  int64_t* codes_ptr = codes.data_ptr<int64_t>();
  float* norm_ptr = residual_norm.data_ptr<float>();
  at::parallel_for(0, num_tiles, 1, [&](int64_t first_tile, int64_t last_tile) {
    at::Tensor residual = at::empty({kTileRows, d}, centroids.options());
    at::Tensor dots = at::empty({kTileRows, k}, centroids.options());
    std::vector<float> distances(k);
    for (int64_t tile = first_tile; tile < last_tile; ++tile) {
      const int64_t begin = tile * kTileRows;
      encode_tile(x, centroids, sq_norms, begin, std::min(n, begin + kTileRows), residual, dots,
                  distances.data(), codes_ptr, norm_ptr);
    }
  });
  return {codes, residual_norm};
}

}  // namespace eager_ext::cpu
