#include "shm/arena.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/permissions.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "shm/arena_name.h"
#include "shm/cleanup.h"

namespace segpipe::shm {
namespace bip = boost::interprocess;
namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

[[noreturn]] void fail(const std::string& name, const std::string& what) {
  throw ShmError("shm arena '" + name + "': " + what);
}

// Names go to shm_open; '/' inside them would be rejected or, worse, mean a different directory.
void check_name(const std::string& name) {
  if (name.empty() || name.size() > 200 || name.find('/') != std::string::npos || name == "." || name == "..") {
    fail(name, "invalid name (1-200 characters, no '/')");
  }
}

// Removes the name if construction does not get as far as handing the arena to its owner.
struct UnlinkOnFailure {
  const std::string& name;
  bool armed = true;
  ~UnlinkOnFailure() {
    if (armed) bip::shared_memory_object::remove(name.c_str());
  }
};

void reserve_pages(const std::string& name, int fd, std::size_t bytes) {
  const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  if (rc == 0) return;
  std::string msg = "cannot reserve " + std::to_string(bytes) + " bytes: " + std::strerror(rc);
  struct statvfs vfs{};
  if (::statvfs(std::string(kShmDir).c_str(), &vfs) == 0) {
    msg += " (" + std::string(kShmDir) + " has " + std::to_string(uint64_t{vfs.f_bavail} * vfs.f_frsize) +
           " bytes free)";
  }
  fail(name, msg);
}

// The in-use lock (cleanup.h): a shared flock() on a descriptor of our own, held until the Arena
// object dies (the process's death releases it too). Blocking: start-up cleanup holds its
// exclusive lock only for a moment, and never removes a file it finds unfinished.
int take_use_lock(const std::string& name, int fd) {
  const int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) fail(name, std::string("cannot keep a descriptor: ") + std::strerror(errno));
  while (::flock(d, LOCK_SH) != 0) {
    if (errno == EINTR) continue;
    const int e = errno;
    ::close(d);
    fail(name, std::string("cannot lock: ") + std::strerror(e));
  }
  return d;
}

