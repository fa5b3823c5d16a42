// In-place trie mask on the CPU: every column that is not a child token of the row's node
// becomes -inf. The allowed values are saved, the row is filled, and they are put back, so the
// cost per row is one fill of V plus the node's fan-out.
#include "backends.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <limits>
#include <vector>

namespace eager_ext::cpu {
namespace {

template <typename T>
void mask_rows(const at::Tensor& logits, const int64_t* nodes, const int64_t* offsets,
               const int64_t* tokens, int64_t vocab_offset, int64_t max_children) {
  const int64_t rows = logits.size(0), v = logits.size(1), row_stride = logits.stride(0);
  T* data = logits.data_ptr<T>();
  const T minus_infinity = static_cast<T>(-std::numeric_limits<float>::infinity());
  // Threads only pay off for about a millisecond of work.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, v));
  at::parallel_for(0, rows, grain, [&](int64_t first, int64_t last) {
    std::vector<T> kept(max_children);
    for (int64_t r = first; r < last; ++r) {
      T* row = data + r * row_stride;
      const int64_t begin = offsets[nodes[r]], end = offsets[nodes[r] + 1];
      if (end - begin > static_cast<int64_t>(kept.size())) kept.resize(end - begin);
      for (int64_t e = begin; e < end; ++e) {
        TORCH_CHECK_INDEX(tokens[e] - vocab_offset >= 0 && tokens[e] - vocab_offset < v,
                          "trie_mask_: trie token ", tokens[e], " is outside the logits' columns");
        kept[e - begin] = row[tokens[e] - vocab_offset];
      }
      std::fill(row, row + v, minus_infinity);
      for (int64_t e = begin; e < end; ++e) row[tokens[e] - vocab_offset] = kept[e - begin];
    }
  });
}

}  // namespace

void trie_mask_(const at::Tensor& logits, const at::Tensor& nodes, const TrieTensors& trie,
                int64_t vocab_offset) {
  const int64_t* node_ptr = nodes.const_data_ptr<int64_t>();
  const int64_t* offsets = trie.child_offsets.const_data_ptr<int64_t>();
  const int64_t* tokens = trie.child_tokens.const_data_ptr<int64_t>();
  switch (logits.scalar_type()) {
    case at::kFloat: mask_rows<float>(logits, node_ptr, offsets, tokens, vocab_offset, trie.max_children); break;
    case at::kHalf: mask_rows<c10::Half>(logits, node_ptr, offsets, tokens, vocab_offset, trie.max_children); break;
    case at::kBFloat16:
      mask_rows<c10::BFloat16>(logits, node_ptr, offsets, tokens, vocab_offset, trie.max_children);
      break;
    default: TORCH_CHECK_TYPE(false, "trie_mask_: unsupported logits dtype ", logits.scalar_type());
  }
}

}  // namespace eager_ext::cpu
