#include "shm/arena.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "shm/arena_name.h"
#include "tests/shm/test_support.h"

namespace segpipe::shm {
namespace {

using segpipe::shm::testing::fork_child;
using segpipe::shm::testing::wait_child;

ArenaLayout small_layout() {
  ArenaLayout layout;
  layout.add_block(BlockKind::kActivations, 4096, 4096, "act");
  layout.add_channel("chan");
  layout.add_block(BlockKind::kKvCache, 1000, 64, "kv");
  return layout;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ShmError& e) {
    return e.what();
  }
  return "(no ShmError thrown)";
}

TEST(Arena, CreateOpenRemove) {
  const std::string name = make_arena_name();
  Arena created = Arena::create(name, small_layout());
  EXPECT_TRUE(created.is_creator());
  EXPECT_TRUE(arena_exists(name));
  EXPECT_EQ(created.size_bytes(), small_layout().total_bytes());
  EXPECT_EQ(created.creator_pid(), ::getpid());

  Arena opened = Arena::open(name);
  EXPECT_FALSE(opened.is_creator());
  ASSERT_EQ(opened.block_count(), 3u);
  EXPECT_STREQ(opened.block_header(0).label, "act");
  EXPECT_EQ(opened.block_header(1).kind, static_cast<uint16_t>(BlockKind::kChannel));
  EXPECT_EQ(opened.payload(2).size(), 1000u);
  EXPECT_EQ(opened.find_block("kv"), 2u);
  EXPECT_FALSE(opened.find_block("nope").has_value());

  // Two mappings of the same memory: a write through one is read through the other, in place.
  auto out = created.payload_span<uint32_t>(0);
  ASSERT_EQ(out.size(), 1024u);
  for (uint32_t i = 0; i < out.size(); ++i) out[i] = i * 7;
  auto in = opened.payload_span<const uint32_t>(0);
  EXPECT_NE(static_cast<const void*>(in.data()), static_cast<const void*>(out.data()));
  for (uint32_t i = 0; i < in.size(); ++i) ASSERT_EQ(in[i], i * 7);

  created.remove();
  EXPECT_FALSE(arena_exists(name));
  EXPECT_EQ(in[5], 35u) << "mappings stay valid after unlink";
  EXPECT_THROW(Arena::open(name), ShmError);
}

TEST(Arena, CreatedWithMode0600RegardlessOfUmask) {
  const mode_t old_mask = ::umask(0);  // a permissive umask must not widen the mode
  Arena arena = Arena::create(make_arena_name(), small_layout());
  ::umask(old_mask);
  const int fd = ::shm_open(("/" + arena.name()).c_str(), O_RDONLY, 0);
  ASSERT_GE(fd, 0);
  struct stat st{};
  ASSERT_EQ(::fstat(fd, &st), 0);
  ::close(fd);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, ::getuid());
}

TEST(Arena, OpenOfMissingArenaThrowsAndNeverCreates) {
  const std::string name = make_arena_name();
  const std::string msg = error_of([&] { Arena::open(name); });
  EXPECT_NE(msg.find(name), std::string::npos) << msg;
  EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  EXPECT_FALSE(arena_exists(name));
}

TEST(Arena, CreateOfExistingNameThrows) {
  Arena arena = Arena::create(make_arena_name(), small_layout());
  const std::string msg = error_of([&] { Arena::create(arena.name(), small_layout()); });
  EXPECT_NE(msg.find("already exists"), std::string::npos) << msg;
  EXPECT_TRUE(arena_exists(arena.name())) << "a failed create must not remove the existing arena";
}

TEST(Arena, InvalidNameThrows) {
  EXPECT_THROW(Arena::create("", small_layout()), ShmError);
  EXPECT_THROW(Arena::create("a/b", small_layout()), ShmError);
  EXPECT_THROW(Arena::open("../etc"), ShmError);
}

TEST(Arena, CreatorDestructorUnlinksButOpenerDoesNot) {
  std::string name;
  {
    Arena created = Arena::create(make_arena_name(), small_layout());
    name = created.name();
    { Arena opened = Arena::open(name); }
    EXPECT_TRUE(arena_exists(name)) << "an opener must never unlink";
  }
  EXPECT_FALSE(arena_exists(name));
}

TEST(Arena, ReleasedArenaOutlivesItsCreatorObject) {
  std::string name;
  {
    Arena created = Arena::create(make_arena_name(), small_layout());
    name = created.name();
    created.release();
  }
  EXPECT_TRUE(arena_exists(name));
  ::shm_unlink(("/" + name).c_str());
}

