// Helpers for shm tests: forked children that report through their exit status, and a check that
// no test leaves an arena behind in /dev/shm.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace segpipe::shm::testing {

// Runs body() in a fork()ed child and _exit()s with its return value (an exception -> 99). The
// child never returns into GoogleTest, so gtest assertions must not be used inside body.
pid_t fork_child(const std::function<int()>& body);

// Waits for the child; kills it with SIGKILL if it has not finished within `timeout`.
// Returns the exit code, 128 + signal number if it died of a signal, or -1 on timeout.
int wait_child(pid_t pid, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// True while the child has not exited (does not reap it).
bool child_alive(pid_t pid);

// Waits until thread or process `tid` is asleep in the kernel (state S in /proc/<tid>/stat), as a
// waiter blocked in FUTEX_WAIT is: the synchronization a test needs before it rings a sleeper, in
// place of a sleep that guesses how long falling asleep takes. False after `timeout` or if it exited.
bool wait_until_sleeping(pid_t tid, std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A CPU this process may run on (the first one of its affinity mask), for tests that pin to one:
// CPU 0 may be outside the cpuset.
int allowed_cpu();

// Names in /dev/shm created by this process (segpipe-<getpid()>-*).
std::vector<std::string> own_arenas();

}  // namespace segpipe::shm::testing
