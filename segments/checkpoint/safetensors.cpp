#include "segments/checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "segments/core/errors.h"
#include "segments/core/input_file.h"

namespace segpipe {

using nlohmann::json;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw InputError(where + ": " + what);
}

uint64_t as_u64(const json& v, const std::string& where, const std::string& what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return static_cast<uint64_t>(v.get<int64_t>());
  bad(where, what + " must be a non-negative integer");
}

}  // namespace

SafetensorsHeader parse_safetensors_header(std::string_view text, uint64_t data_bytes, const std::string& where) {
  // nlohmann keeps the last of duplicate keys silently; a parse callback sees every key of the
  // top-level object so duplicates can be reported by name.
  std::set<std::string> seen;
  std::string duplicate;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      std::string k = parsed.get<std::string>();
      if (!seen.insert(k).second) duplicate = k;
    }
    return true;
  };
  json h;
  try {
    h = json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    bad(where, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!duplicate.empty()) bad(where, "duplicate tensor '" + duplicate + "' in header");
  if (!h.is_object()) bad(where, "header must be a JSON object");

  SafetensorsHeader out;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) bad(where, "__metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) bad(where, "__metadata__ value '" + m.key() + "' must be a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    std::string w = "tensor '" + name + "'";
    if (!v.is_object()) bad(where, w + ": entry must be an object");
    for (auto k = v.begin(); k != v.end(); ++k)
      if (k.key() != "dtype" && k.key() != "shape" && k.key() != "data_offsets")
        bad(where, w + ": unknown key '" + k.key() + "'");
    if (!v.contains("dtype") || !v["dtype"].is_string()) bad(where, w + ": missing dtype");
    auto dt = dtype_from_name(v["dtype"].get<std::string>());
    if (!dt) bad(where, w + ": unknown dtype '" + v["dtype"].get<std::string>() + "'");
    if (!v.contains("shape") || !v["shape"].is_array()) bad(where, w + ": missing shape");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
      bad(where, w + ": data_offsets must be [begin, end]");
    TensorEntry e;
    e.name = name;
    e.dtype = *dt;
    // numel with overflow checks: a hostile shape must not wrap around into a small size.
    uint64_t numel = 1;
    for (const json& d : v["shape"]) {
      uint64_t n = as_u64(d, where, w + ": shape dimension");
      if (n > (1ull << 62)) bad(where, w + ": shape dimension too large");
      e.shape.push_back(static_cast<int64_t>(n));
      if (__builtin_mul_overflow(numel, n, &numel)) bad(where, w + ": shape too large");
    }
    e.begin = as_u64(v["data_offsets"][0], where, w + ": data_offsets");
    e.end = as_u64(v["data_offsets"][1], where, w + ": data_offsets");
    if (e.end < e.begin) bad(where, w + ": data_offsets end < begin");
    if (e.end > data_bytes)
      bad(where, w + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                     "] out of range (data region is " + std::to_string(data_bytes) + " bytes)");
    uint64_t want = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(e.dtype)), &want))
      bad(where, w + ": shape too large");
    if (want != e.end - e.begin)
      bad(where, w + ": size mismatch: shape " + shape_str(e.shape) + " of " + dtype_name(e.dtype) + " needs " +
                     std::to_string(static_cast<uint64_t>(want)) + " bytes, data_offsets give " +
                     std::to_string(e.end - e.begin));
    out.tensors.emplace(name, std::move(e));
  }

  // Tensors must tile the data region: sorted by begin, each starts where the previous ended.
  std::vector<const TensorEntry*> order;
  for (auto& [n, e] : out.tensors) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const TensorEntry* a, const TensorEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t pos = 0;
  for (const TensorEntry* e : order) {
    if (e->begin < pos) bad(where, "tensor '" + e->name + "' overlaps the previous tensor (offset " +
                                       std::to_string(e->begin) + " < " + std::to_string(pos) + ")");
    if (e->begin > pos) bad(where, "tensor '" + e->name + "' leaves a gap before it (offset " +
                                       std::to_string(e->begin) + ", expected " + std::to_string(pos) + ")");
    pos = e->end;
  }
  if (pos != data_bytes)
    bad(where, "data region is " + std::to_string(data_bytes) + " bytes but the tensors cover " + std::to_string(pos));
  return out;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile(path));
  // A FIFO in place of a shard would block a plain open() forever; this refuses it first.
  f->fd_ = open_regular_file(path, "safetensors file");
  struct stat st {};
  if (fstat(f->fd_, &st) != 0) throw InputError(path + ": cannot stat (" + std::strerror(errno) + ")");
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) throw InputError(path + ": truncated file (" + std::to_string(size) + " bytes, no header length)");
  unsigned char lenbuf[8];
  if (pread(f->fd_, lenbuf, 8, 0) != 8) throw InputError(path + ": cannot read header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | lenbuf[i];
  if (n > kMaxSafetensorsHeader)
    throw InputError(path + ": header length " + std::to_string(n) + " exceeds the 100 MB limit");
  if (n > size - 8)
    throw InputError(path + ": header length " + std::to_string(n) + " runs past the end of the file (" +
                     std::to_string(size) + " bytes)");
  std::string text(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = pread(f->fd_, text.data() + got, n - got, static_cast<off_t>(8 + got));
    if (r <= 0) throw InputError(path + ": cannot read header");
    got += static_cast<size_t>(r);
  }
  f->data_start_ = 8 + n;
  f->header_ = parse_safetensors_header(text, size - f->data_start_, path);
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  for (auto& [n, m] : maps_)
    if (m.base) munmap(m.base, m.length);
  if (fd_ >= 0) ::close(fd_);
}

