#include "orchestrator/drivers/shm_run_arena.h"

#include <unistd.h>

#include <algorithm>

#include "orchestrator/drivers/shm_media_sizes.h"
#include "segments/core/errors.h"
#include "segments/kinds/layers.h"
#include "shm/layout.h"

namespace segpipe {

// gpu_memory per device used, resolved before the layout (unified puts GPU state in the shared arena).
bool ShmRunArena::unified(const SegmentDesc& d) const {
  return d.device.is_cuda() && memory_.at(d.device.index) == GpuMemory::unified;
}

ShmRunArena::ShmRunArena(const RunPlan& plan, const ModelConfig& cfg, int64_t capture_tokens, const CudaShmOptions& cuda,
                         int host)
    : plan_(plan), cfg_(cfg), capture_tokens_(capture_tokens) {
  for (const SegmentDesc& d : plan_.segments)
    if (d.host == host && d.device.is_cuda() && !memory_.count(d.device.index))
      memory_[d.device.index] = resolve_gpu_memory(plan_.gpu_memory, d.device.index);
  const int64_t H = cfg_.hidden, V = cfg_.vocab, k = std::max(1, cfg_.top_k);
  const int64_t Tm = kMaxStepTokens, Tc = capture_tokens_;
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
  // A layers segment of this host served by a bank of another host reaches it through the same blocks
  // (its host's proxy, orchestrator/multihost/bank_exchange.h, carries them over the network).
  bool any_banks = false;
  for (auto& d : plan_.segments) any_banks |= d.host == host && is_bank(d) && (!d.device.is_cuda() || unified(d));
  for (auto& b : plan_.segments)
    for (auto& l : plan_.segments)
      any_banks |= is_bank(b) && b.host != host && l.host == host && calls_banks(l) && b.serves(l);
  int64_t mt = any_banks ? Tm : 1;
  moe_[0] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(mt * H) * 4, 4096, "moe.x");
  moe_[1] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(mt * k) * 4, 64, "moe.experts");
  moe_[2] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(mt * k) * 4, 64, "moe.weights");
  moe_[3] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(mt * k * H) * 4, 4096, "moe.slots");
  const MediaSizes ms = media_sizes(plan_, host);
  if (ms.step) {
    // A step's media: the embeddings and layers segments read them in place (StepArgs says how many).
    media_[0] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(3 * Tm) * 4, 64, "media.rope");
    media_[1] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(Tm) * 4, 64, "media.embed.index");
    media_[2] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(Tm * H) * 4, 4096, "media.embed.rows");
    media_[3] = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(Tm) * 4, 64, "media.ds.index");
    media_[4] = L.add_block(shm::BlockKind::kActivations,
                            static_cast<size_t>(std::max(1, ms.deepstack_levels) * Tm * H) * 4, 4096, "media.ds.rows");
  }
  for (size_t i = 0; i < n; i++) {
    ShmSegment p;
    p.desc = plan_.segments[i];
    p.local = p.desc.host == host;
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
    if (takes_step_media(p.desc)) {
      s.media_rope = media_[0];
      s.media_embed_index = media_[1];
      s.media_embed_rows = media_[2];
      s.media_ds_index = media_[3];
      s.media_ds_rows = media_[4];
    }
    if (p.local && is_encoder(p.desc.kind)) {
      // One piece of media in, its rows out: as large as the longest the plan's context can hold.
      const MediaSizes::Encoder& e = ms.encoders.at(p.desc.kind);
      in_width_[s.index] = e.in_width;
      s.enc_in = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(e.in_floats) * 4, 4096,
                             "enc.in." + p.desc.name.substr(0, 20));
      s.enc_grids = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(std::max<int64_t>(1, e.grids) * 3) * 4,
                                64, "enc.grids." + p.desc.name.substr(0, 20));
      s.enc_out = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(e.out_floats) * 4, 4096,
                              "enc.out." + p.desc.name.substr(0, 20));
    }
    p.gpu = p.local && p.desc.device.is_cuda();  // another host's GPU segment is nothing to this one
    if (!p.local) {
      segs_.push_back(std::move(p));
      continue;
    }
    if (is_layers(p.desc) && (!p.gpu || unified(p.desc))) {
      // On the CPU, and on a GPU under unified: the KV caches in the shared arena (else in the device arena)
      int nl = p.desc.layer_last - p.desc.layer_first + 1;
      s.kv_block = L.add_block(shm::BlockKind::kKvCache,
                               static_cast<size_t>(nl * LayersSegment::kv_floats_per_layer(cfg_, plan_.max_seq)) * 4,
                               4096, "kv." + p.desc.name.substr(0, 20));
    }
    if (is_layers(p.desc)) {
      auto cl = capture_layout(p.desc);
      s.capture_block = L.add_block(shm::BlockKind::kActivations, static_cast<size_t>(std::max<int64_t>(1, cl.total())) * 4,
                                    4096, "cap." + p.desc.name.substr(0, 20));
    }
    segs_.push_back(std::move(p));
  }
  // The hidden-state ports of a step take hidden.a and hidden.b in turn (a layers worker reads one and
  // writes the other, so that a worker dying mid-step has not destroyed its input).
  const std::vector<Stage> chain = chain_of(plan_.segments);
  for (const Stage& st : chain)
    if (st.out.is_hidden()) hidden_.push_back({st.out.boundary, hid_[hidden_.size() % 2]});
  plan_device_arena(chain);
  // Banks each layers segment calls: those whose layer range meets its own. A bank of another host is
  // called on its channel here all the same; this host's proxy answers it (banks_served_elsewhere).
  for (auto& p : segs_) {
    if (!p.local || !calls_banks(p.desc)) continue;
    for (auto& b : segs_)
      if (b.desc.serves(p.desc) && (b.local || !p.gpu))
        p.spec.bank_list.push_back({b.spec.index, b.spec.channel_block, b.desc.layer_first, b.desc.layer_last, b.desc.name});
  }
  // Unnamed: the workers inherit its descriptor, so no name in /dev/shm can outlive this run,
  // whatever ends it (SIGKILL included).
  arena_.emplace(shm::Arena::create_unnamed(L));
  place_unified_state();
  status_ = arena_->payload_span<proto::SegmentStatus>(status_block_).data();
  for (auto& p : segs_) p.spec.arena = arena_->attach_spec();
  // What the GPU workers are told of the run as a whole.
  for (auto& p : segs_) {
    if (!p.gpu) continue;
    p.gpu_spec.synthetic = cuda.synthetic;
    p.gpu_spec.seed = cuda.seed;
    p.gpu_spec.graphs = cuda.graphs;
    p.gpu_spec.spin_count = cuda.spin_count;
  }
}

