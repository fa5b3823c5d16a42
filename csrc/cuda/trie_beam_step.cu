// One step of trie-constrained beam search on the GPU, in two kernels.
//
// Kernel 1 (score): one warp per row when V is small, one block per row when it is large. A
// row whose beam is live and whose node is in range reads its logits once (16-byte loads, an
// online logsumexp per thread, then a warp or block merge) and writes one candidate score per
// child of its node into workspace slot [row * max_children + child]; every other slot gets
// -inf. Rows of dead beams (and of out-of-range nodes) never touch their logits. The work per
// row is V plus max_children, never the number of items.
//
// Kernel 2 (select): one block per batch element picks the num_beams best of its
// num_beams * max_children slots by (score descending, slot ascending). Slot order is the
// (beam, edge) enumeration order, so this is the CPU kernel's tie-break. Scores become
// order-preserving 32-bit keys; a radix select (four 8-bit MSB-first histogram passes, leaving
// early once the k-th key's bin holds exactly the keys still needed) finds the key of the last
// winner, a prefix count over slots decides which of the keys equal to it are taken, and each
// winner's output position is its rank among the (at most num_beams) winners (num_beams^2
// comparisons per batch element, shared by the block's threads).
//
// Shared memory: the winners list (num_beams x 8 bytes) and the keys (num_beams * max_children
// x 4 bytes) are staged when they fit in kDynamicSmemBudget; whichever does not fit stays in
// global memory (the list in the workspace, the keys recomputed from the candidate scores), so
// any num_beams and max_children work, only slower.
//
// Determinism: every floating-point reduction has a fixed shape (per-thread order, then a
// fixed shuffle tree whose combine step is commutative bit for bit); the selection uses only
// integer counts, and the position of a winner is its rank, not the order in which threads
// appended it. Nothing depends on timing.
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

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

constexpr int kScoreThreads = 256;
constexpr int kRowsPerWarpBlock = kScoreThreads / kWarp;
constexpr int64_t kMaxWarpRowColumns = 2048;  // wider rows get a whole block each
constexpr int kLoadsInFlight = 4;             // 16-byte loads issued before any is consumed

constexpr int kSelectMaxThreads = 512;
constexpr int64_t kDynamicSmemBudget = 40 * 1024;  // below the 48 KiB needing no opt-in
constexpr int kRadixBits = 8;
constexpr int kRadixBins = 1 << kRadixBits;

// ---------------------------------------------------------------------------------------------
// Small helpers.

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

__host__ __device__ __forceinline__ int64_t smaller(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ __forceinline__ uint32_t warp_inclusive_sum(uint32_t x) {
  const int lane = threadIdx.x % kWarp;
  for (int offset = 1; offset < kWarp; offset *= 2) {
    const uint32_t other = __shfl_up_sync(kFullMask, x, offset);
    if (lane >= offset) x += other;
  }
  return x;
}

// Exclusive prefix sum over the block in thread order, and the block's total if `total` is
// not null. `scratch` is 32 words of shared memory, free again on return.
__device__ uint32_t block_exclusive_sum(uint32_t x, uint32_t* scratch, uint32_t* total) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  const uint32_t inclusive = warp_inclusive_sum(x);
  if (lane == kWarp - 1) scratch[warp] = inclusive;
  __syncthreads();
  uint32_t before = 0, all = 0;
  for (int w = 0; w < warps; ++w) {
    const uint32_t warp_total = scratch[w];
    if (w < warp) before += warp_total;
    all += warp_total;
  }
  __syncthreads();
  if (total != nullptr) *total = all;
  return before + inclusive - x;
}

// ---------------------------------------------------------------------------------------------
// Kernel 1: normalisers and candidate scores.

// Running logsumexp of a stream of floats: sum of exp(x - max) over what was seen. The shift
// is 0 while everything seen is -inf, so exp() never sees -inf - -inf and a NaN element still
// turns the sum into NaN, as in the CPU kernel (whose max ignores NaN but whose sum does not).
// Trivial (no member initialisers): it also lives in __shared__ memory, which may not have a
// constructor.
struct OnlineLse {
  float max;
  float sum;
};

__device__ __forceinline__ OnlineLse empty_lse() { return {kNegInf, 0.0f}; }

__device__ __forceinline__ float lse_shift(float max) { return max == kNegInf ? 0.0f : max; }

