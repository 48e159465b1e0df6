// Pipeline YAML -> PipelineSpec: the schema of shared/docs/pipeline-yaml.md, checked key by key.
// Rules that need the checkpoint (coverage, bounds, devices that exist) are in validate_pipeline.cpp.
//
// Values are read strictly: an integer is a plain (unquoted) decimal scalar, a boolean is true/false,
// so that `threads: "2"` or `restart: yes` is reported instead of guessed at. Strings may be any
// scalar. Duplicate keys are errors: yaml-cpp keeps both, and silently taking one would hide a typo.
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string_view>

#include "orchestrator/pipeline/pipeline.h"
#include "orchestrator/pipeline/yaml_errors.h"
#include "orchestrator/pipeline/hf_cache.h"
#include "segments/core/input_file.h"

namespace segpipe {

using namespace pipeline_detail;

namespace {

const std::vector<std::string_view> kTopKeys = {"version",  "model",      "tokenizer", "defaults",  "transport",
                                                "segments", "generation", "restart",   "timeout_ms",
                                                "gpu_kernels", "gpu_memory", "hosts"};
const std::vector<std::string_view> kSettingKeys = {"device", "dtype", "threads", "host"};
const std::vector<std::string_view> kHostKeys = {"name", "address"};
const std::vector<std::string_view> kGenerationKeys = {"max_new_tokens", "temperature", "top_k", "top_p", "seed"};
// Every key any segment kind accepts; which kind accepts which is decided in parse_segment().
const std::vector<std::string_view> kSegmentKeys = {"name",   "kind",  "layers", "experts", "max_resident_experts",
                                                    "device", "dtype", "threads", "host"};

constexpr size_t kMaxNameLength = 64;
constexpr size_t kMaxAddressLength = 255;  // a DNS name's limit
constexpr size_t kMaxHosts = 256;

// Segment and host names end up in process titles, shared-memory object names, file names of dumps and
// a launcher's command line: keep them to characters that are safe in all of these.
bool valid_name(const std::string& s) {
  bool ok = !s.empty() && s.size() <= kMaxNameLength && std::isalnum(static_cast<unsigned char>(s[0]));
  for (char c : s) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.');
  return ok;
}
std::string name_rule() {
  return "1 to " + std::to_string(kMaxNameLength) +
         " letters, digits, '_', '-' or '.', starting with a letter or digit";
}

bool contains(const std::vector<std::string_view>& list, std::string_view s) {
  for (std::string_view k : list)
    if (k == s) return true;
  return false;
}

struct Entry {
  std::string key;
  YAML::Node key_node;
  YAML::Node value;
};

// One YAML mapping with its keys in order; `where` completes messages ("in segment 'early'").
struct Mapping {
  std::vector<Entry> entries;
  KeyMarks marks;
  std::string where;
  const Entry* find(std::string_view key) const {
    for (const Entry& e : entries)
      if (e.key == key) return &e;
    return nullptr;
  }
};

class Parser {
 public:
  Parser(std::string source, std::filesystem::path base_dir)
      : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  PipelineSpec parse(const YAML::Node& root);

 private:
  [[noreturn]] void fail(SourceMark m, const std::string& message) const { fail_at(source_, m, message); }
  [[noreturn]] void fail(const YAML::Node& n, const std::string& message) const { fail(to_mark(n.Mark()), message); }

  // `'threads' in segment 'early'`: how a message names a key.
  static std::string key_phrase(const Mapping& map, const Entry& e) {
    return "'" + e.key + "'" + (map.where.empty() ? "" : " " + map.where);
  }
  // A bad value is pointed at, unless it is empty (`key:` with nothing): then the key is.
  static SourceMark value_mark(const Entry& e) {
    return e.value.IsNull() ? to_mark(e.key_node.Mark()) : to_mark(e.value.Mark());
  }

  Mapping read_mapping(const YAML::Node& node, const std::string& what, const std::string& where) const;
  void reject_unknown_keys(const Mapping& map, const std::vector<std::string_view>& known) const;

