// ItemTrie: the set of valid item token sequences, stored flat for the beam-step kernels.
//
// Pure C++ (no torch), so the builder can be unit-tested and fuzzed on its own. Nodes are
// numbered breadth-first with siblings in token order: root 0, then every depth-1 node, and so
// on. The children of node n are the edges child_offsets[n] .. child_offsets[n + 1] - 1, whose
// tokens (child_tokens) are sorted and whose target nodes are child_nodes; leaf_items gives the
// item id of each leaf node and -1 elsewhere. Node ids are valid for one version of a trie:
// insert() renumbers them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace eager_ext {

class ItemTrie {
 public:
  // codes: row-major [num_items, depth]; item id = row index. Throws std::invalid_argument for
  // an empty table, negative tokens, or duplicate rows (listing the colliding item ids).
  static ItemTrie from_codes(std::vector<int64_t> codes, int64_t num_items, int64_t depth);

  // Adds items (row-major [count, depth]) with ids num_items() .. num_items() + count - 1 and
  // returns those ids. On error (duplicates with existing or new items, wrong width) the trie
  // is unchanged.
  std::vector<int64_t> insert(const std::vector<int64_t>& codes, int64_t count);

  // Item id whose tokens are exactly `tokens[0 .. length)`, or -1.
  int64_t lookup(const int64_t* tokens, int64_t length) const;

  // Item id at `node`, or -1 for an internal node. Throws std::out_of_range for a bad node.
  int64_t item_of(int64_t node) const;

  // Writes atomically (temporary file + rename) in a small checksummed binary format.
  void save(const std::string& path) const;
  // Reads what save() wrote; throws std::runtime_error naming the file for anything else.
  static ItemTrie load(const std::string& path);

  int64_t num_items() const { return num_items_; }
  int64_t depth() const { return depth_; }
  int64_t num_nodes() const { return static_cast<int64_t>(leaf_items_.size()); }
  int64_t max_children() const { return max_children_; }
  int64_t min_token() const { return min_token_; }
  int64_t max_token() const { return max_token_; }
  const std::vector<int64_t>& codes() const { return codes_; }
  const std::vector<int64_t>& child_offsets() const { return child_offsets_; }
  const std::vector<int64_t>& child_tokens() const { return child_tokens_; }
  const std::vector<int64_t>& child_nodes() const { return child_nodes_; }
  const std::vector<int64_t>& leaf_items() const { return leaf_items_; }

 private:
  void build();

  int64_t num_items_ = 0;
  int64_t depth_ = 0;
  int64_t max_children_ = 0;
  int64_t min_token_ = 0;
  int64_t max_token_ = 0;
  std::vector<int64_t> codes_;  // kept so that insert() and save() need nothing else
  std::vector<int64_t> child_offsets_;
  std::vector<int64_t> child_tokens_;
  std::vector<int64_t> child_nodes_;
  std::vector<int64_t> leaf_items_;
};

}  // namespace eager_ext