std::vector<int> ShmRunArena::banks_served_elsewhere() const {
  std::vector<int> out;
  for (const ShmSegment& b : segs_) {
    if (b.local || !is_bank(b.desc)) continue;
    for (const ShmSegment& l : segs_)
      if (l.local && !l.gpu && calls_banks(l.desc) && b.desc.serves(l.desc)) {
        out.push_back(b.spec.index);
        break;
      }
  }
  return out;
}

std::optional<ShmRunArena::StepMediaBlocks> ShmRunArena::media_blocks() const {
  if (!media_[0]) return std::nullopt;
  return StepMediaBlocks{arena_->payload_span<int32_t>(media_[0]), arena_->payload_span<int32_t>(media_[1]),
                         arena_->payload_span<int32_t>(media_[3]), arena_->payload_span<float>(media_[2]),
                         arena_->payload_span<float>(media_[4])};
}

std::span<float> ShmRunArena::encoder_in(int segment) const {
  return arena_->payload_span<float>(segs_[static_cast<size_t>(segment)].spec.enc_in);
}
std::span<int32_t> ShmRunArena::encoder_grids(int segment) const {
  return arena_->payload_span<int32_t>(segs_[static_cast<size_t>(segment)].spec.enc_grids);
}
int64_t ShmRunArena::encoder_in_width(int segment) const { return std::max<int64_t>(1, in_width_.at(segment)); }