  std::string read_string(const Mapping& map, const Entry& e) const;
  // The 'name' of list entry `ordinal` (a host, a segment): there, and a valid name; `missing` is
  // the message where it is absent.
  std::string read_entry_name(const Mapping& map, const std::string& ordinal, const std::string& missing) const;
  long long read_integer(const Mapping& map, const Entry& e, long long min, long long max, const char* expected) const;
  double read_number(const Mapping& map, const Entry& e) const;
  bool read_bool(const Mapping& map, const Entry& e) const;
  IndexRange read_range(const Mapping& map, const Entry& e) const;
  template <typename Enum>
  Enum read_choice(const Mapping& map, const Entry& e,
                   std::initializer_list<std::pair<std::string_view, Enum>> choices) const;

  void read_settings(const Mapping& map, SegmentSettings& out) const;
  HostSpec parse_host(const YAML::Node& node, size_t index) const;
  SegmentSpec parse_segment(const YAML::Node& node, size_t index) const;
  GenerationSpec parse_generation(const Entry& e) const;
  std::string resolve(const std::string& path) const {
    return (base_dir_ / std::filesystem::path(path)).lexically_normal().string();
  }

  std::string source_;
  std::filesystem::path base_dir_;
};

Mapping Parser::read_mapping(const YAML::Node& node, const std::string& what, const std::string& where) const {
  if (!node.IsMap()) fail(node, what + " must be a mapping of keys to values");
  Mapping map;
  map.where = where;
  map.marks.self = to_mark(node.Mark());
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) fail(kv.first, "keys" + (where.empty() ? "" : " " + where) + " must be plain words");
    Entry e{kv.first.Scalar(), kv.first, kv.second};
    if (const Entry* first = map.find(e.key)) {
      SourceMark m = to_mark(first->key_node.Mark());
      fail(e.key_node, "duplicate key " + quote_value(e.key) + (where.empty() ? "" : " " + where) + " (first at line " +
                           std::to_string(m.line) + ")");
    }
    map.marks.keys[e.key] = to_mark(e.key_node.Mark());
    map.entries.push_back(std::move(e));
  }
  return map;
}

void Parser::reject_unknown_keys(const Mapping& map, const std::vector<std::string_view>& known) const {
  for (const Entry& e : map.entries) {
    if (contains(known, e.key)) continue;
    fail(e.key_node, (map.where.empty() ? "unknown top-level key " : "unknown key ") + quote_value(e.key) +
                         (map.where.empty() ? "" : " " + map.where) + did_you_mean(e.key, known));
  }
}

std::string Parser::read_string(const Mapping& map, const Entry& e) const {
  if (!e.value.IsScalar()) fail(value_mark(e), key_phrase(map, e) + " must be a string");
  if (!is_printable_utf8(e.value.Scalar()))
    fail(value_mark(e), key_phrase(map, e) + " must be printable UTF-8 text, got " + quote_value(e.value.Scalar()));
  return e.value.Scalar();
}

// Only plain decimal scalars: a quoted "2" is a string, and 0x10 / 1e3 are not what a reader expects
// of a layer index or a thread count.
long long Parser::read_integer(const Mapping& map, const Entry& e, long long min, long long max,
                               const char* expected) const {
  auto bad = [&]() {
    std::string got = e.value.IsScalar() ? ", got " + quote_value(e.value.Scalar()) : "";
    fail(value_mark(e), key_phrase(map, e) + " must be " + expected + got);
  };
  if (!e.value.IsScalar() || e.value.Tag() == "!") bad();
  std::string_view text = e.value.Scalar();
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  long long v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v < min || v > max) bad();
  return v;
}

double Parser::read_number(const Mapping& map, const Entry& e) const {
  auto bad = [&]() {
    std::string got = e.value.IsScalar() ? ", got " + quote_value(e.value.Scalar()) : "";
    fail(value_mark(e), key_phrase(map, e) + " must be a number" + got);
  };
  if (!e.value.IsScalar() || e.value.Tag() == "!") bad();
  std::string_view text = e.value.Scalar();
  if (!text.empty() && text[0] == '+') text.remove_prefix(1);
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) bad();
  return v;
}

bool Parser::read_bool(const Mapping& map, const Entry& e) const {
  if (e.value.IsScalar() && e.value.Tag() != "!") {
    const std::string& s = e.value.Scalar();
    if (s == "true" || s == "True" || s == "TRUE") return true;
    if (s == "false" || s == "False" || s == "FALSE") return false;
  }
  std::string got = e.value.IsScalar() ? ", got " + quote_value(e.value.Scalar()) : "";
  fail(value_mark(e), key_phrase(map, e) + " must be true or false" + got);
}

