#include "orchestrator/planning/pipeline_to_plan.h"

#include <filesystem>

#include "orchestrator/pipeline/pipeline.h"
#include "orchestrator/drivers/cuda_mps.h"
#include "orchestrator/drivers/cuda_runner.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/encoders/audio_config.h"
#include "segments/encoders/vision_config.h"
#include "segments/model/config_file.h"

namespace segpipe {

namespace {

// An encoder segment needs a Qwen3-Omni checkpoint whose config describes its tower (read here so that a
// bad section is refused before any process starts, naming config.json and the key), and the CPU.
void check_encoder(const std::string& path, const std::string& model_dir, const ModelConfig& cfg, const SegmentDesc& d) {
  const std::string what = path + ": segment '" + d.name + "' (" + to_string(d.kind) + ")";
  if (cfg.arch != Arch::Qwen3OmniMoe)
    throw InputError(what + " needs a Qwen3-Omni checkpoint (model_type qwen3_omni_moe); " + cfg.where + " has model_type " +
                     cfg.model_type);
  if (d.device.is_cuda())
    throw InputError(what + ": the encoders run on the CPU only for now (device " + to_string(d.device) +
                     "); put it on device cpu");
  const std::string config = model_dir + "/config.json";
  const nlohmann::json j = read_json_file(config);
  if (d.kind == SegmentKind::audio_encoder)
    parse_audio_encoder_config(j, config);
  else
    parse_vision_config(j, config);
}

}  // namespace

RunPlan plan_from_pipeline_file(const std::string& path, ModelConfig& cfg, nlohmann::json& generation) {
  PipelineSpec spec = parse_pipeline_file(path);
  cfg = read_model_config(spec.model_dir);
  ModelSummary ms;
  ms.num_layers = cfg.num_layers;
  ms.num_experts = cfg.num_experts;
  for (int i = 0; i < cfg.num_layers; i++) ms.moe_layer.push_back(cfg.is_moe_layer(i));
  // Several GPU segment processes: the private MPS server (cuda_mps.h) must be running before this
  // process's first CUDA call, the device count just below, for this process to join it.
  if (cuda_backend_built() && spec.transport.value_or(Transport::shm) == Transport::shm) {
    int gpu = 0;
    for (const SegmentSpec& s : spec.segments) {
      const auto& dev = s.settings.device ? s.settings.device : spec.defaults.device;
      gpu += dev && dev->type == Device::Type::cuda;
    }
    if (gpu >= 2 && gpu_sharing_from_env() != GpuSharing::Off) start_private_mps();  // failures: the runner says
  }
  // Without the CUDA backend every cuda:N passes the device-count rule, so that the segment loop
  // below says what is missing (the backend, not the device).
  PipelinePlan pp = validate_pipeline(spec, ms, cuda_backend_built() ? cuda_visible_devices() : 1 << 20);
  RunPlan p;
  p.model_dir = pp.model_dir;
  p.tokenizer_dir = pp.tokenizer_dir;
  p.source = path;
  p.inproc = pp.transport == Transport::inproc;
  p.gpu_kernels = pp.gpu_kernels;
  p.gpu_memory = pp.gpu_memory;
  p.restart = pp.restart;
  p.timeout_ms = pp.timeout_ms;
  p.hosts.clear();
  for (const PlannedHost& h : pp.hosts) p.hosts.push_back(HostDesc{h.name, h.address});
  if (cfg.max_position > 0) p.max_seq = std::min<int64_t>(p.max_seq, cfg.max_position);
  for (const PlannedSegment& s : pp.segments) {
    SegmentDesc d;
    d.name = s.name;
    d.kind = s.kind;
    if (s.layers) {
      d.layer_first = s.layers->first;
      d.layer_last = s.layers->last;
    }
    if (s.experts) {
      d.expert_first = s.experts->first;
      d.expert_last = s.experts->last;
    }
    d.banks = s.placement == ExpertPlacement::banks;
    d.threads = s.threads;
    d.host = s.host;
    d.max_resident_experts = s.max_resident_experts.value_or(0);
    d.device = s.device;
    d.dtype = s.dtype;
    const bool on_gpu = s.device.is_cuda();
    if (on_gpu && !cuda_backend_built())
      throw InputError(path + ": segment '" + s.name + "': device " + to_string(d.device) +
                       " needs the CUDA backend, which this build does not have");
    if (d.dtype != ComputeDType::float32 && !on_gpu)
      throw InputError(path + ": segment '" + s.name + "': compute dtype " + to_string(d.dtype) +
                       " is only implemented on the CUDA backend; the CPU computes in float32");
    if (is_encoder(d.kind)) check_encoder(path, spec.model_dir, cfg, d);
    p.segments.push_back(d);
  }
  const GenerationSpec* g = pp.generation.max_new_tokens || pp.generation.temperature || pp.generation.top_k ||
                                    pp.generation.top_p || pp.generation.seed
                                ? &pp.generation
                                : nullptr;
  generation = nlohmann::json::object();
  if (g) {
    if (g->max_new_tokens) generation["max_new_tokens"] = *g->max_new_tokens;
    if (g->temperature) generation["temperature"] = *g->temperature;
    if (g->top_k) generation["top_k"] = *g->top_k;
    if (g->top_p) generation["top_p"] = *g->top_p;
    if (g->seed) generation["seed"] = *g->seed;
  }
  return p;
}

}  // namespace segpipe
