// Making sure no arena outlives its run, on every path out of the orchestrator:
//
//   normal return / exception  -> the creator's Arena destructor unlinks (arena.h);
//   std::exit()                -> an atexit hook unlinks every arena this process still owns;
//   SIGTERM, SIGQUIT, SIGUSR1..-> install_unlink_on_signal() below, or call unlink_owned_arenas()
//                                 from your own handler (it is async-signal-safe);
//   SIGKILL, power loss        -> nothing can run; the next orchestrator calls remove_stale_arenas()
//                                 at start-up, which removes this user's arenas that nobody uses.
//
// "Nobody uses it" is told by a lock, not by the pid in the name: the creator and every process
// that opens an arena hold a shared flock() on it for as long as they live (arena.h), and a pid
// says nothing about a process in another PID namespace that shares /dev/shm (a run there had its
// live arena deleted). Cleanup takes the lock exclusively, without waiting, and removes the file
// only if it got it, the file belongs to this user, and its creator had finished writing it. An
// arena whose last processes are still exiting is therefore kept; a later run removes it.
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

// An unlocked arena file whose header was never finished is removed only after this long: a creator
// takes its lock right after creating the file, and this keeps cleanup out of that window.
inline constexpr long kUnfinishedArenaSeconds = 60;

// Removes this user's segpipe arenas in `dir` that no process holds (see above); returns the names
// removed. Arenas in use, other users' files and foreign names are left alone.
std::vector<std::string> remove_stale_arenas(std::string_view dir = "/dev/shm");

// Registers `name` to be unlinked by unlink_owned_arenas() in this process (not in forked
// children). Returns a slot id for unregister_for_cleanup, or -1 if the table (16 slots) is full.
int register_for_cleanup(std::string_view name);
void unregister_for_cleanup(int slot);

// Async-signal-safe: shm_unlink()s every registered name owned by the calling process. Uses only a
// static table, getpid() and shm_unlink(); allocates nothing and takes no lock.
void unlink_owned_arenas() noexcept;

// Installs handlers for every catchable signal that ends a process (SIGTERM, SIGINT, SIGHUP,
// SIGQUIT, SIGUSR1, SIGALRM, ...; not the crash signals, and not those currently ignored) that call
// unlink_owned_arenas(), then restore the default action and re-raise, so the process still dies of
// that signal (exit status intact).
// Skip this if the orchestrator installs its own handlers: call unlink_owned_arenas() from them.
void install_unlink_on_signal();

}  // namespace segpipe::shm
