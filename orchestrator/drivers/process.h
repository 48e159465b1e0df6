// Child processes of the orchestrator: spawned from this same executable, reaped and described.
#pragma once
#include <sys/types.h>

#include <string>
#include <vector>

namespace segpipe {

// fork + exec of /proc/self/exe with args. The child stays in our process group (a terminal's
// Ctrl-C reaches every segment) and dies with us through PR_SET_PDEATHSIG. Descriptors in
// `inherit` (close-on-exec here, like every descriptor this program opens) stay open in the child
// under the same numbers: the unnamed shared-memory arena is handed over that way.
pid_t spawn_self(const std::vector<std::string>& args, const std::vector<int>& inherit = {});
// Non-blocking: true when the child has exited (status filled) and has been reaped.
bool reap_if_exited(pid_t pid, int& status);
// "exit code N" / "killed by signal N (SIGKILL)"
std::string describe_status(int status);
// SIGKILL and reap (blocking).
void kill_and_reap(pid_t pid);

}  // namespace segpipe