IndexRange Parser::read_range(const Mapping& map, const Entry& e) const {
  if (!e.value.IsSequence() || e.value.size() != 2)
    fail(value_mark(e), key_phrase(map, e) + " must be [first, last]: two integers, inclusive");
  IndexRange r;
  for (int i = 0; i < 2; ++i) {
    Entry item{e.key, e.key_node, e.value[i]};
    long long v = read_integer(map, item, 0, std::numeric_limits<int>::max(), "[first, last]: two integers >= 0");
    (i == 0 ? r.first : r.last) = static_cast<int>(v);
  }
  if (r.first > r.last)
    fail(value_mark(e), key_phrase(map, e) + " is [" + std::to_string(r.first) + ", " + std::to_string(r.last) +
                            "]: first must not be after last");
  return r;
}

template <typename Enum>
Enum Parser::read_choice(const Mapping& map, const Entry& e,
                         std::initializer_list<std::pair<std::string_view, Enum>> choices) const {
  std::string names;
  for (const auto& [name, value] : choices) {
    if (e.value.IsScalar() && e.value.Scalar() == name) return value;
    names += (names.empty() ? "" : " | ") + std::string(name);
  }
  std::string got, hint;
  if (e.value.IsScalar()) {
    got = ", got " + quote_value(e.value.Scalar());
    std::vector<std::string_view> known;
    for (const auto& choice : choices) known.push_back(choice.first);
    hint = did_you_mean(e.value.Scalar(), known);
  }
  fail(value_mark(e), key_phrase(map, e) + " must be one of " + names + got + hint);
}

void Parser::read_settings(const Mapping& map, SegmentSettings& out) const {
  if (const Entry* e = map.find("device")) {
    // cpu | cuda:N. N is bounded so that the index fits an int; whether the device exists is a
    // question for validate_pipeline (it depends on the machine, not on the file).
    std::string s = read_string(map, *e);
    Device d;
    if (s == "cpu") {
      d.type = Device::Type::cpu;
    } else if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.size() <= 5 + 4 &&
               s.find_first_not_of("0123456789", 5) == std::string::npos) {
      d.type = Device::Type::cuda;
      d.index = std::stoi(s.substr(5));
    } else {
      fail(value_mark(*e), key_phrase(map, *e) + " must be cpu or cuda:N, got " + quote_value(s));
    }
    out.device = d;
  }
  if (const Entry* e = map.find("dtype"))
    out.dtype = read_choice<ComputeDType>(map, *e, {{"float32", ComputeDType::float32}, {"bfloat16", ComputeDType::bfloat16}});
  if (const Entry* e = map.find("threads"))
    out.threads = static_cast<int>(read_integer(map, *e, 1, 4096, "a positive integer (at most 4096)"));
  if (const Entry* e = map.find("host")) {
    // Which entry of `hosts:` it names is checked by validate_pipeline, with the whole file in view.
    std::string s = read_string(map, *e);
    if (!valid_name(s))
      fail(value_mark(*e), key_phrase(map, *e) + " must name an entry of 'hosts' (" + name_rule() + "), got " +
                               quote_value(s));
    out.host = s;
  }
}

std::string Parser::read_entry_name(const Mapping& map, const std::string& ordinal, const std::string& missing) const {
  const Entry* name = map.find("name");
  if (!name) fail(map.marks.self, missing);
  std::string s = read_string(map, *name);
  if (!valid_name(s)) fail(value_mark(*name), "'name' in " + ordinal + " must be " + name_rule() + ", got " + quote_value(s));
  return s;
}

