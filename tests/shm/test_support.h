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

// Names in /dev/shm created by this process (segpipe-<getpid()>-*).
std::vector<std::string> own_arenas();

}  // namespace segpipe::shm::testing
