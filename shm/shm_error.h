// segpipe::shm::ShmError: the one exception type for environmental shared-memory failures
// (an arena that does not exist, a full /dev/shm, a header written by an incompatible build).
// The message is one line that names the arena and, for validation failures, the field.
//
// Misuse of the API by the caller (a bad alignment, a request posted while one is pending) throws
// std::invalid_argument / std::logic_error instead: those are bugs in the caller, not in the world.
//
// shm depends on nothing else in segpipe, so this type does not derive from segments/core's errors;
// the orchestrator maps it to its RuntimeFailure at the boundary.
#pragma once
#include <stdexcept>
#include <string>

namespace segpipe::shm {

struct ShmError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace segpipe::shm
