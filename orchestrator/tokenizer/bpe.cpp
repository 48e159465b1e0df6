#include "orchestrator/tokenizer/bpe.h"

#include <algorithm>
#include <atomic>

#include "orchestrator/tokenizer/byte_level.h"
#include "orchestrator/tokenizer/utf8.h"
#include "segments/core/errors.h"

namespace segpipe::tok {
namespace {

uint64_t hash(uint64_t k) { return (k * 0x9E3779B97F4A7C15ull) ^ (k >> 29); }

struct Symbol {
  int32_t id;
  int32_t prev;  // index of the previous live symbol, -1 at the start
  int32_t next;  // index of the next live symbol, -1 at the end
  bool alive;
};

struct QueuedMerge {
  uint32_t rank;
  uint32_t pos;  // index of the left symbol
  int32_t new_id;
  // Heap order: lowest rank first, then leftmost position (tokenizers' `impl Ord for Merge`).
  bool operator>(const QueuedMerge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

// Heterogeneous lookup: find a string_view piece without building a std::string key.
struct PieceHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
struct PieceCache {
  uint64_t owner = 0;  // serial of the Bpe whose pieces these are
  std::unordered_map<std::string, std::vector<int32_t>, PieceHash, std::equal_to<>> ids;
};
PieceCache& thread_cache(uint64_t serial) {
  thread_local PieceCache cache;
  if (cache.owner != serial) {
    cache.ids.clear();
    cache.owner = serial;
  }
  return cache;
}
std::atomic<uint64_t> next_serial{1};

}  // namespace

void Bpe::MergeTable::init(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  keys.assign(cap, kEmpty);
  values.assign(cap, MergeValue{0, 0});
  mask = cap - 1;
}

void Bpe::MergeTable::put(uint64_t key, MergeValue v) {
  for (uint64_t i = hash(key) & mask;; i = (i + 1) & mask) {
    if (keys[i] == kEmpty || keys[i] == key) {
      keys[i] = key;
      values[i] = v;  // a repeated pair keeps its last rank, like tokenizers' HashMap collect
      return;
    }
  }
}

const Bpe::MergeValue* Bpe::MergeTable::find(uint64_t key) const {
  for (uint64_t i = hash(key) & mask;; i = (i + 1) & mask) {
    if (keys[i] == key) return &values[i];
    if (keys[i] == kEmpty) return nullptr;
  }
}

Bpe::Bpe(const TokenizerJson& j) : ignore_merges_(j.ignore_merges), serial_(next_serial.fetch_add(1)) {
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    utf8::append_code_point(ch, byte_level::byte_to_char(static_cast<uint8_t>(b)));
    auto it = j.vocab.find(ch);
    if (it == j.vocab.end())
      throw InputError(j.path + ": key 'model.vocab': no token for byte 0x" +
                       "0123456789abcdef"[b >> 4] + "0123456789abcdef"[b & 15] + " ('" + ch + "')");
    byte_ids_[b] = it->second;
  }
  merges_.init(j.merges.size());
  std::string joined;  // reused: most merged tokens are longer than the small-string buffer
  for (size_t r = 0; r < j.merges.size(); ++r) {
    const auto& [a, b] = j.merges[r];
    joined.assign(a).append(b);
    auto ia = j.vocab.find(a), ib = j.vocab.find(b), inew = j.vocab.find(joined);
    if (ia == j.vocab.end() || ib == j.vocab.end() || inew == j.vocab.end()) {
      const std::string missing = ia == j.vocab.end() ? a : ib == j.vocab.end() ? b : joined;
      throw InputError(j.path + ": key 'model.merges[" + std::to_string(r) + "]': token '" + missing +
                       "' is not in the vocabulary");
    }
    merges_.put(pair_key(ia->second, ib->second), MergeValue{static_cast<uint32_t>(r), inew->second});
  }
  merge_count_ = j.merges.size();
}

void Bpe::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {  // the most common piece shapes (" ", ",", a digit) need no merging
    out.push_back(byte_ids_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (piece.size() > kCacheMaxPieceBytes) {
    merge(piece, out);
    return;
  }
  PieceCache& cache = thread_cache(serial_);
  if (auto it = cache.ids.find(piece); it != cache.ids.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  const size_t first = out.size();
  merge(piece, out);
  if (cache.ids.size() < kCacheCapacity)
    cache.ids.emplace(std::string(piece), std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
}

void Bpe::merge(std::string_view piece, std::vector<int32_t>& out) const {
  if (ignore_merges_ && vocab_) {
    auto it = vocab_->find(byte_level::bytes_to_token(piece));
    if (it != vocab_->end()) {
      out.push_back(it->second);
      return;
    }
  }
  const auto n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> sym(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i)
    sym[i] = Symbol{byte_ids_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1, true};

  std::vector<QueuedMerge> heap;
  heap.reserve(static_cast<size_t>(n) * 2);
  const auto cmp = std::greater<QueuedMerge>();
  for (int32_t i = 0; i + 1 < n; ++i)
    if (const MergeValue* m = merges_.find(pair_key(sym[i].id, sym[i + 1].id)))
      heap.push_back({m->rank, static_cast<uint32_t>(i), m->new_id});
  std::make_heap(heap.begin(), heap.end(), cmp);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), cmp);
    const QueuedMerge top = heap.back();
    heap.pop_back();
    Symbol& left = sym[top.pos];
    if (!left.alive || left.next < 0) continue;
    const int32_t right_pos = left.next;
    const Symbol right = sym[right_pos];
    // A queued entry is stale when the pair at this position has changed since it was queued.
    const MergeValue* now = merges_.find(pair_key(left.id, right.id));
    if (!now || now->new_id != top.new_id) continue;

    left.id = top.new_id;
    left.next = right.next;
    sym[right_pos].alive = false;
    if (right.next >= 0) sym[right.next].prev = static_cast<int32_t>(top.pos);

    if (left.prev >= 0)
      if (const MergeValue* m = merges_.find(pair_key(sym[left.prev].id, left.id))) {
        heap.push_back({m->rank, static_cast<uint32_t>(left.prev), m->new_id});
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
    if (left.next >= 0)
      if (const MergeValue* m = merges_.find(pair_key(left.id, sym[left.next].id))) {
        heap.push_back({m->rank, top.pos, m->new_id});
        std::push_heap(heap.begin(), heap.end(), cmp);
      }
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

}  // namespace segpipe::tok
