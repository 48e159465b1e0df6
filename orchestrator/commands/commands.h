// One function per segpipe command; args are the arguments after the command name. Each returns
// the exit code (0 ok, 1 a check failed) and throws InputError / RuntimeFailure for exit 2 / 3.
#pragma once
#include <string>
#include <vector>

namespace segpipe {

using Args = std::vector<std::string>;
int cmd_verify(const Args& args);
int cmd_inspect(const Args& args);
int cmd_make_model(const Args& args);
int cmd_generate(const Args& args);
int cmd_plan(const Args& args);
int cmd_bench(const Args& args);
int cmd_dump(const Args& args);
int cmd_run_segment(const Args& args);
int cmd_memory(const Args& args);
int cmd_eval(const Args& args);

}  // namespace segpipe
