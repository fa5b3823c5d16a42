#include "trie.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <sstream>
#include <stdexcept>

namespace eager_ext {
namespace {

constexpr char kMagic[8] = {'E', 'A', 'G', 'E', 'R', 'T', 'R', 'I'};
constexpr uint64_t kFormatVersion = 1;
constexpr int kMaxListedCollisions = 10;

// FNV-1a over the payload: enough to tell a truncated or altered file from a good one.
uint64_t checksum(const std::vector<int64_t>& values) {
  uint64_t hash = 1469598103934665603ull;
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
  for (size_t i = 0; i < values.size() * sizeof(int64_t); ++i) hash = (hash ^ bytes[i]) * 1099511628211ull;
  return hash;
}

std::string format_row(const int64_t* row, int64_t depth) {
  std::ostringstream out;
  out << "[";
  for (int64_t j = 0; j < depth; ++j) out << (j ? ", " : "") << row[j];
  out << "]";
  return out.str();
}

// Item ids ordered by their token rows (ties by id, so duplicates end up adjacent, lowest first).
std::vector<int64_t> sorted_items(const std::vector<int64_t>& codes, int64_t num_items, int64_t depth) {
  std::vector<int64_t> order(num_items);
  std::iota(order.begin(), order.end(), 0);
  const int64_t* base = codes.data();
  std::sort(order.begin(), order.end(), [base, depth](int64_t a, int64_t b) {
    const int64_t* ra = base + a * depth;
    const int64_t* rb = base + b * depth;
    for (int64_t j = 0; j < depth; ++j)
      if (ra[j] != rb[j]) return ra[j] < rb[j];
    return a < b;
  });
  return order;
}

// Position of the first token where row `order[i]` differs from row `order[i - 1]` (0 for the
// first row, depth for a duplicate).
std::vector<int64_t> first_differences(const std::vector<int64_t>& codes, const std::vector<int64_t>& order,
                                       int64_t depth) {
  std::vector<int64_t> first(order.size(), 0);
  for (size_t i = 1; i < order.size(); ++i) {
    const int64_t* previous = codes.data() + order[i - 1] * depth;
    const int64_t* row = codes.data() + order[i] * depth;
    int64_t j = 0;
    while (j < depth && previous[j] == row[j]) ++j;
    first[i] = j;
  }
  return first;
}

void throw_on_duplicates(const std::vector<int64_t>& codes, const std::vector<int64_t>& order,
                         const std::vector<int64_t>& first, int64_t depth) {
  std::ostringstream message;
  int64_t groups = 0;
  for (size_t i = 1; i < order.size(); ++i) {
    if (first[i] != depth || (i >= 2 && first[i - 1] == depth)) continue;  // not a group start
    size_t end = i + 1;
    while (end < order.size() && first[end] == depth) ++end;
    if (groups < kMaxListedCollisions) {
      message << (groups ? "; " : "") << "items";
      for (size_t k = i - 1; k < end; ++k) message << " " << order[k];
      message << " share " << format_row(codes.data() + order[i] * depth, depth);
    }
    ++groups;
  }
  if (groups == 0) return;
  if (groups > kMaxListedCollisions) message << "; and " << groups - kMaxListedCollisions << " more groups";
  throw std::invalid_argument("ItemTrie: duplicate token sequences (every item needs its own): " + message.str());
}

void write_values(std::ofstream& out, const std::vector<int64_t>& values) {
  out.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(int64_t)));
}

}  // namespace

ItemTrie ItemTrie::from_codes(std::vector<int64_t> codes, int64_t num_items, int64_t depth) {
  if (num_items < 1 || depth < 1)
    throw std::invalid_argument("ItemTrie: codes must hold at least one item and one token per item, got shape [" +
                                std::to_string(num_items) + ", " + std::to_string(depth) + "]");
  if (static_cast<int64_t>(codes.size()) != num_items * depth)
    throw std::invalid_argument("ItemTrie: codes has " + std::to_string(codes.size()) + " values, expected " +
                                std::to_string(num_items) + " x " + std::to_string(depth));
  for (int64_t i = 0; i < num_items * depth; ++i)
    if (codes[i] < 0)
      throw std::invalid_argument("ItemTrie: item " + std::to_string(i / depth) + " has negative token " +
                                  std::to_string(codes[i]) + " at position " + std::to_string(i % depth));
  ItemTrie trie;
  trie.num_items_ = num_items;
  trie.depth_ = depth;
  trie.codes_ = std::move(codes);
  trie.build();
  return trie;
}

