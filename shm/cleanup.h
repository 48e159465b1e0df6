// Making sure no arena outlives its run, on every path out of the orchestrator:
//
//   normal return / exception  -> the creator's Arena destructor unlinks (arena.h);
//   std::exit()                -> an atexit hook unlinks every arena this process still owns;
//   SIGTERM / SIGINT / SIGHUP  -> install_unlink_on_signal() below, or call unlink_owned_arenas()
//                                 from your own handler (it is async-signal-safe);
//   SIGKILL, power loss        -> nothing can run; the next orchestrator calls remove_stale_arenas()
//                                 at start-up, which removes arenas whose creator pid is gone.
//
// Arena::create registers the name here automatically and Arena::remove / the destructor
// unregisters it, so callers only choose how signals are handled. A stronger option still: once
// every worker has attached, the orchestrator may call Arena::remove(); mappings stay valid and
// nothing is left to leak at all.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace segpipe::shm {

// Removes segpipe arenas in `dir` whose creator process no longer exists (kill(pid, 0) fails with
// ESRCH); returns the names removed. Arenas of live processes and foreign files are left alone.
std::vector<std::string> remove_stale_arenas(std::string_view dir = "/dev/shm");

// Registers `name` to be unlinked by unlink_owned_arenas() in this process (not in forked
// children). Returns a slot id for unregister_for_cleanup, or -1 if the table (16 slots) is full.
int register_for_cleanup(std::string_view name);
void unregister_for_cleanup(int slot);

// Async-signal-safe: shm_unlink()s every registered name owned by the calling process. Uses only a
// static table, getpid() and shm_unlink(); allocates nothing and takes no lock.
void unlink_owned_arenas() noexcept;

// Installs handlers for SIGTERM, SIGINT and SIGHUP that call unlink_owned_arenas(), then restore
// the default action and re-raise, so the process still dies of that signal (exit status intact).
// Skip this if the orchestrator installs its own handlers: call unlink_owned_arenas() from them.
void install_unlink_on_signal();

}  // namespace segpipe::shm
