// One step of trie-constrained beam search on the CPU.
//
// Per batch element: each live beam's row gets its log-normaliser (two vectorised passes over
// the row while it is in cache), only the trie children of the beam's node are scored, and the
// best num_beams candidates are kept. The work per beam is V plus the node's fan-out, never the
// number of items.
#include "backends.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace eager_ext::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr int kLanes = 16;
constexpr int64_t kParallelElements = int64_t{1} << 20;  // logits read per thread, at least

// exp(x) for x <= 0 without a libm call, so the loop below vectorises: x = k ln2 + g with
// |g| <= ln2 / 2, and a degree-7 Taylor polynomial for e^g (relative error < 1e-8 before
// float rounding). Inputs below -87 flush to about 1e-38, which adds nothing to a sum >= 1.
inline float exp_nonpositive(float x) {
  x = x < -87.0f ? -87.0f : x;
  // Round to nearest by adding and subtracting 1.5 * 2^23: plain float adds, which vectorise
  // (std::nearbyint does not).
  constexpr float kRound = 12582912.0f;
  const float k = (x * 1.44269504088896341f + kRound) - kRound;
  const float g = x - k * 0.693147180559945309f;
  float p = 1.0f / 5040.0f;
  p = p * g + 1.0f / 720.0f;
  p = p * g + 1.0f / 120.0f;
  p = p * g + 1.0f / 24.0f;
  p = p * g + 1.0f / 6.0f;
  p = p * g + 0.5f;
  p = p * g + 1.0f;
  p = p * g + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

template <typename T>
__attribute__((target_clones("avx512f", "avx2", "default")))
float row_max(const T* row, int64_t v) {
  float lane_max[kLanes];
  std::fill(lane_max, lane_max + kLanes, kNegInf);
  int64_t j = 0;
  for (; j + kLanes <= v; j += kLanes)
    for (int lane = 0; lane < kLanes; ++lane) {
      const float x = static_cast<float>(row[j + lane]);
      lane_max[lane] = x > lane_max[lane] ? x : lane_max[lane];
    }
  float best = kNegInf;
  for (; j < v; ++j) best = std::max(best, static_cast<float>(row[j]));
  for (float m : lane_max) best = std::max(best, m);
  return best;
}

template <typename T>
__attribute__((target_clones("avx512f", "avx2", "default")))
float row_sum_exp(const T* row, int64_t v, float shift) {
  float lane_sum[kLanes] = {};
  int64_t j = 0;
  for (; j + kLanes <= v; j += kLanes)
    for (int lane = 0; lane < kLanes; ++lane)
      lane_sum[lane] += exp_nonpositive(static_cast<float>(row[j + lane]) - shift);
  float sum = 0.0f;
  for (; j < v; ++j) sum += exp_nonpositive(static_cast<float>(row[j]) - shift);
  for (float s : lane_sum) sum += s;
  return sum;
}

template <typename T>
float row_logsumexp(const T* row, int64_t v) {
  const float max = row_max(row, v);
  if (!std::isfinite(max)) return max;  // all -inf (nothing allowed) or +inf/NaN: pass it on
  return max + std::log(row_sum_exp(row, v, max));
}

struct Candidate {
  float score;
  int64_t order;  // (beam, token) enumeration index: the tie-break
  int64_t beam;
  int64_t edge;
};

bool better(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.order < b.order);
}

struct StepArgs {
  const at::Tensor& logits;
  const float* beam_scores;
  const int64_t* nodes;
  const int64_t* offsets;
  const int64_t* tokens;
  const int64_t* child_nodes;
  int64_t num_nodes;
  int64_t num_beams;
  int64_t vocab_offset;
  bool log_normalize;
  float* out_scores;
  int64_t* out_parents;
  int64_t* out_tokens;
  int64_t* out_nodes;
};

// Keeps the num_beams best candidates seen so far as a heap whose top is the worst of them, so
// that most of a wide fan-out is rejected with a single comparison and nothing else stored.
class TopCandidates {
 public:
  explicit TopCandidates(std::vector<Candidate>& storage, int64_t capacity) : heap_(storage), capacity_(capacity) {
    heap_.clear();
  }

  void offer(const Candidate& candidate) {
    if (static_cast<int64_t>(heap_.size()) < capacity_) {
      heap_.push_back(candidate);
      std::push_heap(heap_.begin(), heap_.end(), better);
    } else if (better(candidate, heap_.front())) {
      std::pop_heap(heap_.begin(), heap_.end(), better);
      heap_.back() = candidate;
      std::push_heap(heap_.begin(), heap_.end(), better);
    }
  }

  // Best first.
  const std::vector<Candidate>& sorted() {
    std::sort_heap(heap_.begin(), heap_.end(), better);
    return heap_;
  }

 private:
  std::vector<Candidate>& heap_;
  int64_t capacity_;
};

