// Fuzz target: safetensors headers and files (segments/checkpoint/safetensors.h).
// Input layout: 8 little-endian bytes giving the size of the data region, then the header text.
// The target parses the text directly, writes it as a file (header length, text, a sparse data region
// of that size) and opens it, and also opens the raw input bytes as a file. Only InputError may
// escape; a header that is accepted must describe tensors that tile the data region.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "segments/checkpoint/safetensors.h"

namespace {

using namespace segpipe;

void check_header(const SafetensorsHeader& h, uint64_t data_bytes) {
  std::vector<const TensorEntry*> order;
  for (auto& [name, e] : h.tensors) {
    FUZZ_INVARIANT(name == e.name);
    FUZZ_INVARIANT(name != "__metadata__");
    FUZZ_INVARIANT(e.begin <= e.end && e.end <= data_bytes);
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      FUZZ_INVARIANT(d >= 0);
      numel *= static_cast<uint64_t>(d);
    }
    FUZZ_INVARIANT(numel * dtype_size(e.dtype) == e.end - e.begin);
    order.push_back(&e);
  }
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  uint64_t pos = 0;
  for (auto* e : order) {
    FUZZ_INVARIANT(e->begin == pos);
    pos = e->end;
  }
  FUZZ_INVARIANT(pos == data_bytes);
}

bool write_file(const std::string& path, std::string_view head, std::string_view body, uint64_t sparse_tail) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  bool ok = ::write(fd, head.data(), head.size()) == static_cast<ssize_t>(head.size()) &&
            ::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size());
  if (ok && sparse_tail) ok = ::ftruncate(fd, static_cast<off_t>(head.size() + body.size() + sparse_tail)) == 0;
  ::close(fd);
  return ok;
}

void open_and_touch(const std::string& path) {
  fuzz::only_input_errors("SafetensorsFile::open", [&] {
    auto f = SafetensorsFile::open(path);
    uint64_t total = 0;
    volatile unsigned char sink = 0;
    for (auto& [name, e] : f->header().tensors) {
      TensorView v = f->view(name);
      FUZZ_INVARIANT(v.nbytes == e.end - e.begin);
      if (v.nbytes) {
        FUZZ_INVARIANT(v.data != nullptr);
        sink = sink + static_cast<const unsigned char*>(v.data)[0] + static_cast<const unsigned char*>(v.data)[v.nbytes - 1];
      }
      total += v.nbytes;
    }
    FUZZ_INVARIANT(f->mapped_tensor_bytes() == total);
    (void)sink;
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view all(reinterpret_cast<const char*>(data), size);
  // The whole input as header text.
  fuzz::only_input_errors("parse_safetensors_header", [&] { check_header(parse_safetensors_header(all, size, "fuzz"), size); });
  if (size >= 8) {
    uint64_t db = 0;
    for (int i = 7; i >= 0; i--) db = (db << 8) | data[i];
    std::string_view text = all.substr(8);
    bool ok = fuzz::only_input_errors("parse_safetensors_header", [&] { check_header(parse_safetensors_header(text, db, "fuzz"), db); });
    // Through a file when the data region is small enough to be a sparse file on any disk.
    if (ok && db <= (64ull << 20)) {
      std::string len(8, '\0');
      for (int i = 0; i < 8; i++) len[static_cast<size_t>(i)] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
      std::string path = fuzz::scratch_dir() + "/a.safetensors";
      if (write_file(path, len, text, db)) open_and_touch(path);
    }
  }
  // The raw input as a file (short files, bad header lengths, data cut short).
  std::string path = fuzz::scratch_dir() + "/b.safetensors";
  if (write_file(path, all, {}, 0)) open_and_touch(path);
  return 0;
}
