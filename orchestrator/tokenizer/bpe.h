// Byte-level BPE: merges symbols of one pre-tokenized piece by rank, exactly as Hugging Face
// tokenizers' Word::merge_all does (a min-heap of (rank, position) over a linked list of symbols, stale
// heap entries skipped), so that ties and unusual merge tables give the same ids as the reference.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "orchestrator/tokenizer/tokenizer_json.h"

namespace segpipe::tok {

class Bpe {
 public:
  // Resolves merges and the 256 byte symbols against the vocabulary; InputError names the file and the
  // merge or byte that is missing from it.
  explicit Bpe(const TokenizerJson& j);

  // Appends the ids of one piece (raw bytes, not empty). Thread-safe.
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  size_t merge_count() const { return merge_count_; }

 private:
  struct MergeValue {
    uint32_t rank;
    int32_t new_id;
  };
  // Open-addressing table keyed by the pair of symbol ids: the merge lookup is the inner loop of BPE,
  // and a flat table with a multiplicative hash is several times faster than std::unordered_map here.
  struct MergeTable {
    std::vector<uint64_t> keys;  // kEmpty marks a free slot
    std::vector<MergeValue> values;
    uint64_t mask = 0;
    static constexpr uint64_t kEmpty = ~0ull;
    void init(size_t n);
    void put(uint64_t key, MergeValue v);
    const MergeValue* find(uint64_t key) const;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void merge(std::string_view piece, std::vector<int32_t>& out) const;

  std::array<int32_t, 256> byte_ids_{};  // id of the one-byte token for each byte
  MergeTable merges_;
  size_t merge_count_ = 0;
  bool ignore_merges_ = false;
  const std::unordered_map<std::string, int32_t>* vocab_ = nullptr;  // for ignore_merges; owned by Tokenizer

  // Pieces repeat (" the", "\n", "    "); caching their ids skips the merge loop for most of a text.
  // The cache is per thread (bpe.cpp), keyed by this instance's serial number, so encoding takes no
  // lock: a mutex per piece cost a quarter of the encode time. Bounded: once full, new pieces are
  // merged but not remembered (as tokenizers' cache does).
  static constexpr size_t kCacheCapacity = 1 << 16;
  static constexpr size_t kCacheMaxPieceBytes = 256;
  uint64_t serial_;  // unique per Bpe ever constructed: a new tokenizer at a reused address gets a new one

 public:
  // The vocabulary must outlive this object (Tokenizer keeps both).
  void set_vocab(const std::unordered_map<std::string, int32_t>* v) { vocab_ = v; }
};

}  // namespace segpipe::tok