TEST(Arena, MovedArenaUnlinksOnce) {
  Arena a = Arena::create(make_arena_name(), small_layout());
  const std::string name = a.name();
  Arena b = std::move(a);
  EXPECT_TRUE(b.is_creator());
  EXPECT_FALSE(a.is_creator());  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_TRUE(arena_exists(name));
  b = Arena::open(name);  // assigning over a creator removes its arena
  EXPECT_FALSE(arena_exists(name));
}

TEST(Arena, OnlyCreatorMayRemove) {
  Arena created = Arena::create(make_arena_name(), small_layout());
  Arena opened = Arena::open(created.name());
  EXPECT_THROW(opened.remove(), std::logic_error);
}

TEST(Arena, ForkedCopyOfCreatorDoesNotUnlink) {
  Arena created = Arena::create(make_arena_name(), small_layout());
  const pid_t pid = fork_child([&] {
    created.remove();  // the child's copy: must be a no-op for the name
    return 0;
  });
  EXPECT_EQ(wait_child(pid), 0);
  EXPECT_TRUE(arena_exists(created.name()));
}

// Corrupting the creator's mapping and re-opening exercises each validation, field by field.
class ArenaValidation : public ::testing::Test {
 protected:
  Arena arena = Arena::create(make_arena_name(), small_layout());
  ArenaHeader& header() { return *reinterpret_cast<ArenaHeader*>(arena.base()); }
  BlockHeader& block(uint32_t i) { return const_cast<BlockHeader&>(arena.block_header(i)); }
  std::string open_error() {
    return error_of([&] { Arena::open(arena.name()); });
  }
};

TEST_F(ArenaValidation, CorruptMagicIsNamed) {
  header().magic = 0xdeadbeef;
  const std::string msg = open_error();
  EXPECT_NE(msg.find(arena.name()), std::string::npos) << msg;
  EXPECT_NE(msg.find("'magic'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0xdeadbeef"), std::string::npos) << msg;
}

TEST_F(ArenaValidation, WrongVersionIsNamed) {
  header().version = kLayoutVersion + 1;
  const std::string msg = open_error();
  EXPECT_NE(msg.find("'version' is 2"), std::string::npos) << msg;
}

TEST_F(ArenaValidation, HeaderSizeDriftIsNamed) {
  header().block_header_bytes = 48;
  EXPECT_NE(open_error().find("'block_header_bytes'"), std::string::npos);
}

TEST_F(ArenaValidation, TotalBytesMismatchIsNamed) {
  header().total_bytes += 4096;
  EXPECT_NE(open_error().find("'total_bytes'"), std::string::npos);
}

TEST_F(ArenaValidation, BlockCountBeyondSizeIsNamed) {
  header().block_count = 1u << 30;
  EXPECT_NE(open_error().find("'block_count'"), std::string::npos);
}

TEST_F(ArenaValidation, CorruptBlockMagicNamesTheBlock) {
  block(1).magic = 0;
  const std::string msg = open_error();
  EXPECT_NE(msg.find("block 1 header field 'magic'"), std::string::npos) << msg;
}

TEST_F(ArenaValidation, BlockVersionIsNamed) {
  block(2).version = 9;
  EXPECT_NE(open_error().find("block 2 header field 'version' is 9"), std::string::npos);
}

TEST_F(ArenaValidation, PayloadOutOfBoundsIsNamed) {
  block(2).payload_bytes = arena.size_bytes();
  EXPECT_NE(open_error().find("block 2 header fields 'payload_offset'"), std::string::npos);
}

TEST_F(ArenaValidation, MisalignedPayloadIsNamed) {
  block(0).payload_offset += 8;
  EXPECT_NE(open_error().find("block 0 header fields 'payload_offset'"), std::string::npos);
}

TEST(Arena, ForeignSharedMemoryObjectIsRejected) {
  const std::string name = make_arena_name();
  const int fd = ::shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 16), 0);
  ::close(fd);
  const std::string msg = error_of([&] { Arena::open(name); });
  ::shm_unlink(("/" + name).c_str());
  EXPECT_NE(msg.find("not a segpipe arena"), std::string::npos) << msg;
}

TEST(Arena, TypedAccessChecksSizeAndAlignment) {
  ArenaLayout layout;
  layout.add_block(BlockKind::kBytes, 8);
  Arena arena = Arena::create(make_arena_name(), layout);
  EXPECT_NE(arena.payload_as<uint64_t>(0), nullptr);
  struct Big {
    char bytes[16];
  };
  EXPECT_THROW(arena.payload_as<Big>(0), ShmError);
  EXPECT_THROW(arena.payload(1), std::out_of_range);
}