HostSpec Parser::parse_host(const YAML::Node& node, size_t index) const {
  const std::string ordinal = "host #" + std::to_string(index + 1);
  Mapping map = read_mapping(node, ordinal + " in 'hosts'", "in " + ordinal);
  HostSpec h;
  h.marks = map.marks;
  h.name = read_entry_name(map, ordinal, ordinal + " in 'hosts' has no 'name'");
  map.where = "in host '" + h.name + "'";
  reject_unknown_keys(map, kHostKeys);
  if (const Entry* e = map.find("address")) {
    // Handed to the launcher as one word of its host list: no blanks, no separators, no option syntax.
    std::string a = read_string(map, *e);
    bool ok = !a.empty() && a.size() <= kMaxAddressLength && a[0] != '-';
    for (char c : a)
      ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == ':' ||
                  c == '[' || c == ']');
    if (!ok)
      fail(value_mark(*e), key_phrase(map, *e) +
                               " must be a host name or an IP address (letters, digits, '.', '-', '_', ':', '[', ']'; "
                               "at most " + std::to_string(kMaxAddressLength) + " characters), got " + quote_value(a));
    h.address = a;
  }
  return h;
}

SegmentSpec Parser::parse_segment(const YAML::Node& node, size_t index) const {
  std::string ordinal = "segment #" + std::to_string(index + 1);
  Mapping map = read_mapping(node, ordinal, "in " + ordinal);
  SegmentSpec seg;
  seg.marks = map.marks;

  seg.name = read_entry_name(map, ordinal, ordinal + " has no 'name'");
  map.where = "in segment '" + seg.name + "'";

  const Entry* kind = map.find("kind");
  if (!kind) fail(map.marks.self, "segment '" + seg.name + "' has no 'kind' (embeddings | layers | experts | lm_head | audio_encoder | vision_encoder)");
  seg.kind = read_choice<SegmentKind>(map, *kind,
                                      {{"embeddings", SegmentKind::embeddings},
                                       {"layers", SegmentKind::layers},
                                       {"experts", SegmentKind::experts},
                                       {"lm_head", SegmentKind::lm_head},
                                       {"audio_encoder", SegmentKind::audio_encoder},
                                       {"vision_encoder", SegmentKind::vision_encoder}});

  const bool has_layers = seg.kind == SegmentKind::layers || seg.kind == SegmentKind::experts;
  reject_unknown_keys(map, kSegmentKeys);
  for (const Entry& e : map.entries) {
    bool per_layer_key = e.key == "layers" || e.key == "experts" || e.key == "max_resident_experts";
    if (per_layer_key && !has_layers)
      fail(e.key_node, "key '" + e.key + "' is not allowed in " + to_string(seg.kind) + " segment '" + seg.name +
                           "' (only in layers and experts segments)");
  }

  if (has_layers) {
    const Entry* layers = map.find("layers");
    if (!layers)
      fail(map.marks.self,
           to_string(seg.kind) + std::string(" segment '") + seg.name + "' has no 'layers: [first, last]'");
    seg.layers = read_range(map, *layers);
  }
  if (const Entry* experts = map.find("experts")) {
    if (seg.kind == SegmentKind::layers) {
      if (experts->value.IsSequence())
        fail(value_mark(*experts), "'experts' in layers segment '" + seg.name +
                                       "' must be local or banks ([first, last] ranges belong to experts segments)");
      seg.placement = read_choice<ExpertPlacement>(
          map, *experts, {{"local", ExpertPlacement::local}, {"banks", ExpertPlacement::banks}});
    } else {
      seg.experts = read_range(map, *experts);
    }
  } else if (seg.kind == SegmentKind::experts) {
    fail(map.marks.self, "experts segment '" + seg.name + "' has no 'experts: [first, last]'");
  }
  if (const Entry* e = map.find("max_resident_experts"))
    seg.max_resident_experts =
        static_cast<int>(read_integer(map, *e, 1, std::numeric_limits<int>::max(), "a positive integer"));
  read_settings(map, seg.settings);
  return seg;
}