// Everything a reader relies on, checked before any pointer is formed from an offset.
void validate(const std::string& name, const std::byte* base, std::size_t size) {
  if (size < sizeof(ArenaHeader)) {
    fail(name, "size " + std::to_string(size) + " is smaller than the arena header; not a segpipe arena");
  }
  const auto& h = *reinterpret_cast<const ArenaHeader*>(base);
  const uint32_t magic = std::atomic_ref<uint32_t>(const_cast<uint32_t&>(h.magic)).load(std::memory_order_acquire);
  if (magic != kArenaMagic) {
    fail(name, "arena header field 'magic' is " + hex(magic) + ", expected " + hex(kArenaMagic) +
                   " (not a segpipe arena, or its creator has not finished)");
  }
  if (h.version != kLayoutVersion) {
    fail(name, "arena header field 'version' is " + std::to_string(h.version) + ", this build reads version " +
                   std::to_string(kLayoutVersion));
  }
  if (h.arena_header_bytes != sizeof(ArenaHeader)) {
    fail(name, "arena header field 'arena_header_bytes' is " + std::to_string(h.arena_header_bytes) +
                   ", expected " + std::to_string(sizeof(ArenaHeader)));
  }
  if (h.block_header_bytes != sizeof(BlockHeader)) {
    fail(name, "arena header field 'block_header_bytes' is " + std::to_string(h.block_header_bytes) +
                   ", expected " + std::to_string(sizeof(BlockHeader)));
  }
  if (h.total_bytes != size) {
    fail(name, "arena header field 'total_bytes' is " + std::to_string(h.total_bytes) +
                   " but the shared memory object has " + std::to_string(size) + " bytes");
  }
  if (h.table_offset < sizeof(ArenaHeader) || h.table_offset % alignof(uint64_t) != 0 ||
      h.table_offset > size || (size - h.table_offset) / sizeof(uint64_t) < h.block_count) {
    fail(name, "arena header fields 'table_offset' " + std::to_string(h.table_offset) + " / 'block_count' " +
                   std::to_string(h.block_count) + " do not fit in " + std::to_string(size) + " bytes");
  }
  const auto* table = reinterpret_cast<const uint64_t*>(base + h.table_offset);
  const uint64_t table_end = h.table_offset + uint64_t{h.block_count} * sizeof(uint64_t);
  for (uint32_t i = 0; i < h.block_count; ++i) {
    const std::string where = "block " + std::to_string(i) + " header";
    const uint64_t off = table[i];
    if (off < table_end || off % alignof(BlockHeader) != 0 || off > size - sizeof(BlockHeader)) {
      fail(name, where + ": offset " + std::to_string(off) + " is misaligned or out of bounds");
    }
    const auto& b = *reinterpret_cast<const BlockHeader*>(base + off);
    if (b.magic != kBlockMagic) {
      fail(name, where + " field 'magic' is " + hex(b.magic) + ", expected " + hex(kBlockMagic));
    }
    if (b.version != kLayoutVersion) {
      fail(name, where + " field 'version' is " + std::to_string(b.version) + ", expected " +
                     std::to_string(kLayoutVersion));
    }
    if (b.index != i) fail(name, where + " field 'index' is " + std::to_string(b.index));
    if (b.alignment < kCacheLine || !std::has_single_bit(b.alignment)) {
      fail(name, where + " field 'alignment' is " + std::to_string(b.alignment));
    }
    if (b.payload_offset < off + sizeof(BlockHeader) || b.payload_offset % b.alignment != 0 ||
        b.payload_offset > size || b.payload_bytes > size - b.payload_offset) {
      fail(name, where + " fields 'payload_offset' " + std::to_string(b.payload_offset) + " / 'payload_bytes' " +
                     std::to_string(b.payload_bytes) + " are misaligned or out of bounds");
    }
    if (std::memchr(b.label, '\0', sizeof b.label) == nullptr) fail(name, where + " field 'label' is unterminated");
  }
}

}  // namespace

namespace {

// Writes the table, every block header and the arena header into a fresh (zeroed) mapping.
void write_headers(std::byte* base, const std::vector<BlockPlacement>& places, std::size_t total) {
  auto* table = reinterpret_cast<uint64_t*>(base + ArenaLayout::table_offset());
  for (uint32_t i = 0; i < places.size(); ++i) {
    const BlockPlacement& p = places[i];
    table[i] = p.header_offset;
    BlockHeader b{};
    b.magic = kBlockMagic;
    b.version = kLayoutVersion;
    b.kind = p.kind;
    b.index = i;
    b.alignment = p.alignment;
    b.payload_offset = p.payload_offset;
    b.payload_bytes = p.payload_bytes;
    std::memcpy(b.label, p.label.data(), p.label.size());  // layout keeps labels < kLabelBytes
    std::memcpy(base + p.header_offset, &b, sizeof b);
  }
  ArenaHeader h{};
  h.version = kLayoutVersion;
  h.arena_header_bytes = sizeof(ArenaHeader);
  h.block_header_bytes = sizeof(BlockHeader);
  h.block_count = static_cast<uint32_t>(places.size());
  h.total_bytes = total;
  h.table_offset = ArenaLayout::table_offset();
  h.creator_pid = static_cast<int32_t>(::getpid());
  std::memcpy(base, &h, sizeof h);
  // The magic goes last: a reader that sees it also sees every header written above.
  auto& header = *reinterpret_cast<ArenaHeader*>(base);
  std::atomic_ref<uint32_t>(header.magic).store(kArenaMagic, std::memory_order_release);
}

std::size_t object_size(const std::string& name, int fd) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) fail(name, std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) fail(name, "is not a shared-memory object");
  if (st.st_size <= 0) fail(name, "is empty; not a segpipe arena");
  return static_cast<std::size_t>(st.st_size);
}

}  // namespace