template <typename T>
void step_batch_element(const StepArgs& a, int64_t b, std::vector<Candidate>& storage) {
  const int64_t v = a.logits.size(1), row_stride = a.logits.stride(0);
  const T* logits = a.logits.const_data_ptr<T>();
  TopCandidates top(storage, a.num_beams);
  int64_t order = 0;
  for (int64_t beam = 0; beam < a.num_beams; ++beam) {
    const int64_t row = b * a.num_beams + beam;
    const float beam_score = a.beam_scores[row];
    if (!(beam_score > kNegInf)) continue;  // dead beam (or NaN): no continuations
    const int64_t node = a.nodes[row];
    TORCH_CHECK_INDEX(node >= 0 && node < a.num_nodes, "trie_beam_step: nodes[", row, "] = ", node,
                      " is out of range for the trie (0 to ", a.num_nodes - 1, ") on a live beam");
    const T* logit_row = logits + row * row_stride;
    const float normaliser = a.log_normalize ? row_logsumexp(logit_row, v) : 0.0f;
    for (int64_t edge = a.offsets[node]; edge < a.offsets[node + 1]; ++edge, ++order) {
      const int64_t column = a.tokens[edge] - a.vocab_offset;
      TORCH_CHECK_INDEX(column >= 0 && column < v, "trie_beam_step: trie token ", a.tokens[edge],
                        " is outside the logits' columns (tokens ", a.vocab_offset, " to ",
                        a.vocab_offset + v - 1, ")");
      const float score = beam_score + (static_cast<float>(logit_row[column]) - normaliser);
      if (score > kNegInf)  // -inf logits (masked tokens) and NaN are not candidates
        top.offer({score, order, beam, edge});
    }
  }
  const std::vector<Candidate>& best = top.sorted();
  const int64_t kept = static_cast<int64_t>(best.size());
  for (int64_t i = 0; i < a.num_beams; ++i) {
    const int64_t out = b * a.num_beams + i;
    if (i < kept) {
      const Candidate& c = best[i];
      a.out_scores[out] = c.score;
      a.out_parents[out] = c.beam;
      a.out_tokens[out] = a.tokens[c.edge];
      a.out_nodes[out] = a.child_nodes[c.edge];
    } else {
      // Parent 0 keeps a cache reorder by parents in bounds; the -inf score marks the slot dead.
      a.out_scores[out] = kNegInf;
      a.out_parents[out] = 0;
      a.out_tokens[out] = -1;
      a.out_nodes[out] = -1;
    }
  }
}

}  // namespace

BeamStep trie_beam_step(const at::Tensor& logits, const at::Tensor& beam_scores,
                        const at::Tensor& nodes, const TrieTensors& trie, int64_t num_beams,
                        int64_t vocab_offset, bool log_normalize) {
  const int64_t batch = logits.size(0) / num_beams;
  const auto long_options = nodes.options();
  at::Tensor scores = at::empty({batch, num_beams}, beam_scores.options());
  at::Tensor parents = at::empty({batch, num_beams}, long_options);
  at::Tensor tokens = at::empty({batch, num_beams}, long_options);
  at::Tensor next_nodes = at::empty({batch, num_beams}, long_options);
  const StepArgs args{logits,
                      beam_scores.const_data_ptr<float>(),
                      nodes.const_data_ptr<int64_t>(),
                      trie.child_offsets.const_data_ptr<int64_t>(),
                      trie.child_tokens.const_data_ptr<int64_t>(),
                      trie.child_nodes.const_data_ptr<int64_t>(),
                      trie.child_offsets.size(0) - 1,
                      num_beams,
                      vocab_offset,
                      log_normalize,
                      scores.data_ptr<float>(),
                      parents.data_ptr<int64_t>(),
                      tokens.data_ptr<int64_t>(),
                      next_nodes.data_ptr<int64_t>()};
  // Threads only pay off for about a millisecond of work; a small step (the item slice) runs
  // on the calling thread instead of waiting at a barrier for a busy core.
  const int64_t grain = std::max<int64_t>(1, kParallelElements / std::max<int64_t>(1, num_beams * logits.size(1)));
  at::parallel_for(0, batch, grain, [&](int64_t first, int64_t last) {
    std::vector<Candidate> candidates;
    candidates.reserve(num_beams);
    for (int64_t b = first; b < last; ++b) {
      switch (logits.scalar_type()) {
        case at::kFloat: step_batch_element<float>(args, b, candidates); break;
        case at::kHalf: step_batch_element<c10::Half>(args, b, candidates); break;
        case at::kBFloat16: step_batch_element<c10::BFloat16>(args, b, candidates); break;
        default: TORCH_CHECK_TYPE(false, "trie_beam_step: unsupported logits dtype ", logits.scalar_type());
      }
    }
  });
  return {scores, parents, tokens, next_nodes};
}

}  // namespace eager_ext::cpu
