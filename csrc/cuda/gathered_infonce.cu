// InfoNCE of normalised queries against the normalised positive row and the shared negative rows
// of an embedding table. Rows are gathered inside the kernels by id, so the [batch, negatives,
// dim] tensor of the reference implementation never exists.
//
// Forward (four launches):
//   row_norms_kernel       one warp per gathered row: a query together with its positive row
//                          (both norms and the positive logit in one pass), or a negative row.
//   negative_logits_kernel tiled product for logits[:, 1:]; a block stages a slice of 64 negative
//                          rows once and uses it for all 32 queries of its tile.
//   row_loss_kernel        one warp per row: logsumexp(row) - row[0].
//   mean_loss_kernel       one block: the mean over valid rows.
// Backward (five launches):
//   row_norms_kernel       as above, without logits.
//   count_valid_kernel     one block.
//   coefficients_kernel    one warp per row: coef[c][b] = w_b (softmax_bc - [c == 0]) divided by
//                          temperature * max(||t_c||, eps), so that dqhat_b = sum_c coef[c][b] t_c
//                          over raw table rows.
//   direction_grad_kernel  tiled product for dqhat; a block stages 32 negative rows (a slice of
//                          64 dims) once and uses it for all 32 queries of its tile.
//   query_grad_kernel      one warp per row: backward of q / max(||q||, eps).
// Scratch (norms, per-row losses, coefficients, dqhat) is one stream-ordered allocation.
//
// Determinism: every sum has a fixed order that depends only on the problem sizes. Warp sums
// are lane-strided partial sums combined by a xor butterfly (which leaves the same bits in every
// lane); tiled dot products are summed by one thread in ascending dim (or column) order, with
// zero padding adding exact zeros; the mean is a fixed 256-thread tree. No float atomics.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "launch.h"

namespace eager_ext::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpSize = 32;
constexpr int kWarps = kThreads / kWarpSize;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kNormEps = 1e-12f;      // F.normalize's default eps
constexpr int64_t kMaxBlocks = 65535;   // grid-stride beyond this

// negative_logits_kernel tile: 32 queries (one per lane) x 64 negatives (8 per warp).
constexpr int kLogitQueries = 32;
constexpr int kLogitNegatives = 64;
constexpr int kLogitDims = 32;
constexpr int kNegativesPerThread = kLogitNegatives / kWarps;

// direction_grad_kernel tile: 32 queries (8 per thread) x 64 dims (one per thread).
constexpr int kGradQueries = 32;
constexpr int kGradDims = 64;
constexpr int kGradColumns = 32;
constexpr int kQueriesPerThread = kGradQueries * kGradDims / kThreads;

static_assert(kNegativesPerThread == 8 && kQueriesPerThread == 8, "two float4 per thread");
static_assert(kGradDims % kWarpSize == 0, "a warp must share one query group");

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(kFullMask, v, offset);
  }
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  }
  return v;
}

__device__ __forceinline__ float clamped(float norm) { return fmaxf(norm, kNormEps); }

__device__ __forceinline__ int lane_id() { return static_cast<int>(threadIdx.x) % kWarpSize; }

__device__ __forceinline__ int64_t global_warp_id() {
  return static_cast<int64_t>(blockIdx.x) * kWarps + static_cast<int64_t>(threadIdx.x) / kWarpSize;
}

__device__ __forceinline__ int64_t total_warps() {
  return static_cast<int64_t>(gridDim.x) * kWarps;
}

// Where every row of the problem lives.
template <typename T>
struct Problem {
  const T* query;  // [batch, dim], contiguous
  const T* table;  // rows of table_row_stride elements, unit column stride
  int64_t table_row_stride;
  const int64_t* positive_ids;  // [batch]
  const int64_t* negative_ids;  // [num_negatives]
  int64_t batch, num_negatives, dim;

  __host__ __device__ int64_t columns() const { return 1 + num_negatives; }
  __device__ const T* query_row(int64_t b) const { return query + b * dim; }
  __device__ const T* positive_row(int64_t b) const {
    return table + positive_ids[b] * table_row_stride;
  }
  __device__ const T* negative_row(int64_t j) const {
    return table + negative_ids[j] * table_row_stride;
  }
};

// Unclamped L2 norms, laid out as [queries (batch) | positive rows (batch) | negatives].
struct Norms {
  float* data;
  int64_t batch;

