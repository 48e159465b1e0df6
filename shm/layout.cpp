#include "shm/layout.h"

#include <bit>
#include <stdexcept>

#include "shm/channel.h"

namespace segpipe::shm {
namespace {

// No single block may exceed 2^48 bytes: far beyond any machine's RAM, and small enough that sums
// of a few million such blocks cannot overflow uint64_t while placing them.
constexpr uint64_t kMaxPayloadBytes = uint64_t{1} << 48;

constexpr uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}

}  // namespace

uint32_t ArenaLayout::add_block(uint16_t kind, std::size_t payload_bytes, std::size_t alignment,
                                std::string_view label) {
  if (alignment == 0 || !std::has_single_bit(alignment) || alignment > kMaxAlignment) {
    throw std::invalid_argument("shm layout: block alignment " + std::to_string(alignment) +
                                " is not a power of two <= " + std::to_string(kMaxAlignment));
  }
  if (payload_bytes > kMaxPayloadBytes) {
    throw std::invalid_argument("shm layout: block '" + std::string(label) + "' of " +
                                std::to_string(payload_bytes) + " bytes is too large");
  }
  if (label.size() >= kLabelBytes) {
    throw std::invalid_argument("shm layout: block label '" + std::string(label) + "' is longer than " +
                                std::to_string(kLabelBytes - 1) + " bytes");
  }
  if (blocks_.size() >= UINT32_MAX) throw std::invalid_argument("shm layout: too many blocks");
  const auto align = static_cast<uint32_t>(alignment < kCacheLine ? kCacheLine : alignment);
  blocks_.push_back(Spec{kind, align, payload_bytes, std::string(label)});
  return static_cast<uint32_t>(blocks_.size() - 1);
}

uint32_t ArenaLayout::add_channel(std::string_view label) {
  return add_block(BlockKind::kChannel, sizeof(ChannelControl), alignof(ChannelControl), label);
}

std::vector<BlockPlacement> ArenaLayout::placements() const {
  std::vector<BlockPlacement> out;
  out.reserve(blocks_.size());
  uint64_t cursor = table_offset() + sizeof(uint64_t) * blocks_.size();
  for (const Spec& b : blocks_) {
    // The header sits immediately before the payload: an alignment of 4096 then costs at most one
    // page of padding before the header instead of a page between header and payload.
    const uint64_t payload = align_up(cursor + sizeof(BlockHeader), b.alignment);
    out.push_back(BlockPlacement{b.kind, b.alignment, payload - sizeof(BlockHeader), payload,
                                 b.payload_bytes, b.label});
    // Round the end to a cache line so the next header never shares a line with this payload.
    cursor = align_up(payload + b.payload_bytes, kCacheLine);
  }
  return out;
}

std::size_t ArenaLayout::total_bytes() const {
  uint64_t end = table_offset() + sizeof(uint64_t) * blocks_.size();
  const auto places = placements();
  if (!places.empty()) end = places.back().payload_offset + places.back().payload_bytes;
  return static_cast<std::size_t>(align_up(end, kPageSize));
}

}  // namespace segpipe::shm
