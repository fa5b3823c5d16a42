// C++ tests of the ItemTrie builder: structure against a std::set of prefixes on fuzzed inputs,
// duplicate detection, insert, and save/load round trips and corrupt files.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include "trie.h"

namespace {

using eager_ext::ItemTrie;

std::vector<int64_t> random_distinct_codes(std::mt19937_64& rng, int64_t items, int64_t depth, int64_t alphabet) {
  std::set<std::vector<int64_t>> seen;
  std::vector<int64_t> codes;
  std::uniform_int_distribution<int64_t> token(0, alphabet - 1);
  for (int attempts = 0; static_cast<int64_t>(seen.size()) < items && attempts < 100000; ++attempts) {
    std::vector<int64_t> row(depth);
    for (auto& t : row) t = token(rng);
    if (seen.insert(row).second) codes.insert(codes.end(), row.begin(), row.end());
  }
  return codes;
}

void expect_consistent(const ItemTrie& trie, const std::vector<int64_t>& codes) {
  const int64_t depth = trie.depth(), items = trie.num_items();
  std::set<std::vector<int64_t>> prefixes;
  for (int64_t i = 0; i < items; ++i)
    for (int64_t d = 0; d <= depth; ++d)
      prefixes.insert(std::vector<int64_t>(codes.begin() + i * depth, codes.begin() + i * depth + d));
  ASSERT_EQ(trie.num_nodes(), static_cast<int64_t>(prefixes.size()));
  const auto& offsets = trie.child_offsets();
  ASSERT_EQ(offsets.front(), 0);
  ASSERT_EQ(offsets.back(), trie.num_nodes() - 1);
  for (int64_t n = 0; n < trie.num_nodes(); ++n) {
    ASSERT_LE(offsets[n], offsets[n + 1]);
    for (int64_t e = offsets[n] + 1; e < offsets[n + 1]; ++e)
      ASSERT_LT(trie.child_tokens()[e - 1], trie.child_tokens()[e]);
    for (int64_t e = offsets[n]; e < offsets[n + 1]; ++e) {
      ASSERT_GT(trie.child_nodes()[e], n);  // breadth-first: children come later
      ASSERT_LT(trie.child_nodes()[e], trie.num_nodes());
    }
  }
  for (int64_t i = 0; i < items; ++i) ASSERT_EQ(trie.lookup(codes.data() + i * depth, depth), i);
}

TEST(ItemTrie, FuzzedBuildsMatchThePrefixSet) {
  std::mt19937_64 rng(12345);
  for (int round = 0; round < 300; ++round) {
    const int64_t depth = 1 + rng() % 5, alphabet = 1 + rng() % 6;
    const int64_t wanted = 1 + rng() % 80;
    std::vector<int64_t> codes = random_distinct_codes(rng, wanted, depth, alphabet);
    const int64_t items = static_cast<int64_t>(codes.size()) / depth;
    const ItemTrie trie = ItemTrie::from_codes(codes, items, depth);
    expect_consistent(trie, codes);
    // Random sequences are items exactly when they are among the codes.
    std::set<std::vector<int64_t>> rows;
    for (int64_t i = 0; i < items; ++i) rows.emplace(codes.begin() + i * depth, codes.begin() + (i + 1) * depth);
    std::uniform_int_distribution<int64_t> token(0, alphabet);
    for (int probe = 0; probe < 50; ++probe) {
      std::vector<int64_t> row(depth);
      for (auto& t : row) t = token(rng);
      EXPECT_EQ(trie.lookup(row.data(), depth) >= 0, rows.count(row) == 1);
    }
  }
}

TEST(ItemTrie, FuzzedDuplicatesAreAlwaysFound) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    const int64_t depth = 1 + rng() % 3;
    std::vector<int64_t> codes = random_distinct_codes(rng, 2 + rng() % 20, depth, 4);
    const int64_t items = static_cast<int64_t>(codes.size()) / depth;
    if (items < 2) continue;
    const int64_t source = rng() % items;
    const int64_t target = (source + 1 + rng() % (items - 1)) % items;
    std::copy(codes.begin() + source * depth, codes.begin() + (source + 1) * depth, codes.begin() + target * depth);
    try {
      ItemTrie::from_codes(codes, items, depth);
      FAIL() << "duplicate not detected";
    } catch (const std::invalid_argument& error) {
      const std::string message = error.what();
      EXPECT_NE(message.find(std::to_string(std::min(source, target))), std::string::npos) << message;
    }
  }
}

TEST(ItemTrie, RejectsEmptyAndNegative) {
  EXPECT_THROW(ItemTrie::from_codes({}, 0, 3), std::invalid_argument);
  EXPECT_THROW(ItemTrie::from_codes({1, 2}, 1, 3), std::invalid_argument);
  EXPECT_THROW(ItemTrie::from_codes({1, -2}, 1, 2), std::invalid_argument);
}

TEST(ItemTrie, InsertEqualsAFreshBuildAndFailsAtomically) {
  std::mt19937_64 rng(3);
  const std::vector<int64_t> codes = random_distinct_codes(rng, 60, 3, 5);
  const int64_t items = static_cast<int64_t>(codes.size()) / 3;
  const std::vector<int64_t> head(codes.begin(), codes.begin() + 30 * 3), tail(codes.begin() + 30 * 3, codes.end());
  ItemTrie trie = ItemTrie::from_codes(head, 30, 3);
  const std::vector<int64_t> ids = trie.insert(tail, items - 30);
  EXPECT_EQ(ids.front(), 30);
  const ItemTrie fresh = ItemTrie::from_codes(codes, items, 3);
  EXPECT_EQ(trie.child_offsets(), fresh.child_offsets());
  EXPECT_EQ(trie.child_tokens(), fresh.child_tokens());
  EXPECT_EQ(trie.leaf_items(), fresh.leaf_items());
  EXPECT_THROW(trie.insert({codes[0], codes[1], codes[2]}, 1), std::invalid_argument);
  EXPECT_EQ(trie.num_items(), items);
}

TEST(ItemTrie, SaveLoadRoundTripAndCorruptFiles) {
  std::mt19937_64 rng(5);
  const std::vector<int64_t> codes = random_distinct_codes(rng, 100, 4, 6);
  const ItemTrie trie = ItemTrie::from_codes(codes, static_cast<int64_t>(codes.size()) / 4, 4);
  const std::string path = ::testing::TempDir() + "eager_trie_test.bin";
  trie.save(path);
  const ItemTrie loaded = ItemTrie::load(path);
  EXPECT_EQ(loaded.codes(), trie.codes());
  EXPECT_EQ(loaded.child_nodes(), trie.child_nodes());
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(-1, std::ios::end);
    file.put('\x7f');
  }
  EXPECT_THROW(ItemTrie::load(path), std::runtime_error);
  EXPECT_THROW(ItemTrie::load(path + ".missing"), std::runtime_error);
  std::remove(path.c_str());
}

TEST(ItemTrie, ItemOfChecksRange) {
  const ItemTrie trie = ItemTrie::from_codes({1, 2, 1, 3}, 2, 2);
  EXPECT_EQ(trie.item_of(0), -1);
  EXPECT_THROW(trie.item_of(trie.num_nodes()), std::out_of_range);
}

}  // namespace
