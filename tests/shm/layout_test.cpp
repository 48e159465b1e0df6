#include <gtest/gtest.h>

#include <stdexcept>

#include "shm/channel.h"
#include "shm/layout.h"

namespace segpipe::shm {
namespace {

TEST(ArenaLayout, BlocksAreAlignedAndDoNotOverlap) {
  ArenaLayout layout;
  layout.add_block(BlockKind::kBytes, 1, 64, "one byte");
  layout.add_block(BlockKind::kActivations, 3 * 4096 + 5, 4096, "act");
  layout.add_channel("chan");
  layout.add_block(BlockKind::kKvCache, 0, 128, "empty");
  layout.add_block(BlockKind::kKvCache, 1000, 256, "kv");
  layout.add_block(kUserBlockKind, 77, 4096, "user");

  const auto places = layout.placements();
  ASSERT_EQ(places.size(), 6u);
  uint64_t previous_end = ArenaLayout::table_offset() + 8 * places.size();
  for (const BlockPlacement& p : places) {
    SCOPED_TRACE(p.label);
    EXPECT_EQ(p.header_offset % kCacheLine, 0u);
    EXPECT_EQ(p.payload_offset % p.alignment, 0u);
    EXPECT_GE(p.alignment, kCacheLine);
    EXPECT_EQ(p.header_offset + sizeof(BlockHeader), p.payload_offset) << "header sits right before its payload";
    EXPECT_GE(p.header_offset, previous_end) << "overlaps the previous block or the offset table";
    previous_end = p.payload_offset + p.payload_bytes;
  }
  EXPECT_EQ(layout.total_bytes() % kPageSize, 0u);
  EXPECT_GE(layout.total_bytes(), previous_end);
  EXPECT_EQ(places[2].payload_bytes, sizeof(ChannelControl));
  EXPECT_EQ(places[2].kind, static_cast<uint16_t>(BlockKind::kChannel));
}

TEST(ArenaLayout, SmallAlignmentIsRaisedToCacheLine) {
  ArenaLayout layout;
  layout.add_block(BlockKind::kBytes, 3, 1);
  layout.add_block(BlockKind::kBytes, 3, 8);
  for (const auto& p : layout.placements()) EXPECT_EQ(p.alignment, kCacheLine);
}

TEST(ArenaLayout, PayloadsDoNotShareCacheLines) {
  ArenaLayout layout;
  layout.add_block(BlockKind::kBytes, 1);
  layout.add_block(BlockKind::kBytes, 1);
  const auto p = layout.placements();
  EXPECT_GE(p[1].header_offset, p[0].payload_offset + kCacheLine);
}

TEST(ArenaLayout, IndicesFollowInsertionOrder) {
  ArenaLayout layout;
  EXPECT_EQ(layout.add_block(BlockKind::kBytes, 8), 0u);
  EXPECT_EQ(layout.add_channel(), 1u);
  EXPECT_EQ(layout.add_block(BlockKind::kBytes, 8), 2u);
  EXPECT_EQ(layout.block_count(), 3u);
}

TEST(ArenaLayout, EmptyLayoutIsOnePage) {
  ArenaLayout layout;
  EXPECT_EQ(layout.total_bytes(), kPageSize);
}

TEST(ArenaLayout, RejectsBadAlignmentLongLabelAndHugeBlocks) {
  ArenaLayout layout;
  EXPECT_THROW(layout.add_block(BlockKind::kBytes, 8, 0), std::invalid_argument);
  EXPECT_THROW(layout.add_block(BlockKind::kBytes, 8, 96), std::invalid_argument);
  EXPECT_THROW(layout.add_block(BlockKind::kBytes, 8, 8192), std::invalid_argument);
  EXPECT_THROW(layout.add_block(BlockKind::kBytes, 8, 64, std::string(32, 'x')), std::invalid_argument);
  EXPECT_THROW(layout.add_block(BlockKind::kBytes, std::size_t{1} << 50), std::invalid_argument);
  EXPECT_EQ(layout.block_count(), 0u);
}

}  // namespace
}  // namespace segpipe::shm
