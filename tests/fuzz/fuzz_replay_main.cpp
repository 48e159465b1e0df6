// A main() for the fuzz targets where libFuzzer is not available (gcc CI): feeds every seed, then
// ROUNDS deterministic mutations of them — bit flips, byte edits, truncations, insertions, deletions,
// splices of two seeds, numbers in the text replaced by boundary values (offsets, shapes, sizes) and
// string literals by other strings or other types; safetensors files are mutated inside their header.
// usage: PROGRAM ROUNDS SEED_FILE_OR_DIR...
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void feed(const std::string& s) { LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

const char* const kNumbers[] = {"0", "1", "-1", "2", "7", "8", "255", "256", "65535", "65536", "2147483647", "2147483648",
                                "-2147483648", "4294967295", "4294967296", "4611686018427387904", "9223372036854775807",
                                "9223372036854775808", "-9223372036854775808", "18446744073709551615",
                                "18446744073709551616", "100000000", "100000001", "1e308", "1e400", "-0", "0.5", "1.0",
                                "3.4e38", "null", "true", "\"7\"", "[]", "{}"};

// Replaces the n-th run of digits (with an optional leading '-') by a boundary value or a neighbour.
std::string replace_number(const std::string& s, std::mt19937_64& rng) {
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t i = 0; i < s.size();) {
    if (s[i] >= '0' && s[i] <= '9') {
      size_t j = i;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') j++;
      runs.push_back({i, j});
      i = j;
    } else {
      i++;
    }
  }
  if (runs.empty()) return s;
  auto [b, e] = runs[rng() % runs.size()];
  std::string rep;
  if (rng() % 3 == 0 && e - b < 18) {
    long long v = std::stoll(s.substr(b, e - b));
    long long delta = static_cast<long long>(rng() % 9) - 4;
    rep = std::to_string(v + delta);
  } else {
    rep = kNumbers[rng() % std::size(kNumbers)];
  }
  return s.substr(0, b) + rep + s.substr(e);
}

const char* const kStrings[] = {"\"\"", "\"F32\"", "\"BF16\"", "\"I64\"", "\"F8_E4M3\"", "\"__metadata__\"",
                                "\"layers.99999999999.output\"", "\"layers.4.router_logits\"", "\"yarn\"",
                                "\"qwen3_moe\"", "\"default\"", "\"silu\"", "\"\\u0000\"", "-3", "1.5", "[1,2]", "{}",
                                "null", "false"};

// Replaces one JSON string literal (a key or a value) by another string or by a value of another type.
std::string replace_string(const std::string& s, std::mt19937_64& rng) {
  std::vector<std::pair<size_t, size_t>> lits;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] != '"') continue;
    size_t j = i + 1;
    while (j < s.size() && s[j] != '"') j += s[j] == '\\' ? 2 : 1;
    if (j >= s.size()) break;
    lits.push_back({i, j + 1});
    i = j;
  }
  if (lits.empty()) return s;
  auto [b, e] = lits[rng() % lits.size()];
  return s.substr(0, b) + (rng() % 2 ? kStrings[rng() % std::size(kStrings)] : kNumbers[rng() % std::size(kNumbers)]) +
         s.substr(e);
}

std::string mutate_bytes(std::string s, const std::vector<std::string>& seeds, std::mt19937_64& rng);

// Inputs that are whole safetensors files (8-byte header length, header, data) are mutated inside
// the header half of the time, and the length is fixed up, so the mutations reach past the framing.
std::string mutate(const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  std::string s = seeds[rng() % seeds.size()];
  if (s.size() >= 10 && s[8] == '{' && rng() % 2) {
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | static_cast<unsigned char>(s[static_cast<size_t>(i)]);
    if (n <= s.size() - 8) {
      std::string header = mutate_bytes(s.substr(8, n), seeds, rng);
      std::string len(8, '\0');
      for (int i = 0; i < 8; i++) len[static_cast<size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
      return len + header + s.substr(8 + n);
    }
  }
  return mutate_bytes(std::move(s), seeds, rng);
}

std::string mutate_bytes(std::string s, const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  int edits = 1 + static_cast<int>(rng() % 4);
  for (int k = 0; k < edits; k++) {
    switch (rng() % 11) {
      case 0:  // bit flip
        if (!s.empty()) s[rng() % s.size()] ^= static_cast<char>(1u << (rng() % 8));
        break;
      case 1:  // byte set to an interesting value
        if (!s.empty()) {
          const char v[] = {'\0', '\xff', '"', '{', '}', '[', ']', ',', ':', '-', '9', '\\', 'e'};
          s[rng() % s.size()] = v[rng() % sizeof v];
        }
        break;
      case 2:  // truncate
        s.resize(s.empty() ? 0 : rng() % s.size());
        break;
      case 3: {  // insert random bytes
        size_t at = s.empty() ? 0 : rng() % (s.size() + 1);
        std::string ins(1 + rng() % 8, '\0');
        for (auto& c : ins) c = static_cast<char>(rng());
        s.insert(at, ins);
        break;
      }
      case 4:  // delete a chunk
        if (!s.empty()) {
          size_t at = rng() % s.size();
          s.erase(at, 1 + rng() % std::min<size_t>(64, s.size() - at));
        }
        break;
      case 5: {  // splice: a prefix of this input and a suffix of another seed
        const std::string& o = seeds[rng() % seeds.size()];
        size_t a = s.empty() ? 0 : rng() % s.size(), b = o.empty() ? 0 : rng() % o.size();
        s = s.substr(0, a) + o.substr(b);
        break;
      }
      case 6:
      case 7:  // numbers: offsets, shapes, sizes
        s = replace_number(s, rng);
        break;
      case 8:
      case 9:  // strings: names, dtypes, types of values
        s = replace_string(s, rng);
        break;
      default: {  // duplicate a chunk (repeated keys, repeated entries)
        if (s.size() > 2) {
          size_t a = rng() % s.size(), n = 1 + rng() % std::min<size_t>(200, s.size() - a);
          s.insert(rng() % s.size(), s.substr(a, n));
        }
        break;
      }
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s ROUNDS SEED_FILE_OR_DIR...\n", argv[0]);
    return 2;
  }
  const int rounds = std::atoi(argv[1]);
  std::vector<std::string> seeds;
  for (int i = 2; i < argc; i++) {
    fs::path p = argv[i];
    if (fs::is_directory(p)) {
      std::vector<fs::path> files;
      for (auto& e : fs::directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (auto& f : files) seeds.push_back(slurp(f));
    } else if (fs::is_regular_file(p)) {
      seeds.push_back(slurp(p));
    } else {
      std::fprintf(stderr, "%s: no such seed file or folder\n", argv[i]);
      return 2;
    }
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "no seeds\n");
    return 2;
  }
  for (const std::string& s : seeds) feed(s);
  feed("");
  std::mt19937_64 rng(0x5e9b1be);
  for (int r = 0; r < rounds; r++) feed(mutate(seeds, rng));
  std::printf("%zu seeds, %d mutations: no crash, only InputError escaped\n", seeds.size(), rounds);
  return 0;
}