std::span<float> ShmRunArena::encoder_out(int segment) const {
  return arena_->payload_span<float>(segs_[static_cast<size_t>(segment)].spec.enc_out);
}

ExpertStaging ShmRunArena::moe_exchange() const {
  return ExpertStaging{arena_->payload_span<float>(moe_[0]).data(), arena_->payload_span<int32_t>(moe_[1]).data(),
                       arena_->payload_span<float>(moe_[2]).data(), arena_->payload_span<float>(moe_[3]).data()};
}

// Where GPU segments of one device meet, the activation stays on the device: one device allocation
// per device used, which this process owns and the workers of that device map through its CUDA IPC
// handle. Each holds two hidden-state slots (the ping-pong of hidden.a / hidden.b), the bank
// exchange where that device has expert banks (shared by its layers segments, which run one at a
// time), and the KV cache of every layers segment of the device. Between devices the activation
// goes through the shared arena, as between the GPU and the CPU. A device under gpu_memory: unified
// has none: the same state lives in the shared arena (place_unified_state).
void ShmRunArena::plan_device_arena(const std::vector<Stage>& chain) {
  auto align = [](uint64_t v) { return (v + 4095) & ~uint64_t{4095}; };
  const int64_t Tm = kMaxStepTokens, H = cfg_.hidden, k = std::max(1, cfg_.top_k);
  const uint64_t hid_bytes = align(static_cast<uint64_t>(Tm * H) * 4);
  for (size_t c = 0; c + 1 < chain.size(); c++) {
    ShmSegment &a = segs_[static_cast<size_t>(chain[c].segment)], &b = segs_[static_cast<size_t>(chain[c + 1].segment)];
    a.out_dev = b.in_dev = a.gpu && b.gpu && a.desc.device == b.desc.device && chain[c].out.is_hidden() && !unified(a.desc);
  }
  std::map<int, uint64_t> size;  // device -> bytes planned so far
  for (auto& p : segs_) {
    if (!p.gpu || unified(p.desc) || dev_.count(p.desc.device.index)) continue;
    DevArena& da = dev_[p.desc.device.index];
    uint64_t off = 0;
    da.slots = {off, off + hid_bytes};
    off += 2 * hid_bytes;
    bool banks = false;
    for (auto& b : segs_) banks |= b.gpu && is_bank(b.desc) && b.desc.device == p.desc.device;
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
  for (auto& p : segs_) {
    if (!p.gpu) continue;
    proto::CudaWorkerSpec& g = p.gpu_spec;
    g.device = p.desc.device;
    g.dtype = p.desc.dtype;
    g.kernels = plan_.gpu_kernels;
    g.memory = memory_.at(p.desc.device.index);
    if (unified(p.desc)) continue;  // its offsets once the shared arena exists
    const DevArena& da = dev_.at(p.desc.device.index);
    g.slots = da.slots;
    if (is_bank(p.desc) || calls_banks(p.desc)) g.moe = da.moe;
    if (is_layers(p.desc)) {
      uint64_t& off = size[p.desc.device.index];
      g.kv_offset = static_cast<int64_t>(off);
      const int nl = p.desc.layer_last - p.desc.layer_first + 1;
      off += align(static_cast<uint64_t>(nl * LayersSegment::kv_floats_per_layer(cfg_, plan_.max_seq)) * 4);
    }
  }
  for (auto& [device, da] : dev_) da.arena = DeviceArena::create(device, size[device]);
  for (auto& p : segs_) {
    if (!p.gpu || unified(p.desc)) continue;
    const DevArena& da = dev_.at(p.desc.device.index);
    p.gpu_spec.arena_handle = da.arena->ipc_handle_hex();
    p.gpu_spec.arena_bytes = da.arena->bytes();
  }
}

// Under unified a GPU worker finds its KV caches and the bank exchange in the shared arena: their
// blocks' offsets from its first byte (the worker adds them to the arena's device pointer, as it adds
// device-arena offsets to that arena's), so a restarted worker finds its KV caches as they were.
void ShmRunArena::place_unified_state() {
  auto offset = [&](uint32_t block) { return static_cast<uint64_t>(arena_->payload(block).data() - arena_->base()); };
  for (auto& p : segs_) {
    if (!p.gpu || !unified(p.desc)) continue;
    proto::CudaWorkerSpec& g = p.gpu_spec;
    g.arena_bytes = arena_->size_bytes();
    if (is_layers(p.desc)) g.kv_offset = static_cast<int64_t>(offset(p.spec.kv_block));
    if (is_bank(p.desc) || calls_banks(p.desc)) g.moe = {offset(moe_[0]), offset(moe_[1]), offset(moe_[2]), offset(moe_[3])};
  }
}

// A port's block: ids, logits, or the hidden.a / hidden.b of a hidden-state port, or that buffer's
// device slot.
uint32_t ShmRunArena::block_of(const Port& p, bool dev) const {
  if (p.is_ids()) return ids_block_;
  if (p.is_logits()) return logits_block_;
  for (auto& [b, block] : hidden_)
    if (b == p.boundary) return dev ? proto::kDeviceSlot | (block == hid_[0] ? 0u : 1u) : block;
  SEGPIPE_ASSERT_MSG(false, "a hidden-state port outside the plan's chain");
  return 0;
}

proto::StepArgs ShmRunArena::step_args(const Stage& stage) const {
  const ShmSegment& p = segs_[static_cast<size_t>(stage.segment)];
  proto::StepArgs a{};
  a.in_block = block_of(stage.in, p.in_dev);
  a.out_block = block_of(stage.out, p.out_dev);
  return a;
}

float* ShmRunArena::hidden_port(const Port& port) const {
  SEGPIPE_ASSERT(port.is_hidden());
  return arena_->payload_span<float>(block_of(port, false)).data();
}

const float* ShmRunArena::read_hidden(const Stage& stage, int64_t T, std::vector<float>& scratch) const {
  const ShmSegment& p = segs_[static_cast<size_t>(stage.segment)];
  const uint32_t block = block_of(stage.out, p.out_dev);
  if (!p.out_dev) return arena_->payload_span<float>(block).data();
  scratch.resize(static_cast<size_t>(T * cfg_.hidden));
  const DevArena& da = dev_.at(p.desc.device.index);
  da.arena->read(da.slots[block & ~proto::kDeviceSlot], scratch.data(), scratch.size() * 4);
  return scratch.data();
}

proto::CaptureLayout ShmRunArena::capture_layout(const SegmentDesc& d) const {
  return proto::make_capture_layout(d.layer_first, d.layer_last, capture_tokens_, cfg_.hidden, cfg_.num_experts,
                                    cfg_.top_k, [&](int l) { return cfg_.is_moe_layer(l); });
}

std::vector<GpuDeviceState> ShmRunArena::gpu_devices() const {
  std::vector<GpuDeviceState> out;
  for (auto& [device, memory] : memory_) {
    GpuDeviceState g;
    g.device = device;
    g.memory = memory;
    if (auto it = dev_.find(device); it != dev_.end() && it->second.arena) g.device_arena_bytes = it->second.arena->bytes();
    if (memory == GpuMemory::unified && arena_) {
      bool banks = false;
      for (const ShmSegment& p : segs_) {
        if (!p.gpu || p.desc.device.index != device) continue;
        if (is_layers(p.desc)) g.shared_arena_bytes += arena_->payload(p.spec.kv_block).size();
        banks |= is_bank(p.desc);
      }
      if (banks)
        for (uint32_t b : moe_) g.shared_arena_bytes += arena_->payload(b).size();
    }
    out.push_back(g);
  }
  return out;
}

}  // namespace segpipe