void Arena::map_fd(int fd, std::size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) fail(name_, "cannot map " + std::to_string(bytes) + " bytes: " + std::strerror(errno));
  addr_ = p;
  size_ = bytes;
}

void Arena::unmap() noexcept {
  if (addr_) ::munmap(addr_, size_);
  addr_ = nullptr;
  size_ = 0;
}

Arena Arena::create(const std::string& name, const ArenaLayout& layout, CreateOptions options) {
  check_name(name);
  const std::size_t total = layout.total_bytes();
  const std::vector<BlockPlacement> places = layout.placements();

  bip::shared_memory_object shm;
  try {
    // permissions(0600): only our user may attach. Boost applies it with fchmod, so the umask
    // cannot widen or narrow it.
    shm = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write, bip::permissions(0600));
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::already_exists_error) fail(name, "already exists (create never reuses a name)");
    fail(name, std::string("cannot create: ") + e.what());
  }
  UnlinkOnFailure guard{name};
  Arena a;
  a.name_ = name;
  a.fd_ = take_use_lock(name, shm.get_mapping_handle().handle);
  try {
    shm.truncate(static_cast<bip::offset_t>(total));
  } catch (const bip::interprocess_exception& e) {
    fail(name, "cannot size " + std::to_string(total) + " bytes: " + e.what());
  }
  if (options.reserve) reserve_pages(name, a.fd_, total);
  a.map_fd(a.fd_, total);
  write_headers(a.base(), places, total);

  a.creator_ = true;
  a.owner_pid_ = ::getpid();
  a.cleanup_slot_ = register_for_cleanup(name);
  guard.armed = false;
  return a;
}

Arena Arena::create_unnamed(const ArenaLayout& layout, CreateOptions options) {
  const std::size_t total = layout.total_bytes();
  const std::vector<BlockPlacement> places = layout.placements();
  Arena a;
  a.name_ = "memfd:segpipe-arena";
  a.unnamed_ = true;
  // Close-on-exec here; the creator's spawn clears it for the workers it starts, one at a time.
  a.fd_ = ::memfd_create("segpipe-arena", MFD_CLOEXEC);
  if (a.fd_ < 0) fail(a.name_, std::string("cannot create: ") + std::strerror(errno));
  if (::ftruncate(a.fd_, static_cast<off_t>(total)) != 0)
    fail(a.name_, "cannot size " + std::to_string(total) + " bytes: " + std::strerror(errno));
  if (options.reserve) reserve_pages(a.name_, a.fd_, total);
  a.map_fd(a.fd_, total);
  write_headers(a.base(), places, total);
  a.owner_pid_ = ::getpid();
  return a;
}

Arena Arena::open(const std::string& name) {
  if (name.rfind("fd:", 0) == 0) {
    // An inherited descriptor: digits only, in the range a descriptor can have, not a standard stream.
    const std::string digits = name.substr(3);
    if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
      fail(name, "invalid descriptor (expected fd:N)");
    const int n = std::stoi(digits);
    if (n < 3) fail(name, "invalid descriptor (0, 1 and 2 are the standard streams)");
    if (::fcntl(n, F_GETFD) < 0) fail(name, "is not an open descriptor of this process");
    Arena a;
    a.name_ = name;
    a.unnamed_ = true;
    const std::size_t size = object_size(name, n);
    a.fd_ = ::fcntl(n, F_DUPFD_CLOEXEC, 3);
    if (a.fd_ < 0) fail(name, std::string("cannot keep the descriptor: ") + std::strerror(errno));
    ::close(n);  // what this process may spawn must not inherit the arena
    a.map_fd(a.fd_, size);
    validate(name, a.base(), size);
    return a;
  }
  check_name(name);
  bip::shared_memory_object shm;
  try {
    shm = bip::shared_memory_object(bip::open_only, name.c_str(), bip::read_write);
  } catch (const bip::interprocess_exception& e) {
    if (e.get_error_code() == bip::not_found_error) fail(name, "does not exist (was it created, or already removed?)");
    fail(name, std::string("cannot open: ") + e.what());
  }
  Arena a;
  a.name_ = name;
  a.fd_ = take_use_lock(name, shm.get_mapping_handle().handle);
  const std::size_t size = object_size(name, a.fd_);
  a.map_fd(a.fd_, size);
  validate(name, a.base(), size);
  return a;
}

