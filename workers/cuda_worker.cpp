#include "workers/cuda_worker.h"

#include "segments/core/errors.h"
#include "segments/core/finite.h"

namespace segpipe::proto {

nlohmann::json to_json(const CudaWorkerSpec& s) {
  return {{"device", to_string(s.device)}, {"dtype", to_string(s.dtype)},
          {"kernels", to_string(s.kernels)}, {"memory", to_string(s.memory)},
          {"synthetic", s.synthetic}, {"seed", s.seed},
          {"graphs", s.graphs},       {"arena_handle", s.arena_handle},
          {"arena_bytes", s.arena_bytes}, {"slots", s.slots},
          {"kv_offset", s.kv_offset}, {"moe", s.moe}, {"spin_count", s.spin_count}};
}

CudaWorkerSpec cuda_worker_spec_from_json(const nlohmann::json& j) {
  CudaWorkerSpec s;
  const std::string device = j.at("device"), dtype = j.at("dtype");
  const auto d = parse_device(device);
  const auto t = parse_compute_dtype(dtype);
  if (!d || !d->is_cuda()) throw InputError("gpu worker spec: device '" + device + "': expected cuda:N");
  if (!t) throw InputError("gpu worker spec: dtype '" + dtype + "': expected float32 or bfloat16");
  const std::string kernels = j.at("kernels"), memory = j.at("memory");
  const auto k = parse_gpu_kernels(kernels);
  const auto m = parse_gpu_memory(memory);
  if (!k) throw InputError("gpu worker spec: kernels '" + kernels + "': expected auto or portable");
  if (!m || *m == GpuMemory::automatic) throw InputError("gpu worker spec: memory '" + memory + "': expected device or unified");
  s.device = *d;
  s.dtype = *t;
  s.kernels = *k;
  s.memory = *m;
  s.synthetic = j.at("synthetic");
  s.seed = j.at("seed");
  s.graphs = j.at("graphs");
  s.arena_handle = j.at("arena_handle");
  s.arena_bytes = j.at("arena_bytes");
  s.slots = j.at("slots").get<std::vector<uint64_t>>();
  s.kv_offset = j.at("kv_offset");
  s.moe = j.value("moe", std::vector<uint64_t>{});
  s.spin_count = j.value("spin_count", 0u);
  if (s.memory == GpuMemory::unified && (!s.arena_handle.empty() || !s.slots.empty()))
    throw InputError("gpu worker spec: memory 'unified' with a device arena (arena_handle, slots): under unified "
                     "the state lives in the shared arena");
  return s;
}

}  // namespace segpipe::proto

#ifndef SEGPIPE_HAVE_CUDA

namespace segpipe {

int cuda_worker_main(const proto::WorkerSpec& spec, const proto::CudaWorkerSpec&) {
  throw InputError("segment '" + spec.name + "' runs on a cuda device, which needs the CUDA backend (this build "
                   "does not have it)");
}

}  // namespace segpipe

#else

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>

#include "segments/checkpoint/checkpoint.h"
#include "segments/cuda/cuda_makers.h"
#include "segments/cuda/kinds.h"
#include "segments/factory/segment_factory.h"
#include "segments/kernels/cuda/moe.cuh"
#include "segments/model/config_file.h"
#include "shm/arena.h"
#include "shm/channel.h"
#include "workers/capture_writer.h"
#include "workers/cuda_ipc_handle.h"
#include "workers/cuda_remote_banks.h"
#include "workers/serve_loop.h"
#include "workers/worker_support.h"

namespace segpipe {

namespace {

using namespace std::chrono_literals;

using worker::bytes_of;

class CudaWorker : public worker::ServedSegment {
 public:
  CudaWorker(const proto::WorkerSpec& s, const proto::CudaWorkerSpec& g)
      : spec_(s), gpu_(g), arena_(shm::Arena::open(s.arena)), ch_(shm::Channel::attach(arena_, s.channel_block)) {
    status_ = arena_.payload_span<proto::SegmentStatus>(s.status_block).data();
    if (g.spin_count) ch_.set_spin_count(g.spin_count);
  }

