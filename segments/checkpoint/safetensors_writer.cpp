#include "segments/checkpoint/safetensors_writer.h"

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "segments/core/errors.h"

namespace segpipe {

uint64_t TensorSpec::nbytes() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n * dtype_size(dtype);
}

void write_safetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                       const std::map<std::string, std::string>& metadata, const TensorFiller& fill) {
  // nlohmann's default object keeps keys sorted; offsets follow the order given.
  nlohmann::ordered_json h;
  if (!metadata.empty()) h["__metadata__"] = metadata;
  uint64_t off = 0;
  for (const auto& t : tensors) {
    h[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + t.nbytes()}}};
    off += t.nbytes();
  }
  std::string text = h.dump();
  while ((text.size() + 8) % 8 != 0) text += ' ';  // align the data region to 8 bytes
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), std::fclose);
  if (!f) throw InputError(path + ": cannot write");
  unsigned char len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; i++) len[i] = static_cast<unsigned char>(n >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f.get()) == 8 && std::fwrite(text.data(), 1, text.size(), f.get()) == text.size();
  std::vector<unsigned char> buf;
  for (const auto& t : tensors) {
    uint64_t es = dtype_size(t.dtype), numel = t.nbytes() / es;
    const uint64_t chunk = (8u << 20) / es;
    for (uint64_t first = 0; first < numel && ok; first += chunk) {
      uint64_t cnt = std::min(chunk, numel - first);
      buf.resize(cnt * es);
      fill(t, first, cnt, buf.data());
      ok = std::fwrite(buf.data(), 1, buf.size(), f.get()) == buf.size();
    }
  }
  if (!ok || std::fflush(f.get()) != 0) throw RuntimeFailure(path + ": write failed (disk full?)");
}

}  // namespace segpipe
