// In-place trie mask on the GPU: every column of row r whose token is not a child of nodes[r]
// becomes -inf.
//
// A block owns one tile of kTile columns of a row (grid: column tiles x rows, rows looping past
// the grid's y limit). Two warps find, by a 32-way search of the node's sorted child tokens,
// the children whose tokens fall in the tile; those (never more than kTile) mark a shared
// keep-flag each, and the block then writes -inf to every unmarked column. Nothing is saved
// and restored, so no thread ever writes a value another one reads: the result does not depend
// on scheduling. The work per tile is kTile plus the children in it plus two short searches.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "launch.h"

namespace eager_ext::cuda {
namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kThreads = 256;
constexpr int kTile = 2048;
constexpr int64_t kMaxGridRows = 65535;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}

// First index in sorted[lo .. hi) whose value is >= value (hi if none), found by a whole warp:
// each round probes 32 evenly spaced entries and keeps the gap where the comparison flips, so
// the range shrinks 32-fold per round (three rounds for 32,000 children). All lanes return the
// same index.
__device__ int64_t warp_lower_bound(const int64_t* sorted, int64_t lo, int64_t hi, int64_t value) {
  const int lane = threadIdx.x % kWarp;
  while (hi - lo > kWarp) {
    const int64_t length = hi - lo;
    const int64_t probe = lo + length * lane / kWarp;
    const int below = __popc(__ballot_sync(kFullMask, sorted[probe] < value));
    if (below == 0) return lo;  // sorted[lo] >= value
    const int64_t last_below = lo + length * (below - 1) / kWarp;
    hi = below < kWarp ? lo + length * below / kWarp : hi;
    lo = last_below + 1;
  }
  const bool below = lo + lane < hi && sorted[lo + lane] < value;
  return lo + __popc(__ballot_sync(kFullMask, below));
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    trie_mask_kernel(T* logits, int64_t row_stride, int64_t rows, int64_t v, const int64_t* nodes,
                     const int64_t* child_offsets, const int64_t* child_tokens,
                     int64_t vocab_offset) {
  __shared__ unsigned char keep[kTile];
  __shared__ int64_t children[2];  // [first, last) edges whose tokens lie in this tile
  const int64_t tile_begin = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t tile_end = tile_begin + kTile < v ? tile_begin + kTile : v;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const T minus_infinity = from_float<T>(kNegInf);

  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    const int64_t node = nodes[row];
    const int64_t begin = child_offsets[node], end = child_offsets[node + 1];
    for (int i = threadIdx.x; i < kTile; i += blockDim.x) keep[i] = 0;
    if (warp < 2) {
      const int64_t bound = (warp == 0 ? tile_begin : tile_end) + vocab_offset;
      const int64_t edge = warp_lower_bound(child_tokens, begin, end, bound);
      if (lane == 0) children[warp] = edge;
    }
    __syncthreads();
    for (int64_t e = children[0] + threadIdx.x; e < children[1]; e += blockDim.x) {
      keep[child_tokens[e] - vocab_offset - tile_begin] = 1;
    }
    __syncthreads();
    T* out = logits + row * row_stride;
    for (int64_t c = tile_begin + threadIdx.x; c < tile_end; c += blockDim.x) {
      if (!keep[c - tile_begin]) out[c] = minus_infinity;
    }
    __syncthreads();  // keep and children are rewritten for the next row
  }
}

template <typename T>
void launch(void* logits, int64_t row_stride, int64_t rows, int64_t v, const int64_t* nodes,
            const int64_t* child_offsets, const int64_t* child_tokens, int64_t vocab_offset,
            cudaStream_t stream) {
  const int64_t tiles = (v + kTile - 1) / kTile;
  const dim3 grid(static_cast<unsigned>(tiles),
                  static_cast<unsigned>(rows < kMaxGridRows ? rows : kMaxGridRows));
  trie_mask_kernel<T><<<grid, kThreads, 0, stream>>>(static_cast<T*>(logits), row_stride, rows, v,
                                                     nodes, child_offsets, child_tokens,
                                                     vocab_offset);
}

}  // namespace

void trie_mask(void* logits, int64_t row_stride, Float dtype, int64_t rows, int64_t v,
               const int64_t* nodes, const int64_t* child_offsets, const int64_t* child_tokens,
               int64_t vocab_offset, void* stream) {
  if (rows < 0 || v < 0) {
    throw std::invalid_argument("trie_mask: need rows >= 0 and v >= 0, got " +
                                std::to_string(rows) + " and " + std::to_string(v));
  }
  if ((v + kTile - 1) / kTile > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("trie_mask: v = " + std::to_string(v) + " exceeds the grid limit");
  }
  if (rows == 0 || v == 0) return;
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case Float::f32:
      return launch<float>(logits, row_stride, rows, v, nodes, child_offsets, child_tokens,
                           vocab_offset, cuda_stream);
    case Float::f16:
      return launch<__half>(logits, row_stride, rows, v, nodes, child_offsets, child_tokens,
                            vocab_offset, cuda_stream);
    case Float::bf16:
      return launch<__nv_bfloat16>(logits, row_stride, rows, v, nodes, child_offsets,
                                   child_tokens, vocab_offset, cuda_stream);
  }
}

}  // namespace eager_ext::cuda
