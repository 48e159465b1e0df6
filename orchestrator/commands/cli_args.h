// Minimal flag parser for the segpipe commands: "--flag value", "--flag=value", repeated flags,
// boolean switches, and positional arguments. Unknown flags and missing values are InputErrors
// (exit 2) naming the flag.
#pragma once
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace segpipe {

class CliArgs {
 public:
  // value_flags take a value; switches do not. Names include the leading "--".
  CliArgs(const std::string& command, const std::vector<std::string>& args, const std::set<std::string>& value_flags,
          const std::set<std::string>& switches);
  bool has(const std::string& flag) const { return values_.count(flag) || switches_.count(flag); }
  std::optional<std::string> get(const std::string& flag) const;
  std::string get_or(const std::string& flag, const std::string& dflt) const;
  std::vector<std::string> all(const std::string& flag) const;
  const std::vector<std::string>& positional() const { return positional_; }
  // Typed getters: a malformed number is an InputError naming the flag.
  long long get_int(const std::string& flag, long long dflt, long long lo, long long hi) const;
  // A number in [lo, hi], or in (lo, hi] when lo_open (e.g. --top-p, where 0 keeps no token).
  double get_double(const std::string& flag, double dflt, double lo, double hi, bool lo_open = false) const;
  bool help() const { return help_; }

 private:
  std::string command_;
  std::map<std::string, std::vector<std::string>> values_;
  std::set<std::string> switches_;
  std::vector<std::string> positional_;
  bool help_ = false;
};

// Parses "1 2 3" (spaces or commas) into token ids; a non-number is an InputError naming the flag.
std::vector<int32_t> parse_id_list(const std::string& text, const std::string& flag);

}  // namespace segpipe
