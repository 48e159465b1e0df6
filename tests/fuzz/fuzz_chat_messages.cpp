// Fuzz target: the chat messages JSON of `segpipe chat-template --messages FILE`
// (orchestrator/tokenizer/chat_template.h parse_chat_messages, then the Qwen3 template). Invalid JSON
// is bad input as the command reports it; parse_chat_messages may only throw InputError, and
// messages it accepts must render.
#include <cstdint>
#include <nlohmann/json.hpp>

#include "fuzz_support.h"
#include "orchestrator/tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  const auto parsed = fuzz::parse_json_input<nlohmann::ordered_json>(data, size);
  if (!parsed) return 0;  // not JSON: chat-template reports "--messages FILE: malformed JSON" (exit 2)
  const nlohmann::ordered_json& j = *parsed;
  fuzz::only_input_errors("chat messages", [&] {
    const auto messages = parse_chat_messages(j, "fuzz/messages.json");
    FUZZ_INVARIANT(!messages.empty());
    for (bool gen : {false, true})
      for (bool think : {false, true}) (void)render_chat(messages, gen, think);
  });
  return 0;
}
