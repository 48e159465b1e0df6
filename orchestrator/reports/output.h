// Where a command's results go: standard output and the files named on its command line. Output that
// could not be written never ends in exit 0 (a full disk, /dev/full), and a closed pipe never kills
// the orchestrator (SIGPIPE would leave its segment processes' shared memory behind):
//   path that cannot be created (missing folder, a file in the way, read-only) -> InputError, exit 2;
//   writing or flushing fails (no space, I/O error)                             -> RuntimeFailure, exit 3;
//   standard output's reader has gone (EPIPE)                                   -> OutputClosed, exit 0.
#pragma once
#include <string>

namespace segpipe {

// SIGPIPE ignored in this process: a write to a closed pipe fails with EPIPE, which flush_stdout()
// turns into OutputClosed. Child processes get the default back (spawn_self).
void ignore_sigpipe();
// Flushes standard output; OutputClosed on EPIPE, RuntimeFailure on any other write error.
void flush_stdout();
// Writes a whole file (created or truncated).
void write_output_file(const std::string& path, const std::string& text);
// Creates a folder and its parents if needed; InputError naming the path when it cannot be one.
void make_output_dir(const std::string& path);

}  // namespace segpipe