  __device__ float& query(int64_t b) const { return data[b]; }
  __device__ float& positive(int64_t b) const { return data[batch + b]; }
  __device__ float& negative(int64_t j) const { return data[2 * batch + j]; }
  // Norm of the table row behind logit column c of query b.
  __device__ float column(int64_t b, int64_t c) const {
    return c == 0 ? positive(b) : negative(c - 1);
  }
};

// ---- norms and positive logits ----

template <typename T>
__device__ void query_and_positive(const Problem<T>& p, int64_t b, float temperature, Norms norms,
                                   float* logits) {
  const T* q = p.query_row(b);
  const T* t = p.positive_row(b);
  float qq = 0.f, tt = 0.f, qt = 0.f;
  for (int64_t e = lane_id(); e < p.dim; e += kWarpSize) {
    const float qe = to_float(q[e]);
    const float te = to_float(t[e]);
    qq = fmaf(qe, qe, qq);
    tt = fmaf(te, te, tt);
    qt = fmaf(qe, te, qt);
  }
  qq = warp_sum(qq);
  tt = warp_sum(tt);
  qt = warp_sum(qt);
  if (lane_id() == 0) {
    const float query_norm = sqrtf(qq);
    const float positive_norm = sqrtf(tt);
    norms.query(b) = query_norm;
    norms.positive(b) = positive_norm;
    if (logits != nullptr) {
      logits[b * p.columns()] = qt / (clamped(query_norm) * clamped(positive_norm)) / temperature;
    }
  }
}

template <typename T>
__device__ void negative_norm(const Problem<T>& p, int64_t j, Norms norms) {
  const T* t = p.negative_row(j);
  float tt = 0.f;
  for (int64_t e = lane_id(); e < p.dim; e += kWarpSize) {
    const float te = to_float(t[e]);
    tt = fmaf(te, te, tt);
  }
  tt = warp_sum(tt);
  if (lane_id() == 0) norms.negative(j) = sqrtf(tt);
}

// logits may be null (backward needs only the norms).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    row_norms_kernel(Problem<T> p, float temperature, Norms norms, float* logits) {
  const int64_t tasks = p.batch + p.num_negatives;
  for (int64_t task = global_warp_id(); task < tasks; task += total_warps()) {
    if (task < p.batch) {
      query_and_positive(p, task, temperature, norms, logits);
    } else {
      negative_norm(p, task - p.batch, norms);
    }
  }
}

// ---- negative logits ----