TensorView SafetensorsFile::view(const std::string& name, bool populate) {
  auto it = header_.tensors.find(name);
  if (it == header_.tensors.end()) throw InputError(path_ + ": missing tensor '" + name + "'");
  const TensorEntry& e = it->second;
  TensorView v;
  v.name = name;
  v.dtype = e.dtype;
  v.shape = e.shape;
  v.nbytes = e.end - e.begin;
  if (v.nbytes == 0) return v;  // empty tensors have no bytes to map
  std::lock_guard<std::mutex> lock(mu_);
  auto m = maps_.find(name);
  if (m == maps_.end()) {
    Mapping mp;
    static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    uint64_t abs_begin = data_start_ + e.begin;
    uint64_t map_begin = abs_begin / page * page;
    uint64_t len = std::max<uint64_t>(1, abs_begin + v.nbytes - map_begin);
    // MAP_POPULATE: a segment maps exactly the tensors it computes with, so fault them in now
    // rather than one page at a time in the middle of the first decode steps. Not for tensors it
    // uses only in part or only some of the time (see the header): those fault in on use.
    int flags = MAP_SHARED | (populate ? MAP_POPULATE : 0);
    void* p = mmap(nullptr, len, PROT_READ, flags, fd_, static_cast<off_t>(map_begin));
    if (p == MAP_FAILED) throw RuntimeFailure(path_ + ": cannot map tensor '" + name + "' (" + std::strerror(errno) + ")");
    // Weights are streamed in order by the kernels; sequential readahead is the right hint.
    madvise(p, len, MADV_SEQUENTIAL);
    mp.base = p;
    mp.length = len;
    mp.data = static_cast<const std::byte*>(p) + (abs_begin - map_begin);
    mp.nbytes = v.nbytes;
    m = maps_.emplace(name, mp).first;
  }
  v.data = m->second.data;
  return v;
}

uint64_t SafetensorsFile::mapped_tensor_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t s = 0;
  for (auto& [n, m] : maps_) s += m.nbytes;
  return s;
}

void SafetensorsFile::release_pages(const std::string& name, const void* p, uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  auto m = maps_.find(name);
  if (m == maps_.end() || n == 0) return;
  const Mapping& mp = m->second;
  const auto* b = static_cast<const std::byte*>(p);
  if (b < mp.data || b > mp.data + mp.nbytes || n > static_cast<uint64_t>(mp.data + mp.nbytes - b)) return;
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t lo = static_cast<uint64_t>(b - static_cast<const std::byte*>(mp.base));  // in the mapping
  const uint64_t first = lo / page * page, last = std::min<uint64_t>(mp.length, (lo + n + page - 1) / page * page);
  // Advice only: a failure leaves the pages resident, which costs memory, never a wrong result.
  madvise(static_cast<std::byte*>(mp.base) + first, last - first, MADV_DONTNEED);
  const uint64_t file_pos = data_start_ + header_.tensors.at(name).begin + static_cast<uint64_t>(b - mp.data);
  posix_fadvise(fd_, static_cast<off_t>(file_pos), static_cast<off_t>(n), POSIX_FADV_DONTNEED);
}

void SafetensorsFile::unmap(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto m = maps_.find(name);
  if (m == maps_.end()) return;
  munmap(m->second.base, m->second.length);
  maps_.erase(m);
}

}  // namespace segpipe
