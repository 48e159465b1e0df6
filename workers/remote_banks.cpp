#include "workers/remote_banks.h"

#include <atomic>
#include <chrono>

#include "segments/core/errors.h"
#include "workers/worker_support.h"

namespace segpipe {

BankCaller::BankCaller(const proto::WorkerSpec& spec, const shm::Arena& arena, proto::SegmentStatus* status)
    : status_(status) {
  for (auto& b : spec.bank_list)
    banks_.push_back({b.index, b.layer_first, b.layer_last, shm::Channel::attach(arena, b.channel_block), b.name});
}

bool BankCaller::holds_layer(int layer) const {
  for (const Bank& b : banks_)
    if (layer >= b.layer_first && layer <= b.layer_last) return true;
  return false;
}

void BankCaller::call(int layer, std::span<const std::byte> args) {
  // Post to every bank of this layer first, then wait: the banks compute in parallel.
  std::vector<std::pair<Bank*, uint64_t>> posted;
  for (Bank& b : banks_)
    if (layer >= b.layer_first && layer <= b.layer_last) posted.push_back({&b, b.ch.post_request(proto::kExperts, args)});
  worker::busy_watch().pause();
  struct Resume {
    ~Resume() { worker::busy_watch().resume(); }
  } resume;
  for (auto& [b, step] : posted) {
    proto::SegmentStatus& st = status_[b->index];
    uint64_t gen = std::atomic_ref<uint64_t>(st.generation).load();
    // A bank is alive while the orchestrator has not marked it dead or restarted it.
    auto alive = [&st, gen] {
      return std::atomic_ref<int32_t>(st.dead).load() == 0 && std::atomic_ref<uint64_t>(st.generation).load() == gen;
    };
    shm::Response r = b->ch.wait_response(step, std::chrono::hours(24 * 365), alive, std::chrono::milliseconds(50));
    // The orchestrator saw it die (and names the signal); this names the bank for the case where
    // this message is what reaches the user.
    if (!r.ok())
      throw RuntimeFailure("expert bank '" + b->name + "' (segment #" + std::to_string(b->index) +
                           ") died or was restarted during a request for layer " + std::to_string(layer));
    if (r.code != 0)
      throw RuntimeFailure(std::string(reinterpret_cast<const char*>(r.reply.data()), r.reply.size()));
  }
}

RemoteBanks::RemoteBanks(const proto::WorkerSpec& spec, const shm::Arena& arena, const ModelConfig&,
                         proto::SegmentStatus* status)
    : spec_(spec), banks_(spec, arena, status) {
  stage_.x = arena.payload_span<float>(spec.moe_x).data();
  stage_.experts = arena.payload_span<int32_t>(spec.moe_experts).data();
  stage_.weights = arena.payload_span<float>(spec.moe_weights).data();
  stage_.slots = arena.payload_span<float>(spec.moe_slots).data();
}

ExpertStaging RemoteBanks::staging(int64_t T, int) {
  if (T > spec_.max_tokens) throw RuntimeFailure("expert exchange holds " + std::to_string(spec_.max_tokens) + " tokens");
  return stage_;
}

void RemoteBanks::run(const ExpertRequest& req) {
  SEGPIPE_ASSERT(req.x == stage_.x && req.slots == stage_.slots);
  proto::ExpertArgs a{req.layer, req.k, req.T};
  banks_.call(req.layer, std::as_bytes(std::span<const proto::ExpertArgs>(&a, 1)));
}

}  // namespace segpipe