GenerationSpec Parser::parse_generation(const Entry& entry) const {
  Mapping map = read_mapping(entry.value, "'generation'", "in 'generation'");
  reject_unknown_keys(map, kGenerationKeys);
  GenerationSpec g;
  g.marks = map.marks;
  constexpr long long kIntMax = std::numeric_limits<int>::max();
  if (const Entry* e = map.find("max_new_tokens"))
    g.max_new_tokens = static_cast<int>(read_integer(map, *e, 1, kIntMax, "an integer >= 1"));
  if (const Entry* e = map.find("temperature")) {
    g.temperature = read_number(map, *e);
    if (*g.temperature < 0) fail(value_mark(*e), key_phrase(map, *e) + " must be >= 0 (0 = greedy)");
  }
  if (const Entry* e = map.find("top_k"))
    g.top_k = static_cast<int>(read_integer(map, *e, 0, kIntMax, "an integer >= 0 (0 = off)"));
  if (const Entry* e = map.find("top_p")) {
    g.top_p = read_number(map, *e);
    if (!(*g.top_p > 0 && *g.top_p <= 1)) fail(value_mark(*e), key_phrase(map, *e) + " must be in (0, 1]");
  }
  if (const Entry* e = map.find("seed")) {
    // A seed is a full 64-bit value; read it apart from read_integer's signed range.
    if (!e->value.IsScalar() || e->value.Tag() == "!")
      fail(value_mark(*e), key_phrase(map, *e) + " must be an integer >= 0");
    std::string_view text = e->value.Scalar();
    std::uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size())
      fail(value_mark(*e), key_phrase(map, *e) + " must be an integer from 0 to 2^64-1, got " + quote_value(text));
    g.seed = v;
  }
  return g;
}

PipelineSpec Parser::parse(const YAML::Node& root) {
  if (root.IsNull()) fail(root, "empty pipeline file (expected 'version: 1', 'model' and 'segments')");
  Mapping map = read_mapping(root, "a pipeline file", "");
  PipelineSpec spec;
  spec.source = source_;
  spec.marks = map.marks;

  // The version comes before the unknown-key check: a newer file should say it is newer, not that
  // its new keys are unknown.
  const Entry* version = map.find("version");
  if (!version) fail(map.marks.self, "missing key 'version' (this reader knows version 1)");
  long long v =
      read_integer(map, *version, std::numeric_limits<int>::min(), std::numeric_limits<int>::max(), "the integer 1");
  if (v != 1) fail(value_mark(*version), "'version' is " + std::to_string(v) + ", this reader knows version 1");
  spec.version = 1;
  reject_unknown_keys(map, kTopKeys);

  const Entry* model = map.find("model");
  if (!model) fail(map.marks.self, "missing key 'model' (the checkpoint folder)");
  spec.model = read_string(map, *model);
  if (spec.model.empty()) fail(value_mark(*model), "'model' must not be empty");
  // A folder (relative to this file), or a Hugging Face repository id found in the local cache.
  try {
    spec.model_dir = hf::resolve_model(spec.model, resolve(spec.model));
  } catch (const InputError& e) {
    fail(value_mark(*model), e.what());
  }
  spec.tokenizer_dir = spec.model_dir;
  if (const Entry* e = map.find("tokenizer")) {
    spec.tokenizer = read_string(map, *e);
    if (spec.tokenizer->empty()) fail(value_mark(*e), "'tokenizer' must not be empty");
    spec.tokenizer_dir = resolve(*spec.tokenizer);
  }

  if (const Entry* e = map.find("defaults")) {
    Mapping defaults = read_mapping(e->value, "'defaults'", "in 'defaults'");
    reject_unknown_keys(defaults, kSettingKeys);
    read_settings(defaults, spec.defaults);
    spec.defaults_marks = defaults.marks;
  }
  if (const Entry* e = map.find("transport"))
    spec.transport = read_choice<Transport>(map, *e, {{"shm", Transport::shm}, {"inproc", Transport::inproc}});
  if (const Entry* e = map.find("gpu_kernels"))
    spec.gpu_kernels =
        read_choice<GpuKernels>(map, *e, {{"auto", GpuKernels::automatic}, {"portable", GpuKernels::portable}});
  if (const Entry* e = map.find("gpu_memory"))
    spec.gpu_memory = read_choice<GpuMemory>(
        map, *e, {{"auto", GpuMemory::automatic}, {"device", GpuMemory::device}, {"unified", GpuMemory::unified}});
  if (const Entry* e = map.find("hosts")) {
    if (!e->value.IsSequence() || e->value.size() == 0)
      fail(value_mark(*e), "'hosts' must be a non-empty list of hosts ({name, address})");
    if (e->value.size() > kMaxHosts)
      fail(value_mark(*e), "'hosts' lists " + std::to_string(e->value.size()) + " hosts, more than the limit of " +
                               std::to_string(kMaxHosts));
    spec.hosts.emplace();
    for (size_t i = 0; i < e->value.size(); ++i) spec.hosts->push_back(parse_host(e->value[i], i));
  }
  if (const Entry* e = map.find("restart")) spec.restart = read_bool(map, *e);
  if (const Entry* e = map.find("timeout_ms"))
    spec.timeout_ms = static_cast<int>(
        read_integer(map, *e, 1, std::numeric_limits<int>::max(), "a positive integer (milliseconds)"));

  const Entry* segments = map.find("segments");
  if (!segments) fail(map.marks.self, "missing key 'segments'");
  if (!segments->value.IsSequence() || segments->value.size() == 0)
    fail(value_mark(*segments), "'segments' must be a non-empty list of segments");
  for (size_t i = 0; i < segments->value.size(); ++i) spec.segments.push_back(parse_segment(segments->value[i], i));

  if (const Entry* e = map.find("generation")) spec.generation = parse_generation(*e);
  return spec;
}

