// The tokenize, detokenize and chat-template commands of `segpipe` (flags as in shared/docs/cli.md).
// `args` are the arguments after the command name. Output goes to std::cout. Each returns 0 on success
// (and for --help); bad usage or input throws segpipe::InputError with one line naming the flag, file or
// key, which the main program turns into exit code 2.
#pragma once
#include <string>
#include <vector>

namespace segpipe {

int cmd_tokenize(const std::vector<std::string>& args);
int cmd_detokenize(const std::vector<std::string>& args);
int cmd_chat_template(const std::vector<std::string>& args);

}  // namespace segpipe
