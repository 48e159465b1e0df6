#include "orchestrator/tokenizer/tokenizer.h"

#include <algorithm>
#include <deque>
#include <unordered_map>

#include "orchestrator/tokenizer/added_tokens.h"
#include "orchestrator/tokenizer/bpe.h"
#include "orchestrator/tokenizer/byte_level.h"
#include "orchestrator/tokenizer/normalizer.h"
#include "orchestrator/tokenizer/pretokenizer.h"
#include "orchestrator/tokenizer/tokenizer_json.h"
#include "orchestrator/tokenizer/utf8.h"
#include "segments/core/errors.h"

namespace segpipe {

using namespace tok;

struct Tokenizer::Impl {
  TokenizerJson json;  // vocab and merges; Bpe keeps a pointer to json.vocab
  TokenizerConfigJson config;
  std::unique_ptr<Bpe> bpe;
  std::unique_ptr<PreTokenizer> pre;
  std::unique_ptr<AddedTokenMatcher> raw_added;         // normalized=false: matched before NFC
  std::unique_ptr<AddedTokenMatcher> normalized_added;  // normalized=true: matched after NFC
  std::unordered_map<std::string, int32_t> added_by_content;
  std::vector<std::string> spelling;  // id -> token as written in tokenizer.json ("" for a hole)
  std::vector<std::string> bytes;     // id -> raw bytes
  std::vector<uint8_t> present;       // id -> 1 when the id has a token
  std::vector<uint8_t> special;
  std::vector<int32_t> special_ids;
  std::optional<int32_t> eos, pad, bos;

  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;
  // The id of a token named in tokenizer_config.json (eos_token, ...), looked up as an added token first.
  std::optional<int32_t> lookup(const std::optional<std::string>& name, const char* key) const {
    if (!name) return std::nullopt;
    if (auto it = added_by_content.find(*name); it != added_by_content.end()) return it->second;
    if (auto it = json.vocab.find(byte_level::bytes_to_token(*name)); it != json.vocab.end()) return it->second;
    throw InputError(config.path + ": key '" + key + "': token '" + *name + "' is not in the vocabulary");
  }
};

void Tokenizer::Impl::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  std::string norm_storage;
  const std::string_view norm = normalize(text, json.normalizers, norm_storage);
  std::vector<AddedTokenMatcher::Segment> segs;
  if (normalized_added->empty()) segs.push_back({0, norm.size(), -1});
  else normalized_added->split(norm, segs);
  std::vector<std::string_view> pieces;
  std::deque<std::string> piece_storage;
  for (const auto& s : segs) {
    if (s.id >= 0) {
      out.push_back(s.id);
      continue;
    }
    pieces.clear();
    pre->split(norm.substr(s.start, s.end - s.start), pieces, piece_storage);
    for (std::string_view p : pieces) bpe->encode_piece(p, out);
  }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  const auto [json_path, config_path] = locate_tokenizer_files(path);

  auto m = std::make_unique<Impl>();
  m->json = read_tokenizer_json(json_path);
  if (!config_path.empty()) m->config = read_tokenizer_config_json(config_path);
  TokenizerJson& j = m->json;

  // tokenizer_config.json may declare added tokens that tokenizer.json lacks (transformers adds them).
  for (const AddedToken& t : m->config.added_tokens_decoder)
    if (std::none_of(j.added_tokens.begin(), j.added_tokens.end(), [&](const AddedToken& a) { return a.id == t.id; }))
      j.added_tokens.push_back(t);

