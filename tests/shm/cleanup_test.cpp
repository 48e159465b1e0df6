#include "shm/cleanup.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "shm/arena.h"
#include "shm/arena_name.h"
#include "shm/block_header.h"
#include "tests/shm/test_support.h"

namespace segpipe::shm {
namespace {

using segpipe::shm::testing::fork_child;
using segpipe::shm::testing::wait_child;

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

ArenaLayout one_block() {
  ArenaLayout layout;
  layout.add_block(BlockKind::kBytes, 64);
  return layout;
}

// A child that creates an arena, sends its name through a pipe, then runs `then` (exit, sleep...).
struct ChildWithArena {
  pid_t pid = -1;
  std::string name;
};
ChildWithArena spawn_arena_child(int (*then)()) {
  int fds[2];
  if (::pipe(fds) != 0) return {};
  const pid_t pid = fork_child([&] {
    ::close(fds[0]);
    Arena* arena = new Arena(Arena::create(make_arena_name(), one_block()));
    const std::string& n = arena->name();
    if (::write(fds[1], n.data(), n.size()) != static_cast<ssize_t>(n.size())) return 1;
    ::close(fds[1]);
    return then();
  });
  ::close(fds[1]);
  char buf[256] = {};
  const ssize_t got = ::read(fds[0], buf, sizeof buf - 1);
  ::close(fds[0]);
  return {pid, got > 0 ? std::string(buf, static_cast<std::size_t>(got)) : std::string()};
}

pid_t dead_pid() {
  const pid_t pid = fork_child([] { return 0; });
  wait_child(pid);
  return pid;
}

TEST(ArenaName, HasCreatorPidAndRandomSuffix) {
  const std::string a = make_arena_name();
  const std::string b = make_arena_name();
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("segpipe-" + std::to_string(::getpid()) + "-", 0), 0u) << a;
  ASSERT_TRUE(parse_arena_name(a).has_value());
  EXPECT_EQ(*parse_arena_name(a), ::getpid());
}

TEST(ArenaName, ParseRejectsForeignNames) {
  for (const char* n : {"segpipe-", "segpipe-12", "segpipe-12-", "segpipe--ab", "segpipe-x-ab", "segpipe-0-ab",
                        "segpipe-12-XYZ", "pulse-shm-123", "segpipe-99999999999-ab"}) {
    EXPECT_FALSE(parse_arena_name(n).has_value()) << n;
  }
  EXPECT_EQ(parse_arena_name("segpipe-12-0af"), 12);
}

TEST(RemoveStaleArenas, RemovesArenaOfCreatorThatExitedWithoutRemovingIt) {
  const ChildWithArena child = spawn_arena_child([] { return 0; });  // _exit: no destructor runs
  ASSERT_FALSE(child.name.empty());
  ASSERT_EQ(wait_child(child.pid), 0);
  ASSERT_TRUE(arena_exists(child.name)) << "the child should have leaked its arena";
  const auto removed = remove_stale_arenas();
  // Another process's start-up cleanup (a parallel test, an orchestrator) may win the race to
  // remove it; what matters is that it is gone and that we removed it whenever we were first.
  EXPECT_TRUE(contains(removed, child.name) || !arena_exists(child.name));
  EXPECT_FALSE(arena_exists(child.name));
}

TEST(RemoveStaleArenas, RemovesArenaOfCreatorKilledWithSigkill) {
  const ChildWithArena child = spawn_arena_child([] {
    ::pause();
    return 0;
  });
  ASSERT_FALSE(child.name.empty());
  EXPECT_FALSE(contains(remove_stale_arenas(), child.name)) << "its creator is still alive";
  ::kill(child.pid, SIGKILL);
  ASSERT_EQ(wait_child(child.pid), 128 + SIGKILL);
  ASSERT_TRUE(arena_exists(child.name));
  const auto removed = remove_stale_arenas();
  EXPECT_TRUE(contains(removed, child.name) || !arena_exists(child.name));  // see above
  EXPECT_FALSE(arena_exists(child.name));
}

// Liveness is the in-use lock, not the pid in the name: a run in another PID namespace sharing
// /dev/shm has a pid that looks dead (or belongs to someone else) here, and its arena was deleted.
// Only this user's files are touched, and never one whose creator may still be writing it.
TEST(RemoveStaleArenas, RemovesOnlyUnlockedFinishedArenasOfThisUser) {
  char tmpl[] = "/tmp/shm-stale-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  auto arena_file = [&](const std::string& name, bool finished) {
    ArenaHeader h{};
    h.magic = finished ? kArenaMagic : 0;
    std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(&h), sizeof h);
    return (dir / name).string();
  };
  const std::string dead = "segpipe-" + std::to_string(dead_pid()) + "-00ff";
  const std::string live_pid = "segpipe-" + std::to_string(::getpid()) + "-00ff";  // a pid proves nothing
  const std::string other_ns = "segpipe-" + std::to_string(dead_pid()) + "-01ff";  // held by its run
  const std::string unfinished = "segpipe-" + std::to_string(dead_pid()) + "-02ff";  // creator in create()
  arena_file(dead, true);
  arena_file(live_pid, true);
  const int held = ::open(arena_file(other_ns, true).c_str(), O_RDONLY);
  ASSERT_EQ(::flock(held, LOCK_SH), 0);
  arena_file(unfinished, false);
  for (const std::string& f : {std::string("other-file"), std::string("segpipe-notapid-1")}) std::ofstream(dir / f) << "x";
  std::string foreign_user;
  if (::geteuid() == 0) {  // root: a file of another user must survive root's cleanup
    foreign_user = "segpipe-" + std::to_string(dead_pid()) + "-03ff";
    ASSERT_EQ(::chown(arena_file(foreign_user, true).c_str(), 65534, 65534), 0);
  }
  auto removed = remove_stale_arenas(dir.string());
  std::sort(removed.begin(), removed.end());
  std::vector<std::string> expected = {dead, live_pid};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(removed, expected);
  EXPECT_TRUE(std::filesystem::exists(dir / other_ns)) << "in use by a run this namespace cannot see";
  EXPECT_TRUE(std::filesystem::exists(dir / unfinished));
  EXPECT_TRUE(std::filesystem::exists(dir / "other-file"));
  if (!foreign_user.empty()) {
    EXPECT_TRUE(std::filesystem::exists(dir / foreign_user)) << "another user's file";
  }
  ::close(held);  // its run ends: now it is a leftover
  EXPECT_EQ(remove_stale_arenas(dir.string()), std::vector<std::string>{other_ns});
  std::filesystem::remove_all(dir);
}

