#include "segments/cuda/weights.h"

#include <cmath>
#include <cstdint>

#include "segments/kernels/cuda/convert.cuh"
#include "segments/kernels/cuda/synthetic.cuh"
#include "segments/model/synthetic.h"

namespace segpipe::cuda {

std::pair<float, float> synthetic_distribution(const TensorRole& r) {
  float fan_in = static_cast<float>(r.shape.back());
  float scale = std::sqrt(3.0f / fan_in), offset = 0.f;
  if (r.role.size() > 5 && r.role.compare(r.role.size() - 5, 5, "_bias") == 0) {
    scale = 0.5f;  // q/k/v biases: around 0
  } else if (r.shape.size() == 1) {
    scale = 0.1f;
    offset = 1.0f;
  } else if (r.role == "embed_tokens") {
    scale = 1.0f;
  } else if (r.role == "router") {
    scale *= 4.0f;
  } else if (r.role == "lm_head") {
    scale *= 2.0f;
  }
  return {scale, offset};
}

WeightSource::WeightSource(Context& ctx, const ModelConfig& cfg, Checkpoint* ck, const WeightOptions& opts)
    : ctx_(ctx), cfg_(cfg), ck_(ck), opts_(opts) {
  SEGPIPE_ASSERT(opts.compute == DType::F32 || opts.compute == DType::BF16);
  SEGPIPE_ASSERT(opts.synthetic || ck != nullptr);
  if (!opts.synthetic) binder_ = std::make_unique<WeightBinder>(*ck, cfg);
  if (!opts.synthetic && opts.memory == GpuMemory::unified) access_ = host_access(ctx.device());
}

uint64_t WeightSource::loaded_bytes() const {
  uint64_t b = 0;
  for (auto& t : loaded_) b += t.bytes;
  return b;
}

void WeightSource::upload(const std::string& name, const void* host, DType st, int64_t n, void* dst, DType dt) {
  if (opts_.memory != GpuMemory::unified) {
    copy_upload(host, st, n, dst, dt);
    return;
  }
  const size_t bytes = static_cast<size_t>(n) * dtype_size(st);
  if (bytes == 0) return;
  {
    // One tensor's pages readable by the device at a time (registered for this copy only).
    HostRange src(host, bytes, access_);
    const void* d = src.device();
    // The conversion kernel loads whole elements: a tensor the file placed off its element alignment
    // goes through the (aligned) staging buffer instead.
    if (d && reinterpret_cast<uintptr_t>(d) % dtype_size(st) != 0) d = nullptr;
    if (d) {
      if (st == dt) {
        SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(dst, d, bytes, cudaMemcpyDefault, ctx_.stream()));
      } else {
        convert(d, st, dst, dt, n, ctx_.stream());
      }
      ctx_.sync();  // read before the range is unregistered
      in_place_++;
    } else {
      copy_upload(host, st, n, dst, dt);
      staging_ = Buffer<char>();  // not kept for the process's life beside the weights
      copied_++;
    }
  }
  // The device-layout buffer holds the weight now: the file's pages go back, so the bytes are held
  // once where host and device memory are one DRAM.
  ck_->release_pages(name, host, bytes);
}

void WeightSource::copy_upload(const void* host, DType st, int64_t n, void* dst, DType dt) {
  size_t bytes = static_cast<size_t>(n) * dtype_size(st);
  if (st == dt) {
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, ctx_.stream()));
  } else {
    staging_.grow(bytes);
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(staging_.get(), host, bytes, cudaMemcpyHostToDevice, ctx_.stream()));
    convert(staging_.get(), st, dst, dt, n, ctx_.stream());
  }
  // The staging buffer is reused by the next tensor: finish this one first.
  ctx_.sync();
}

void WeightSource::synth(const TensorRole& role, uint64_t first, int64_t n, void* dst, DType dt) {
  auto [scale, offset] = synthetic_distribution(role);
  synthetic_fill(opts_.seed, synthetic_name_hash(role.name), first, n, scale, offset, opts_.synthetic_dtype, dst, dt,
                 ctx_.stream());
}

void WeightSource::matrix(const TensorRole& role, void* dst, DType dt) {
  int64_t n = 1;
  for (int64_t d : role.shape) n *= d;
  if (opts_.synthetic) {
    synth(role, 0, n, dst, dt);
    loaded_.push_back({role.name, static_cast<uint64_t>(n) * dtype_size(dt)});
    return;
  }
  Mat m = binder_->mat(role);
  upload(role.name, m.data, m.dtype, n, dst, dt);
  loaded_.push_back({role.name, static_cast<uint64_t>(n) * dtype_size(dt)});
}

void WeightSource::vector_f32(const TensorRole& role, float* dst) {
  int64_t n = role.shape.at(0);
  if (opts_.synthetic) {
    synth(role, 0, n, dst, DType::F32);
  } else {
    std::vector<float> v = binder_->vec(role);
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(dst, v.data(), v.size() * 4, cudaMemcpyHostToDevice, ctx_.stream()));
    ctx_.sync();
    if (opts_.memory == GpuMemory::unified) {  // converted on the host (a norm's few floats); pages back
      TensorView t = ck_->view(role.name);
      ck_->release_pages(role.name, t.data, t.nbytes);
    }
  }
  loaded_.push_back({role.name, static_cast<uint64_t>(n) * 4});
}

void WeightSource::expert(int layer, int e, void* gate_up, void* down, DType dt) {
  const int64_t H = cfg_.hidden, I = cfg_.moe_intermediate;
  const size_t es = dtype_size(dt);
  char* gu = static_cast<char*>(gate_up);
  if (opts_.synthetic) {
    auto roles = expert_roles(cfg_, layer, e, ExpertLayout::PerExpert);
    synth(roles[0], 0, I * H, gu, dt);
    synth(roles[1], 0, I * H, gu + static_cast<size_t>(I * H) * es, dt);
    synth(roles[2], 0, H * I, down, dt);
    for (auto& r : roles) loaded_.push_back({r.name, static_cast<uint64_t>(I * H) * es});
    return;
  }
  WeightBinder::ExpertMats m = binder_->expert(layer, e);
  // The tensors the slices lie in: per expert, or the layer's fused [E, 2I, H] and [E, H, I].
  const ExpertLayout lay = expert_layout(*ck_, cfg_, layer);
  const auto roles = expert_roles(cfg_, layer, e, lay);
  const bool fused = lay == ExpertLayout::Fused;
  upload(roles[0].name, m.gate.data, m.gate.dtype, I * H, gu, dt);
  upload(roles[fused ? 0 : 1].name, m.up.data, m.up.dtype, I * H, gu + static_cast<size_t>(I * H) * es, dt);
  upload(roles[fused ? 1 : 2].name, m.down.data, m.down.dtype, H * I, down, dt);
  std::string p = cfg_.tensor_prefix + "layers." + std::to_string(layer) + ".mlp.experts." + std::to_string(e);
  loaded_.push_back({p + ".gate_up", static_cast<uint64_t>(2 * I * H) * es});
  loaded_.push_back({p + ".down", static_cast<uint64_t>(H * I) * es});
}

}  // namespace segpipe::cuda
