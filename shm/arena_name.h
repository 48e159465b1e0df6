// Arena names: "segpipe-<creator pid>-<16 random hex digits>", e.g. "segpipe-4211-9f3c0a1b2c3d4e5f".
//
// The pid makes leftovers attributable: remove_stale_arenas() (cleanup.h) removes an arena whose
// creator no longer exists. The random part keeps two runs of one process, and runs in different
// pid namespaces, from colliding. The name is what workers receive on their command line.
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

namespace segpipe::shm {

inline constexpr std::string_view kArenaNamePrefix = "segpipe-";
inline constexpr std::string_view kShmDir = "/dev/shm";

// A fresh name for an arena created by this process.
std::string make_arena_name();
// The creator pid if `name` has the segpipe form above, else nullopt (foreign files in /dev/shm).
std::optional<pid_t> parse_arena_name(std::string_view name);
// Whether an arena (or any shm object) of this name exists right now.
bool arena_exists(std::string_view name);

}  // namespace segpipe::shm
