#include "orchestrator/drivers/shm_transport.h"

#include <algorithm>
#include <cstring>
#include <span>
#include <string>

#include "orchestrator/drivers/segment_roles.h"
#include "segments/core/errors.h"
#include "segments/model/config_file.h"
#include "shm/cleanup.h"

namespace segpipe {

namespace {
RunPlan segments_of_host(RunPlan plan, int host) {
  std::erase_if(plan.segments, [&](const SegmentDesc& d) { return d.host != host; });
  return plan;
}
}  // namespace

ShmTransport::ShmTransport(const RunPlan& plan, const ShmOptions& opt, const CudaShmOptions& cuda)
    : plan_(plan),
      local_plan_(segments_of_host(plan, opt.host)),
      opt_(opt),
      cuda_(cuda),
      sharing_(local_plan_, cuda_.sharing) {
  // sharing_ (a member made first) started the MPS server before this run's first CUDA call: the device
  // count of these checks.
  check_gpu_segments(local_plan_, cuda_.synthetic);
  if (cuda_.synthetic) {
    cfg_ = read_model_config(plan_.model_dir);  // weights made by each GPU worker
  } else {
    auto ck = Checkpoint::open(plan_.model_dir);
    cfg_ = parse_model_config(ck->config_json(), plan_.model_dir + "/config.json");
    check_segment_roles(*ck, cfg_, local_plan_);
  }
  shm::remove_stale_arenas();
  shm::install_unlink_on_signal();
  sharing_.check();
  arena_ = std::make_unique<ShmRunArena>(plan_, cfg_, opt_.capture_tokens, cuda_, opt_.host);
  workers_ = std::make_unique<ShmWorkers>(*arena_, plan_);
  sharing_.confirm();  // before any worker starts: they inherit the MPS environment
  media_ = arena_->media_blocks().has_value();
  for (const SegmentDesc& d : plan_.segments)
    if (takes_step_media(d) && d.device.is_cuda()) media_ = false;
  workers_->start_all();
}

void ShmTransport::begin_step(const StepInput& in) {
  in_ = in;
  std::memcpy(arena_->ids(), in.ids, static_cast<size_t>(in.T) * 4);
  if (in.media) put_media(*in.media);
}

// The step's media into the blocks the embeddings and layers workers read (each checks the positions
// before it writes through them: media_rows.h).
void ShmTransport::put_media(const StepMedia& m) {
  if (!media_) throw InputError("this pipeline does not carry audio or images");
  const ShmRunArena::StepMediaBlocks b = *arena_->media_blocks();
  const int64_t T = in_.T, H = cfg_.hidden;
  // Each copy bounded by its block (T is at most the step's tokens, which the blocks hold).
  auto put = [](auto span, const auto* from, int64_t n, const char* what) {
    if (n < 0 || static_cast<uint64_t>(n) > span.size())
      throw InputError(std::string("a step's media: ") + what + " do not fit the step's block");
    if (n) std::memcpy(span.data(), from, static_cast<size_t>(n) * sizeof(*from));
  };
  if (m.rope_positions) put(b.rope, m.rope_positions, 3 * T, "the 3-D positions");
  if (m.embed.n > T || m.deepstack.n > T)
    throw InputError("a step of " + std::to_string(T) + " tokens with more media rows than tokens");
  put(b.embed_index, m.embed.index, m.embed.n, "the rows' positions");
  put(b.embed_rows, m.embed.rows, m.embed.n * H, "the rows");
  if (m.deepstack.n) {
    if (m.deepstack.levels < 1) throw InputError("DeepStack rows without a level");
    put(b.ds_index, m.deepstack.index, m.deepstack.n, "the DeepStack rows' positions");
    put(b.ds_rows, m.deepstack.rows, m.deepstack.levels * m.deepstack.n * H, "the DeepStack rows (more levels than the vision tower has)");
  }
}

void ShmTransport::encode(int segment, const EncoderIO& io) {
  const ShmSegment& p = arena_->segments()[static_cast<size_t>(segment)];
  const std::span<float> in = arena_->encoder_in(segment), out = arena_->encoder_out(segment);
  const std::span<int32_t> grids = arena_->encoder_grids(segment);
  // Audio features are [mel, frames], image patches [frames, patch_dim]: frames times the other side.
  const int64_t width = arena_->encoder_in_width(segment);
  // frames bounded first, so that frames * width cannot overflow.
  if (io.frames < 1 || io.frames > static_cast<int64_t>(in.size()) / width || io.n_grids < 0 ||
      io.n_grids * 3 > static_cast<int64_t>(grids.size()) || io.out_floats < 1 ||
      io.out_floats > static_cast<int64_t>(out.size()))
    throw InputError("a piece of media larger than the pipeline's context holds (max_seq " + std::to_string(plan_.max_seq) +
                     " positions): encoder segment '" + p.desc.name + "' (" + to_string(p.desc.kind) + ") has no room for it");
  const proto::EncodeArgs a{io.frames, io.n_grids, io.frames * width, io.out_floats};
  std::memcpy(in.data(), io.in, static_cast<size_t>(a.in_floats) * 4);
  if (a.n_grids) std::memcpy(grids.data(), io.grids, static_cast<size_t>(a.n_grids * 3) * 4);
  workers_->call(segment, proto::kEncode, std::as_bytes(std::span<const proto::EncodeArgs>(&a, 1)));
  std::memcpy(io.out, out.data(), static_cast<size_t>(a.out_floats) * 4);
}

void ShmTransport::run(const Stage& stage) {
  proto::StepArgs a = arena_->step_args(stage);
  a.pos0 = in_.pos0;
  a.T = in_.T;
  a.all_logits = in_.all_logits ? 1u : 0u;
  a.capture = in_.observer ? 1u : 0u;
  if (const StepMedia* m = in_.media) {
    // As InprocTransport gives them: the stage that reads the ids is the embeddings (the rows over
    // them); the stages between two hidden states are layers (positions, DeepStack).
    if (stage.in.is_ids()) {
      a.media_embed_n = static_cast<int32_t>(m->embed.n);
    } else if (stage.out.is_hidden()) {
      a.media_rope = m->rope_positions ? 1u : 0u;
      a.rope_delta = m->rope_delta;
      a.media_ds_n = static_cast<int32_t>(m->deepstack.n);
      a.media_ds_levels = m->deepstack.levels;
    }
  }
  workers_->call(stage.segment, proto::kStep, std::as_bytes(std::span<const proto::StepArgs>(&a, 1)));
  if (stage.out.is_logits()) {
    const float* out = arena_->logits();
    std::copy(out, out + in_.logits->size(), in_.logits->data());
  }
  if (in_.observer) show_captures(stage);
}

// The boundaries the segment computed, from where it left them, in the order a whole step shows them:
// the embeddings; each layer's router logits, routes and output; the final norm and the logits.
void ShmTransport::show_captures(const Stage& stage) {
  BoundaryObserver& obs = *in_.observer;
  const int64_t T = in_.T, H = cfg_.hidden;
  const ShmSegment& p = arena_->segments()[static_cast<size_t>(stage.segment)];
  if (stage.in.is_ids()) {
    std::vector<float> scratch;
    obs.on_tensor(stage.out.boundary, arena_->read_hidden(stage, T, scratch), T, H);
  } else if (stage.out.is_hidden()) {
    auto cl = arena_->capture_layout(p.desc);
    const float* base = arena_->arena().payload_span<float>(p.spec.capture_block).data();
    for (int l = p.desc.layer_first; l <= p.desc.layer_last; l++) {
      if (cfg_.is_moe_layer(l)) {
        obs.on_tensor(Boundary::router_logits(l), base + cl.logits(l), T, cfg_.num_experts);
        obs.on_route(l, reinterpret_cast<const int32_t*>(base + cl.experts(l)), base + cl.weights(l), T, cfg_.top_k);
      }
      obs.on_tensor(Boundary::output(l), base + cl.output(l), T, H);
    }
  } else {
    obs.on_tensor(Boundary::norm(), arena_->norm(), T, H);
    if (in_.all_logits) obs.on_tensor(Boundary::logits(), in_.logits->data(), T, cfg_.vocab);
  }
}

void ShmTransport::shutdown() noexcept {
  if (workers_) workers_->shutdown();
  if (arena_) arena_->release();  // the creator unlinks the arena
}

std::vector<SegmentReport> ShmTransport::reports() {
  std::vector<SegmentReport> out;
  for (size_t i = 0; i < arena_->segments().size(); i++) {
    const ShmSegment& p = arena_->segments()[i];
    if (!p.local) continue;
    const int index = static_cast<int>(i);
    auto r = workers_->call(index, proto::kReport, {});
    proto::ReportReply rr{};
    std::memcpy(&rr, r.data(), std::min(r.size(), sizeof rr));
    const proto::HelloReply& hello = workers_->hello(index);
    SegmentReport sr;
    sr.name = p.desc.name;
    sr.kind = to_string(p.desc.kind);
    sr.pid = workers_->pid(index);
    sr.tensors = hello.tensors;
    sr.weight_bytes = hello.weight_bytes;
    sr.peak_rss_bytes = rr.peak_rss_bytes;
    // Names page by page: each reply carries as many whole names as fit.
    while (sr.tensor_names.size() < hello.tensors) {
      uint64_t first = sr.tensor_names.size();
      auto names = workers_->call(index, proto::kNames, std::as_bytes(std::span<const uint64_t>(&first, 1)));
      std::string text(reinterpret_cast<const char*>(names.data()), names.size());
      if (text.empty()) throw RuntimeFailure("segment '" + p.desc.name + "' reported no tensor names");
      for (size_t a = 0, b; (b = text.find('\n', a)) != std::string::npos; a = b + 1) sr.tensor_names.push_back(text.substr(a, b - a));
    }
    sr.max_resident_experts = rr.max_resident_experts;
    sr.expert_uses = rr.expert_uses;
    sr.expert_hits = rr.expert_hits;
    sr.expert_loads = rr.expert_loads;
    sr.expert_evictions = rr.expert_evictions;
    sr.expert_bytes_loaded = rr.expert_bytes_loaded;
    if (p.gpu) sr.gpu_memory = to_string(p.gpu_spec.memory);
    sr.weights_in_place = rr.weights_in_place;
    out.push_back(sr);
  }
  return out;
}

}  // namespace segpipe
