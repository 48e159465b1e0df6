#include "segments/factory/segment_factory.h"

#include <string>

#include "segments/core/errors.h"
#include "segments/kinds/cpu_makers.h"

namespace segpipe {

namespace {

// The kind's name, or its number where it has none (a value no enumerator names).
std::string kind_name(SegmentKind kind) {
  std::string s = to_string(kind);
  if (s == "?") {
    s = "#";  // appended, not "#" + ...: GCC 12 warns (-Wrestrict) about that operator+
    s += std::to_string(static_cast<int>(kind));
  }
  return s;
}

}  // namespace

void SegmentFactory::add(const SegmentBackend& backend) {
  std::lock_guard lock(mu_);
  for (SegmentBackend& b : backends_)
    if (b.device == backend.device) {
      b = backend;
      return;
    }
  backends_.push_back(backend);
}

std::unique_ptr<Segment> SegmentFactory::make(const SegmentParams& params, SegmentEnv& env) const {
  MakeSegment maker = nullptr;
  bool backend = false;
  {
    std::lock_guard lock(mu_);
    for (const SegmentBackend& b : backends_) {
      if (b.device != params.device.type) continue;
      backend = true;
      for (const SegmentMaker& m : b.makers)
        if (m.kind == params.kind) maker = m.make;
    }
  }
  if (!maker) {
    const std::string why = backend                   ? "that backend does not implement this kind"
                            : params.device.is_cuda() ? "this program has no CUDA backend (a build without it)"
                                                      : "this program has no backend for that device";
    throw InputError("segment kind '" + kind_name(params.kind) + "' on device '" + to_string(params.device) +
                     "' is not supported: " + why);
  }
  return maker(params, env);
}

namespace {

// The process's factory starts with the CPU backend, which is part of this library.
struct ProcessFactory : SegmentFactory {
  ProcessFactory() { add({Device::Type::cpu, cpu_segment_makers()}); }
};

}  // namespace

SegmentFactory& segment_factory() {
  static ProcessFactory factory;
  return factory;
}

}  // namespace segpipe
