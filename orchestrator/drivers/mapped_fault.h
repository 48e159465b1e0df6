// A weight file that changes under a running process (truncated, rewritten in place, its storage
// failing) turns the next read of its mapped pages into SIGBUS. Segment processes may die of it: the
// orchestrator names the segment and the signal. In this process (transport: inproc, run-segment,
// dump, verify) the fault is turned into the contract's exit 3 with one line naming the segment that
// was running and the file.
//
// Why a handler that reports and exits, and not something else:
//   - checking file sizes at load cannot see a truncation that happens later, and every step
//     reads every weight again;
//   - sigsetjmp/siglongjmp around weight reads cannot work: the reads happen on the thread pool's
//     threads, and jumping out of a kernel would skip destructors and leave the pool's locks held;
//   - copying the weights into anonymous memory would give up what mapping them buys (page-cache
//     sharing between processes, memory that follows the working set).
// The bytes are gone, so there is nothing to recover: the handler uses only async-signal-safe calls
// (open/read of /proc/self/maps to find the file, write, shm_unlink, _exit).
#pragma once
#include <string>

#include "segments/core/errors.h"

namespace segpipe {

// Installs the SIGBUS handler; `command` names the command in the message (copied).
void report_mapped_file_faults(const std::string& command);

// Marks the segment whose code this process runs now (its threads included), for that message.
class RunningSegment {
 public:
  explicit RunningSegment(const std::string& name);
  ~RunningSegment();
  RunningSegment(const RunningSegment&) = delete;
  RunningSegment& operator=(const RunningSegment&) = delete;

 private:
  const char* previous_;
};

// Runs one segment's call in this process: marks it running (above), and names it in a runtime
// failure it throws ("segment 'late' (layers): non-finite output of layer 3 ..."), as the
// orchestrator names a segment process that reports one.
template <typename F>
void in_segment(const std::string& name, const char* kind, F&& call) {
  RunningSegment running(name);
  try {
    call();
  } catch (const RuntimeFailure& e) {
    throw RuntimeFailure("segment '" + name + "' (" + kind + "): " + e.what());
  }
}

}  // namespace segpipe
