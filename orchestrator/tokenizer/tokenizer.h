// segpipe::Tokenizer: the Hugging Face byte-level BPE tokenizer of Qwen2/Qwen3 checkpoints, read from
// tokenizer.json (+ tokenizer_config.json), giving the same ids as `tokenizers` does.
//
// encode(text) = added tokens split out of the raw text -> NFC on the text between them -> split regex
//                -> BPE over the bytes of each piece. No BOS/EOS is added (add_special_tokens=False).
// decode(ids)  = the bytes of each token joined, then UTF-8 with U+FFFD for ill-formed bytes (as HF).
// StreamDecoder (stream_decoder.h) decodes token by token without ever printing half a character.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace segpipe {

class Tokenizer {
 public:
  // PATH is a folder holding tokenizer.json (and optionally tokenizer_config.json) or the tokenizer.json
  // file itself (a tokenizer_config.json beside it is read too). Throws segpipe::InputError with one line
  // naming the file and key for anything missing, malformed or unsupported.
  static Tokenizer load(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Thread-safe. Throws InputError when `text` is not valid UTF-8.
  std::vector<int32_t> encode(std::string_view text) const;
  // Throws InputError for an id outside [0, vocab_size()) or without a token.
  std::string decode(std::span<const int32_t> ids) const;
  // The raw bytes one token stands for (may be part of a UTF-8 sequence). Same errors as decode.
  const std::string& token_bytes(int32_t id) const;

  // One past the largest id, added tokens included (151669 for Qwen3).
  int32_t vocab_size() const;
  // Added tokens by their text, vocabulary tokens by their byte-level spelling ("Ġthe").
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;

  bool is_added(int32_t id) const;                   // any added token (<|im_start|>, <think>, ...)
  bool is_special(int32_t id) const;                 // added tokens flagged special
  const std::vector<int32_t>& special_token_ids() const;
  std::optional<int32_t> eos_token_id() const;       // tokenizer_config.json eos_token
  std::optional<int32_t> pad_token_id() const;       // tokenizer_config.json pad_token
  std::optional<int32_t> bos_token_id() const;       // tokenizer_config.json bos_token
  // Ids that end generation: eos_token, plus <|endoftext|> and <|im_end|> when the vocabulary has them
  // (Qwen's generation_config.json lists both; a chat model may emit either).
  std::vector<int32_t> stop_token_ids() const;

  const std::optional<std::string>& chat_template() const;  // tokenizer_config.json chat_template
  const std::string& tokenizer_json_path() const;
  const std::string& config_path() const;  // empty when there is no tokenizer_config.json

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace segpipe