// A live arena is locked by its creator and by every process that opened it.
TEST(RemoveStaleArenas, KeepsAnArenaWhileAnyProcessHoldsIt) {
  std::optional<Arena> created(Arena::create(make_arena_name(), one_block()));
  const std::string name = created->name();
  Arena opened = Arena::open(name);
  created->release();  // the name outlives its creator object (as after a creator's death)
  created.reset();
  EXPECT_FALSE(contains(remove_stale_arenas(), name)) << "a process still has it open";
  EXPECT_TRUE(arena_exists(name));
  { Arena gone = std::move(opened); }
  const auto removed = remove_stale_arenas();
  EXPECT_TRUE(contains(removed, name) || !arena_exists(name));  // a parallel cleanup may win the race
  EXPECT_FALSE(arena_exists(name));
}

TEST(UnlinkOnSignal, SigtermUnlinksOwnedArenasAndStillKills) {
  // The handler is installed before the name is sent, so the signal cannot arrive too early.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = fork_child([&] {
    ::close(fds[0]);
    install_unlink_on_signal();
    Arena* arena = new Arena(Arena::create(make_arena_name(), one_block()));
    const std::string& n = arena->name();
    if (::write(fds[1], n.data(), n.size()) != static_cast<ssize_t>(n.size())) return 1;
    for (;;) ::pause();
  });
  ::close(fds[1]);
  char buf[256] = {};
  ASSERT_GT(::read(fds[0], buf, sizeof buf - 1), 0);
  ::close(fds[0]);
  const std::string name = buf;
  ASSERT_TRUE(arena_exists(name));
  ::kill(pid, SIGTERM);
  EXPECT_EQ(wait_child(pid), 128 + SIGTERM) << "the process must still die of the signal";
  EXPECT_FALSE(arena_exists(name));
}

TEST(UnlinkOnSignal, ExitWithoutUnwindingUnlinksOwnedArenas) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    static Arena* arena = nullptr;  // reachable, never destroyed: only the atexit hook can clean up
    arena = new Arena(Arena::create(make_arena_name(), one_block()));
    const std::string& n = arena->name();
    if (::write(fds[1], n.data(), n.size()) != static_cast<ssize_t>(n.size())) ::_exit(1);
    std::exit(0);
  }
  ::close(fds[1]);
  char buf[256] = {};
  ASSERT_GT(::read(fds[0], buf, sizeof buf - 1), 0);
  ::close(fds[0]);
  EXPECT_EQ(wait_child(pid), 0);
  EXPECT_FALSE(arena_exists(buf));
  ::shm_unlink((std::string("/") + buf).c_str());  // in case the check failed
}

TEST(UnlinkOnSignal, UnlinkOwnedArenasSkipsArenasOfOtherProcesses) {
  Arena arena = Arena::create(make_arena_name(), one_block());
  const pid_t pid = fork_child([] {
    unlink_owned_arenas();  // the child inherited the registration table; the arena is not its own
    return 0;
  });
  EXPECT_EQ(wait_child(pid), 0);
  EXPECT_TRUE(arena_exists(arena.name()));
  unlink_owned_arenas();
  EXPECT_FALSE(arena_exists(arena.name()));
}

}  // namespace
}  // namespace segpipe::shm
