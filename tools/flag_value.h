// The benchmark tools' flag parsing: "--flag VALUE", where a missing value ends the tool with exit 2
// naming the flag (the tools take their flags by hand, without the segpipe commands' CliArgs).
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string>

namespace segpipe::tools {

// The value after the flag at argv[i], advancing i past it. `program` prefixes the message when given.
inline std::string flag_value(int argc, char** argv, int& i, const std::string& program = "") {
  if (i + 1 >= argc) {
    std::fprintf(stderr, "%s%s needs a value\n", program.empty() ? "" : (program + ": ").c_str(), argv[i]);
    std::exit(2);
  }
  return argv[++i];
}

}  // namespace segpipe::tools
