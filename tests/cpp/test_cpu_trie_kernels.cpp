// C++ tests of the CPU trie kernels on a hand-built trie.
#include <gtest/gtest.h>

#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>

#include <cmath>
#include <limits>

#include "backends.h"
#include "trie.h"

namespace {

eager_ext::TrieTensors tensors_of(const eager_ext::ItemTrie& trie) {
  auto to_tensor = [](const std::vector<int64_t>& v) {
    at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::kLong);
    std::copy(v.begin(), v.end(), t.data_ptr<int64_t>());
    return t;
  };
  return {to_tensor(trie.child_offsets()), to_tensor(trie.child_tokens()), to_tensor(trie.child_nodes()),
          trie.max_children()};
}

TEST(TrieBeamStep, PicksTheBestAllowedChildrenWithTieBreaks) {
  // Items: [0, 1], [0, 2], [1, 0]. Two beams of one batch element sit on the depth-1 nodes.
  const auto trie = eager_ext::ItemTrie::from_codes({0, 1, 0, 2, 1, 0}, 3, 2);
  const at::Tensor logits = at::tensor({9.0f, 1.0f, 1.0f, 5.0f, 2.0f, 0.0f}).reshape({2, 3});
  const at::Tensor beam_scores = at::tensor({0.0f, 0.0f});
  const at::Tensor nodes = at::tensor({1, 2}, at::kLong);  // prefixes [0] and [1]
  const auto [scores, parents, tokens, next_nodes] =
      eager_ext::cpu::trie_beam_step(logits, beam_scores, nodes, tensors_of(trie), 2, 0, false);
  // Candidates: beam 0 -> tokens 1 (1.0), 2 (1.0); beam 1 -> token 0 (5.0).
  EXPECT_EQ(tokens[0][0].item<int64_t>(), 0);
  EXPECT_EQ(parents[0][0].item<int64_t>(), 1);
  EXPECT_EQ(tokens[0][1].item<int64_t>(), 1);  // the tie with token 2 goes to the lower token
  EXPECT_FLOAT_EQ(scores[0][1].item<float>(), 1.0f);
  EXPECT_EQ(trie.item_of(next_nodes[0][0].item<int64_t>()), 2);
}

TEST(TrieMask, KeepsOnlyChildren) {
  const auto trie = eager_ext::ItemTrie::from_codes({0, 1, 0, 2, 1, 0}, 3, 2);
  const at::Tensor logits = at::tensor({1.0f, 2.0f, 3.0f}).reshape({1, 3});
  eager_ext::cpu::trie_mask_(logits, at::tensor({1}, at::kLong), tensors_of(trie), 0);
  EXPECT_TRUE(std::isinf(logits[0][0].item<float>()));
  EXPECT_FLOAT_EQ(logits[0][1].item<float>(), 2.0f);
  EXPECT_FLOAT_EQ(logits[0][2].item<float>(), 3.0f);
}

}  // namespace
