#include "orchestrator/debugging/dump_io.h"

#include <cmath>
#include <cstring>

#include "segments/checkpoint/safetensors.h"
#include "segments/checkpoint/safetensors_writer.h"
#include "segments/core/errors.h"

namespace segpipe {

int64_t DumpTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {
template <typename T>
DumpTensor make(DType dt, const T* p, std::vector<int64_t> shape) {
  DumpTensor t;
  t.dtype = dt;
  t.shape = std::move(shape);
  t.bytes.resize(static_cast<size_t>(t.numel()) * sizeof(T));
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), p, t.bytes.size());
  return t;
}
}  // namespace

DumpTensor DumpTensor::from_f32(const float* p, std::vector<int64_t> shape) { return make(DType::F32, p, std::move(shape)); }
DumpTensor DumpTensor::from_i32(const int32_t* p, std::vector<int64_t> shape) { return make(DType::I32, p, std::move(shape)); }
DumpTensor DumpTensor::from_i64(const std::vector<int64_t>& v, std::vector<int64_t> shape) {
  return make(DType::I64, v.data(), std::move(shape));
}
DumpTensor DumpTensor::from_u8(const std::vector<uint8_t>& v, std::vector<int64_t> shape) {
  return make(DType::U8, v.data(), std::move(shape));
}

const DumpTensor& DumpFile::get(const std::string& n, DType dt, int rank) const {
  auto it = tensors.find(n);
  if (it == tensors.end()) throw InputError(path + ": missing tensor '" + n + "'");
  if (it->second.dtype != dt)
    throw InputError(path + ": tensor '" + n + "' must be " + dtype_name(dt) + ", got " + dtype_name(it->second.dtype));
  if (rank >= 0 && static_cast<int>(it->second.shape.size()) != rank)
    throw InputError(path + ": tensor '" + n + "' must have " + std::to_string(rank) + " dimensions, got shape " +
                     shape_str(it->second.shape));
  return it->second;
}

void write_dump_file(const std::string& path, const DumpFile& f) {
  std::vector<TensorSpec> specs;
  std::map<std::string, const DumpTensor*> by;
  for (auto& [n, t] : f.tensors) {
    specs.push_back({n, t.dtype, t.shape});
    by[n] = &t;
  }
  write_safetensors(path, specs, f.metadata, [&](const TensorSpec& s, uint64_t first, uint64_t count, void* out) {
    const DumpTensor& t = *by.at(s.name);
    size_t es = dtype_size(t.dtype);
    std::memcpy(out, t.bytes.data() + first * es, count * es);
  });
}

DumpFile read_dump_file(const std::string& path) {
  auto sf = SafetensorsFile::open(path);
  DumpFile f;
  f.path = path;
  f.metadata = sf->header().metadata;
  for (auto& [n, e] : sf->header().tensors) {
    TensorView v = sf->view(n);
    DumpTensor t;
    t.dtype = e.dtype;
    t.shape = e.shape;
    t.bytes.resize(v.nbytes);
    if (v.nbytes) std::memcpy(t.bytes.data(), v.data, v.nbytes);
    f.tensors[n] = std::move(t);
  }
  return f;
}

TensorDiff diff_tensors(const DumpTensor& a, const DumpTensor& b) {
  TensorDiff d;
  if (a.dtype != b.dtype || a.shape != b.shape) {
    d.same_shape = false;
    d.bitwise = false;
    d.max_abs = d.rel_l2 = INFINITY;
    return d;
  }
  d.bitwise = a.bytes == b.bytes;
  const int64_t n = a.numel();
  if (a.dtype == DType::F32) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
      float x = a.f32()[i], y = b.f32()[i];
      if (std::memcmp(&x, &y, 4) != 0 && d.first_diff < 0) d.first_diff = i;
      if (std::isnan(x) != std::isnan(y)) {
        d.max_abs = INFINITY;
        continue;
      }
      double e = static_cast<double>(x) - y;
      num += e * e;
      den += static_cast<double>(y) * y;
      if (std::fabs(e) > d.max_abs) d.max_abs = std::fabs(e);
    }
    d.rel_l2 = std::isinf(d.max_abs) ? INFINITY : den > 0 ? std::sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
  } else {
    size_t es = dtype_size(a.dtype);
    int64_t differing = 0;
    for (int64_t i = 0; i < n; i++)
      if (std::memcmp(a.bytes.data() + i * es, b.bytes.data() + i * es, es) != 0) {
        if (d.first_diff < 0) d.first_diff = i;
        differing++;
      }
    d.max_abs = static_cast<double>(differing);
    d.rel_l2 = n ? static_cast<double>(differing) / static_cast<double>(n) : 0.0;
  }
  return d;
}

}  // namespace segpipe
