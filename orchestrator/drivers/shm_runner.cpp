#include "orchestrator/drivers/shm_runner.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <string>

#include "orchestrator/drivers/cuda_ipc.h"
#include "orchestrator/drivers/cuda_mps.h"
#include "orchestrator/drivers/cuda_runner.h"
#include "orchestrator/drivers/process.h"
#include "orchestrator/drivers/progress.h"
#include "segments/model/config_file.h"
#include "segments/core/errors.h"
#include "segments/kinds/layers.h"
#include "segments/model/tensor_map.h"
#include "shm/arena.h"
#include "shm/channel.h"
#include "shm/cleanup.h"
#include "shm/layout.h"
#include "workers/log.h"
#include "workers/cuda_worker.h"
#include "workers/protocol.h"
#include "workers/worker_main.h"

namespace segpipe {

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Tokens one step carries; longer prompts are prefilled in chunks of this size (a token's result
// does not depend on the chunking, see linear.h and attention.h).
constexpr int64_t kMaxStepTokens = 512;

struct SegmentFailed : std::runtime_error {
  int index;
  SegmentFailed(int i, const std::string& what) : std::runtime_error(what), index(i) {}
};

// The roles a segment loads, for checking the checkpoint before any process starts.
std::vector<TensorRole> segment_roles(Checkpoint& ck, const ModelConfig& cfg, const SegmentDesc& d) {
  std::vector<TensorRole> r;
  auto experts = [&](int l0, int l1, int e0, int e1) {
    for (int l = l0; l <= l1; l++) {
      if (!cfg.is_moe_layer(l)) continue;
      ExpertLayout lay = expert_layout(ck, cfg, l);
      for (int e = e0; e <= e1; e++) {
        for (auto& x : expert_roles(cfg, l, e, lay)) r.push_back(x);
        if (lay == ExpertLayout::Fused) break;
      }
    }
  };
  switch (d.kind) {
    case SegmentKind::embeddings: r.push_back(embed_role(cfg)); break;
    case SegmentKind::lm_head:
      r = lm_head_roles(cfg);
      if (cfg.tie_word_embeddings) r.push_back(embed_role(cfg));
      break;
    case SegmentKind::experts: experts(d.layer_first, d.layer_last, d.expert_first, d.expert_last); break;
    case SegmentKind::layers:
      for (int l = d.layer_first; l <= d.layer_last; l++)
        for (auto& x : layer_roles(cfg, l)) r.push_back(x);
      if (!d.banks) experts(d.layer_first, d.layer_last, 0, cfg.num_experts - 1);
      break;
  }
  return r;
}

bool on_gpu(const SegmentDesc& d) { return d.device.is_cuda(); }

// Does bank b serve layers segment l (their layer ranges meet)?
bool serves(const SegmentDesc& b, const SegmentDesc& l) {
  return b.kind == SegmentKind::experts && l.kind == SegmentKind::layers && l.banks && b.layer_last >= l.layer_first &&
         b.layer_first <= l.layer_last;
}

class ShmRunner : public Runner {
 public:
  ShmRunner(const RunPlan& plan, const ShmOptions& opt, const CudaShmOptions& cuda = {})
      : plan_(plan), opt_(opt), cuda_(cuda) {
    start_gpu_sharing();  // before this run's first CUDA call (the device count of the checks)
    check_gpu_segments();
    if (cuda_.synthetic) {
      cfg_ = read_model_config(plan.model_dir);  // weights made by each GPU worker
    } else {
      auto ck = Checkpoint::open(plan.model_dir);
      cfg_ = parse_model_config(ck->config_json(), plan.model_dir + "/config.json");
      for (const SegmentDesc& d : plan.segments) check_roles(*ck, segment_roles(*ck, cfg_, d));
    }
    shm::remove_stale_arenas();
    shm::install_unlink_on_signal();
    check_gpu_sharing();
    build_arena();
    confirm_gpu_sharing();  // before any worker starts: they inherit the MPS environment
    for (size_t i = 0; i < procs_.size(); i++) spawn(static_cast<int>(i));
    // Handshakes in parallel: every worker loads while we wait for the first.
    for (size_t i = 0; i < procs_.size(); i++) procs_[i].hello_step = procs_[i].ch->post_request(proto::kHello);
    LoadProgress progress(procs_.size(), "segment processes");
    for (size_t i = 0; i < procs_.size(); i++) {
      for (int attempt = 0;; attempt++) {
        try {
          await_hello(static_cast<int>(i));
          progress.tick(procs_[i].desc.name);
          break;
        } catch (const SegmentFailed& f) {
          if (!plan_.restart || attempt >= 3) fail(f, "during start-up");
          spdlog::warn("{} during start-up; restarting it", f.what());
          restart_chain(f);
          procs_[static_cast<size_t>(f.index)].hello_step = procs_[static_cast<size_t>(f.index)].ch->post_request(proto::kHello);
          if (static_cast<size_t>(f.index) != i) continue;
        }
      }
    }
  }

  ~ShmRunner() override { shutdown(); }

  int vocab() const override { return cfg_.vocab; }

  void step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
            std::vector<float>& logits) override {
    if (T > kMaxStepTokens) {
      // Prefill in chunks; only the last chunk's logits are asked for.
      if (obs || all_logits)
        throw InputError("a prompt of " + std::to_string(T) + " tokens exceeds the " + std::to_string(kMaxStepTokens) +
                         " tokens that can be captured in one step");
      for (int64_t b = 0; b < T; b += kMaxStepTokens)
        step(ids + b, std::min(kMaxStepTokens, T - b), pos0 + b, false, nullptr, logits);
      return;
    }
    for (int attempt = 0;; attempt++) {
      try {
        run_step(ids, T, pos0, all_logits, obs, logits);
        return;
      } catch (const SegmentFailed& f) {
        if (!plan_.restart || attempt >= 3) fail(f, "");
        spdlog::warn("{}; restarting it and repeating the step", f.what());
        restart_chain(f);
      }
    }
  }

  std::vector<SegmentReport> reports() override {
    std::vector<SegmentReport> out;
    for (size_t i = 0; i < procs_.size(); i++) {
      Proc& p = procs_[i];
      auto r = call(static_cast<int>(i), proto::kReport, {});
      proto::ReportReply rr{};
      std::memcpy(&rr, r.data(), std::min(r.size(), sizeof rr));
      SegmentReport sr;
      sr.name = p.desc.name;
      sr.kind = to_string(p.desc.kind);
      sr.pid = static_cast<long>(p.pid);
      sr.tensors = p.hello.tensors;
      sr.weight_bytes = p.hello.weight_bytes;
      sr.peak_rss_bytes = rr.peak_rss_bytes;
      // Names page by page: each reply carries as many whole names as fit.
      while (sr.tensor_names.size() < p.hello.tensors) {
        uint64_t first = sr.tensor_names.size();
        auto names = call(static_cast<int>(i), proto::kNames, std::as_bytes(std::span<const uint64_t>(&first, 1)));
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

  std::vector<GpuDeviceState> gpu_devices() const override {
    std::vector<GpuDeviceState> out;
    for (auto& [device, memory] : memory_) {
      GpuDeviceState g;
      g.device = device;
      g.memory = memory;
      if (auto it = dev_.find(device); it != dev_.end() && it->second.arena) g.device_arena_bytes = it->second.arena->bytes();
      if (memory == GpuMemory::unified && arena_) {
        bool banks = false;
        for (const Proc& p : procs_) {
          if (!p.gpu || p.desc.device.index != device) continue;
          if (p.desc.kind == SegmentKind::layers) g.shared_arena_bytes += arena_->payload(p.spec.kv_block).size();
          banks |= p.desc.kind == SegmentKind::experts;
        }
        if (banks)
          for (uint32_t b : moe_) g.shared_arena_bytes += arena_->payload(b).size();
      }
      out.push_back(g);
    }
    return out;
  }

 private:
  // GPU worker processes of one device share it through a private MPS server (cuda_mps.h says why).
  GpuSharing sharing_mode() const { return cuda_.sharing ? *cuda_.sharing : gpu_sharing_from_env(); }
  void start_gpu_sharing() {
    size_t gpu = 0;
    for (const SegmentDesc& d : plan_.segments)
      if (on_gpu(d)) {
        gpu++;
        if (sharing_device_ < 0) sharing_device_ = d.device.index;
      }
    if (gpu < 2 || sharing_mode() == GpuSharing::Off) {  // the variable is read only where it applies
      sharing_device_ = -1;
      return;
    }
    const GpuSharing mode = sharing_mode();
    if (private_mps_running()) return;
    std::string why = start_private_mps();
    if (!why.empty()) gpu_sharing_failed(mode, why);
  }
  // A context made before the MPS environment was set stays outside MPS, and so would the device
  // arena the workers map.
  void check_gpu_sharing() {
    if (sharing_device_ < 0 || !cuda_context_active(sharing_device_) || cuda_mps_enabled(sharing_device_)) return;
    stop_private_mps();
    gpu_sharing_failed(sharing_mode(), "this process already uses cuda:" + std::to_string(sharing_device_) + " outside MPS");
  }
  void confirm_gpu_sharing() {
    if (sharing_device_ < 0) return;
    if (cuda_mps_enabled(sharing_device_)) return;
    stop_private_mps();
    gpu_sharing_failed(sharing_mode(), "this process's context on cuda:" + std::to_string(sharing_device_) + " did not join the MPS server");
  }
  void gpu_sharing_failed(GpuSharing mode, const std::string& why) {
    sharing_device_ = -1;
    if (mode == GpuSharing::Mps)
      throw InputError("SEGPIPE_GPU_SHARING=mps: cannot run the GPU segments of " + plan_.source +
                       " under a private MPS server: " + why);
    spdlog::warn("GPU segment processes share the device without MPS ({})", why);
  }

  // GPU segments (workers/cuda_worker.h): embeddings, layers, expert banks and lm_head, on any
  // devices that exist; a bank on the device, and in the dtype, of every layers segment it serves
  // (requests and slots stay in that device's arena). Checked before anything is read or started.
  void check_gpu_segments() {
    bool any_gpu = false;
    for (SegmentDesc& d : plan_.segments) {
      if (!on_gpu(d)) {
        if (cuda_.synthetic)
          throw InputError(plan_.source + ": segment '" + d.name + "' runs on the CPU, which cannot make synthetic weights");
        continue;
      }
      any_gpu = true;
    }
    for (const SegmentDesc& b : plan_.segments)
      for (const SegmentDesc& l : plan_.segments) {
        if (!serves(b, l)) continue;
        if (b.device != l.device)
          throw InputError(plan_.source + ": expert bank '" + b.name + "' runs on " + to_string(b.device) +
                           " but serves layers segment '" + l.name + "' on " + to_string(l.device) +
                           ": under transport: shm a bank must be on the device of the layers "
                           "segment it serves");
        if (on_gpu(b) && b.dtype != l.dtype)
          throw InputError(plan_.source + ": expert bank '" + b.name + "' computes in " + to_string(b.dtype) +
                           " but serves layers segment '" + l.name + "' in " + to_string(l.dtype) +
                           ": a GPU bank computes in the dtype of the layers segment it serves");
      }
    if (!any_gpu) return;
    const int n = cuda_backend_built() ? cuda_visible_devices() : 0;
    for (const SegmentDesc& d : plan_.segments) {
      if (!on_gpu(d)) continue;
      if (!cuda_backend_built())
        throw InputError(plan_.source + ": segment '" + d.name + "' runs on " + to_string(d.device) + ", which needs the CUDA "
                         "backend (this build does not have it; configure with -DSEGPIPE_CUDA=ON)");
      if (d.device.index >= n)
        throw InputError(plan_.source + ": segment '" + d.name + "' runs on " + to_string(d.device) + ", which does not exist: " +
                         (n == 0 ? std::string("no CUDA device is visible")
                                 : std::to_string(n) + " CUDA device" + (n == 1 ? " is" : "s are") + " visible (cuda:0" +
                                       (n == 1 ? "" : "..cuda:" + std::to_string(n - 1)) + ")"));
    }
  }

  struct Proc {
    SegmentDesc desc;
    proto::WorkerSpec spec;
    bool gpu = false;
    proto::CudaWorkerSpec gpu_spec;
    bool in_dev = false, out_dev = false;  // its input / output activation lives in the device arena
    pid_t pid = -1;
    std::optional<shm::Channel> ch;
    proto::HelloReply hello{};
    uint64_t hello_step = 0;
    uint64_t last_heartbeat = 0;
    Clock::time_point heartbeat_seen{};
    std::optional<int> reaped_status;  // reaped by restart()'s settling, not yet reported
    std::string ended;                 // how it ended, once reported (until it is restarted)
  };

  // gpu_memory per device used, resolved before the layout (unified puts GPU state in the shared arena).
  bool unified(const SegmentDesc& d) const { return on_gpu(d) && memory_.at(d.device.index) == GpuMemory::unified; }

  void build_arena() {
    for (const SegmentDesc& d : plan_.segments)
      if (on_gpu(d) && !memory_.count(d.device.index))
        memory_[d.device.index] = resolve_gpu_memory(plan_.gpu_memory, d.device.index);
    const int64_t H = cfg_.hidden, V = cfg_.vocab, k = std::max(1, cfg_.top_k);
    const int64_t Tm = kMaxStepTokens, Tc = opt_.capture_tokens;
    shm::ArenaLayout L;
    const size_t n = plan_.segments.size();
    status_block_ = L.add_block(shm::BlockKind::kBytes, n * sizeof(proto::SegmentStatus), 64, "status");
    ids_block_ = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(Tm) * 4, 64, "ids");
    hid_[0] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(Tm * H) * 4, 4096, "hidden.a");
    hid_[1] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(Tm * H) * 4, 4096, "hidden.b");
    logits_block_ = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(std::max<int64_t>(1, Tc) * V) * 4, 4096, "logits");
    norm_block_ = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(std::max<int64_t>(1, Tc) * H) * 4, 4096, "norm");
    // Banks on the CPU, or on a GPU under unified, exchange through these blocks (GPU banks of a device
    // arena through it). One exchange serves them all: one layers segment runs at a time, and only it
    // rings banks.
    bool any_banks = false;
    for (auto& d : plan_.segments) any_banks |= d.kind == SegmentKind::experts && (!on_gpu(d) || unified(d));
    int64_t mt = any_banks ? Tm : 1;
    moe_[0] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(mt * H) * 4, 4096, "moe.x");
    moe_[1] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(mt * k) * 4, 64, "moe.experts");
    moe_[2] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(mt * k) * 4, 64, "moe.weights");
    moe_[3] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(mt * k * H) * 4, 4096, "moe.slots");
    for (size_t i = 0; i < n; i++) {
      Proc p;
      p.desc = plan_.segments[i];
      proto::WorkerSpec& s = p.spec;
      s.index = static_cast<int>(i);
      s.name = p.desc.name;
      s.kind = p.desc.kind;
      s.model_dir = plan_.model_dir;
      s.layer_first = p.desc.layer_first;
      s.layer_last = p.desc.layer_last;
      s.banks = p.desc.banks;
      s.expert_first = p.desc.expert_first;
      s.expert_last = p.desc.expert_last;
      s.threads = p.desc.threads > 0 ? p.desc.threads : plan_.threads;
      s.max_resident_experts = p.desc.max_resident_experts;
      s.max_seq = plan_.max_seq;
      s.max_tokens = Tm;
      s.capture_tokens = Tc;
      s.timeout_ms = plan_.timeout_ms;
      s.parent_pid = static_cast<int>(getpid());
      s.status_block = status_block_;
      s.channel_block = L.add_channel("ch." + p.desc.name.substr(0, 20));
      s.norm_block = norm_block_;
      s.moe_x = moe_[0];
      s.moe_experts = moe_[1];
      s.moe_weights = moe_[2];
      s.moe_slots = moe_[3];
      p.gpu = on_gpu(p.desc);
      if (p.desc.kind == SegmentKind::layers && (!p.gpu || unified(p.desc))) {
        // On the CPU, and on a GPU under unified: the KV caches in the shared arena (else in the device arena)
        int nl = p.desc.layer_last - p.desc.layer_first + 1;
        s.kv_block = L.add_block(shm::BlockKind::kKvCache,
                                 static_cast<size_t>(nl * LayersSegment::kv_floats_per_layer(cfg_, plan_.max_seq)) * 4,
                                 4096, "kv." + p.desc.name.substr(0, 20));
      }
      if (p.desc.kind == SegmentKind::layers) {
        auto cl = capture_layout(p.desc);
        s.capture_block = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(std::max<int64_t>(1, cl.total())) * 4,
                                      4096, "cap." + p.desc.name.substr(0, 20));
      }
      procs_.push_back(std::move(p));
    }
    plan_device_arena();
    // Banks each layers segment calls: those whose layer range meets its own.
    for (auto& p : procs_) {
      if (p.desc.kind != SegmentKind::layers || !p.desc.banks) continue;
      for (auto& b : procs_)
        if (serves(b.desc, p.desc))
          p.spec.bank_list.push_back({b.spec.index, b.spec.channel_block, b.desc.layer_first, b.desc.layer_last, b.desc.name});
    }
    // Unnamed: the workers inherit its descriptor, so no name in /dev/shm can outlive this run,
    // whatever ends it (SIGKILL included).
    arena_.emplace(shm::Arena::create_unnamed(L));
    place_unified_state();
    status_ = arena_->payload_span<proto::SegmentStatus>(status_block_).data();
    for (auto& p : procs_) {
      p.spec.arena = arena_->attach_spec();
      p.ch.emplace(shm::Channel::attach(*arena_, p.spec.channel_block));
      if (p.gpu && cuda_.spin_count) p.ch->set_spin_count(cuda_.spin_count);
    }
  }

  // Where GPU segments of one device meet, the activation stays on the device: one device allocation
  // per device used, which this process owns and the workers of that device map through its CUDA IPC
  // handle. Each holds two hidden-state slots (the ping-pong of hidden.a / hidden.b), the bank
  // exchange where that device has expert banks (shared by its layers segments, which run one at a
  // time), and the KV cache of every layers segment of the device. Between devices the activation
  // goes through the shared arena, as between the GPU and the CPU. A device under gpu_memory: unified
  // has none: the same state lives in the shared arena (place_unified_state).
  void plan_device_arena() {
    auto align = [](uint64_t v) { return (v + 4095) & ~uint64_t{4095}; };
    const int64_t Tm = kMaxStepTokens, H = cfg_.hidden, k = std::max(1, cfg_.top_k);
    const uint64_t hid_bytes = align(static_cast<uint64_t>(Tm * H) * 4);
    std::vector<size_t> chain;  // embeddings, layers and lm_head in order
    for (size_t i = 0; i < procs_.size(); i++)
      if (procs_[i].desc.kind != SegmentKind::experts) chain.push_back(i);
    for (size_t c = 0; c + 1 < chain.size(); c++) {
      Proc &a = procs_[chain[c]], &b = procs_[chain[c + 1]];
      a.out_dev = b.in_dev = a.gpu && b.gpu && a.desc.device == b.desc.device && a.desc.kind != SegmentKind::lm_head &&
                             !unified(a.desc);
    }
    std::map<int, uint64_t> size;  // device -> bytes planned so far
    for (auto& p : procs_) {
      if (!p.gpu || unified(p.desc) || dev_.count(p.desc.device.index)) continue;
      DevArena& da = dev_[p.desc.device.index];
      uint64_t off = 0;
      da.slots = {off, off + hid_bytes};
      off += 2 * hid_bytes;
      bool banks = false;
      for (auto& b : procs_) banks |= b.gpu && b.desc.kind == SegmentKind::experts && b.desc.device == p.desc.device;
      if (banks) {
        // x in the compute dtype (at most 4 bytes), ids, weights, slots (float32, or bf16 for a bf16
        // prefill: moe_slot_dtype; sized for float32, which covers both): for the longest step
        for (uint64_t bytes : {static_cast<uint64_t>(Tm * H) * 4, static_cast<uint64_t>(Tm * k) * 4,
                               static_cast<uint64_t>(Tm * k) * 4, static_cast<uint64_t>(Tm * k * H) * 4}) {
          da.moe.push_back(off);
          off += align(bytes);
        }
      }
      size[p.desc.device.index] = off;
    }
    for (auto& p : procs_) {
      if (!p.gpu) continue;
      proto::CudaWorkerSpec& g = p.gpu_spec;
      g.device = p.desc.device;
      g.dtype = p.desc.dtype;
      g.kernels = plan_.gpu_kernels;
      g.memory = memory_.at(p.desc.device.index);
      g.synthetic = cuda_.synthetic;
      g.seed = cuda_.seed;
      g.graphs = cuda_.graphs;
      g.spin_count = cuda_.spin_count;
      if (unified(p.desc)) continue;  // its offsets once the shared arena exists
      const DevArena& da = dev_.at(p.desc.device.index);
      g.slots = da.slots;
      if (p.desc.kind == SegmentKind::experts || (p.desc.kind == SegmentKind::layers && p.desc.banks)) g.moe = da.moe;
      if (p.desc.kind == SegmentKind::layers) {
        uint64_t& off = size[p.desc.device.index];
        g.kv_offset = static_cast<int64_t>(off);
        const int nl = p.desc.layer_last - p.desc.layer_first + 1;
        off += align(static_cast<uint64_t>(nl * LayersSegment::kv_floats_per_layer(cfg_, plan_.max_seq)) * 4);
      }
    }
    for (auto& [device, da] : dev_) da.arena = DeviceArena::create(device, size[device]);
    for (auto& p : procs_) {
      if (!p.gpu || unified(p.desc)) continue;
      const DevArena& da = dev_.at(p.desc.device.index);
      p.gpu_spec.arena_handle = da.arena->ipc_handle_hex();
      p.gpu_spec.arena_bytes = da.arena->bytes();
    }
  }

  // Under unified a GPU worker finds its KV caches and the bank exchange in the shared arena: their
  // blocks' offsets from its first byte (the worker adds them to the arena's device pointer, as it adds
  // device-arena offsets to that arena's), so a restarted worker finds its KV caches as they were.
  void place_unified_state() {
    auto offset = [&](uint32_t block) { return static_cast<uint64_t>(arena_->payload(block).data() - arena_->base()); };
    for (auto& p : procs_) {
      if (!p.gpu || !unified(p.desc)) continue;
      proto::CudaWorkerSpec& g = p.gpu_spec;
      g.arena_bytes = arena_->size_bytes();
      if (p.desc.kind == SegmentKind::layers) g.kv_offset = static_cast<int64_t>(offset(p.spec.kv_block));
      if (p.desc.kind == SegmentKind::experts || (p.desc.kind == SegmentKind::layers && p.desc.banks))
        g.moe = {offset(moe_[0]), offset(moe_[1]), offset(moe_[2]), offset(moe_[3])};
    }
  }

  // hidden.a / hidden.b, or their device slots.
  uint32_t place(uint32_t block, bool dev) const {
    if (!dev) return block;
    return proto::kDeviceSlot | (block == hid_[0] ? 0u : 1u);
  }
  proto::CaptureLayout capture_layout(const SegmentDesc& d) const {
    return proto::make_capture_layout(d.layer_first, d.layer_last, opt_.capture_tokens, cfg_.hidden, cfg_.num_experts,
                                      cfg_.top_k, [&](int l) { return cfg_.is_moe_layer(l); });
  }

  void spawn(int i) {
    Proc& p = procs_[static_cast<size_t>(i)];
    std::atomic_ref<int32_t>(status_[i].dead).store(0);
    std::atomic_ref<uint64_t>(status_[i].generation).fetch_add(1);
    p.ended.clear();
    p.reaped_status.reset();
    if (p.gpu)
      p.pid = spawn_self({kWorkerCommand, proto::to_json(p.spec).dump(), proto::to_json(p.gpu_spec).dump()},
                         {arena_->fd()});
    else
      p.pid = spawn_self({kWorkerCommand, proto::to_json(p.spec).dump()}, {arena_->fd()});
    std::atomic_ref<int32_t>(status_[i].pid).store(static_cast<int32_t>(p.pid));
    p.last_heartbeat = std::atomic_ref<uint64_t>(status_[i].heartbeat).load();
    p.heartbeat_seen = Clock::now();
  }

  // Every process alive and its heartbeat moving? Throws SegmentFailed for the first that is not.
  void check_all() {
    auto now = Clock::now();
    for (size_t i = 0; i < procs_.size(); i++) {
      Proc& p = procs_[i];
      int st = 0;
      if (p.reaped_status) st = *p.reaped_status;
      if (p.pid > 0 && (p.reaped_status || reap_if_exited(p.pid, st))) {
        std::atomic_ref<int32_t>(status_[i].dead).store(1);
        pid_t pid = p.pid;
        p.pid = -1;
        p.reaped_status.reset();
        p.ended = "segment '" + p.desc.name + "' (" + to_string(p.desc.kind) + ", pid " + std::to_string(pid) +
                  ") " + describe_status(st);
        throw SegmentFailed(static_cast<int>(i), p.ended);
      }
      uint64_t hb = std::atomic_ref<uint64_t>(status_[i].heartbeat).load();
      if (hb != p.last_heartbeat) {
        p.last_heartbeat = hb;
        p.heartbeat_seen = now;
      } else if (now - p.heartbeat_seen > std::chrono::milliseconds(plan_.timeout_ms)) {
        std::atomic_ref<int32_t>(status_[i].dead).store(1);
        throw SegmentFailed(static_cast<int>(i), "segment '" + p.desc.name + "' (" + to_string(p.desc.kind) +
                                                     ", pid " + std::to_string(p.pid) + ") stopped answering for " +
                                                     std::to_string(plan_.timeout_ms) + " ms (hung)");
      }
    }
  }

  std::vector<std::byte> wait(int i, uint64_t step) {
    Proc& p = procs_[static_cast<size_t>(i)];
    std::optional<SegmentFailed> failure;
    auto alive = [&] {
      try {
        check_all();
        return true;
      } catch (const SegmentFailed& f) {
        failure.emplace(f);
        return false;
      }
    };
    shm::Response r = p.ch->wait_response(step, std::chrono::hours(24 * 365), alive, 50ms);
    if (!r.ok()) {
      if (failure) throw *failure;
      throw SegmentFailed(i, "segment '" + p.desc.name + "' did not answer");
    }
    std::vector<std::byte> reply(r.reply.begin(), r.reply.end());
    if (r.code != proto::kOk) {
      std::string msg(reinterpret_cast<const char*>(reply.data()), reply.size());
      // A worker that failed because a peer died: report the peer, with how it ended (a bank's
      // death may have been seen by an earlier wait, the layers segment's error arriving after).
      check_all();
      for (size_t j = 0; j < procs_.size(); j++)
        if (static_cast<int>(j) != i && !procs_[j].ended.empty() && std::atomic_ref<int32_t>(status_[j].dead).load())
          throw SegmentFailed(static_cast<int>(j), procs_[j].ended);
      if (r.code == proto::kBadInput) throw InputError(msg);
      throw RuntimeFailure("segment '" + p.desc.name + "': " + msg);
    }
    return reply;
  }

  std::vector<std::byte> call(int i, uint32_t op, std::span<const std::byte> args) {
    uint64_t step = procs_[static_cast<size_t>(i)].ch->post_request(op, args);
    return wait(i, step);
  }

  void await_hello(int i) {
    auto reply = wait(i, procs_[static_cast<size_t>(i)].hello_step);
    std::memcpy(&procs_[static_cast<size_t>(i)].hello, reply.data(), std::min(reply.size(), sizeof(proto::HelloReply)));
  }

  void run_step(const int32_t* ids, int64_t T, int64_t pos0, bool all_logits, BoundaryObserver* obs,
                std::vector<float>& logits) {
    const int64_t H = cfg_.hidden;
    if (obs && T > opt_.capture_tokens)
      throw InputError("capturing " + std::to_string(T) + " tokens needs a runner made with capture_tokens >= T");
    std::memcpy(arena_->payload(ids_block_).data(), ids, static_cast<size_t>(T) * 4);
    for (int64_t t = 0; t < T; t++)
      if (ids[t] < 0 || ids[t] >= cfg_.vocab)
        throw InputError("token id " + std::to_string(ids[t]) + " is out of range (vocabulary size " +
                         std::to_string(cfg_.vocab) + ")");
    int cur = 0;
    for (size_t i = 0; i < procs_.size(); i++) {
      Proc& p = procs_[i];
      proto::StepArgs a{pos0, T, 0, 0, all_logits ? 1u : 0u, obs ? 1u : 0u};
      switch (p.desc.kind) {
        case SegmentKind::experts: continue;  // called by layers segments
        case SegmentKind::embeddings: a.in_block = ids_block_; a.out_block = hid_[0]; cur = 0; break;
        case SegmentKind::layers: a.in_block = hid_[cur]; a.out_block = hid_[1 - cur]; break;
        case SegmentKind::lm_head: a.in_block = hid_[cur]; a.out_block = logits_block_; break;
      }
      if (p.desc.kind != SegmentKind::embeddings) a.in_block = place(a.in_block, p.in_dev);
      if (p.desc.kind != SegmentKind::lm_head) a.out_block = place(a.out_block, p.out_dev);
      call(static_cast<int>(i), proto::kStep, std::as_bytes(std::span<const proto::StepArgs>(&a, 1)));
      if (p.desc.kind == SegmentKind::embeddings && obs) {
        if (p.out_dev) {
          std::vector<float> e(static_cast<size_t>(T * H));
          const DevArena& da = dev_.at(p.desc.device.index);
          da.arena->read(da.slots[a.out_block & ~proto::kDeviceSlot], e.data(), e.size() * 4);
          obs->on_tensor(Boundary::embeddings(), e.data(), T, H);
        } else {
          obs->on_tensor(Boundary::embeddings(), arena_->payload_span<float>(a.out_block).data(), T, H);
        }
      }
      if (p.desc.kind == SegmentKind::layers) {
        cur = 1 - cur;
        if (obs) emit_capture(p, T, obs);
      }
      if (p.desc.kind == SegmentKind::lm_head) {
        const float* out = arena_->payload_span<float>(a.out_block).data();
        int64_t rows = all_logits ? T : 1;
        logits.assign(out, out + rows * cfg_.vocab);
        if (obs) {
          obs->on_tensor(Boundary::norm(), arena_->payload_span<float>(norm_block_).data(), T, H);
          if (all_logits) obs->on_tensor(Boundary::logits(), logits.data(), T, cfg_.vocab);
        }
      }
    }
  }

  void emit_capture(const Proc& p, int64_t T, BoundaryObserver* obs) {
    auto cl = capture_layout(p.desc);
    const float* base = arena_->payload_span<float>(p.spec.capture_block).data();
    for (int l = p.desc.layer_first; l <= p.desc.layer_last; l++) {
      if (cfg_.is_moe_layer(l)) {
        obs->on_tensor(Boundary::router_logits(l), base + cl.logits(l), T, cfg_.num_experts);
        obs->on_route(l, reinterpret_cast<const int32_t*>(base + cl.experts(l)), base + cl.weights(l), T, cfg_.top_k);
      }
      obs->on_tensor(Boundary::output(l), base + cl.output(l), T, cfg_.hidden);
    }
  }

  // Replaces segment i with a fresh process. Its inputs, the KV caches and the sequence state live
  // in the arena, so repeating the interrupted step continues exactly where the run was.
  void restart(int i) {
    Proc& p = procs_[static_cast<size_t>(i)];
    std::atomic_ref<int32_t>(status_[i].dead).store(1);
    if (p.pid > 0) kill_and_reap(p.pid);
    p.pid = -1;
    // Let every other channel settle: workers that were waiting on the dead one answer with an error.
    auto deadline = Clock::now() + 5s;
    for (size_t j = 0; j < procs_.size(); j++) {
      if (static_cast<int>(j) == i) continue;
      while (procs_[j].ch->request_pending() && Clock::now() < deadline) {
        int st;
        if (procs_[j].pid > 0 && reap_if_exited(procs_[j].pid, st)) {
          procs_[j].reaped_status = st;  // reported by the next check_all, with this status
          break;
        }
        std::this_thread::sleep_for(1ms);
      }
      if (procs_[j].ch->request_pending()) throw RuntimeFailure("segment '" + procs_[j].desc.name + "' did not settle after a restart");
    }
    p.ch->reset();
    spawn(i);
    p.hello_step = p.ch->post_request(proto::kHello);
    await_hello(i);
  }

  // Restarts a failed segment; another segment failing meanwhile is restarted in turn (bounded).
  void restart_chain(const SegmentFailed& first) {
    SegmentFailed f = first;
    for (int k = 0;; k++) {
      try {
        restart(f.index);
        return;
      } catch (const SegmentFailed& g) {
        if (k >= 3) fail(g, "while restarting '" + procs_[static_cast<size_t>(first.index)].desc.name + "'");
        spdlog::warn("{}; restarting it", g.what());
        f = g;
      }
    }
  }

  [[noreturn]] void fail(const SegmentFailed& f, const std::string& when) {
    shutdown();
    throw RuntimeFailure(std::string(f.what()) + (when.empty() ? "" : " " + when));
  }

  void shutdown() {
    if (!arena_) return;
    for (size_t i = 0; i < procs_.size(); i++) {
      Proc& p = procs_[i];
      if (p.pid <= 0) continue;
      int st;
      if (!p.ch->request_pending() && !reap_if_exited(p.pid, st)) {
        try {
          uint64_t s = p.ch->post_request(proto::kStop);
          p.ch->wait_response(s, 1s, [&] { return !reap_if_exited(p.pid, st); });
        } catch (...) {
        }
      }
      kill_and_reap(p.pid);
      p.pid = -1;
    }
    arena_.reset();  // the creator unlinks the arena
  }

  RunPlan plan_;
  ShmOptions opt_;
  CudaShmOptions cuda_;
  int sharing_device_ = -1;  // MPS asked for, to be confirmed on this device (cuda:N); -1: none
  struct DevArena {
    std::unique_ptr<DeviceArena> arena;  // outlives the workers (freed after shutdown)
    std::vector<uint64_t> slots;         // the two hidden-state slots
    std::vector<uint64_t> moe;           // the bank exchange: x, ids, weights, slots (empty: no GPU banks)
  };
  std::map<int, DevArena> dev_;  // per device (cuda:N) used by a GPU segment under gpu_memory device
  std::map<int, GpuMemory> memory_;  // per device used by a GPU segment: the plan's gpu_memory, resolved
  ModelConfig cfg_;
  std::optional<shm::Arena> arena_;
  proto::SegmentStatus* status_ = nullptr;
  uint32_t status_block_ = 0, ids_block_ = 0, hid_[2] = {0, 0}, logits_block_ = 0, norm_block_ = 0;
  uint32_t moe_[4] = {0, 0, 0, 0};
  std::vector<Proc> procs_;
};

}  // namespace

std::unique_ptr<Runner> make_shm_runner(const RunPlan& plan, const ShmOptions& opt) {
  return std::make_unique<ShmRunner>(plan, opt);
}

std::unique_ptr<Runner> make_shm_runner_cuda(const RunPlan& plan, const ShmOptions& opt, const CudaShmOptions& cuda) {
  return std::make_unique<ShmRunner>(plan, opt, cuda);
}

}  // namespace segpipe