template <int N>
__device__ __forceinline__ void absorb(OnlineLse& acc, const float (&x)[N]) {
  float chunk_max = x[0];
  for (int i = 1; i < N; ++i) chunk_max = fmaxf(chunk_max, x[i]);
  const float max = fmaxf(acc.max, chunk_max);
  const float shift = lse_shift(max);
  float sum = acc.sum * expf(acc.max - shift);
  for (int i = 0; i < N; ++i) sum += expf(x[i] - shift);
  acc.max = max;
  acc.sum = sum;
}

// Explicit roundings: combine(a, b) and combine(b, a) must agree bit for bit, or the two lanes
// of a butterfly step would hold different normalisers.
__device__ __forceinline__ OnlineLse combine(const OnlineLse& a, const OnlineLse& b) {
  const float max = fmaxf(a.max, b.max);
  const float shift = lse_shift(max);
  return {max, __fadd_rn(__fmul_rn(a.sum, expf(a.max - shift)),
                         __fmul_rn(b.sum, expf(b.max - shift)))};
}

__device__ __forceinline__ OnlineLse warp_combine(OnlineLse acc) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const OnlineLse other{__shfl_xor_sync(kFullMask, acc.max, offset),
                          __shfl_xor_sync(kFullMask, acc.sum, offset)};
    acc = combine(acc, other);
  }
  return acc;
}

// max + log(sum), or max itself when it is not finite (all -inf, or +inf), as on the CPU.
__device__ __forceinline__ float finish(const OnlineLse& acc) {
  return isfinite(acc.max) ? acc.max + logf(acc.sum) : acc.max;
}

template <typename T>
constexpr int kPerVector = 16 / sizeof(T);

template <typename T>
__device__ __forceinline__ void unpack(const uint4& raw, float (&out)[kPerVector<T>]) {
  const T* elements = reinterpret_cast<const T*>(&raw);
  for (int i = 0; i < kPerVector<T>; ++i) out[i] = to_float(elements[i]);
}

// This participant's share (rank of ranks) of row[0 .. v): an unaligned head and tail one
// element at a time, the 16-byte-aligned body in vectors. A column slice of a wider tensor
// starts anywhere, so alignment is found per row.
template <typename T>
__device__ OnlineLse row_partial_lse(const T* row, int64_t v, int rank, int ranks) {
  OnlineLse acc = empty_lse();
  const int64_t misalignment = static_cast<int64_t>(reinterpret_cast<uintptr_t>(row) % 16);
  const int64_t head =
      smaller(v, misalignment == 0 ? 0 : (16 - misalignment) / static_cast<int64_t>(sizeof(T)));
  for (int64_t j = rank; j < head; j += ranks) absorb<1>(acc, {to_float(row[j])});

  const uint4* body = reinterpret_cast<const uint4*>(row + head);
  const int64_t vectors = (v - head) / kPerVector<T>;
  for (int64_t i = rank; i < vectors; i += static_cast<int64_t>(ranks) * kLoadsInFlight) {
    uint4 raw[kLoadsInFlight];
    for (int u = 0; u < kLoadsInFlight; ++u) {
      if (i + u * ranks < vectors) raw[u] = body[i + u * ranks];
    }
    for (int u = 0; u < kLoadsInFlight; ++u) {
      if (i + u * ranks < vectors) {
        float x[kPerVector<T>];
        unpack<T>(raw[u], x);
        absorb(acc, x);
      }
    }
  }

  for (int64_t j = head + vectors * kPerVector<T> + rank; j < v; j += ranks) {
    absorb<1>(acc, {to_float(row[j])});
  }
  return acc;
}

struct ScoreArgs {
  const void* logits;
  int64_t row_stride;
  int64_t rows;
  int64_t v;
  const float* beam_scores;
  const int64_t* nodes;
  const int64_t* child_offsets;
  const int64_t* child_tokens;
  int64_t num_nodes;
  int64_t max_children;  // >= 1: slots per row
  int64_t vocab_offset;
  bool log_normalize;
  float* candidates;  // [rows, max_children]
};

// What a row contributes: `fanout` children starting at edge `first_edge` (none for a dead
// beam or an out-of-range node). A node with more children than max_children claims to have
// is cut to max_children rather than written past its slots. `scored` rows need their
// normaliser; it does not wait for the fan-out, so the offsets' load overlaps the row's.
struct RowPlan {
  float beam_score;
  bool scored;
  int64_t first_edge;
  int64_t fanout;
};

