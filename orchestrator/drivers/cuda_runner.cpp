#include "orchestrator/drivers/cuda_runner.h"

#include "segments/core/errors.h"
#include "segments/core/finite.h"

#ifndef SEGPIPE_HAVE_CUDA

namespace segpipe {

bool cuda_backend_built() { return false; }
int cuda_visible_devices() { return 0; }

std::unique_ptr<CudaRunner> make_cuda_runner(const RunPlan& plan, const ModelConfig&, const CudaRunnerOptions&) {
  throw InputError(plan.source + ": segments on a cuda device need the CUDA backend, which this build does not have "
                   "(configure with -DSEGPIPE_CUDA=ON)");
}

}  // namespace segpipe

#else

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "segments/checkpoint/checkpoint.h"
#include "segments/cuda/cuda_makers.h"
#include "segments/cuda/kinds.h"
#include "segments/cuda/unified_memory.h"
#include "segments/factory/segment_factory.h"
#include "segments/kernels/cuda/greedy.cuh"

namespace segpipe {

bool cuda_backend_built() { return true; }
int cuda_visible_devices() { return cuda::device_count(); }

namespace {

class CudaRunnerImpl : public CudaRunner {
 public:
  CudaRunnerImpl(const RunPlan& plan, const ModelConfig& cfg, const CudaRunnerOptions& opt)
      : plan_(plan), cfg_(cfg), opt_(opt) {
    SEGPIPE_ASSERT(!plan.segments.empty());
    const Device device = plan.segments.front().device;
    const ComputeDType dtype = plan.segments.front().dtype;
    for (const SegmentDesc& s : plan.segments)
      if (!s.device.is_cuda() || s.device != device || s.dtype != dtype)
        throw InputError(plan.source + ": segment '" + s.name + "' runs on " + to_string(s.device) + " in " +
                         to_string(s.dtype) + ", but the GPU runner needs every segment on one GPU in one dtype (" +
                         to_string(device) + ", " + to_string(dtype) + ")");
    cuda::require_device(device.index);
    const GpuKernels kernels = plan.gpu_kernels == GpuKernels::portable ? GpuKernels::portable : opt.kernels;
    ctx_ = std::make_unique<cuda::Context>(device.index, kernels);
    device_ = to_string(device);
    cuda::WeightOptions wo;
    wo.compute = dtype == ComputeDType::bfloat16 ? DType::BF16 : DType::F32;
    wo.synthetic = opt.synthetic;
    wo.seed = opt.seed;
    memory_ = cuda::resolve_gpu_memory(plan.gpu_memory, device.index);
    wo.memory = memory_;
    if (!opt.synthetic) ck_ = Checkpoint::open(plan.model_dir);
    weights_ = std::make_unique<cuda::WeightSource>(*ctx_, cfg_, ck_.get(), wo);
    eo_.gemv_max_tokens = opt.gemv_max_tokens;
    eo_.grouped_gemm = opt.grouped_gemm;
    eo_.device_grouped = opt.device_grouped;
    eo_.fused_decode = opt.fused_decode;
    eo_.flash_attention = opt.flash_attention;
    make_segments();
    SEGPIPE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_io_), sizeof(int32_t) * 2));
    ids_.grow(16);
    pos_.grow(1);
    x_.grow(static_cast<size_t>(cfg_.hidden));
    // decode_greedy's state, never reallocated (its graph keeps the addresses)
    greedy_tokens_.grow(static_cast<size_t>(std::max<int64_t>(1, plan.max_seq)));
    greedy_step_.grow(1);
    greedy_val_.grow(static_cast<size_t>(cuda::greedy_blocks()));
    greedy_idx_.grow(static_cast<size_t>(cuda::greedy_blocks()));
    greedy_ticket_.grow(1);
    SEGPIPE_CUDA_CHECK(cudaMemsetAsync(greedy_ticket_.get(), 0, sizeof(unsigned), ctx_->stream()));
  }

  ~CudaRunnerImpl() override {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    if (greedy_exec_) cudaGraphExecDestroy(greedy_exec_);
    if (host_io_) cudaFreeHost(host_io_);
    if (host_logits_) cudaFreeHost(host_logits_);
  }

  void step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
            std::vector<float>& logits) override {
    const int64_t V = cfg_.vocab;
    run(ids, T, pos0, all_logits, obs);
    const int64_t rows = all_logits ? T : 1;
    logits.resize(static_cast<size_t>(rows * V));
    if (rows == 1) {
      // One row a decode step: through pinned memory (a pageable destination makes the driver stage
      // the copy in pieces, several times slower), then a host copy.
      if (!host_logits_) SEGPIPE_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_logits_), V * sizeof(float)));
      SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(host_logits_, logits_.get(), V * sizeof(float), cudaMemcpyDeviceToHost,
                                         ctx_->stream()));
      ctx_->sync();
      std::memcpy(logits.data(), host_logits_, V * sizeof(float));
    } else {
      SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(logits.data(), logits_.get(), logits.size() * 4, cudaMemcpyDeviceToHost,
                                         ctx_->stream()));
      ctx_->sync();
    }
    // Always checked, on the host copy the caller gets anyway (one scan of V floats a decode step).
    // On the GPU the layers' outputs are not scanned (a device reduction per layer would cost a launch
    // each); `segpipe dump` or `bisect` names the first layer that went non-finite.
    try {
      check_finite(logits.data(), rows, V, "logits");
    } catch (const RuntimeFailure& e) {
      throw RuntimeFailure("segment '" + head_name_ + "': " + e.what());
    }
    // The observer saw the final norm and the logits in the lm_head's step (cuda::LmHead::step).
  }

  void step_device(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits) override {
    run(ids, T, pos0, all_logits, nullptr);
    ctx_->sync();
  }

  void step_device_eager(const int32_t* ids, int64_t T, int64_t pos0) override {
    bool g = opt_.graphs;
    opt_.graphs = false;
    try {
      run(ids, T, pos0, false, nullptr);
    } catch (...) {
      opt_.graphs = g;
      throw;
    }
    opt_.graphs = g;
    ctx_->sync();
  }

  const float* logits_device() const override { return logits_.get(); }

  void prepare_greedy(int32_t token, int64_t pos0) override {
    check_greedy_args(token, pos0, 1);
    if (!warm_) {
      // The first one-token step runs eagerly (it sizes every scratch buffer); the chain rewrites its
      // K/V rows at pos0 with the same values.
      run(&token, 1, pos0, false, nullptr);
      warm_ = true;
    }
    if (!opt_.graphs) return;
    if (greedy_exec_ && greedy_epoch_ != cuda::buffer_epoch()) {
      cudaGraphExecDestroy(greedy_exec_);
      greedy_exec_ = nullptr;
    }
    if (!greedy_exec_) {
      // Captured, not run: the steps read their token and position from ids_ and pos_, which
      // decode_greedy sets before each replay.
      const cuda::GreedyState gs = greedy_state();
      greedy_exec_ = cuda::capture_graph(ctx_->stream(), [&] {
        device_work(1, pos0, false, nullptr);
        cuda::greedy_next_token(logits_.get(), cfg_.vocab, gs, ctx_->kernels(), ctx_->stream());
      });
      greedy_epoch_ = cuda::buffer_epoch();
    }
    ctx_->sync();
  }

  std::vector<int32_t> decode_greedy(int32_t token, int64_t pos0, int n) override {
    if (n <= 0) return {};
    check_greedy_args(token, pos0, n);
    prepare_greedy(token, pos0);
    cudaStream_t st = ctx_->stream();
    host_io_[0] = token;
    host_io_[1] = static_cast<int32_t>(pos0);
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(ids_.get(), &host_io_[0], 4, cudaMemcpyHostToDevice, st));
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(pos_.get(), &host_io_[1], 4, cudaMemcpyHostToDevice, st));
    SEGPIPE_CUDA_CHECK(cudaMemsetAsync(greedy_step_.get(), 0, sizeof(int32_t), st));
    if (opt_.graphs) {
      for (int i = 0; i < n; i++) SEGPIPE_CUDA_CHECK(cudaGraphLaunch(greedy_exec_, st));
    } else {
      const cuda::GreedyState gs = greedy_state();
      for (int i = 0; i < n; i++) {
        device_work(1, pos0 + i, false, nullptr);
        cuda::greedy_next_token(logits_.get(), cfg_.vocab, gs, ctx_->kernels(), st);
      }
    }
    std::vector<int32_t> out(static_cast<size_t>(n));
    SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(out.data(), greedy_tokens_.get(), out.size() * 4, cudaMemcpyDeviceToHost, st));
    ctx_->sync();
    // The device's logits check (greedy.cuh): the first marked step names where the chain went wrong;
    // its later steps ran on the marker and are discarded with it.
    for (int i = 0; i < n; i++)
      if (out[size_t(i)] == cuda::kNonFiniteToken)
        throw RuntimeFailure("segment '" + head_name_ + "': non-finite logits (NaN or Inf) at decode step " +
                             std::to_string(i) + " (position " + std::to_string(pos0 + i) +
                             "): the weights or the input hold NaN or Inf");
    return out;
  }

  void reset_graph() override {
    if (graph_exec_) cudaGraphExecDestroy(graph_exec_);
    if (greedy_exec_) cudaGraphExecDestroy(greedy_exec_);
    graph_exec_ = nullptr;
    greedy_exec_ = nullptr;
    warm_ = false;
  }

  cuda::Context& context() override { return *ctx_; }

  std::string device_description() const override { return device_ + " (" + cuda::device_name(ctx_->device()) + ")"; }

  GpuMemory gpu_memory() const override { return memory_; }
  uint64_t weights_read_in_place() const override { return weights_->tensors_read_in_place(); }

  uint64_t weight_bytes() const override {
    uint64_t b = 0;
    for (const auto& s : segs_) b += s->weight_bytes();
    return b;
  }

  int vocab() const override { return cfg_.vocab; }

  std::vector<SegmentReport> reports() override {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    std::vector<SegmentReport> out;
    auto add = [&](const std::string& name, const char* kind, uint64_t bytes) {
      SegmentReport r;
      r.name = name;
      r.kind = kind;
      r.pid = static_cast<long>(getpid());
      r.weight_bytes = bytes;
      r.peak_rss_bytes = static_cast<uint64_t>(ru.ru_maxrss) * 1024;
      r.gpu_memory = to_string(memory_);
      out.push_back(r);
    };
    for (size_t i = 0; i < plan_.segments.size(); i++) {
      const Segment& seg = *segs_[i];
      add(plan_.segments[i].name, to_string(seg.params().kind), seg.weight_bytes());
    }
    return out;
  }

 private:
  void check_greedy_args(int32_t token, int64_t pos0, int n) const {
    if (token < 0 || token >= cfg_.vocab)
      throw InputError("token id " + std::to_string(token) + " is out of range (vocabulary size " +
                       std::to_string(cfg_.vocab) + ")");
    if (pos0 < 0 || pos0 + n > plan_.max_seq)
      throw RuntimeFailure("sequence of " + std::to_string(pos0 + n) + " tokens exceeds the KV cache (" +
                           std::to_string(plan_.max_seq) + " positions)");
  }
  cuda::GreedyState greedy_state() {
    cuda::GreedyState gs;
    gs.ids = ids_.get();
    gs.pos = pos_.get();
    gs.tokens = greedy_tokens_.get();
    gs.step = greedy_step_.get();
    gs.part_val = greedy_val_.get();
    gs.part_idx = greedy_idx_.get();
    gs.ticket = greedy_ticket_.get();
    return gs;
  }

  // The plan's segments through the factory, on this runner's device, context and weights. A layers
  // segment is handed the banks that serve it when it is made, so the banks are made first; the others
  // in plan order, where the embeddings come before the lm_head, which shares their table when the
  // model ties them (SegmentEnv::cuda_tied_embeddings).
  void make_segments() {
    add_cuda_segment_backend();
    SegmentEnv env;
    env.cfg = &cfg_;
    env.max_seq = plan_.max_seq;  // the KV caches: each layers segment's own
    env.cuda_context = ctx_.get();
    env.cuda_weights = weights_.get();
    env.cuda_options = &eo_;
    const auto& descs = plan_.segments;
    segs_.resize(descs.size());
    auto serves_any = [&](const SegmentDesc& s) {
      return std::any_of(descs.begin(), descs.end(), [&](const SegmentDesc& t) { return s.serves(t); });
    };
    for (size_t i = 0; i < descs.size(); i++)
      if (serves_any(descs[i])) segs_[i] = make_segment(descs[i], env);
    for (size_t i = 0; i < descs.size(); i++) {
      if (segs_[i]) continue;
      env.banks.clear();
      for (size_t j = 0; j < descs.size(); j++)
        if (descs[j].serves(descs[i])) env.banks.push_back(segs_[j]->bank());
      segs_[i] = make_segment(descs[i], env);
    }
    // The step's chain: every segment but the banks (the layers segments call those), in plan order
    // (the plan lists them in data-flow order): the first reads the token ids, the last writes the logits.
    for (size_t i = 0; i < descs.size(); i++)
      if (!segs_[i]->bank()) chain_.push_back(segs_[i].get());
    SEGPIPE_ASSERT_MSG(chain_.size() >= 2, "plan without embeddings or lm_head");
    for (size_t i = 0; i < descs.size(); i++)
      if (segs_[i].get() == chain_.back()) head_name_ = descs[i].name;
  }

  // Everything a step does on the device after its inputs are in ids_/pos_: the chain, ids_ -> x_ ->
  // logits_, the layers in place on x_ with their position read from pos_ (so that a captured graph
  // replays at every position).
  void device_work(int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs) {
    StepIO io;
    io.T = T;
    io.pos0 = pos0;
    io.pos0_at = pos_.get();
    io.all_positions = all_logits;
    io.observer = obs;
    for (size_t i = 0; i < chain_.size(); i++) {
      const bool first = i == 0, last = i + 1 == chain_.size();
      io.in = first ? static_cast<const void*>(ids_.get()) : x_.get();
      io.out = last ? logits_.get() : x_.get();
      io.normed = last && obs ? normed_.get() : nullptr;
      chain_[i]->step(io);
    }
  }

  void run(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs) {
    if (T <= 0) throw InputError("a step needs at least one token");
    for (int64_t t = 0; t < T; t++)
      if (ids[t] < 0 || ids[t] >= cfg_.vocab)
        throw InputError("token id " + std::to_string(ids[t]) + " is out of range (vocabulary size " +
                         std::to_string(cfg_.vocab) + ")");
    const int64_t H = cfg_.hidden, V = cfg_.vocab;
    const bool decode = T == 1 && !obs && opt_.graphs;
    if (decode && graph_exec_ && graph_epoch_ != cuda::buffer_epoch()) {
      // A buffer the graph uses moved (a longer prefill grew it): capture again.
      cudaGraphExecDestroy(graph_exec_);
      graph_exec_ = nullptr;
    }
    if (!decode || !graph_exec_) {
      // Buffers are sized before any capture, never inside one.
      ids_.grow(static_cast<size_t>(T));
      x_.grow(static_cast<size_t>(T * H));
      normed_.grow(static_cast<size_t>(T * H));
      logits_.grow(static_cast<size_t>((all_logits ? T : 1) * V));
    }
    cudaStream_t st = ctx_->stream();
    if (T == 1) {
      host_io_[0] = ids[0];
      host_io_[1] = static_cast<int32_t>(pos0);
      SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(ids_.get(), &host_io_[0], 4, cudaMemcpyHostToDevice, st));
      SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(pos_.get(), &host_io_[1], 4, cudaMemcpyHostToDevice, st));
    } else {
      int32_t p = static_cast<int32_t>(pos0);
      SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(ids_.get(), ids, static_cast<size_t>(T) * 4, cudaMemcpyHostToDevice, st));
      SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(pos_.get(), &p, 4, cudaMemcpyHostToDevice, st));
      ctx_->sync();  // the pageable source must outlive the copy
    }
    if (!decode) {
      device_work(T, pos0, all_logits, obs);
      return;
    }
    if (pos0 + 1 > plan_.max_seq)
      throw RuntimeFailure("sequence of " + std::to_string(pos0 + 1) + " tokens exceeds the KV cache (" +
                           std::to_string(plan_.max_seq) + " positions)");
    if (!graph_exec_) {
      if (!warm_) {  // the first decode step runs eagerly: it sizes every scratch buffer
        device_work(1, pos0, false, nullptr);
        warm_ = true;
        return;
      }
      graph_exec_ = cuda::capture_graph(st, [&] { device_work(1, pos0, false, nullptr); });
      graph_epoch_ = cuda::buffer_epoch();
    }
    SEGPIPE_CUDA_CHECK(cudaGraphLaunch(graph_exec_, st));
  }

  RunPlan plan_;
  ModelConfig cfg_;
  CudaRunnerOptions opt_;
  std::string device_;
  GpuMemory memory_ = GpuMemory::device;  // resolved
  std::unique_ptr<cuda::Context> ctx_;
  std::shared_ptr<Checkpoint> ck_;
  std::unique_ptr<cuda::WeightSource> weights_;
  cuda::EngineOptions eo_;
  std::vector<std::unique_ptr<Segment>> segs_;  // plan order
  std::vector<Segment*> chain_;                 // the segments a step runs, in order (no banks)
  cuda::Buffer<int32_t> ids_, pos_;
  cuda::Buffer<float> x_, normed_, logits_;
  std::string head_name_;
  int32_t* host_io_ = nullptr;  // pinned: decode inputs copied from here, also during graph replay
  float* host_logits_ = nullptr;  // pinned: one row of logits
  cudaGraphExec_t graph_exec_ = nullptr;
  uint64_t graph_epoch_ = 0;  // cuda::buffer_epoch() at graph_exec_'s capture
  cudaGraphExec_t greedy_exec_ = nullptr;  // decode_greedy: a decode step + greedy_next_token
  uint64_t greedy_epoch_ = 0;
  cuda::Buffer<int32_t> greedy_tokens_, greedy_step_, greedy_idx_;
  cuda::Buffer<float> greedy_val_;
  cuda::Buffer<unsigned> greedy_ticket_;
  bool warm_ = false;
};

}  // namespace

std::unique_ptr<CudaRunner> make_cuda_runner(const RunPlan& plan, const ModelConfig& cfg, const CudaRunnerOptions& opt) {
  return std::make_unique<CudaRunnerImpl>(plan, cfg, opt);
}

}  // namespace segpipe

#endif
