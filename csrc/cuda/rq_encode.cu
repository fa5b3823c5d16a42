// Fused residual quantization: for every row of x and every level, the nearest centroid of the
// running residual (squared Euclidean distance, ties to the smaller index), then the residual
// minus that centroid; finally the squared norm of what is left.
//
// Decomposition. A block of 256 threads owns a tile of `rows` consecutive rows of x and keeps
// their float residuals in shared memory for all levels (rows is a power of two <= 32 chosen by
// what fits, see choose_rows; when not even one row fits, the residual lives in a global scratch
// buffer instead).
// Thread t serves row t % rows and, within each chunk of centroids the block walks, the
// kCentroidsPerThread adjacent centroids of slot t / rows. The chunk is staged slice by slice
// of dims in shared memory as float, transposed, so a thread reads its centroids as two float4.
// Nothing of size n x k is ever stored: each thread keeps only its best (distance, code).
//
// Determinism. Every (row, centroid) dot product and every centroid norm is summed by a single
// thread over dims 0..d-1 in ascending order, whatever the tile shape (the zero padding of the
// last slice adds exact zeros). Each thread keeps the lexicographically smallest (distance,
// code) of the centroids it saw, and the block takes the lexicographic minimum over threads:
// that equals a scan of all k in ascending order with a strict <, however the centroids were
// split. So codes and norms do not depend on the grid, the tile shape or the device.
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
constexpr int kCentroidsPerThread = 8;  // two float4 loads of staged centroids per dim
constexpr int kStagedFloatsTarget = 4096;
constexpr int kMinSliceDims = 8;  // the staging pattern below moves dims in groups of eight
constexpr int kGlobalResidualRows = 8;
constexpr int64_t kNoCode = INT64_MAX;

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// ---- tile geometry, shared by host (launch sizes) and device (indexing) ----

__host__ __device__ constexpr int chunk_size(int rows) {
  return kThreads / rows * kCentroidsPerThread;
}

// Rows of the staged chunk are padded by four floats: keeps float4 alignment and, since the
// chunk is a multiple of 32, makes the staging stores bank-conflict free.
__host__ __device__ constexpr int chunk_stride(int rows) { return chunk_size(rows) + 4; }

// About 16 KiB of staged centroids per slice.
__host__ __device__ constexpr int slice_dims(int rows) {
  return kStagedFloatsTarget / chunk_size(rows) > kMinSliceDims
             ? kStagedFloatsTarget / chunk_size(rows)
             : kMinSliceDims;
}

__host__ __device__ constexpr int staged_floats(int rows) {
  return slice_dims(rows) * chunk_stride(rows);
}

// Residual rows are padded with zeros to whole slices, plus one float so that the stride is
// odd: the rows a warp reads at the same dim then sit in distinct banks.
__host__ __device__ constexpr int64_t residual_stride(int rows, int64_t d) {
  return (d + slice_dims(rows) - 1) / slice_dims(rows) * slice_dims(rows) + 1;
}

// Layout: staged chunk | candidate codes [kThreads] | chosen codes [rows] |
//         candidate distances [kThreads] | residual [rows][stride] (when in shared memory).
size_t smem_bytes(int rows, int64_t d, bool residual_in_shared) {
  const size_t fixed = sizeof(float) * staged_floats(rows) + sizeof(int64_t) * (kThreads + rows) +
                       sizeof(float) * kThreads;
  const size_t residual =
      residual_in_shared ? sizeof(float) * rows * static_cast<size_t>(residual_stride(rows, d))
                         : 0;
  return fixed + residual;
}

// ---- device pieces ----

__device__ __forceinline__ bool better(float dist, int64_t code, float best_dist,
                                       int64_t best_code) {
  return dist < best_dist || (dist == best_dist && code < best_code);
}

template <typename T, int kRows>
__device__ void load_residual(float* residual, const T* x, int64_t x_row_stride, int64_t row0,
                              int64_t n, int64_t d) {
  const int64_t stride = residual_stride(kRows, d);
  const int64_t padded = stride - 1;
  for (int64_t e = threadIdx.x; e < kRows * padded; e += kThreads) {
    const int64_t i = e / padded;
    const int64_t j = e - i * padded;
    const int64_t row = row0 + i;
    residual[i * stride + j] = (row < n && j < d) ? to_float(x[row * x_row_stride + j]) : 0.f;
  }
}