uint64_t Arena::allocated_bytes() const {
  struct stat st{};
  if (fd_ < 0 || ::fstat(fd_, &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

Arena::Arena(Arena&& other) noexcept
    : name_(std::move(other.name_)),
      addr_(std::exchange(other.addr_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      fd_(std::exchange(other.fd_, -1)),
      unnamed_(std::exchange(other.unnamed_, false)),
      creator_(std::exchange(other.creator_, false)),
      owner_pid_(std::exchange(other.owner_pid_, 0)),
      cleanup_slot_(std::exchange(other.cleanup_slot_, -1)) {}

Arena& Arena::operator=(Arena&& other) noexcept {
  if (this != &other) {
    if (creator_) remove();
    unmap();
    if (fd_ >= 0) ::close(fd_);
    name_ = std::move(other.name_);
    addr_ = std::exchange(other.addr_, nullptr);
    size_ = std::exchange(other.size_, 0);
    fd_ = std::exchange(other.fd_, -1);
    unnamed_ = std::exchange(other.unnamed_, false);
    creator_ = std::exchange(other.creator_, false);
    owner_pid_ = std::exchange(other.owner_pid_, 0);
    cleanup_slot_ = std::exchange(other.cleanup_slot_, -1);
  }
  return *this;
}

Arena::~Arena() {
  if (creator_) remove();
  unmap();
  if (fd_ >= 0) ::close(fd_);
}

void Arena::remove() {
  if (unnamed_) return;  // nothing to unlink: it goes with its last descriptor and mapping
  if (!creator_) {
    if (name_.empty()) return;
    throw std::logic_error("shm arena '" + name_ + "': only the creator may remove it");
  }
  // A fork()ed child holds a byte-for-byte copy of this object; it must not unlink the parent's arena.
  if (owner_pid_ == ::getpid()) bip::shared_memory_object::remove(name_.c_str());
  unregister_for_cleanup(cleanup_slot_);
  cleanup_slot_ = -1;
  creator_ = false;
}

void Arena::release() {
  unregister_for_cleanup(cleanup_slot_);
  cleanup_slot_ = -1;
  creator_ = false;
}

const BlockHeader& Arena::block_header(uint32_t index) const {
  if (index >= block_count()) {
    throw std::out_of_range("shm arena '" + name_ + "': block index " + std::to_string(index) + " >= block count " +
                            std::to_string(block_count()));
  }
  const auto* table = reinterpret_cast<const uint64_t*>(base() + header().table_offset);
  return *reinterpret_cast<const BlockHeader*>(base() + table[index]);
}

std::optional<uint32_t> Arena::find_block(std::string_view label) const {
  for (uint32_t i = 0; i < block_count(); ++i) {
    if (label == block_header(i).label) return i;
  }
  return std::nullopt;
}

std::span<std::byte> Arena::payload(uint32_t index) const {
  const BlockHeader& b = block_header(index);
  return {base() + b.payload_offset, static_cast<std::size_t>(b.payload_bytes)};
}

void Arena::check_fits(uint32_t index, std::size_t size, std::size_t align, const char* type) const {
  const BlockHeader& b = block_header(index);
  if (b.payload_bytes < size || b.payload_offset % align != 0) {
    fail(name_, "block " + std::to_string(index) + " ('" + b.label + "') of " + std::to_string(b.payload_bytes) +
                    " bytes at offset " + std::to_string(b.payload_offset) + " cannot hold an " + type + " of " +
                    std::to_string(size) + " bytes aligned to " + std::to_string(align));
  }
}

}  // namespace segpipe::shm