  int32_t max_id = -1;
  for (const auto& [tok, id] : j.vocab) max_id = std::max(max_id, id);
  for (const AddedToken& t : j.added_tokens) max_id = std::max(max_id, t.id);
  const auto n = static_cast<size_t>(max_id) + 1;
  m->spelling.assign(n, std::string());
  m->bytes.assign(n, std::string());
  m->present.assign(n, 0);
  m->special.assign(n, 0);
  for (const auto& [tok, id] : j.vocab) {
    m->spelling[id] = tok;
    m->bytes[id] = byte_level::token_to_bytes(tok);
    m->present[id] = 1;
  }
  std::vector<AddedToken> raw, normalized;
  for (const AddedToken& t : j.added_tokens) {
    m->spelling[t.id] = t.content;
    // The decoder maps an added token's characters through the byte-level alphabet too, falling back
    // to its UTF-8 when a character is outside it: "<|im_start|>" decodes to itself either way.
    m->bytes[t.id] = byte_level::token_to_bytes(t.content);
    m->present[t.id] = 1;
    m->added_by_content[t.content] = t.id;
    if (t.special) {
      m->special[t.id] = 1;
      m->special_ids.push_back(t.id);
    }
    (t.normalized ? normalized : raw).push_back(t);
  }
  std::sort(m->special_ids.begin(), m->special_ids.end());
  m->raw_added = std::make_unique<AddedTokenMatcher>(std::move(raw));
  m->normalized_added = std::make_unique<AddedTokenMatcher>(std::move(normalized));
  m->bpe = std::make_unique<Bpe>(j);
  m->bpe->set_vocab(&j.vocab);
  m->pre = std::make_unique<PreTokenizer>(j.pre_tokenizers, json_path);
  // Merges are resolved to ids now; the strings are no longer needed.
  j.merges.clear();
  j.merges.shrink_to_fit();

  m->eos = m->lookup(m->config.eos_token, "eos_token");
  m->pad = m->lookup(m->config.pad_token, "pad_token");
  m->bos = m->lookup(m->config.bos_token, "bos_token");
  return Tokenizer(std::move(m));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  if (const size_t bad = utf8::find_invalid(text); bad != std::string_view::npos)
    throw InputError("text: invalid UTF-8 at byte " + std::to_string(bad));
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  std::vector<AddedTokenMatcher::Segment> segs;
  if (impl_->raw_added->empty()) segs.push_back({0, text.size(), -1});
  else impl_->raw_added->split(text, segs);
  for (const auto& s : segs) {
    if (s.id >= 0) out.push_back(s.id);
    else impl_->encode_plain(text.substr(s.start, s.end - s.start), out);
  }
  return out;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw InputError("token id " + std::to_string(id) + " is out of range [0, " + std::to_string(vocab_size()) + ")");
  if (!impl_->present[id]) throw InputError("token id " + std::to_string(id) + " has no token in the vocabulary");
  return impl_->bytes[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string raw;
  for (int32_t id : ids) raw += token_bytes(id);
  return utf8::lossy(raw);
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->spelling.size()); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(std::string(token)); it != impl_->added_by_content.end()) return it->second;
  if (auto it = impl_->json.vocab.find(std::string(token)); it != impl_->json.vocab.end()) return it->second;
  return std::nullopt;
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !impl_->present[id]) return std::nullopt;
  return impl_->spelling[id];
}

bool Tokenizer::is_added(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->added_by_content.count(impl_->spelling[id]) != 0 &&
         impl_->added_by_content.at(impl_->spelling[id]) == id;
}
bool Tokenizer::is_special(int32_t id) const { return id >= 0 && id < vocab_size() && impl_->special[id]; }
const std::vector<int32_t>& Tokenizer::special_token_ids() const { return impl_->special_ids; }
std::optional<int32_t> Tokenizer::eos_token_id() const { return impl_->eos; }
std::optional<int32_t> Tokenizer::pad_token_id() const { return impl_->pad; }
std::optional<int32_t> Tokenizer::bos_token_id() const { return impl_->bos; }

std::vector<int32_t> Tokenizer::stop_token_ids() const {
  std::vector<int32_t> ids;
  if (impl_->eos) ids.push_back(*impl_->eos);
  for (const char* name : {"<|im_end|>", "<|endoftext|>"})
    if (auto it = impl_->added_by_content.find(name); it != impl_->added_by_content.end()) ids.push_back(it->second);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

const std::optional<std::string>& Tokenizer::chat_template() const { return impl_->config.chat_template; }
const std::string& Tokenizer::tokenizer_json_path() const { return impl_->json.path; }
const std::string& Tokenizer::config_path() const { return impl_->config.path; }

}  // namespace segpipe
