// generate's --audio FILE and --image FILE: each file decoded and processed as the checkpoint's
// processor does (media/: the Whisper log-mel features; the Qwen2-VL image processor), and its
// placeholder block put into the prompt (the count the reference's processor writes).
#pragma once
#include <string>
#include <vector>

#include "orchestrator/commands/commands.h"
#include "orchestrator/drivers/step_media.h"

namespace segpipe {

// The --audio and --image files of `args`, in command-line order, processed for the checkpoint in
// model_dir (its config.json and, where present, preprocessor_config.json). InputError naming the file
// or key for anything unreadable or inconsistent.
std::vector<MediaInput> load_media_args(const Args& args, const std::string& model_dir);

// Each medium's block (start token, its placeholders, end token), in order, inserted into ids at `at`.
std::vector<int32_t> insert_media_blocks(const std::vector<int32_t>& ids, size_t at,
                                         const std::vector<MediaInput>& media, const std::string& model_dir);

}  // namespace segpipe
