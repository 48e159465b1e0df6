// Fuzz target: tokenizer.json (orchestrator/tokenizer/tokenizer_json.h, Tokenizer::load). The input
// is written as a tokenizer.json file and loaded; only InputError may escape, and an accepted
// tokenizer must encode and decode a few texts (ids inside its vocabulary) without failing otherwise.
#include <cstdint>
#include <string>

#include "fuzz_write.h"
#include "orchestrator/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace segpipe;
  const std::string path = fuzz::write_input("tokenizer.json", data, size);
  if (path.empty()) return 0;
  fuzz::only_input_errors("tokenizer.json", [&] {
    Tokenizer t = Tokenizer::load(path);
    for (const char* text : {"Hello, world!", "2 + 2 = 4.\n", "<|im_start|>user\nhi<|im_end|>", "\xff\xfe caf\xc3\xa9"}) {
      const std::vector<int32_t> ids = t.encode(text);
      fuzz::only_input_errors("decode", [&] { (void)t.decode(ids); });
    }
  });
  return 0;
}