__device__ RowPlan plan_row(const ScoreArgs& a, int64_t row) {
  RowPlan plan{a.beam_scores[row], false, 0, 0};
  if (!(plan.beam_score > kNegInf)) return plan;  // dead beam (or NaN): no continuations
  const int64_t node = a.nodes[row];
  if (node < 0 || node >= a.num_nodes) return plan;
  plan.scored = true;
  plan.first_edge = a.child_offsets[node];
  const int64_t fanout = a.child_offsets[node + 1] - plan.first_edge;
  plan.fanout = fanout < 0 ? 0 : smaller(fanout, a.max_children);
  return plan;
}

template <typename T>
__device__ const T* row_pointer(const ScoreArgs& a, int64_t row) {
  return static_cast<const T*>(a.logits) + row * a.row_stride;
}

// Same association as the CPU kernel: beam + (logit - normaliser). -inf and NaN are no
// candidates and are stored as -inf, like unused slots.
template <typename T>
__device__ void write_candidates(const ScoreArgs& a, int64_t row, const RowPlan& plan,
                                 float normaliser, int rank, int ranks) {
  const T* logits = row_pointer<T>(a, row);
  float* slots = a.candidates + row * a.max_children;
  for (int64_t j = rank; j < a.max_children; j += ranks) {
    float score = kNegInf;
    if (j < plan.fanout) {
      const int64_t column = a.child_tokens[plan.first_edge + j] - a.vocab_offset;
      if (column >= 0 && column < a.v) {
        const float s = plan.beam_score + (to_float(logits[column]) - normaliser);
        if (s > kNegInf) score = s;
      }
    }
    slots[j] = score;
  }
}

template <typename T>
__global__ void __launch_bounds__(kScoreThreads) score_rows_by_warp(ScoreArgs a) {
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * kRowsPerWarpBlock + threadIdx.x / kWarp;
  if (row >= a.rows) return;  // whole warps leave; this kernel has no block barrier
  const int lane = threadIdx.x % kWarp;
  const RowPlan plan = plan_row(a, row);
  float normaliser = 0.0f;
  if (a.log_normalize && plan.scored) {
    normaliser = finish(warp_combine(row_partial_lse(row_pointer<T>(a, row), a.v, lane, kWarp)));
  }
  write_candidates<T>(a, row, plan, normaliser, lane, kWarp);
}

template <typename T>
__global__ void __launch_bounds__(kScoreThreads) score_rows_by_block(ScoreArgs a) {
  __shared__ OnlineLse partial[kWarp];
  __shared__ float normaliser_shared;
  const int64_t row = blockIdx.x;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int warps = blockDim.x / kWarp;
  const RowPlan plan = plan_row(a, row);  // the same for every thread: barriers below are safe
  float normaliser = 0.0f;
  if (a.log_normalize && plan.scored) {
    const OnlineLse mine =
        warp_combine(row_partial_lse(row_pointer<T>(a, row), a.v, threadIdx.x, blockDim.x));
    if (lane == 0) partial[warp] = mine;
    __syncthreads();
    if (warp == 0) {
      const OnlineLse all = warp_combine(lane < warps ? partial[lane] : empty_lse());
      if (lane == 0) normaliser_shared = finish(all);
    }
    __syncthreads();
    normaliser = normaliser_shared;
  }
  write_candidates<T>(a, row, plan, normaliser, threadIdx.x, blockDim.x);
}

// ---------------------------------------------------------------------------------------------
// Kernel 2: the num_beams best slots of each batch element.

