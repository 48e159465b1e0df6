// Arena: one shared-memory object holding all blocks of a run. Two forms:
//
//   * unnamed (what segpipe runs): a memfd that never has a name in /dev/shm. Its descriptor is
//     inherited by the workers the creator spawns (and by restarted ones: the creator keeps it), so
//     nothing outlives the last process that holds it, whatever kills it (SIGKILL, power loss):
//
//       Arena arena = Arena::create_unnamed(layout);                // memfd, CLOEXEC
//       spawn a worker keeping arena.fd() open across exec, with arena.attach_spec() ("fd:N")
//       // worker
//       Arena arena = Arena::open(spec_from_argv);                  // "fd:N": adopts and validates
//
//   * named (/dev/shm/<name>), for processes that are not the creator's children:
//
//       remove_stale_arenas();                                       // cleanup.h, once at start-up
//       Arena arena = Arena::create(make_arena_name(), layout);     // mode 0600, registered for cleanup
//       // other process
//       Arena arena = Arena::open(name);                             // never creates; validates headers
//
//   // either form, once open
//   std::span<std::byte> in = arena.payload(input_block);        // zero-copy view of a block
//   std::span<float> kv = arena.payload_span<float>(*arena.find_block("kv.early"));  // or by label
//   Channel ch = Channel::attach(arena, channel_block);          // channel.h
//
// Modes are explicit: create() fails if the name exists, open() fails if it does not. Only the
// creator unlinks: remove(), or its destructor unless release() was called. Every Arena object
// holds a shared flock() on its arena while it lives: start-up cleanup of another run tells an
// arena in use from a leftover by that lock (cleanup.h). Unlinking while workers
// still have the arena mapped is safe (their mappings stay valid until they unmap).
//
// Memory is reserved up front (posix_fallocate): a /dev/shm that is too small fails here with a
// clear ShmError instead of a SIGBUS in the middle of a step. Fresh memory reads as zeros, which is
// the valid initial state of doorbells and channels.
//
// Arena objects are move-only; moved-from objects own nothing. All accessors check the block index
// and throw std::out_of_range for a bad one (a caller bug); failures of the environment and headers
// that do not validate throw ShmError naming the arena and the field.
#pragma once
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "shm/block_header.h"
#include "shm/layout.h"
#include "shm/shm_error.h"

namespace segpipe::shm {

struct CreateOptions {
  // Reserve the pages at creation (posix_fallocate). Off only makes sense for sparse test arenas.
  bool reserve = true;
};

class Arena {
 public:
  // Creates /dev/shm/<name> with mode 0600, sized and laid out by `layout`, and writes all headers.
  // Throws ShmError if the name exists, /dev/shm lacks space, or the system refuses.
  static Arena create(const std::string& name, const ArenaLayout& layout, CreateOptions options = {});
  // Attaches to an existing arena and validates its headers. Never creates.
  // Throws ShmError if it does not exist or any header field does not validate.
  // Also accepts "fd:N" (an unnamed arena's descriptor inherited from its creator, attach_spec()):
  // the descriptor must be an open regular shared-memory file that validates as an arena; this
  // process takes it over (close-on-exec) and closes N.
  static Arena open(const std::string& name);
  // A memfd-backed arena with no name anywhere (see above). Throws ShmError as create() does.
  static Arena create_unnamed(const ArenaLayout& layout, CreateOptions options = {});

  Arena(Arena&& other) noexcept;
  Arena& operator=(Arena&& other) noexcept;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena();

  const std::string& name() const { return name_; }
  // Unnamed arenas: the descriptor children must inherit, and the string they pass to open().
  // -1 / empty for named arenas.
  int fd() const { return unnamed_ ? fd_ : -1; }
  std::string attach_spec() const { return unnamed_ ? "fd:" + std::to_string(fd_) : std::string(); }
  bool is_unnamed() const { return unnamed_; }
  // Bytes the system has allocated to the object (pages reserved or touched), from fstat.
  uint64_t allocated_bytes() const;
  bool is_creator() const { return creator_; }
  std::size_t size_bytes() const { return size_; }
  std::byte* base() const { return static_cast<std::byte*>(addr_); }
  const ArenaHeader& header() const { return *reinterpret_cast<const ArenaHeader*>(base()); }
  uint32_t block_count() const { return header().block_count; }
  pid_t creator_pid() const { return header().creator_pid; }

  const BlockHeader& block_header(uint32_t index) const;
  // The index of the first block with this label, if any (an alternative to passing indices).
  std::optional<uint32_t> find_block(std::string_view label) const;
  // The payload of block `index`, exactly payload_bytes long.
  std::span<std::byte> payload(uint32_t index) const;
  // The payload as one T (T must fit and be suitably aligned; throws ShmError otherwise).
  template <typename T>
  T* payload_as(uint32_t index) const;
  // The payload as an array of T: payload_bytes / sizeof(T) elements.
  template <typename T>
  std::span<T> payload_span(uint32_t index) const;

  // Creator only: unlinks the name now (idempotent). Mappings, including this one, stay valid.
  void remove();
  // Creator only: keeps the name after this object dies (someone else will remove it).
  void release();

 private:
  Arena() = default;
  void check_fits(uint32_t index, std::size_t size, std::size_t align, const char* type) const;

  void map_fd(int fd, std::size_t bytes);  // maps [0, bytes) of fd read-write, shared
  void unmap() noexcept;

  std::string name_;
  void* addr_ = nullptr;      // the whole object, mapped shared (munmap()ed by the destructor)
  std::size_t size_ = 0;
  int fd_ = -1;               // the object's descriptor while this Arena lives (close-on-exec); for
                              // a named arena it holds the shared in-use lock (cleanup.h)
  bool unnamed_ = false;      // a memfd: nothing to unlink, nothing to clean up
  bool creator_ = false;      // this object created the name and may unlink it
  pid_t owner_pid_ = 0;       // unlink only from the creating process, never from a fork()ed copy
  int cleanup_slot_ = -1;     // registration in cleanup.h's signal-safe table
};

template <typename T>
T* Arena::payload_as(uint32_t index) const {
  static_assert(std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>,
                "only trivially copyable, standard-layout types may live in shared memory");
  check_fits(index, sizeof(T), alignof(T), "object");
  return std::launder(reinterpret_cast<T*>(payload(index).data()));
}

template <typename T>
std::span<T> Arena::payload_span(uint32_t index) const {
  static_assert(std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T>,
                "only trivially copyable, standard-layout types may live in shared memory");
  check_fits(index, 0, alignof(T), "array");
  const std::span<std::byte> bytes = payload(index);
  return {reinterpret_cast<T*>(bytes.data()), bytes.size() / sizeof(T)};
}

}  // namespace segpipe::shm