// dst[jj][r] = row_of(r)[j0 + jj] as float, zero where row_of(r) is null or past dim; rows of
// dst are kRows + 4 floats. Eight consecutive threads read eight consecutive dims of one row,
// and since kRows is a multiple of 32 the 32 stores of a warp land in distinct banks.
template <typename T, int kRows, int kDims, typename RowOf>
__device__ void stage_transposed(float* dst, RowOf row_of, int64_t j0, int64_t dim) {
  static_assert(kRows % 32 == 0 && kDims % 8 == 0, "staging pattern");
  for (int e = threadIdx.x; e < kRows * kDims; e += kThreads) {
    const int dim_low = e & 7;
    const int rest = e >> 3;
    const int r = rest % kRows;
    const int jj = rest / kRows * 8 + dim_low;
    const T* row = row_of(r);
    const int64_t j = j0 + jj;
    dst[jj * (kRows + 4) + r] = (row != nullptr && j < dim) ? to_float(row[j]) : 0.f;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    negative_logits_kernel(Problem<T> p, Norms norms, float temperature, float* logits) {
  constexpr int kQueryStride = kLogitQueries + 4;
  constexpr int kNegativeStride = kLogitNegatives + 4;
  __shared__ __align__(16) float queries_s[kLogitDims * kQueryStride];
  __shared__ __align__(16) float negatives_s[kLogitDims * kNegativeStride];

  const int query_in_tile = lane_id();
  const int first_negative_in_tile = static_cast<int>(threadIdx.x) / kWarpSize * kNegativesPerThread;
  const int64_t query_tiles = (p.batch + kLogitQueries - 1) / kLogitQueries;
  const int64_t negative_tiles = (p.num_negatives + kLogitNegatives - 1) / kLogitNegatives;

  for (int64_t tile = blockIdx.x; tile < query_tiles * negative_tiles; tile += gridDim.x) {
    const int64_t b0 = tile % query_tiles * kLogitQueries;
    const int64_t n0 = tile / query_tiles * kLogitNegatives;
    const auto query_of = [&](int r) -> const T* {
      return b0 + r < p.batch ? p.query_row(b0 + r) : nullptr;
    };
    const auto negative_of = [&](int r) -> const T* {
      return n0 + r < p.num_negatives ? p.negative_row(n0 + r) : nullptr;
    };

    float dot[kNegativesPerThread] = {};
    for (int64_t e0 = 0; e0 < p.dim; e0 += kLogitDims) {
      __syncthreads();  // everyone is done with the previous slice
      stage_transposed<T, kLogitQueries, kLogitDims>(queries_s, query_of, e0, p.dim);
      stage_transposed<T, kLogitNegatives, kLogitDims>(negatives_s, negative_of, e0, p.dim);
      __syncthreads();
#pragma unroll
      for (int jj = 0; jj < kLogitDims; ++jj) {
        const float q = queries_s[jj * kQueryStride + query_in_tile];
        const float* col = negatives_s + jj * kNegativeStride + first_negative_in_tile;
        const float4 lo = *reinterpret_cast<const float4*>(col);
        const float4 hi = *reinterpret_cast<const float4*>(col + 4);
        const float t[kNegativesPerThread] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
        for (int g = 0; g < kNegativesPerThread; ++g) dot[g] = fmaf(q, t[g], dot[g]);
      }
    }

    const int64_t b = b0 + query_in_tile;
    if (b < p.batch) {
      const float query_norm = clamped(norms.query(b));
      for (int g = 0; g < kNegativesPerThread; ++g) {
        const int64_t j = n0 + first_negative_in_tile + g;
        if (j < p.num_negatives) {
          logits[b * p.columns() + 1 + j] =
              dot[g] / (query_norm * clamped(norms.negative(j))) / temperature;
        }
      }
    }
  }
}

// ---- loss ----

// Same bits in every lane of the warp.
__device__ float row_logsumexp(const float* row, int64_t columns) {
  float m = -INFINITY;
  for (int64_t c = lane_id(); c < columns; c += kWarpSize) m = fmaxf(m, row[c]);
  m = warp_max(m);
  float s = 0.f;
  for (int64_t c = lane_id(); c < columns; c += kWarpSize) s += expf(row[c] - m);
  s = warp_sum(s);
  return m + logf(s);
}

__global__ void __launch_bounds__(kThreads)
    row_loss_kernel(const float* logits, int64_t batch, int64_t columns, float* row_loss) {
  for (int64_t b = global_warp_id(); b < batch; b += total_warps()) {
    const float* row = logits + b * columns;
    const float lse = row_logsumexp(row, columns);
    if (lane_id() == 0) row_loss[b] = lse - row[0];
  }
}

// Sum over the block in a fixed tree; the result is returned to every thread.
template <typename V>
__device__ V block_sum(V v, V* shared) {
  shared[threadIdx.x] = v;
  for (int width = kThreads / 2; width > 0; width /= 2) {
    __syncthreads();
    if (threadIdx.x < width) shared[threadIdx.x] += shared[threadIdx.x + width];
  }
  __syncthreads();
  return shared[0];
}

// One block of kThreads.
__global__ void __launch_bounds__(kThreads)
    mean_loss_kernel(const float* row_loss, const uint8_t* valid, int64_t batch, float* loss) {
  __shared__ float sums[kThreads];
  __shared__ int64_t counts[kThreads];
  float sum = 0.f;
  int64_t count = 0;
  for (int64_t b = threadIdx.x; b < batch; b += kThreads) {
    if (valid[b] != 0) {
      sum += row_loss[b];
      ++count;
    }
  }
  sum = block_sum(sum, sums);
  count = block_sum(count, counts);
  if (threadIdx.x == 0) *loss = count > 0 ? sum / static_cast<float>(count) : 0.f;
}

// ---- backward ----

// One block of kThreads.
__global__ void __launch_bounds__(kThreads)
    count_valid_kernel(const uint8_t* valid, int64_t batch, int64_t* valid_count) {
  __shared__ int64_t counts[kThreads];
  int64_t count = 0;
  for (int64_t b = threadIdx.x; b < batch; b += kThreads) count += valid[b] != 0 ? 1 : 0;
  count = block_sum(count, counts);
  if (threadIdx.x == 0) *valid_count = count;
}

// coef is [columns][batch] so that direction_grad_kernel stages it with coalesced reads.
__global__ void __launch_bounds__(kThreads)
    coefficients_kernel(const float* grad_loss, const float* logits, const uint8_t* valid,
                        const int64_t* valid_count, Norms norms, int64_t batch, int64_t columns,
                        float temperature, float* coef) {
  for (int64_t b = global_warp_id(); b < batch; b += total_warps()) {
    if (valid[b] == 0) {
      for (int64_t c = lane_id(); c < columns; c += kWarpSize) coef[c * batch + b] = 0.f;
      continue;
    }
    const float* row = logits + b * columns;
    const float lse = row_logsumexp(row, columns);
    const int64_t count = *valid_count > 1 ? *valid_count : 1;
    const float weight = grad_loss[0] / static_cast<float>(count);
    for (int64_t c = lane_id(); c < columns; c += kWarpSize) {
      const float softmax = expf(row[c] - lse);
      const float g = weight * (softmax - (c == 0 ? 1.f : 0.f));
      coef[c * batch + b] = g / temperature / clamped(norms.column(b, c));
    }
  }
}

// dqhat[b][e] = coef[0][b] * positive_b[e] + sum_j coef[1 + j][b] * negative_j[e], summed in that
// order by one thread.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    direction_grad_kernel(Problem<T> p, const float* coef, float* dqhat) {
  __shared__ __align__(16) float coef_s[kGradColumns][kGradQueries];
  __shared__ float negatives_s[kGradColumns][kGradDims];

  const int dim_in_tile = static_cast<int>(threadIdx.x) % kGradDims;
  const int first_query_in_tile = static_cast<int>(threadIdx.x) / kGradDims * kQueriesPerThread;
  const int64_t query_tiles = (p.batch + kGradQueries - 1) / kGradQueries;
  const int64_t dim_tiles = (p.dim + kGradDims - 1) / kGradDims;

  for (int64_t tile = blockIdx.x; tile < query_tiles * dim_tiles; tile += gridDim.x) {
    const int64_t b0 = tile % query_tiles * kGradQueries;
    const int64_t e0 = tile / query_tiles * kGradDims;
    const int64_t e = e0 + dim_in_tile;

    float acc[kQueriesPerThread];
    for (int q = 0; q < kQueriesPerThread; ++q) {
      const int64_t b = b0 + first_query_in_tile + q;
      acc[q] = (b < p.batch && e < p.dim) ? coef[b] * to_float(p.positive_row(b)[e]) : 0.f;
    }

    for (int64_t c0 = 0; c0 < p.num_negatives; c0 += kGradColumns) {
      __syncthreads();  // everyone is done with the previous chunk
      for (int i = threadIdx.x; i < kGradColumns * kGradQueries; i += kThreads) {
        const int64_t j = c0 + i / kGradQueries;
        const int64_t b = b0 + i % kGradQueries;
        coef_s[i / kGradQueries][i % kGradQueries] =
            (j < p.num_negatives && b < p.batch) ? coef[(1 + j) * p.batch + b] : 0.f;
      }
      for (int i = threadIdx.x; i < kGradColumns * kGradDims; i += kThreads) {
        const int64_t j = c0 + i / kGradDims;
        const int64_t ei = e0 + i % kGradDims;
        negatives_s[i / kGradDims][i % kGradDims] =
            (j < p.num_negatives && ei < p.dim) ? to_float(p.negative_row(j)[ei]) : 0.f;
      }
      __syncthreads();
#pragma unroll
      for (int cc = 0; cc < kGradColumns; ++cc) {
        const float t = negatives_s[cc][dim_in_tile];
        const float4 lo = *reinterpret_cast<const float4*>(&coef_s[cc][first_query_in_tile]);
        const float4 hi = *reinterpret_cast<const float4*>(&coef_s[cc][first_query_in_tile + 4]);
        const float w[kQueriesPerThread] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
        for (int q = 0; q < kQueriesPerThread; ++q) acc[q] = fmaf(w[q], t, acc[q]);
      }
    }

    if (e < p.dim) {
      for (int q = 0; q < kQueriesPerThread; ++q) {
        const int64_t b = b0 + first_query_in_tile + q;
        if (b < p.batch) dqhat[b * p.dim + e] = acc[q];
      }
    }
  }
}

// Backward of qhat = q / max(||q||, eps): (dqhat - qhat <qhat, dqhat>) / ||q||, or dqhat / eps
// where the norm was clamped (the clamp passes no gradient to the norm).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    query_grad_kernel(Problem<T> p, Norms norms, const float* dqhat, T* grad_query) {
  for (int64_t b = global_warp_id(); b < p.batch; b += total_warps()) {
    const T* q = p.query_row(b);
    const float* dq = dqhat + b * p.dim;
    T* out = grad_query + b * p.dim;
    const float norm = norms.query(b);
    if (norm < kNormEps) {
      for (int64_t e = lane_id(); e < p.dim; e += kWarpSize) {
        out[e] = from_float<T>(dq[e] / kNormEps);
      }
      continue;
    }
    float projection = 0.f;
    for (int64_t e = lane_id(); e < p.dim; e += kWarpSize) {
      projection = fmaf(to_float(q[e]) / norm, dq[e], projection);
    }
    projection = warp_sum(projection);
    for (int64_t e = lane_id(); e < p.dim; e += kWarpSize) {
      const float qhat = to_float(q[e]) / norm;
      out[e] = from_float<T>((dq[e] - qhat * projection) / norm);
    }
  }
}

