#include "orchestrator/commands/cli_args.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "segments/core/errors.h"

namespace segpipe {

CliArgs::CliArgs(const std::string& command, const std::vector<std::string>& args,
                 const std::set<std::string>& value_flags, const std::set<std::string>& switches)
    : command_(command) {
  for (size_t i = 0; i < args.size(); i++) {
    std::string a = args[i];
    if (a == "--help" || a == "-h") {
      help_ = true;
      continue;
    }
    if (a.rfind("--", 0) == 0) {
      std::string name = a, value;
      bool inline_value = false;
      auto eq = a.find('=');
      if (eq != std::string::npos) {
        name = a.substr(0, eq);
        value = a.substr(eq + 1);
        inline_value = true;
      }
      if (value_flags.count(name)) {
        if (!inline_value) {
          if (i + 1 >= args.size()) throw InputError(command + ": " + name + " needs a value");
          value = args[++i];
        }
        values_[name].push_back(value);
      } else if (switches.count(name)) {
        if (inline_value) throw InputError(command + ": " + name + " takes no value");
        switches_.insert(name);
      } else {
        throw InputError(command + ": unknown option '" + name + "' (see segpipe " + command + " --help)");
      }
    } else {
      positional_.push_back(a);
    }
  }
}

std::optional<std::string> CliArgs::get(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) return std::nullopt;
  if (it->second.size() > 1) throw InputError(command_ + ": " + flag + " given more than once");
  return it->second.front();
}

std::string CliArgs::get_or(const std::string& flag, const std::string& dflt) const {
  auto v = get(flag);
  return v ? *v : dflt;
}

std::vector<std::string> CliArgs::all(const std::string& flag) const {
  auto it = values_.find(flag);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

long long CliArgs::get_int(const std::string& flag, long long dflt, long long lo, long long hi) const {
  auto v = get(flag);
  if (!v) return dflt;
  errno = 0;
  char* end = nullptr;
  long long x = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != 0 || errno != 0)
    throw InputError(command_ + ": " + flag + " must be an integer, got '" + *v + "'");
  if (x < lo || x > hi)
    throw InputError(command_ + ": " + flag + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                     ", got " + *v);
  return x;
}

double CliArgs::get_double(const std::string& flag, double dflt, double lo, double hi, bool lo_open) const {
  auto v = get(flag);
  if (!v) return dflt;
  errno = 0;
  char* end = nullptr;
  double x = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != 0 || errno != 0 || !((lo_open ? x > lo : x >= lo) && x <= hi)) {
    // %g: "[0, 1]", not std::to_string's "[0.000000, 1.000000]".
    char range[96];
    std::snprintf(range, sizeof range, "%s%g, %g]", lo_open ? "(" : "[", lo, hi);
    throw InputError(command_ + ": " + flag + " must be a number in " + range + ", got '" + *v + "'");
  }
  return x;
}

std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == ',' || text[i] == '\t' || text[i] == '\n')) i++;
    if (i >= text.size()) break;
    size_t j = i;
    while (j < text.size() && !(text[j] == ' ' || text[j] == ',' || text[j] == '\t' || text[j] == '\n')) j++;
    std::string tok = text.substr(i, j - i);
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(tok.c_str(), &end, 10);
    if (*end != 0 || errno != 0 || v < 0 || v > 0x7fffffff)
      throw InputError(flag + ": '" + tok + "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
    i = j;
  }
  return ids;
}

}  // namespace segpipe