TEST(Arena, TooLargeArenaFailsAtCreateWithClearErrorAndLeavesNothing) {
  ArenaLayout layout;
  layout.add_block(BlockKind::kBytes, std::size_t{1} << 46, 4096, "huge");  // 64 TiB
  const std::string name = make_arena_name();
  const std::string msg = error_of([&] { Arena::create(name, layout); });
  EXPECT_NE(msg.find(name), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot"), std::string::npos) << msg;
  EXPECT_FALSE(arena_exists(name));
}

}  // namespace
}  // namespace segpipe::shm

namespace segpipe::shm {
namespace {

using segpipe::shm::testing::own_arenas;

TEST(UnnamedArena, HasNoNameAndIsSharedThroughAnInheritedDescriptor) {
  const auto before = own_arenas();
  Arena a = Arena::create_unnamed(small_layout());
  EXPECT_TRUE(a.is_unnamed());
  EXPECT_EQ(own_arenas(), before) << "an unnamed arena must not appear in /dev/shm";
  ASSERT_GE(a.fd(), 3);
  EXPECT_EQ(a.attach_spec(), "fd:" + std::to_string(a.fd()));
  EXPECT_NE(::fcntl(a.fd(), F_GETFD) & FD_CLOEXEC, 0) << "only spawns that ask for it inherit the arena";
  EXPECT_GE(a.allocated_bytes(), a.size_bytes()) << "pages are reserved at creation";
  auto out = a.payload_span<uint32_t>(0);
  for (uint32_t i = 0; i < out.size(); ++i) out[i] = i * 3;

  // A child given the descriptor (as spawn does) attaches by "fd:N", sees the data and writes back.
  const int inherited = ::fcntl(a.fd(), F_DUPFD, 3);  // not close-on-exec: what a worker gets
  ASSERT_GE(inherited, 3);
  const pid_t child = fork_child([&] {
    Arena w = Arena::open("fd:" + std::to_string(inherited));
    if (::fcntl(inherited, F_GETFD) >= 0) return 10;  // the inherited number is closed after adoption
    if (w.size_bytes() != small_layout().total_bytes() || w.find_block("kv") != 2u) return 11;
    auto in = w.payload_span<uint32_t>(0);
    for (uint32_t i = 0; i < in.size(); ++i)
      if (in[i] != i * 3) return 12;
    in[0] = 4242;
    return 0;
  });
  EXPECT_EQ(wait_child(child), 0);
  ::close(inherited);
  EXPECT_EQ(out[0], 4242u) << "the child's write is seen in place";
  a.remove();  // nothing to unlink; harmless
  EXPECT_EQ(own_arenas(), before);
}

TEST(UnnamedArena, RefusesBadDescriptorSpecs) {
  EXPECT_NE(error_of([] { Arena::open("fd:"); }).find("invalid descriptor"), std::string::npos);
  EXPECT_NE(error_of([] { Arena::open("fd:-3"); }).find("invalid descriptor"), std::string::npos);
  EXPECT_NE(error_of([] { Arena::open("fd:12x"); }).find("invalid descriptor"), std::string::npos);
  EXPECT_NE(error_of([] { Arena::open("fd:99999999999"); }).find("invalid descriptor"), std::string::npos);
  EXPECT_NE(error_of([] { Arena::open("fd:1"); }).find("standard streams"), std::string::npos);
  EXPECT_NE(error_of([] { Arena::open("fd:999999"); }).find("not an open descriptor"), std::string::npos);
  // An open descriptor that is not an arena: a pipe, then an empty and a zero-filled memfd.
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  EXPECT_NE(error_of([&] { Arena::open("fd:" + std::to_string(p[0])); }).find("not a shared-memory object"),
            std::string::npos);
  ::close(p[1]);
  const int empty = ::memfd_create("segpipe-test", 0);
  EXPECT_NE(error_of([&] { Arena::open("fd:" + std::to_string(empty)); }).find("empty"), std::string::npos);
  const int zeros = ::memfd_create("segpipe-test", 0);
  ASSERT_EQ(::ftruncate(zeros, 65536), 0);
  EXPECT_NE(error_of([&] { Arena::open("fd:" + std::to_string(zeros)); }).find("magic"), std::string::npos);
}

}  // namespace
}  // namespace segpipe::shm