// ---- host side ----

unsigned blocks_for(int64_t work_items, int64_t items_per_block) {
  const int64_t blocks = (work_items + items_per_block - 1) / items_per_block;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

// One stream-ordered device allocation carved into aligned pieces; freed (stream-ordered,
// after the kernels that use it) when it goes out of scope.
class Scratch {
 public:
  // Returns the byte offset of a new piece of `count` elements of `size` bytes.
  size_t reserve(int64_t count, size_t size) {
    const size_t at = bytes_;
    bytes_ += (static_cast<size_t>(count) * size + kAlign - 1) / kAlign * kAlign;
    return at;
  }

  void allocate(cudaStream_t stream) {
    stream_ = stream;
    if (bytes_ == 0) return;
    const cudaError_t err = cudaMallocAsync(&base_, bytes_, stream);
    if (err != cudaSuccess) {
      throw std::runtime_error(std::string("gathered_infonce: allocating ") +
                               std::to_string(bytes_) + " bytes of scratch: " +
                               cudaGetErrorString(err));
    }
  }

  template <typename V>
  V* at(size_t offset) const {
    return reinterpret_cast<V*>(static_cast<char*>(base_) + offset);
  }

  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    if (base_ != nullptr) cudaFreeAsync(base_, stream_);
  }

 private:
  static constexpr size_t kAlign = 256;
  size_t bytes_ = 0;
  void* base_ = nullptr;
  cudaStream_t stream_ = nullptr;
};

