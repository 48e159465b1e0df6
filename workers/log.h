// Diagnostics through spdlog, for the orchestrator and the segment processes alike (a worker is the
// same executable). Not for the one-line error of exit 2/3 (main.cpp writes it, whatever the level)
// nor for a command's output: only the messages a user may want more or fewer of.
//
// Level: `segpipe --log-level LEVEL <command>`, else the environment variable SEGPIPE_LOG_LEVEL, else
// info. LEVEL is trace, debug, info, warn, error or off. The orchestrator puts the level it chose in
// SEGPIPE_LOG_LEVEL, so the segment processes it starts log at the same level.
// Format: `segpipe: MESSAGE` from the orchestrator; `segpipe worker 'SEGMENT' pid PID: MESSAGE` from
// a segment process, so that lines of several processes on one terminal say whose they are.
//
// Log file: `segpipe --log-file PATH <command>` (or SEGPIPE_LOG_FILE) also appends every line of the
// run, the orchestrator's and every segment process's, to PATH, each with a timestamp and the
// process's tag, plus the run's final error line. Lines are appended whole (O_APPEND, flushed each
// line), so the processes of a run share one file. A path that cannot be opened for appending is
// exit 2 naming it.
#pragma once
#include <spdlog/spdlog.h>

#include <string>

namespace segpipe {

constexpr const char* kLogLevelEnv = "SEGPIPE_LOG_LEVEL";
constexpr const char* kLogFileEnv = "SEGPIPE_LOG_FILE";

// Parses a level name; InputError naming `what` (the flag or the variable) for any other value.
spdlog::level::level_enum parse_log_level(const std::string& value, const std::string& what);

// The orchestrator: level from `level_flag` (empty: the environment, else info), log file from
// `file_flag` (empty: the environment, else none); both exported to the workers.
void init_orchestrator_logging(const std::string& level_flag, const std::string& file_flag = "");

// Appends `line` to the log file only, if there is one (the one-line error, which goes to stderr
// by itself whatever the level).
void log_to_file_only(const std::string& line);

// A segment process: level from the environment its orchestrator gave it; every line tagged.
void init_worker_logging(const std::string& segment);

}  // namespace segpipe