  void start_heartbeat() {
    hb_ = std::thread([this] {
      while (!stop_hb_.load()) {
        if (worker::busy_watch().moving(0))  // no progress signal from inside a GPU step
          std::atomic_ref<uint64_t>(status_[spec_.index].heartbeat).fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(20ms);
      }
    });
  }

  ~CudaWorker() {
    stop_hb_ = true;
    if (hb_.joinable()) hb_.join();
    if (graph_) cudaGraphExecDestroy(graph_);
    seg_.reset();
    remote_.reset();
    if (dev_arena_) cudaIpcCloseMemHandle(dev_arena_);
    if (registered_) cudaHostUnregister(arena_.base());
    if (pinned_) cudaFreeHost(pinned_);
  }

  void load() {
    cuda::require_device(gpu_.device.index);
    ctx_ = std::make_unique<cuda::Context>(gpu_.device.index, gpu_.kernels);
    // The shared-memory arena, mapped for the GPU: ids, logits, captures and CPU/GPU boundaries.
    SEGPIPE_CUDA_CHECK(cudaHostRegister(arena_.base(), arena_.size_bytes(), cudaHostRegisterMapped | cudaHostRegisterPortable));
    registered_ = true;
    void* d = nullptr;
    SEGPIPE_CUDA_CHECK(cudaHostGetDevicePointer(&d, arena_.base(), 0));
    host_dev_ = static_cast<char*>(d);
    if (!gpu_.arena_handle.empty()) {
      cudaIpcMemHandle_t h = ipc_handle_from_hex(gpu_.arena_handle);
      void* p = nullptr;
      SEGPIPE_CUDA_CHECK(cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess));
      dev_arena_ = static_cast<char*>(p);
    }
    // Where the slots, KV caches and bank exchange are: the device arena, or under unified the shared
    // arena itself (as the GPU sees it); offsets from its first byte either way.
    if (gpu_.memory == GpuMemory::unified) {
      if (gpu_.arena_bytes != arena_.size_bytes())
        throw RuntimeFailure("segment '" + spec_.name + "': the shared arena holds " + std::to_string(arena_.size_bytes()) +
                             " bytes, not the " + std::to_string(gpu_.arena_bytes) + " its spec names");
      state_ = host_dev_;
    } else {
      state_ = dev_arena_;
    }
    SEGPIPE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&pinned_), sizeof(int32_t) * 2));
    if (gpu_.synthetic) {
      cfg_ = read_config();
    } else {
      ck_ = Checkpoint::open(spec_.model_dir);
      cfg_ = parse_model_config(ck_->config_json(), spec_.model_dir + "/config.json");
    }
    cuda::WeightOptions wo;
    wo.compute = gpu_.dtype == ComputeDType::bfloat16 ? DType::BF16 : DType::F32;
    wo.synthetic = gpu_.synthetic;
    wo.seed = gpu_.seed;
    wo.memory = gpu_.memory;
    weights_ = std::make_unique<cuda::WeightSource>(*ctx_, cfg_, ck_.get(), wo);
    const int64_t H = cfg_.hidden;
    SegmentEnv env;
    env.cfg = &cfg_;
    env.max_seq = spec_.max_seq;
    env.cuda_context = ctx_.get();
    env.cuda_weights = weights_.get();  // the engine options: the defaults
    // A layers segment's KV caches live in the state arena: a restarted worker finds them as the last
    // one left them.
    if (gpu_.kv_offset >= 0) {
      const uint64_t kv = static_cast<uint64_t>(spec_.layer_last - spec_.layer_first + 1) *
                          static_cast<uint64_t>(cuda::Layers::kv_floats_per_layer(cfg_, spec_.max_seq)) * 4;
      if (!state_ || static_cast<uint64_t>(gpu_.kv_offset) > gpu_.arena_bytes ||
          kv > gpu_.arena_bytes - static_cast<uint64_t>(gpu_.kv_offset))
        throw RuntimeFailure("layers segment without its KV cache in the " + std::string(state_name()));
      env.kv = {reinterpret_cast<float*>(state_ + gpu_.kv_offset), static_cast<size_t>(kv / 4)};
    } else if (spec_.kind == SegmentKind::layers) {
      throw RuntimeFailure("layers segment without its KV cache in the " + std::string(state_name()));
    }
    // A layers segment whose experts live in banks calls the bank processes through the bank exchange.
    if (spec_.banks) {
      remote_ = std::make_unique<CudaRemoteBanks>(spec_, arena_, status_, *ctx_, cfg_, wo.compute, exchange(),
                                                   gpu_.spin_count);
      env.banks.push_back(remote_.get());
    }
    add_cuda_segment_backend();
    seg_ = make_segment(spec_, env);
    bank_ = seg_->bank();
    // A bank: only its own experts' weights; requests and slots in the bank exchange.
    if (bank_) exchange_ = exchange();
    // The step's staging buffers on the device (step() below): the hidden states, the position, and
    // for an lm_head the logits and the norm before they go to the shared arena.
    if (!bank_) x_.grow(static_cast<size_t>(spec_.max_tokens * H));
    pos_.grow(1);
    if (spec_.kind == SegmentKind::lm_head) {
      logits_.grow(static_cast<size_t>(std::max<int64_t>(1, spec_.capture_tokens) * cfg_.vocab));
      normed_.grow(static_cast<size_t>(std::max<int64_t>(1, spec_.capture_tokens) * H));
    }
    ctx_->sync();
  }

  int serve() { return worker::serve(spec_, ch_, status_, *this); }

  const std::vector<LoadedTensor>& loaded() const override { return seg_->loaded(); }
  uint64_t weight_bytes() const override { return seg_->weight_bytes(); }
  void add_to_report(proto::ReportReply& r) const override { r.weights_in_place = weights_->tensors_read_in_place(); }

 private:
  ModelConfig read_config();

  const char* state_name() const { return gpu_.memory == GpuMemory::unified ? "shared arena" : "device arena"; }

  // A step's block as a pointer the GPU can use: a device-arena slot, or the mapped shared arena.
  char* dev(uint32_t block) const {
    if (block & proto::kDeviceSlot) {
      uint32_t i = block & ~proto::kDeviceSlot;
      if (!dev_arena_ || i >= gpu_.slots.size() || gpu_.slots[i] >= gpu_.arena_bytes)
        throw RuntimeFailure("device slot " + std::to_string(i) + " does not exist");
      return dev_arena_ + gpu_.slots[i];
    }
    return host_dev_ + (arena_.payload(block).data() - arena_.base());
  }

  // The bank exchange (device arena, or the shared arena under unified): x, expert ids, weights, slots.
  std::vector<char*> exchange() const {
    if (!state_ || gpu_.moe.size() != 4)
      throw RuntimeFailure("segment '" + spec_.name + "' has no bank exchange in the " + state_name());
    std::vector<char*> p;
    for (uint64_t off : gpu_.moe) {
      if (off >= gpu_.arena_bytes) throw RuntimeFailure(std::string("bank exchange outside the ") + state_name());
      p.push_back(state_ + off);
    }
    return p;
  }

  // A bank: the slots of its experts for one layer's request, from and into the bank exchange.
  void experts(std::span<const std::byte> args) override {
    const auto a = worker::args_as<proto::CudaExpertArgs>(args);
    if (!bank_) throw RuntimeFailure("only expert banks compute experts");
    if (a.T <= 0 || a.T > spec_.max_tokens || a.k != cfg_.top_k)
      throw RuntimeFailure("expert request of " + std::to_string(a.T) + " tokens, top-" + std::to_string(a.k) +
                           " does not fit the bank exchange");
    ExpertRequest r;
    r.layer = a.layer;
    r.x = exchange_[0];
    r.T = a.T;
    r.k = a.k;
    r.experts = reinterpret_cast<const int32_t*>(exchange_[1]);
    r.weights = reinterpret_cast<const float*>(exchange_[2]);
    r.slots = exchange_[3];  // float32 bytes are enough for either slot dtype
    r.grouped = a.grouped != 0;
    r.x_dtype = weights_->options().compute;
    r.slot_dtype = cuda::moe_slot_dtype(r.x_dtype, r.grouped);
    if (r.grouped && !bank_->groups_on_device(r.T, r.k)) {
      // The grouped path sorts the slots by expert on the host, as the layer's host copy would.
      host_experts_.resize(static_cast<size_t>(a.T * a.k));
      SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(host_experts_.data(), r.experts, host_experts_.size() * 4,
                                         cudaMemcpyDefault, ctx_->stream()));  // device or mapped host memory
      ctx_->sync();
      r.host_experts = host_experts_.data();
    }
    bank_->compute(r);
    ctx_->sync();  // the slots are complete before the answer
  }

  void step(const proto::StepArgs& a) override {
    if (bank_) throw RuntimeFailure("an expert bank does not run steps");
    const int64_t H = cfg_.hidden, T = a.T;
    if (T <= 0 || T > spec_.max_tokens) throw RuntimeFailure("step of " + std::to_string(T) + " tokens exceeds the buffers");
    // The orchestrator sends a GPU segment no media (ShmTransport::carries_media); a step that has some
    // would be computed as text, silently wrong.
    if (a.media_embed_n || a.media_ds_n || a.media_rope || a.rope_delta)
      throw RuntimeFailure("a step with audio or images: GPU segments do not take media yet");
    cudaStream_t st = ctx_->stream();
    // What the blocks hold is StepIO's contract for the kind; where they are decides the staging: the
    // token ids are in the shared arena (checked there, read in place by the device), hidden states in a
    // device slot or the mapped shared arena, the logits and the norm go to the shared arena.
    StepIO io;
    io.T = T;
    io.pos0 = a.pos0;
    io.all_positions = a.all_logits != 0;
    switch (spec_.kind) {
      case SegmentKind::embeddings: {
        const int32_t* ids = arena_.payload_span<int32_t>(a.in_block).data();
        for (int64_t t = 0; t < T; t++)
          if (ids[t] < 0 || ids[t] >= cfg_.vocab) throw InputError("token id " + std::to_string(ids[t]) + " is out of range");
        io.in = dev(a.in_block);
        io.out = reinterpret_cast<float*>(dev(a.out_block));
        seg_->step(io);
        break;
      }
      case SegmentKind::layers: {
        // Read `in`, compute in the worker's own buffer, write `out`: the input survives a crash.
        pinned_[0] = static_cast<int32_t>(a.pos0);
        std::unique_ptr<CaptureWriter> cap;
        if (a.capture) cap = std::make_unique<CaptureWriter>(spec_, arena_, cfg_, T);
        // Remote banks take host round trips inside every MoE layer: no graph, one-token steps run eagerly.
        if (T == 1 && !cap && gpu_.graphs && !remote_) {
          decode_graph(a.pos0, dev(a.in_block), dev(a.out_block));
        } else {
          layer_step(T, a.pos0, dev(a.in_block), dev(a.out_block), cap.get());
        }
        break;
      }
      case SegmentKind::lm_head: {
        const int64_t rows = a.all_logits ? T : 1;
        if (a.all_logits && T > std::max<int64_t>(1, spec_.capture_tokens))
          throw RuntimeFailure("all-position logits of " + std::to_string(T) + " tokens exceed the logits block");
        const size_t bytes = static_cast<size_t>(T * H) * 4;
        SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(x_.get(), dev(a.in_block), bytes, cudaMemcpyDefault, st));
        io.in = x_.get();
        io.out = logits_.get();
        io.normed = a.capture ? normed_.get() : nullptr;
        seg_->step(io);
        float* out = arena_.payload_span<float>(a.out_block).data();
        SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(out, logits_.get(), static_cast<size_t>(rows * cfg_.vocab) * 4,
                                           cudaMemcpyDeviceToHost, st));
        if (a.capture)
          SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(arena_.payload_span<float>(spec_.norm_block).data(), normed_.get(),
                                             bytes, cudaMemcpyDeviceToHost, st));
        ctx_->sync();
        // Always checked, as the CPU lm_head does: one scan of the rows just copied to the host.
        check_finite(out, rows, cfg_.vocab, "logits");
        break;
      }
      case SegmentKind::experts: break;  // refused above: a bank has no step
      // The plan refuses encoders on a GPU (pipeline_to_plan's check_encoder): no GPU worker holds one.
      case SegmentKind::audio_encoder:
      case SegmentKind::vision_encoder: throw RuntimeFailure("the GPU runs no encoder segment");
    }
    ctx_->sync();  // finished before the answer: the doorbell orders the next segment after us
  }

  // in -> x_, the layers on x_ in place, x_ -> out; the position from pinned_[0] through pos_ (a
  // captured graph replays at every position).
  void layer_step(int64_t T, int64_t pos0, const char* in, char* out, BoundaryObserver* cap) {
    cudaStream_t st = ctx_->stream();
    const size_t bytes = static_cast<size_t>(T * cfg_.hidden) * 4;
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(pos_.get(), pinned_, 4, cudaMemcpyHostToDevice, st));
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(x_.get(), in, bytes, cudaMemcpyDefault, st));
    StepIO io;
    io.in = x_.get();
    io.out = x_.get();
    io.T = T;
    io.pos0 = pos0;
    io.pos0_at = pos_.get();
    io.observer = cap;
    seg_->step(io);
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(out, x_.get(), bytes, cudaMemcpyDefault, st));
  }

  // One-token steps: the first runs eagerly (sizes the scratch buffers), the second is captured
  // into a graph (copies and position included), every later one replays it; captured again if
  // the step's blocks change.
  void decode_graph(int64_t pos0, const char* in, char* out) {
    cudaStream_t st = ctx_->stream();
    if (graph_ && (in != graph_in_ || out != graph_out_ || graph_epoch_ != cuda::buffer_epoch())) {
      cudaGraphExecDestroy(graph_);
      graph_ = nullptr;
    }
    if (!graph_) {
      if (!warm_) {
        layer_step(1, pos0, in, out, nullptr);
        warm_ = true;
        return;
      }
      if (pos0 + 1 > spec_.max_seq) throw RuntimeFailure("sequence exceeds the KV cache");
      graph_ = cuda::capture_graph(st, [&] { layer_step(1, pos0, in, out, nullptr); });
      graph_in_ = in;
      graph_out_ = out;
      graph_epoch_ = cuda::buffer_epoch();
    }
    if (pos0 + 1 > spec_.max_seq)
      throw RuntimeFailure("sequence of " + std::to_string(pos0 + 1) + " tokens exceeds the KV cache (" +
                           std::to_string(spec_.max_seq) + " positions)");
    SEGPIPE_CUDA_CHECK(cudaGraphLaunch(graph_, st));
  }

  proto::WorkerSpec spec_;
  proto::CudaWorkerSpec gpu_;
  shm::Arena arena_;
  shm::Channel ch_;
  proto::SegmentStatus* status_ = nullptr;
  std::thread hb_;
  std::atomic<bool> stop_hb_{false};
  std::unique_ptr<cuda::Context> ctx_;
  bool registered_ = false;
  char* host_dev_ = nullptr;   // the shared arena's base as the GPU sees it
  char* dev_arena_ = nullptr;  // the orchestrator's device arena, mapped here
  char* state_ = nullptr;      // where the KV caches and the bank exchange are: dev_arena_, or host_dev_ (unified)
  int32_t* pinned_ = nullptr;
  std::shared_ptr<Checkpoint> ck_;
  ModelConfig cfg_;
  std::unique_ptr<cuda::WeightSource> weights_;
  std::unique_ptr<CudaRemoteBanks> remote_;  // layers with banks; before seg_: the segment calls it until it is gone
  std::unique_ptr<Segment> seg_;
  ExpertBank* bank_ = nullptr;               // seg_'s bank (kind experts)
  std::vector<char*> exchange_;              // kind experts: the bank exchange
  std::vector<int32_t> host_experts_;
  cuda::Buffer<float> x_, logits_, normed_;
  cuda::Buffer<int32_t> pos_;
  cudaGraphExec_t graph_ = nullptr;
  const char* graph_in_ = nullptr;
  char* graph_out_ = nullptr;
  uint64_t graph_epoch_ = 0;  // cuda::buffer_epoch() when graph_ was captured
  bool warm_ = false;
};

ModelConfig CudaWorker::read_config() { return read_model_config(spec_.model_dir); }

}  // namespace

int cuda_worker_main(const proto::WorkerSpec& spec, const proto::CudaWorkerSpec& gpu) {
  CudaWorker w(spec, gpu);
  w.start_heartbeat();
  w.load();
  return w.serve();
}

}  // namespace segpipe

#endif