// staged[jj][c] = book[k0 + c][j0 + jj], zero outside the codebook. Eight consecutive threads
// read eight consecutive dims of one centroid (whole sectors), and the 32 stores of a warp land
// in 32 distinct banks (4 * dim_low + c mod 32, with c covering four consecutive values).
template <typename T, int kRows>
__device__ void stage_chunk(float* staged, const T* book, int64_t k, int64_t d, int64_t k0,
                            int64_t j0) {
  constexpr int kChunk = chunk_size(kRows);
  for (int e = threadIdx.x; e < kChunk * slice_dims(kRows); e += kThreads) {
    const int dim_low = e & 7;
    const int rest = e >> 3;
    const int c = rest % kChunk;
    const int jj = rest / kChunk * 8 + dim_low;
    const int64_t code = k0 + c;
    const int64_t j = j0 + jj;
    staged[jj * chunk_stride(kRows) + c] = (code < k && j < d) ? to_float(book[code * d + j]) : 0.f;
  }
}

// One slice of this thread's dot products with, and squared norms of, its eight centroids.
template <int kRows>
__device__ __forceinline__ void accumulate_slice(const float* residual_row,
                                                 const float* staged_slot,
                                                 float (&dot)[kCentroidsPerThread],
                                                 float (&norm)[kCentroidsPerThread]) {
#pragma unroll
  for (int jj = 0; jj < slice_dims(kRows); ++jj) {
    const float r = residual_row[jj];
    const float* col = staged_slot + jj * chunk_stride(kRows);
    const float4 lo = *reinterpret_cast<const float4*>(col);
    const float4 hi = *reinterpret_cast<const float4*>(col + 4);
    const float c[kCentroidsPerThread] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
#pragma unroll
    for (int g = 0; g < kCentroidsPerThread; ++g) {
      dot[g] = fmaf(r, c[g], dot[g]);
      norm[g] = fmaf(c[g], c[g], norm[g]);
    }
  }
}

// Thread t < kRows: the lexicographic minimum over all slots of row t.
template <int kRows>
__device__ int64_t pick_code(const float* cand_dist, const int64_t* cand_code) {
  float best = INFINITY;
  int64_t code = kNoCode;
  for (int slot = 0; slot < kThreads / kRows; ++slot) {
    const int idx = slot * kRows + static_cast<int>(threadIdx.x);
    if (better(cand_dist[idx], cand_code[idx], best, code)) {
      best = cand_dist[idx];
      code = cand_code[idx];
    }
  }
  // Only NaN distances leave no winner; code 0 keeps every later read in bounds.
  return code == kNoCode ? 0 : code;
}

template <typename T, int kRows>
__device__ void subtract_chosen(float* residual, const T* book, const int64_t* chosen,
                                int64_t d) {
  const int64_t stride = residual_stride(kRows, d);
  for (int64_t e = threadIdx.x; e < kRows * d; e += kThreads) {
    const int64_t i = e / d;
    const int64_t j = e - i * d;
    residual[i * stride + j] -= to_float(book[chosen[i] * d + j]);
  }
}

