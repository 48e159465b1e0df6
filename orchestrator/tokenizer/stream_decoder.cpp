#include "orchestrator/tokenizer/stream_decoder.h"

#include "orchestrator/tokenizer/utf8.h"

namespace segpipe {

std::string StreamDecoder::push(int32_t id) { return push(std::span<const int32_t>(&id, 1)); }

std::string StreamDecoder::push(std::span<const int32_t> ids) {
  std::string bytes;  // gathered first, so a bad id leaves the decoder as it was
  for (int32_t id : ids) bytes += tok_->token_bytes(id);
  pending_ += bytes;
  std::string out;
  const size_t used = utf8::append_lossy(pending_, out, /*final=*/false);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out;
  utf8::append_lossy(pending_, out, /*final=*/true);
  pending_.clear();
  return out;
}

}  // namespace segpipe