// Larger key <=> larger score; 0 <=> no candidate (every score > -inf maps above 0x007fffff).
// -0 is keyed as +0 so that the two tie, as they do under float comparison.
__device__ __forceinline__ uint32_t order_key(float score) {
  if (!(score > kNegInf)) return 0;
  const uint32_t bits = __float_as_uint(score == 0.0f ? 0.0f : score);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// A winner as one integer: larger means better (higher key, then smaller slot).
__device__ __forceinline__ uint64_t pack_winner(uint32_t key, uint32_t slot) {
  return (static_cast<uint64_t>(key) << 32) | (0xffffffffu - slot);
}

__device__ __forceinline__ uint32_t winner_slot(uint64_t packed) {
  return 0xffffffffu - static_cast<uint32_t>(packed);
}

struct SelectArgs {
  const float* candidates;  // [batch, num_beams * max_children]
  int64_t num_beams;
  int64_t max_children;
  const int64_t* nodes;
  const int64_t* child_offsets;
  const int64_t* child_tokens;
  const int64_t* child_nodes;
  uint64_t* global_winners;  // [batch, num_beams], used when the list is not in shared memory
  bool winners_in_smem;
  float* scores;
  int64_t* parents;
  int64_t* tokens;
  int64_t* next_nodes;
};

// Which keys win: key > strict, or key == tie_key for the first take_equal such keys in slot
// order (take_equal is 0 unless the last winner's key is shared by more keys than remain).
struct Threshold {
  uint32_t strict;
  uint32_t tie_key;
  uint32_t take_equal;
};

struct RadixState {
  uint32_t digit;
  uint32_t remaining;  // how many keys of the chosen bin (and below) are still to be taken
  uint32_t settled;    // the chosen bin holds exactly `remaining` keys: take it whole
  uint32_t winners;    // append counter of the winners list
};

// Warp 0: the bin (scanning bins from high to low) holding the k-th largest key.
__device__ void find_bin(const uint32_t* hist, uint32_t k, RadixState* state) {
  constexpr int kBinsPerLane = kRadixBins / kWarp;
  const int lane = threadIdx.x % kWarp;
  uint32_t counts[kBinsPerLane];
  uint32_t sum = 0;
  for (int i = 0; i < kBinsPerLane; ++i) {
    counts[i] = hist[kRadixBins - 1 - (lane * kBinsPerLane + i)];
    sum += counts[i];
  }
  const uint32_t inclusive = warp_inclusive_sum(sum);
  uint32_t above = inclusive - sum;
  if (above < k && k <= inclusive) {  // exactly one lane
    for (int i = 0; i < kBinsPerLane; ++i) {
      if (above + counts[i] >= k) {
        state->digit = kRadixBins - 1 - (lane * kBinsPerLane + i);
        state->remaining = k - above;
        state->settled = counts[i] == k - above;
        break;
      }
      above += counts[i];
    }
  }
}

// The threshold that admits exactly k of the n non-zero keys. hist[0] must be zero on entry.
template <typename KeyAt>
__device__ Threshold radix_select(KeyAt key_at, int64_t n, uint32_t k,
                                  uint32_t (&hist)[2][kRadixBins], RadixState* state) {
  uint32_t prefix = 0, mask = 0;
  for (int pass = 0; pass < 32 / kRadixBits; ++pass) {
    const int shift = 32 - kRadixBits * (pass + 1);
    uint32_t* counts = hist[pass % 2];
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const uint32_t key = key_at(i);
      if (key != 0 && (key & mask) == prefix) {
        atomicAdd(&counts[(key >> shift) & (kRadixBins - 1)], 1u);
      }
    }
    // The other buffer was last read before the previous pass's final barrier.
    for (int i = threadIdx.x; i < kRadixBins; i += blockDim.x) hist[(pass + 1) % 2][i] = 0;
    __syncthreads();
    if (threadIdx.x < kWarp) find_bin(counts, k, state);
    __syncthreads();
    prefix |= state->digit << shift;
    mask |= static_cast<uint32_t>(kRadixBins - 1) << shift;
    k = state->remaining;
    // Keys whose resolved bits reach the prefix are exactly the winners; as prefix >= 1 here
    // (bin 0 of the top digit cannot be settled while more than k keys exist), prefix - 1 is
    // safe.
    if (state->settled) return {prefix - 1, 0, 0};
  }
  return {prefix, prefix, k};
}