template <typename T, int kRows, bool kResidualInShared>
__global__ void __launch_bounds__(kThreads)
    rq_encode_kernel(const T* __restrict__ x, int64_t x_row_stride,
                     const T* __restrict__ codebooks, int64_t n, int64_t d, int64_t levels,
                     int64_t k, int64_t* __restrict__ codes, float* __restrict__ residual_norm,
                     float* residual_scratch) {
  constexpr int kChunk = chunk_size(kRows);
  extern __shared__ float4 smem[];  // float4: the staged chunk is read as float4
  float* staged = reinterpret_cast<float*>(smem);
  int64_t* cand_code = reinterpret_cast<int64_t*>(staged + staged_floats(kRows));
  int64_t* chosen = cand_code + kThreads;
  float* cand_dist = reinterpret_cast<float*>(chosen + kRows);
  const int64_t stride = residual_stride(kRows, d);
  float* residual = kResidualInShared
                        ? cand_dist + kThreads
                        : residual_scratch + static_cast<int64_t>(blockIdx.x) * kRows * stride;

  const int row = static_cast<int>(threadIdx.x) % kRows;
  const int slot = static_cast<int>(threadIdx.x) / kRows;
  const float* residual_row = residual + row * stride;
  const float* staged_slot = staged + slot * kCentroidsPerThread;
  const int64_t num_tiles = (n + kRows - 1) / kRows;

  for (int64_t tile = blockIdx.x; tile < num_tiles; tile += gridDim.x) {
    const int64_t row0 = tile * kRows;
    __syncthreads();  // the previous tile's norms may still be reading the residual
    load_residual<T, kRows>(residual, x, x_row_stride, row0, n, d);
    __syncthreads();

    for (int64_t level = 0; level < levels; ++level) {
      const T* book = codebooks + level * k * d;
      float best = INFINITY;
      int64_t best_code = kNoCode;
      for (int64_t k0 = 0; k0 < k; k0 += kChunk) {
        float dot[kCentroidsPerThread] = {};
        float norm[kCentroidsPerThread] = {};
        for (int64_t j0 = 0; j0 < d; j0 += slice_dims(kRows)) {
          __syncthreads();  // everyone is done with the previous slice
          stage_chunk<T, kRows>(staged, book, k, d, k0, j0);
          __syncthreads();
          accumulate_slice<kRows>(residual_row + j0, staged_slot, dot, norm);
        }
        for (int g = 0; g < kCentroidsPerThread; ++g) {
          const int64_t code = k0 + slot * kCentroidsPerThread + g;
          const float dist = norm[g] - 2.f * dot[g];
          if (code < k && better(dist, code, best, best_code)) {
            best = dist;
            best_code = code;
          }
        }
      }
      cand_dist[threadIdx.x] = best;
      cand_code[threadIdx.x] = best_code;
      __syncthreads();
      if (threadIdx.x < kRows) {
        const int64_t code = pick_code<kRows>(cand_dist, cand_code);
        chosen[threadIdx.x] = code;
        if (row0 + threadIdx.x < n) codes[(row0 + threadIdx.x) * levels + level] = code;
      }
      __syncthreads();
      subtract_chosen<T, kRows>(residual, book, chosen, d);
      __syncthreads();
    }

    if (threadIdx.x < kRows && row0 + threadIdx.x < n) {
      float sum = 0.f;
      for (int64_t j = 0; j < d; ++j) sum = fmaf(residual_row[j], residual_row[j], sum);
      residual_norm[row0 + threadIdx.x] = sum;
    }
  }
}

// ---- host side ----

struct RqArgs {
  const void* x;
  int64_t x_row_stride;
  const void* codebooks;
  int64_t n, d, levels, k;
  int64_t* codes;
  float* residual_norm;
};

struct DeviceLimits {
  int sms;
  size_t smem_per_block;  // opt-in maximum of dynamic shared memory for one block
  size_t smem_per_sm;
};

void throw_on(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("rq_encode: ") + what + ": " + cudaGetErrorString(err));
  }
}

DeviceLimits current_device_limits() {
  int device = 0, sms = 0, per_block = 0, per_sm = 0;
  throw_on(cudaGetDevice(&device), "cudaGetDevice");
  throw_on(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "SM count");
  throw_on(cudaDeviceGetAttribute(&per_block, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
           "shared memory per block");
  throw_on(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device),
           "shared memory per SM");
  return {sms, static_cast<size_t>(per_block), static_cast<size_t>(per_sm)};
}

// Largest tile height whose residual fits in `budget` bytes of shared memory, or 0.
int rows_fitting(int64_t d, size_t budget) {
  for (int rows = 32; rows >= 1; rows /= 2) {
    if (smem_bytes(rows, d, true) <= budget) return rows;
  }
  return 0;
}

// Prefer a tile small enough for two blocks per SM, unless that shrinks the tile so much that
// a chunk of centroids is mostly padding (chunk_size(rows) > k) while a taller tile would fit.
int choose_rows(const DeviceLimits& dev, int64_t d, int64_t k) {
  const size_t reserved_per_block = 1024;  // the runtime's own share on sm_80 and later
  const size_t two_per_sm = dev.smem_per_sm / 2 - reserved_per_block;
  const int tallest = rows_fitting(d, dev.smem_per_block);
  const int for_two_blocks = rows_fitting(d, two_per_sm < dev.smem_per_block ? two_per_sm
                                                                               : dev.smem_per_block);
  if (for_two_blocks > 0 && chunk_size(for_two_blocks) <= k) return for_two_blocks;
  return tallest;
}