template <typename T>
Problem<T> make_problem(const void* query, const void* table, int64_t table_row_stride,
                        const int64_t* positive_ids, const int64_t* negative_ids, int64_t batch,
                        int64_t num_negatives, int64_t dim) {
  return {static_cast<const T*>(query), static_cast<const T*>(table), table_row_stride,
          positive_ids, negative_ids, batch, num_negatives, dim};
}

template <typename T>
void launch_norms(const Problem<T>& p, float temperature, Norms norms, float* logits,
                  cudaStream_t stream) {
  const int64_t rows = p.batch + p.num_negatives;
  if (rows == 0) return;
  row_norms_kernel<T><<<blocks_for(rows, kWarps), kThreads, 0, stream>>>(p, temperature, norms,
                                                                        logits);
}

template <typename T>
void forward(const Problem<T>& p, const uint8_t* valid, float temperature, float* logits,
             float* loss, cudaStream_t stream) {
  Scratch scratch;
  const size_t norms_at = scratch.reserve(2 * p.batch + p.num_negatives, sizeof(float));
  const size_t row_loss_at = scratch.reserve(p.batch, sizeof(float));
  scratch.allocate(stream);
  const Norms norms{scratch.at<float>(norms_at), p.batch};
  float* row_loss = scratch.at<float>(row_loss_at);

  launch_norms(p, temperature, norms, logits, stream);
  const int64_t tiles = (p.batch + kLogitQueries - 1) / kLogitQueries *
                        ((p.num_negatives + kLogitNegatives - 1) / kLogitNegatives);
  if (tiles > 0) {
    negative_logits_kernel<T><<<blocks_for(tiles, 1), kThreads, 0, stream>>>(p, norms, temperature,
                                                                             logits);
  }
  if (p.batch > 0) {
    row_loss_kernel<<<blocks_for(p.batch, kWarps), kThreads, 0, stream>>>(logits, p.batch,
                                                                          p.columns(), row_loss);
  }
  mean_loss_kernel<<<1, kThreads, 0, stream>>>(row_loss, valid, p.batch, loss);
  check_launch("gathered_infonce_forward");  // before the scratch is released
}

