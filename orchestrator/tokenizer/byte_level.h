// The GPT-2 "byte level" alphabet: every byte 0..255 is shown as one printable Unicode character, so
// that vocabularies can be stored as JSON strings. Printable Latin-1 bytes map to themselves; the other
// 68 bytes (controls, space, 0x7F-0xA0, 0xAD) map to U+0100.. in order. Tokens in tokenizer.json are
// spelled in this alphabet; the encoder works on raw bytes and only needs the table at load time.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace segpipe::byte_level {

// The character that stands for byte b.
char32_t byte_to_char(uint8_t b);
// The byte that character c stands for, if c is one of the 256 alphabet characters.
std::optional<uint8_t> char_to_byte(char32_t c);

// Raw bytes spelled by a token in the byte-level alphabet. If any character is outside the alphabet
// (added tokens such as "<|im_start|>" are stored as plain text) the token's own UTF-8 is returned,
// exactly as the Hugging Face ByteLevel decoder does.
std::string token_to_bytes(std::string_view token);
// The byte-level spelling of raw bytes (the inverse for tokens in the alphabet).
std::string bytes_to_token(std::string_view bytes);

}  // namespace segpipe::byte_level