template <typename T, int kRows, bool kResidualInShared>
void launch_tiles(const RqArgs& a, int64_t grid, float* scratch, cudaStream_t stream) {
  const auto kernel = rq_encode_kernel<T, kRows, kResidualInShared>;
  const size_t bytes = smem_bytes(kRows, a.d, kResidualInShared);
  throw_on(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(bytes)),
           "opting in to dynamic shared memory");
  kernel<<<static_cast<unsigned>(grid), kThreads, bytes, stream>>>(
      static_cast<const T*>(a.x), a.x_row_stride, static_cast<const T*>(a.codebooks), a.n, a.d,
      a.levels, a.k, a.codes, a.residual_norm, scratch);
}

int64_t grid_for(int64_t n, int rows, int64_t max_blocks) {
  const int64_t tiles = (n + rows - 1) / rows;
  return tiles < max_blocks ? tiles : max_blocks;
}

template <typename T>
void launch_with_shared_residual(const RqArgs& a, int rows, const DeviceLimits& dev,
                                 cudaStream_t stream) {
  const int64_t grid = grid_for(a.n, rows, static_cast<int64_t>(dev.sms) * 32);
  switch (rows) {
    case 32: return launch_tiles<T, 32, true>(a, grid, nullptr, stream);
    case 16: return launch_tiles<T, 16, true>(a, grid, nullptr, stream);
    case 8: return launch_tiles<T, 8, true>(a, grid, nullptr, stream);
    case 4: return launch_tiles<T, 4, true>(a, grid, nullptr, stream);
    case 2: return launch_tiles<T, 2, true>(a, grid, nullptr, stream);
    default: return launch_tiles<T, 1, true>(a, grid, nullptr, stream);
  }
}

// For rows too long for shared memory (d beyond ~50k floats): each block gets its own slice
// of a stream-ordered scratch buffer, so its size is bounded by the grid, not by n.
template <typename T>
void launch_with_global_residual(const RqArgs& a, const DeviceLimits& dev, cudaStream_t stream) {
  constexpr int kRows = kGlobalResidualRows;
  const int64_t grid = grid_for(a.n, kRows, static_cast<int64_t>(dev.sms) * 2);
  const size_t scratch_bytes =
      sizeof(float) * static_cast<size_t>(grid) * kRows * residual_stride(kRows, a.d);
  void* scratch = nullptr;
  throw_on(cudaMallocAsync(&scratch, scratch_bytes, stream), "allocating residual scratch");
  try {
    launch_tiles<T, kRows, false>(a, grid, static_cast<float*>(scratch), stream);
    check_launch("rq_encode");  // while the scratch is still ours to free
  } catch (...) {
    cudaFreeAsync(scratch, stream);
    throw;
  }
  cudaFreeAsync(scratch, stream);
}

template <typename T>
void launch_for_type(const RqArgs& a, cudaStream_t stream) {
  const DeviceLimits dev = current_device_limits();
  const int rows = choose_rows(dev, a.d, a.k);
  if (rows > 0) {
    launch_with_shared_residual<T>(a, rows, dev, stream);
  } else {
    launch_with_global_residual<T>(a, dev, stream);
  }
}

}  // namespace

void rq_encode(const void* x, int64_t x_row_stride, const void* codebooks, Float dtype, int64_t n,
               int64_t d, int64_t levels, int64_t k, int64_t* codes, float* residual_norm,
               void* stream) {
  if (d < 0 || levels < 0 || k < 1) {
    throw std::invalid_argument("rq_encode: need d >= 0, levels >= 0, k >= 1 (got d=" +
                                std::to_string(d) + ", levels=" + std::to_string(levels) +
                                ", k=" + std::to_string(k) + ")");
  }
  if (n <= 0) return;
  const RqArgs args{x, x_row_stride, codebooks, n, d, levels, k, codes, residual_norm};
  const auto s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case Float::f32: return launch_for_type<float>(args, s);
    case Float::f16: return launch_for_type<__half>(args, s);
    case Float::bf16: return launch_for_type<__nv_bfloat16>(args, s);
  }
  throw std::invalid_argument("rq_encode: unknown dtype");
}

}  // namespace eager_ext::cuda
