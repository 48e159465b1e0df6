// The two headers that make an arena self-describing. Everything here is placed in shared memory,
// so every type is trivially copyable, standard layout, fixed size, and holds offsets (from the
// start of the arena), never pointers: each process maps the arena at a different address.
//
// Arena memory map (all offsets from the arena base; the base is page aligned):
//
//   0                 ArenaHeader (64 bytes)
//   table_offset      uint64_t block_header_offset[block_count]
//   ...               for each block i, in order:
//   header_offset_i     BlockHeader (64 bytes), placed immediately before its payload
//   payload_offset_i    payload_bytes bytes, aligned to the block's alignment (>= 64)
//   total_bytes       (a multiple of the page size)
//
// Readers validate both headers in Arena::open (see arena.h); bump kLayoutVersion on any change
// to these structs or to the map above.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace segpipe::shm {

// "SPAR" and "SPBK" when the little-endian words are read as bytes in a hex dump of /dev/shm.
inline constexpr uint32_t kArenaMagic = 0x52415053u;
inline constexpr uint32_t kBlockMagic = 0x4B425053u;
inline constexpr uint16_t kLayoutVersion = 1;

// One cache line: headers never share a line with a payload another process writes.
inline constexpr std::size_t kCacheLine = 64;
inline constexpr std::size_t kPageSize = 4096;
inline constexpr std::size_t kLabelBytes = 32;

// Block kinds say what a block holds so that a reader can check it attached to the right thing.
// shm itself only interprets kChannel; the others are conventions for the orchestrator and workers.
// Values >= kUserBlockKind are free for callers.
enum class BlockKind : uint16_t {
  kBytes = 0,        // untyped bytes
  kChannel = 1,      // a ChannelControl (channel.h)
  kActivations = 2,  // an activation buffer written in place by one segment, read by the next
  kKvCache = 3,      // a KV cache of one layer segment
  kDoorbells = 4,    // an array of Doorbell (doorbell.h), e.g. for benchmarks
};
inline constexpr uint16_t kUserBlockKind = 0x100;

struct alignas(kCacheLine) ArenaHeader {
  uint32_t magic;               // kArenaMagic; written last by the creator (release)
  uint16_t version;             // kLayoutVersion
  uint16_t arena_header_bytes;  // sizeof(ArenaHeader) of the writer: catches ABI drift between builds
  uint16_t block_header_bytes;  // sizeof(BlockHeader) of the writer
  uint16_t reserved0;
  uint32_t block_count;         // entries in the offset table
  uint64_t total_bytes;         // size of the whole arena, equal to the shm object's size
  uint64_t table_offset;        // where uint64_t block_header_offset[block_count] starts
  int32_t creator_pid;          // pid of the creating process (also encoded in the arena name)
  uint32_t reserved1;
  uint64_t reserved2[3];
};

struct alignas(kCacheLine) BlockHeader {
  uint32_t magic;           // kBlockMagic
  uint16_t version;         // kLayoutVersion
  uint16_t kind;            // BlockKind or a caller value >= kUserBlockKind
  uint32_t index;           // this block's index in the offset table (a self-check)
  uint32_t alignment;       // alignment of the payload, a power of two >= kCacheLine
  uint64_t payload_offset;  // from the arena base
  uint64_t payload_bytes;   // payload size as requested (the gap to the next block is padding)
  char label[kLabelBytes];  // NUL-terminated, for error messages and debugging; may be empty
};

static_assert(sizeof(ArenaHeader) == 64 && alignof(ArenaHeader) == 64);
static_assert(sizeof(BlockHeader) == 64 && alignof(BlockHeader) == 64);
static_assert(std::is_trivially_copyable_v<ArenaHeader> && std::is_standard_layout_v<ArenaHeader>);
static_assert(std::is_trivially_copyable_v<BlockHeader> && std::is_standard_layout_v<BlockHeader>);

}  // namespace segpipe::shm
