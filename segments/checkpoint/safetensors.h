// safetensors reader: the header is read with pread and validated in full; tensor bytes are reached
// only through per-tensor read-only mappings made on request, so a reader touches no other tensor's
// bytes (and a segment process maps only the tensors of its segment).
//
// Format: 8-byte little-endian header length N, N bytes of JSON, then the data region. Every entry
// {dtype, shape, data_offsets:[begin,end]} is relative to the data region.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "segments/core/tensor.h"

namespace segpipe {

struct TensorEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offset in the data region
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::map<std::string, TensorEntry> tensors;
  std::map<std::string, std::string> metadata;
};

// Largest header accepted (the format's own reference implementation uses the same bound).
constexpr uint64_t kMaxSafetensorsHeader = 100ull * 1000 * 1000;

// Parses and validates a header: valid JSON object, no duplicate names, known dtype, shape of
// non-negative integers, end - begin == numel * dtype size, offsets in bounds, and the tensors
// tiling the data region exactly (contiguous, not overlapping). `where` names the file in errors.
// Throws InputError. Exposed separately so the fuzz target can reach it without a file.
SafetensorsHeader parse_safetensors_header(std::string_view json, uint64_t data_bytes, const std::string& where);

class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  bool has(const std::string& name) const { return header_.tensors.count(name) != 0; }
  // Maps the tensor's pages (once) and returns a view; throws InputError if absent.
  // populate: fault every page of the tensor in now (MAP_POPULATE). Experts loaded on demand
  // (max_resident_experts) and slices of fused expert tensors pass false: populating them would make
  // resident the very bytes that selective loading and banks exist to leave on disk.
  TensorView view(const std::string& name, bool populate = true);
  // Bytes of the tensors mapped so far (what this reader has been asked for).
  uint64_t mapped_tensor_bytes() const;
  // Drops the mapping of one tensor (selective expert loading releases evicted experts this way).
  void unmap(const std::string& name);
  // Gives back the pages holding bytes [p, p + n) of tensor `name`'s mapped view, once a copy of them
  // lives elsewhere (a GPU segment under gpu_memory: unified read them into its device-layout
  // buffer): dropped from this process (madvise MADV_DONTNEED, whole pages of the mapping) and from
  // the page cache (posix_fadvise POSIX_FADV_DONTNEED, which keeps partial pages: they hold a
  // neighbouring tensor's bytes), so that the bytes are held once where host and device memory are
  // one DRAM. The mapping stays valid: a later read faults the pages back in from the file. Nothing
  // happens where the range is not inside the tensor's mapped view.
  void release_pages(const std::string& name, const void* p, uint64_t n);

 private:
  explicit SafetensorsFile(std::string path) : path_(std::move(path)) {}
  struct Mapping {
    void* base = nullptr;
    size_t length = 0;
    const std::byte* data = nullptr;
    uint64_t nbytes = 0;
  };
  std::string path_;
  int fd_ = -1;
  uint64_t data_start_ = 0;
  SafetensorsHeader header_;
  mutable std::mutex mu_;
  std::map<std::string, Mapping> maps_;
};

}  // namespace segpipe
