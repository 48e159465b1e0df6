// ArenaLayout: the size and place of every block, computed up front before the arena exists.
//
//   ArenaLayout layout;
//   uint32_t act = layout.add_block(BlockKind::kActivations, tokens * hidden * 4, 4096, "act.0");
//   uint32_t ch  = layout.add_channel("seg.early");
//   Arena arena = Arena::create(make_arena_name(), layout);   // arena.h
//
// Block indices are dense, start at 0 and follow the order of the add_* calls; workers find blocks
// by these indices (passed to them by the orchestrator). The layout is plain data: the same calls
// give the same offsets in every process, and Arena::create writes them into the arena headers, so
// readers never recompute them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shm/block_header.h"

namespace segpipe::shm {

// Where one block lands in the arena (offsets from the arena base).
struct BlockPlacement {
  uint16_t kind = 0;
  uint32_t alignment = 0;
  uint64_t header_offset = 0;
  uint64_t payload_offset = 0;
  uint64_t payload_bytes = 0;
  std::string label;
};

class ArenaLayout {
 public:
  // Largest alignment a block may ask for: the mapping base is only guaranteed page aligned.
  static constexpr std::size_t kMaxAlignment = kPageSize;

  // Adds a block of payload_bytes (0 is allowed) whose payload starts at a multiple of alignment
  // (a power of two; values below 64 are raised to 64 so payloads never share a cache line).
  // The label (at most 31 bytes) shows up in error messages. Returns the block index.
  // Throws std::invalid_argument on a bad alignment, an oversized label or an absurd size.
  uint32_t add_block(uint16_t kind, std::size_t payload_bytes, std::size_t alignment = kCacheLine,
                     std::string_view label = {});
  uint32_t add_block(BlockKind kind, std::size_t payload_bytes, std::size_t alignment = kCacheLine,
                     std::string_view label = {}) {
    return add_block(static_cast<uint16_t>(kind), payload_bytes, alignment, label);
  }
  // A block holding one ChannelControl (channel.h).
  uint32_t add_channel(std::string_view label = {});

  uint32_t block_count() const { return static_cast<uint32_t>(blocks_.size()); }
  // Offsets of every block; the offset table's size depends on the block count, so this is
  // computed from scratch (cheap: one pass).
  std::vector<BlockPlacement> placements() const;
  // Size of the arena: headers, padding and payloads, rounded up to a whole page.
  std::size_t total_bytes() const;
  // Where the offset table starts (right after the ArenaHeader).
  static constexpr uint64_t table_offset() { return sizeof(ArenaHeader); }

 private:
  struct Spec {
    uint16_t kind;
    uint32_t alignment;
    uint64_t payload_bytes;
    std::string label;
  };
  std::vector<Spec> blocks_;
};

}  // namespace segpipe::shm