template <bool kStagedKeys>
__global__ void __launch_bounds__(kSelectMaxThreads) select_top_beams(SelectArgs a) {
  __shared__ uint32_t hist[2][kRadixBins];
  __shared__ uint32_t scratch[kWarp];
  __shared__ RadixState state;
  extern __shared__ uint64_t dynamic_smem[];  // [winners list][staged keys], each if it fits

  const int64_t b = blockIdx.x;
  const int64_t k = a.num_beams;
  const int64_t n = a.num_beams * a.max_children;
  const float* scores = a.candidates + b * n;
  uint64_t* winners = a.winners_in_smem ? dynamic_smem : a.global_winners + b * k;
  uint32_t* staged = reinterpret_cast<uint32_t*>(dynamic_smem + (a.winners_in_smem ? k : 0));
  const auto key_at = [&](int64_t i) { return kStagedKeys ? staged[i] : order_key(scores[i]); };

  for (int i = threadIdx.x; i < kRadixBins; i += blockDim.x) hist[0][i] = 0;
  if (threadIdx.x == 0) state.winners = 0;
  uint32_t mine = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const uint32_t key = order_key(scores[i]);
    if (kStagedKeys) staged[i] = key;
    mine += key != 0;
  }
  uint32_t found = 0;
  block_exclusive_sum(mine, scratch, &found);  // its barriers also publish the staging above

  const Threshold threshold =
      found > k ? radix_select(key_at, n, static_cast<uint32_t>(k), hist, &state)
                : Threshold{0, 0, 0};

  // Contiguous slot ranges per thread, so a prefix count orders the tied keys by slot.
  const int64_t per_thread = (n + blockDim.x - 1) / blockDim.x;
  const int64_t first = smaller(n, threadIdx.x * per_thread);
  const int64_t last = smaller(n, first + per_thread);
  uint32_t tie_rank = 0;
  if (threshold.take_equal > 0) {
    uint32_t ties = 0;
    for (int64_t i = first; i < last; ++i) ties += key_at(i) == threshold.tie_key;
    tie_rank = block_exclusive_sum(ties, scratch, nullptr);
  }
  for (int64_t i = first; i < last; ++i) {
    const uint32_t key = key_at(i);
    if (key == 0) continue;
    bool wins = key > threshold.strict;
    if (!wins && threshold.take_equal > 0 && key == threshold.tie_key) {
      wins = tie_rank++ < threshold.take_equal;
    }
    if (wins) winners[atomicAdd(&state.winners, 1u)] = pack_winner(key, static_cast<uint32_t>(i));
  }
  __syncthreads();

  // Appended in any order; the output position is the rank, which is not.
  const int64_t count = smaller(found, k);
  const int64_t out = b * k;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
    const uint64_t me = winners[i];
    int64_t rank = 0;
    for (int64_t j = 0; j < count; ++j) rank += winners[j] > me;
    const uint32_t slot = winner_slot(me);
    const int64_t beam = slot / a.max_children;
    const int64_t edge = a.child_offsets[a.nodes[b * k + beam]] + slot % a.max_children;
    a.scores[out + rank] = scores[slot];
    a.parents[out + rank] = beam;
    a.tokens[out + rank] = a.child_tokens[edge];
    a.next_nodes[out + rank] = a.child_nodes[edge];
  }
  // Parent 0 keeps a cache reorder by parents in bounds; the -inf score marks the slot dead.
  for (int64_t i = count + threadIdx.x; i < k; i += blockDim.x) {
    a.scores[out + i] = kNegInf;
    a.parents[out + i] = 0;
    a.tokens[out + i] = -1;
    a.next_nodes[out + i] = -1;
  }
}

// ---------------------------------------------------------------------------------------------
// Host side.

struct WorkspaceLayout {
  int64_t winners_offset;  // bytes; the candidate scores start at 0
  int64_t total;
};

WorkspaceLayout workspace_layout(int64_t batch, int64_t num_beams, int64_t max_children) {
  const int64_t slots = max_children < 1 ? 1 : max_children;
  const int64_t candidate_bytes = batch * num_beams * slots * static_cast<int64_t>(sizeof(float));
  const int64_t winners_offset = (candidate_bytes + 15) / 16 * 16;
  const int64_t winner_bytes = batch * num_beams * static_cast<int64_t>(sizeof(uint64_t));
  return {winners_offset, winners_offset + winner_bytes};
}

int select_threads(int64_t slots_per_element) {
  if (slots_per_element <= 1024) return 128;
  if (slots_per_element <= 4096) return 256;
  return kSelectMaxThreads;
}

template <typename T>
void launch_score(const ScoreArgs& args, cudaStream_t stream) {
  if (args.v <= kMaxWarpRowColumns) {
    const int64_t blocks = (args.rows + kRowsPerWarpBlock - 1) / kRowsPerWarpBlock;
    score_rows_by_warp<T><<<static_cast<unsigned>(blocks), kScoreThreads, 0, stream>>>(args);
  } else {
    score_rows_by_block<T><<<static_cast<unsigned>(args.rows), kScoreThreads, 0, stream>>>(args);
  }
}

