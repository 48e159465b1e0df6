#include "workers/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <vector>

#include <cstdlib>

#include "segments/core/errors.h"

namespace segpipe {

namespace {

std::shared_ptr<spdlog::sinks::basic_file_sink_mt> g_file_sink;  // the run's log file, if any

// The log file, opened for appending; nullptr (and `error` set) when it cannot be.
std::shared_ptr<spdlog::sinks::basic_file_sink_mt> open_file_sink(const std::string& path, std::string& error) {
  try {
    return std::make_shared<spdlog::sinks::basic_file_sink_mt>(path, /*truncate=*/false);
  } catch (const spdlog::spdlog_ex& e) {
    error = e.what();
    return nullptr;
  }
}

void install(spdlog::level::level_enum level, const std::string& pattern) {
  // Unsynchronized stderr, no colour: a line is one write, and pipes and files get plain text.
  auto err_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  err_sink->set_pattern(pattern);
  std::vector<spdlog::sink_ptr> sinks{err_sink};
  if (g_file_sink) {
    g_file_sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] " + pattern);
    sinks.push_back(g_file_sink);
  }
  auto logger = std::make_shared<spdlog::logger>("segpipe", sinks.begin(), sinks.end());
  logger->set_level(level);
  // Diagnostics are rare and a process may die right after one (a worker's last word): no buffering.
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

std::string env_level() {
  const char* v = std::getenv(kLogLevelEnv);
  return v ? v : "";
}

}  // namespace

spdlog::level::level_enum parse_log_level(const std::string& value, const std::string& what) {
  static const std::pair<const char*, spdlog::level::level_enum> kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug}, {"info", spdlog::level::info},
      {"warn", spdlog::level::warn},   {"error", spdlog::level::err},   {"off", spdlog::level::off}};
  for (auto& [name, level] : kLevels)
    if (value == name) return level;
  throw InputError(what + ": '" + value + "' is not a log level (trace, debug, info, warn, error, off)");
}

void init_orchestrator_logging(const std::string& level_flag, const std::string& file_flag) {
  spdlog::level::level_enum level = spdlog::level::info;
  if (!level_flag.empty()) {
    level = parse_log_level(level_flag, "--log-level");
    setenv(kLogLevelEnv, level_flag.c_str(), 1);  // the segment processes inherit it
  } else if (std::string e = env_level(); !e.empty()) {
    level = parse_log_level(e, kLogLevelEnv);
  }
  const char* env_file = std::getenv(kLogFileEnv);
  const std::string file = !file_flag.empty() ? file_flag : env_file ? env_file : "";
  if (!file.empty()) {
    const std::string what = !file_flag.empty() ? "--log-file" : kLogFileEnv;
    if (file.size() > 4096 || file.find('\n') != std::string::npos)
      throw InputError(what + ": not a usable path (over 4096 characters or a line break)");
    // Checked before opening: spdlog would create missing folders, and opening a FIFO blocks.
    struct stat st{};
    const std::string parent = std::filesystem::path(file).parent_path().string();
    if (!parent.empty() && (::stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)))
      throw InputError(what + " '" + file + "': its folder does not exist");
    if (::stat(file.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
      throw InputError(what + " '" + file + "': not a regular file");
    std::string error;
    g_file_sink = open_file_sink(file, error);
    if (!g_file_sink) throw InputError(what + " '" + file + "': cannot open for appending (" + error + ")");
    setenv(kLogFileEnv, file.c_str(), 1);
  }
  install(level, "segpipe: %v");
}

void log_to_file_only(const std::string& line) {
  if (!g_file_sink) return;
  // The line carries its own "segpipe COMMAND:" prefix; it is the process's last word.
  g_file_sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  spdlog::logger file_only("segpipe", g_file_sink);
  file_only.set_level(spdlog::level::trace);
  file_only.error(line);
  file_only.flush();
}

void init_worker_logging(const std::string& segment) {
  // The orchestrator checked the variable before starting us; a bad value here means someone else
  // started this process by hand: keep the default rather than fail over a diagnostic setting.
  spdlog::level::level_enum level = spdlog::level::info;
  try {
    if (std::string e = env_level(); !e.empty()) level = parse_log_level(e, kLogLevelEnv);
  } catch (const InputError&) {
  }
  // The log file the orchestrator opened; one we cannot open costs only the file's copy of our lines.
  if (const char* f = std::getenv(kLogFileEnv); f && *f) {
    std::string ignored;
    g_file_sink = open_file_sink(f, ignored);
  }
  // The segment name is data from the command line: spdlog patterns treat '%' specially.
  std::string name;
  for (char c : segment) name += c == '%' ? std::string("%%") : std::string(1, c);
  install(level, "segpipe worker '" + name + "' pid " + std::to_string(getpid()) + ": %v");
}

}  // namespace segpipe
