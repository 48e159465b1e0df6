#include "workers/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

#include <cstdlib>

#include "segments/core/errors.h"

namespace segpipe {

namespace {

void install(spdlog::level::level_enum level, const std::string& pattern) {
  // Unsynchronized stderr, no colour: a line is one write, and pipes and files get plain text.
  auto logger = std::make_shared<spdlog::logger>("segpipe", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern(pattern);
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

void init_orchestrator_logging(const std::string& flag_value) {
  spdlog::level::level_enum level = spdlog::level::info;
  if (!flag_value.empty()) {
    level = parse_log_level(flag_value, "--log-level");
    setenv(kLogLevelEnv, flag_value.c_str(), 1);  // the segment processes inherit it
  } else if (std::string e = env_level(); !e.empty()) {
    level = parse_log_level(e, kLogLevelEnv);
  }
  install(level, "segpipe: %v");
}

void init_worker_logging(const std::string& segment) {
  // The orchestrator checked the variable before starting us; a bad value here means someone else
  // started this process by hand: keep the default rather than fail over a diagnostic setting.
  spdlog::level::level_enum level = spdlog::level::info;
  try {
    if (std::string e = env_level(); !e.empty()) level = parse_log_level(e, kLogLevelEnv);
  } catch (const InputError&) {
  }
  // The segment name is data from the command line: spdlog patterns treat '%' specially.
  std::string name;
  for (char c : segment) name += c == '%' ? std::string("%%") : std::string(1, c);
  install(level, "segpipe worker '" + name + "' pid " + std::to_string(getpid()) + ": %v");
}

}  // namespace segpipe
