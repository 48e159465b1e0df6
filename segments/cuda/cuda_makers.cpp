#include "segments/cuda/cuda_makers.h"

#include <string>
#include <utility>
#include <vector>

#include "segments/core/errors.h"
#include "segments/cuda/kinds.h"

namespace segpipe {

namespace {

struct Gpu {
  cuda::Context& ctx;
  cuda::WeightSource& w;
  const ModelConfig& cfg;
  cuda::EngineOptions opt;
};

Gpu gpu_of(const SegmentParams& p, const SegmentEnv& env) {
  SEGPIPE_ASSERT_MSG(env.cfg && env.cuda_context && env.cuda_weights,
                     "a GPU segment needs a config, a CUDA context and a weight source");
  const std::string what = std::string("segment kind '") + to_string(p.kind) + "' on device '" + to_string(p.device) + "'";
  if (p.device.index != env.cuda_context->device())
    throw InputError(what + ": the caller's CUDA context is on cuda:" + std::to_string(env.cuda_context->device()));
  const DType compute = p.dtype == ComputeDType::bfloat16 ? DType::BF16 : DType::F32;
  if (env.cuda_weights->options().compute != compute)
    throw InputError(what + ": compute dtype " + to_string(p.dtype) + ", but the caller's weights are in " +
                     dtype_name(env.cuda_weights->options().compute));
  return {*env.cuda_context, *env.cuda_weights, *env.cfg, env.cuda_options ? *env.cuda_options : cuda::EngineOptions{}};
}

// Makes S, and hands it what the weight source uploaded meanwhile (its loaded()).
template <class S, class... Args>
std::unique_ptr<S> upload(cuda::WeightSource& w, Args&&... args) {
  const size_t before = w.loaded().size();
  auto s = std::make_unique<S>(std::forward<Args>(args)...);
  const auto& all = w.loaded();
  s->set_loaded(std::vector<LoadedTensor>(all.begin() + static_cast<std::ptrdiff_t>(before), all.end()));
  return s;
}

std::unique_ptr<Segment> make_embeddings(const SegmentParams& p, SegmentEnv& env) {
  Gpu g = gpu_of(p, env);
  auto s = upload<cuda::Embeddings>(g.w, g.ctx, g.w, g.cfg);
  env.cuda_tied_embeddings = s->table();  // for an lm_head made later with this env (SegmentEnv)
  return s;
}

std::unique_ptr<Segment> make_layers(const SegmentParams& p, SegmentEnv& env) {
  Gpu g = gpu_of(p, env);
  auto s = upload<cuda::Layers>(g.w, g.ctx, g.w, g.cfg, g.opt, p.layer_first, p.layer_last, !p.banks, env.max_seq);
  if (!env.kv.empty()) {
    const size_t need = static_cast<size_t>(p.layer_last - p.layer_first + 1) *
                        static_cast<size_t>(cuda::Layers::kv_floats_per_layer(g.cfg, env.max_seq));
    if (env.kv.size() < need)
      throw RuntimeFailure("layers " + std::to_string(p.layer_first) + ".." + std::to_string(p.layer_last) +
                           ": KV storage of " + std::to_string(env.kv.size()) + " floats, " + std::to_string(need) +
                           " needed");
    s->bind_kv(env.kv.data());
  }
  if (p.banks) s->use_banks(env.banks);
  return s;
}

std::unique_ptr<Segment> make_experts(const SegmentParams& p, SegmentEnv& env) {
  Gpu g = gpu_of(p, env);
  return upload<cuda::Experts>(g.w, g.ctx, g.w, g.cfg, g.opt, p.layer_first, p.layer_last, p.expert_first,
                               p.expert_last);
}

std::unique_ptr<Segment> make_lm_head(const SegmentParams& p, SegmentEnv& env) {
  Gpu g = gpu_of(p, env);
  return upload<cuda::LmHead>(g.w, g.ctx, g.w, g.cfg, g.cfg.tie_word_embeddings ? env.cuda_tied_embeddings : nullptr,
                              g.opt);
}

constexpr SegmentMaker kCudaMakers[] = {
    {SegmentKind::embeddings, make_embeddings},
    {SegmentKind::layers, make_layers},
    {SegmentKind::experts, make_experts},
    {SegmentKind::lm_head, make_lm_head},
};

}  // namespace

std::span<const SegmentMaker> cuda_segment_makers() { return kCudaMakers; }

void add_cuda_segment_backend() { add_segment_backend({Device::Type::cuda, cuda_segment_makers()}); }

}  // namespace segpipe