void ItemTrie::build() {
  const std::vector<int64_t> order = sorted_items(codes_, num_items_, depth_);
  const std::vector<int64_t> first = first_differences(codes_, order, depth_);
  throw_on_duplicates(codes_, order, first, depth_);

  // Level by level, a sorted row opens a new node at depth d + 1 where its prefix of length
  // d + 1 differs from the previous row's; its parent is the row's node one level up.
  std::vector<int64_t> parent{-1}, token{-1};
  std::vector<int64_t> row_node(num_items_, 0), next_row_node(num_items_);
  for (int64_t d = 0; d < depth_; ++d) {
    for (int64_t i = 0; i < num_items_; ++i) {
      if (i == 0 || first[i] <= d) {
        next_row_node[i] = static_cast<int64_t>(parent.size());
        parent.push_back(row_node[i]);
        token.push_back(codes_[order[i] * depth_ + d]);
      } else {
        next_row_node[i] = next_row_node[i - 1];
      }
    }
    row_node.swap(next_row_node);
  }
  const int64_t nodes = static_cast<int64_t>(parent.size());

  // Breadth-first numbering makes every node's children consecutive, so edge e leads to node
  // e + 1 and the offsets are a prefix sum of the child counts.
  std::vector<int64_t> child_count(nodes, 0);
  for (int64_t n = 1; n < nodes; ++n) ++child_count[parent[n]];
  child_offsets_.assign(nodes + 1, 0);
  for (int64_t n = 0; n < nodes; ++n) child_offsets_[n + 1] = child_offsets_[n] + child_count[n];
  child_tokens_.assign(token.begin() + 1, token.end());
  child_nodes_.resize(nodes - 1);
  std::iota(child_nodes_.begin(), child_nodes_.end(), 1);
  leaf_items_.assign(nodes, -1);
  for (int64_t i = 0; i < num_items_; ++i) leaf_items_[row_node[i]] = order[i];
  max_children_ = *std::max_element(child_count.begin(), child_count.end());
  min_token_ = *std::min_element(child_tokens_.begin(), child_tokens_.end());
  max_token_ = *std::max_element(child_tokens_.begin(), child_tokens_.end());
}

std::vector<int64_t> ItemTrie::insert(const std::vector<int64_t>& codes, int64_t count) {
  if (count < 0 || static_cast<int64_t>(codes.size()) != count * depth_)
    throw std::invalid_argument("ItemTrie.insert: expected [count, " + std::to_string(depth_) + "] tokens, got " +
                                std::to_string(codes.size()) + " values for " + std::to_string(count) + " items");
  std::vector<int64_t> all = codes_;
  all.insert(all.end(), codes.begin(), codes.end());
  *this = from_codes(std::move(all), num_items_ + count, depth_);  // leaves *this intact on error
  std::vector<int64_t> ids(count);
  std::iota(ids.begin(), ids.end(), num_items_ - count);
  return ids;
}

int64_t ItemTrie::lookup(const int64_t* tokens, int64_t length) const {
  if (length != depth_) return -1;
  int64_t node = 0;
  for (int64_t j = 0; j < length; ++j) {
    const auto begin = child_tokens_.begin() + child_offsets_[node];
    const auto end = child_tokens_.begin() + child_offsets_[node + 1];
    const auto found = std::lower_bound(begin, end, tokens[j]);
    if (found == end || *found != tokens[j]) return -1;
    node = child_nodes_[found - child_tokens_.begin()];
  }
  return leaf_items_[node];
}

int64_t ItemTrie::item_of(int64_t node) const {
  if (node < 0 || node >= num_nodes())
    throw std::out_of_range("ItemTrie.item_of: node " + std::to_string(node) + " is out of range (the trie has " +
                            std::to_string(num_nodes()) + " nodes)");
  return leaf_items_[node];
}

void ItemTrie::save(const std::string& path) const {
  const std::string temporary = path + ".tmp";
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("ItemTrie.save: cannot write " + temporary);
    out.write(kMagic, sizeof(kMagic));
    write_values(out, {static_cast<int64_t>(kFormatVersion), num_items_, depth_,
                       static_cast<int64_t>(checksum(codes_))});
    write_values(out, codes_);
    out.flush();
    if (!out) {
      std::remove(temporary.c_str());
      throw std::runtime_error("ItemTrie.save: writing " + temporary + " failed (disk full?)");
    }
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    std::remove(temporary.c_str());
    throw std::runtime_error("ItemTrie.save: cannot move " + temporary + " to " + path);
  }
}

ItemTrie ItemTrie::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("ItemTrie.load: cannot open " + path);
  char magic[sizeof(kMagic)];
  int64_t header[4];
  in.read(magic, sizeof(magic));
  in.read(reinterpret_cast<char*>(header), sizeof(header));
  if (!in || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0)
    throw std::runtime_error("ItemTrie.load: " + path + " is not an ItemTrie file");
  if (header[0] != static_cast<int64_t>(kFormatVersion))
    throw std::runtime_error("ItemTrie.load: " + path + " has format version " + std::to_string(header[0]) +
                             ", this build reads version " + std::to_string(kFormatVersion));
  const int64_t num_items = header[1], depth = header[2];
  if (num_items < 1 || depth < 1 || num_items > (int64_t{1} << 40) / depth)
    throw std::runtime_error("ItemTrie.load: " + path + " has an invalid header");
  std::vector<int64_t> codes(num_items * depth);
  in.read(reinterpret_cast<char*>(codes.data()), static_cast<std::streamsize>(codes.size() * sizeof(int64_t)));
  if (!in || in.peek() != std::char_traits<char>::eof())
    throw std::runtime_error("ItemTrie.load: " + path + " is truncated or has trailing bytes");
  if (checksum(codes) != static_cast<uint64_t>(header[3]))
    throw std::runtime_error("ItemTrie.load: " + path + " is corrupt (checksum mismatch)");
  return from_codes(std::move(codes), num_items, depth);
}

}  // namespace eager_ext