// A pipeline nests four levels at most (segments -> segment -> layers -> value); deeper input is
// refused while it is read, with a message that says so (yaml-cpp's own depth guard says "bad file").
constexpr int kMaxNesting = 32;

[[noreturn]] void too_deep(const std::string& source, const YAML::Mark& m) {
  fail_at(source, to_mark(m), "YAML nested more than " + std::to_string(kMaxNesting) +
                                   " levels deep (a pipeline nests at most 4)");
}

// Notes where each document starts and how deep it nests; the events themselves are not needed.
struct DocumentStarts : YAML::EventHandler {
  explicit DocumentStarts(const std::string& src) : source(src) {}
  const std::string& source;
  YAML::Mark start;
  int depth = 0;
  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    enter(m);
  }
  void OnSequenceEnd() override { depth--; }
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override { enter(m); }
  void OnMapEnd() override { depth--; }
  void enter(const YAML::Mark& m) {
    if (++depth > kMaxNesting) too_deep(source, m);
  }
};

// A pipeline is one YAML document. This walks the documents itself instead of calling
// YAML::LoadAll, because yaml-cpp 0.7 reports a stray flow token (a lone ',') as an endless series
// of empty documents that consume nothing: LoadAll then never returns.
void check_one_document(const std::string& text, const std::string& source) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts doc(source);
  int documents = 0;
  int previous_start = -1;
  while (parser.HandleNextDocument(doc)) {
    if (doc.start.pos == previous_start) {
      size_t at = static_cast<size_t>(doc.start.pos);
      std::string token = at < text.size() ? quote_value(text.substr(at, 1)) : "end of file";
      fail_at(source, to_mark(doc.start), "YAML syntax error: unexpected " + token);
    }
    previous_start = doc.start.pos;
    if (++documents > 1)
      fail_at(source, to_mark(doc.start), "a pipeline file holds one YAML document, found a second one");
  }
}

}  // namespace

PipelineSpec parse_pipeline_string(const std::string& text, const std::string& source, const std::string& base_dir) {
  if (text.size() > kMaxPipelineBytes)
    throw InputError(source + ": pipeline file of " + std::to_string(text.size()) + " bytes, more than the limit of " +
                     std::to_string(kMaxPipelineBytes) + " bytes");
  YAML::Node root;
  try {
    check_one_document(text, source);
    root = YAML::Load(text);
  } catch (const YAML::DeepRecursion& e) {
    too_deep(source, e.mark);
  } catch (const YAML::Exception& e) {
    // ParserException and the depth guard's DeepRecursion both carry the position of the fault.
    fail_at(source, to_mark(e.mark), "YAML syntax error: " + e.msg);
  }
  try {
    return Parser(source, base_dir).parse(root);
  } catch (const YAML::Exception& e) {
    // Reading a well-formed tree should not throw; if yaml-cpp does on some odd input (aliases,
    // tags), it is still bad input, not a crash.
    fail_at(source, to_mark(e.mark), "malformed pipeline: " + e.msg);
  }
}

PipelineSpec parse_pipeline_file(const std::string& path) {
  const std::string text = read_input_file(path, kMaxPipelineBytes, "pipeline file");
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  return parse_pipeline_string(text, path, dir.empty() ? "." : dir.string());
}

}  // namespace segpipe