void launch_select(SelectArgs args, int64_t batch, cudaStream_t stream) {
  const int64_t n = args.num_beams * args.max_children;
  const int64_t winner_bytes = args.num_beams * static_cast<int64_t>(sizeof(uint64_t));
  const int64_t key_bytes = n * static_cast<int64_t>(sizeof(uint32_t));
  bool staged = false;
  if (winner_bytes + key_bytes <= kDynamicSmemBudget) {
    args.winners_in_smem = staged = true;
  } else if (key_bytes <= kDynamicSmemBudget) {
    args.winners_in_smem = false;
    staged = true;
  } else {
    args.winners_in_smem = winner_bytes <= kDynamicSmemBudget;
  }
  const size_t smem = static_cast<size_t>((args.winners_in_smem ? winner_bytes : 0) +
                                          (staged ? key_bytes : 0));
  const unsigned grid = static_cast<unsigned>(batch);
  const int threads = select_threads(n);
  if (staged) {
    select_top_beams<true><<<grid, threads, smem, stream>>>(args);
  } else {
    select_top_beams<false><<<grid, threads, smem, stream>>>(args);
  }
}

void check_sizes(int64_t batch, int64_t num_beams, int64_t v, int64_t max_children) {
  if (batch < 0 || num_beams < 1 || v < 0) {
    throw std::invalid_argument("trie_beam_step: need batch >= 0, num_beams >= 1 and v >= 0, got " +
                                std::to_string(batch) + ", " + std::to_string(num_beams) +
                                " and " + std::to_string(v));
  }
  const int64_t slots = max_children < 1 ? 1 : max_children;
  // A slot index within a batch element must fit the 32 bits of a packed winner.
  if (slots > (int64_t{1} << 31) / num_beams) {
    throw std::invalid_argument("trie_beam_step: num_beams x max_children = " +
                                std::to_string(num_beams) + " x " + std::to_string(slots) +
                                " candidates per batch element is more than 2^31");
  }
  // One block per row on the wide-row path.
  if (batch > std::numeric_limits<int32_t>::max() / num_beams) {
    throw std::invalid_argument("trie_beam_step: " + std::to_string(batch) + " x " +
                                std::to_string(num_beams) + " rows exceed the grid limit");
  }
}

}  // namespace

int64_t trie_beam_step_workspace_bytes(int64_t batch, int64_t num_beams, int64_t max_children) {
  if (batch <= 0) return 0;
  return workspace_layout(batch, num_beams, max_children).total;
}

void trie_beam_step(const void* logits, int64_t row_stride, Float dtype, int64_t batch,
                    int64_t num_beams, int64_t v, const float* beam_scores, const int64_t* nodes,
                    const int64_t* child_offsets, const int64_t* child_tokens,
                    const int64_t* child_nodes, int64_t num_nodes, int64_t max_children,
                    int64_t vocab_offset, bool log_normalize, void* workspace, float* scores,
                    int64_t* parents, int64_t* tokens, int64_t* next_nodes, void* stream) {
  check_sizes(batch, num_beams, v, max_children);
  if (batch == 0) return;
  const int64_t slots = max_children < 1 ? 1 : max_children;
  const WorkspaceLayout layout = workspace_layout(batch, num_beams, slots);
  float* candidates = static_cast<float*>(workspace);
  auto* global_winners =
      reinterpret_cast<uint64_t*>(static_cast<unsigned char*>(workspace) + layout.winners_offset);
  const auto cuda_stream = static_cast<cudaStream_t>(stream);

  const ScoreArgs score_args{logits,        row_stride,   batch * num_beams, v,
                             beam_scores,   nodes,        child_offsets,     child_tokens,
                             num_nodes,     slots,        vocab_offset,      log_normalize,
                             candidates};
  switch (dtype) {
    case Float::f32: launch_score<float>(score_args, cuda_stream); break;
    case Float::f16: launch_score<__half>(score_args, cuda_stream); break;
    case Float::bf16: launch_score<__nv_bfloat16>(score_args, cuda_stream); break;
  }
  // Selecting from the slots of a failed scoring launch would read garbage nodes: stop here.
  check_launch("trie_beam_step (scoring)");

  const SelectArgs select_args{candidates, num_beams,      slots,  nodes,   child_offsets,
                               child_tokens, child_nodes,  global_winners, false,
                               scores,     parents,        tokens, next_nodes};
  launch_select(select_args, batch, cuda_stream);
  check_launch("trie_beam_step (selection)");
}

}  // namespace eager_ext::cuda