template <typename T>
void backward(const Problem<T>& p, const float* grad_loss, const uint8_t* valid,
              float temperature, const float* logits, T* grad_query, cudaStream_t stream) {
  if (p.batch == 0) return;
  Scratch scratch;
  const size_t norms_at = scratch.reserve(2 * p.batch + p.num_negatives, sizeof(float));
  const size_t count_at = scratch.reserve(1, sizeof(int64_t));
  const size_t coef_at = scratch.reserve(p.columns() * p.batch, sizeof(float));
  const size_t dqhat_at = scratch.reserve(p.batch * p.dim, sizeof(float));
  scratch.allocate(stream);
  const Norms norms{scratch.at<float>(norms_at), p.batch};
  int64_t* valid_count = scratch.at<int64_t>(count_at);
  float* coef = scratch.at<float>(coef_at);
  float* dqhat = scratch.at<float>(dqhat_at);

  launch_norms(p, temperature, norms, nullptr, stream);
  count_valid_kernel<<<1, kThreads, 0, stream>>>(valid, p.batch, valid_count);
  coefficients_kernel<<<blocks_for(p.batch, kWarps), kThreads, 0, stream>>>(
      grad_loss, logits, valid, valid_count, norms, p.batch, p.columns(), temperature, coef);
  if (p.dim > 0) {
    const int64_t tiles = (p.batch + kGradQueries - 1) / kGradQueries *
                          ((p.dim + kGradDims - 1) / kGradDims);
    direction_grad_kernel<T><<<blocks_for(tiles, 1), kThreads, 0, stream>>>(p, coef, dqhat);
    query_grad_kernel<T><<<blocks_for(p.batch, kWarps), kThreads, 0, stream>>>(p, norms, dqhat,
                                                                              grad_query);
  }
  check_launch("gathered_infonce_backward");  // before the scratch is released
}

}  // namespace

void gathered_infonce_forward(const void* query, const void* table, int64_t table_row_stride,
                              Float dtype, const int64_t* positive_ids,
                              const int64_t* negative_ids, const uint8_t* valid, int64_t batch,
                              int64_t num_negatives, int64_t dim, float temperature, float* logits,
                              float* loss, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  const auto run = [&](auto type_tag) {
    using T = decltype(type_tag);
    forward(make_problem<T>(query, table, table_row_stride, positive_ids, negative_ids, batch,
                            num_negatives, dim),
            valid, temperature, logits, loss, s);
  };
  switch (dtype) {
    case Float::f32: return run(float{});
    case Float::f16: return run(__half{});
    case Float::bf16: return run(__nv_bfloat16{});
  }
  throw std::invalid_argument("gathered_infonce_forward: unknown dtype");
}

void gathered_infonce_backward(const float* grad_loss, const void* query, const void* table,
                               int64_t table_row_stride, Float dtype, const int64_t* positive_ids,
                               const int64_t* negative_ids, const uint8_t* valid, int64_t batch,
                               int64_t num_negatives, int64_t dim, float temperature,
                               const float* logits, void* grad_query, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  const auto run = [&](auto type_tag) {
    using T = decltype(type_tag);
    backward(make_problem<T>(query, table, table_row_stride, positive_ids, negative_ids, batch,
                             num_negatives, dim),
             grad_loss, valid, temperature, logits, static_cast<T*>(grad_query), s);
  };
  switch (dtype) {
    case Float::f32: return run(float{});
    case Float::f16: return run(__half{});
    case Float::bf16: return run(__nv_bfloat16{});
  }
  throw std::invalid_argument("gathered_infonce_backward: unknown dtype");
}

}  // namespace eager_ext::cuda
