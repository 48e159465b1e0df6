#include "orchestrator/drivers/shm_workers.h"

#include <atomic>
#include <cstring>
#include <thread>

#include "orchestrator/drivers/process.h"
#include "segments/core/errors.h"
#include "workers/worker_main.h"

namespace segpipe {

using namespace std::chrono_literals;

ShmWorkers::ShmWorkers(ShmRunArena& arena, const RunPlan& plan) : arena_(arena), plan_(plan) {
  procs_.resize(arena_.segments().size());
  for (size_t i = 0; i < procs_.size(); i++) {
    if (!seg(i).local) continue;  // another host's: no channel here
    procs_[i].ch.emplace(shm::Channel::attach(arena_.arena(), seg(i).spec.channel_block));
    if (seg(i).gpu && seg(i).gpu_spec.spin_count) procs_[i].ch->set_spin_count(seg(i).gpu_spec.spin_count);
  }
}

void ShmWorkers::start_all() {
  for (size_t i = 0; i < procs_.size(); i++)
    if (seg(i).local) spawn(static_cast<int>(i));
  for (auto& p : procs_)
    if (p.ch) p.hello_step = p.ch->post_request(proto::kHello);
}

void ShmWorkers::spawn(int i) {
  Proc& p = procs_[static_cast<size_t>(i)];
  const ShmSegment& s = seg(static_cast<size_t>(i));
  proto::SegmentStatus* status = arena_.status();
  std::atomic_ref<int32_t>(status[i].dead).store(0);
  std::atomic_ref<uint64_t>(status[i].generation).fetch_add(1);
  p.ended.clear();
  p.reaped_status.reset();
  p.ready = false;
  if (s.gpu)
    p.pid = spawn_self({kWorkerCommand, proto::to_json(s.spec).dump(), proto::to_json(s.gpu_spec).dump()},
                       {arena_.arena().fd()});
  else
    p.pid = spawn_self({kWorkerCommand, proto::to_json(s.spec).dump()}, {arena_.arena().fd()});
  std::atomic_ref<int32_t>(status[i].pid).store(static_cast<int32_t>(p.pid));
  p.last_heartbeat = std::atomic_ref<uint64_t>(status[i].heartbeat).load();
  p.heartbeat_seen = Clock::now();
}

// Every process alive and its heartbeat moving? Throws SegmentLost for the first that is not.
void ShmWorkers::check_all() {
  proto::SegmentStatus* status = arena_.status();
  auto now = Clock::now();
  for (size_t i = 0; i < procs_.size(); i++) {
    Proc& p = procs_[i];
    if (!seg(i).local) continue;
    const SegmentDesc& d = seg(i).desc;
    int st = 0;
    if (p.reaped_status) st = *p.reaped_status;
    if (p.pid > 0 && (p.reaped_status || reap_if_exited(p.pid, st))) {
      std::atomic_ref<int32_t>(status[i].dead).store(1);
      pid_t pid = p.pid;
      p.pid = -1;
      p.reaped_status.reset();
      p.ended = "segment '" + d.name + "' (" + to_string(d.kind) + ", pid " + std::to_string(pid) + ") " + describe_status(st);
      throw SegmentLost(static_cast<int>(i), p.ended);
    }
    uint64_t hb = std::atomic_ref<uint64_t>(status[i].heartbeat).load();
    if (hb != p.last_heartbeat) {
      p.last_heartbeat = hb;
      p.heartbeat_seen = now;
    } else if (now - p.heartbeat_seen > std::chrono::milliseconds(plan_.timeout_ms)) {
      std::atomic_ref<int32_t>(status[i].dead).store(1);
      throw SegmentLost(static_cast<int>(i), "segment '" + d.name + "' (" + to_string(d.kind) + ", pid " +
                                                 std::to_string(p.pid) + ") stopped answering for " +
                                                 std::to_string(plan_.timeout_ms) + " ms (hung)");
    }
  }
}

std::vector<std::byte> ShmWorkers::wait(int i, uint64_t step) {
  Proc& p = procs_[static_cast<size_t>(i)];
  std::optional<SegmentLost> failure;
  auto alive = [&] {
    try {
      check_all();
      return true;
    } catch (const SegmentLost& f) {
      failure.emplace(f);
      return false;
    }
  };
  shm::Response r = p.ch->wait_response(step, std::chrono::hours(24 * 365), alive, 50ms);
  if (!r.ok()) {
    if (failure) throw *failure;
    throw SegmentLost(i, "segment '" + seg(static_cast<size_t>(i)).desc.name + "' did not answer");
  }
  std::vector<std::byte> reply(r.reply.begin(), r.reply.end());
  if (r.code != proto::kOk) {
    std::string msg(reinterpret_cast<const char*>(reply.data()), reply.size());
    // A worker that failed because a peer died: report the peer, with how it ended (a bank's
    // death may have been seen by an earlier wait, the layers segment's error arriving after).
    check_all();
    for (size_t j = 0; j < procs_.size(); j++)
      if (static_cast<int>(j) != i && !procs_[j].ended.empty() && std::atomic_ref<int32_t>(arena_.status()[j].dead).load())
        throw SegmentLost(static_cast<int>(j), procs_[j].ended);
    {
      std::lock_guard lock(elsewhere_mu_);
      if (!lost_elsewhere_.empty()) throw SegmentLost(lost_elsewhere_.begin()->first, lost_elsewhere_.begin()->second);
    }
    if (r.code == proto::kBadInput) throw InputError(msg);
    throw RuntimeFailure("segment '" + seg(static_cast<size_t>(i)).desc.name + "': " + msg);
  }
  return reply;
}

std::vector<std::byte> ShmWorkers::call(int i, uint32_t op, std::span<const std::byte> args) {
  SEGPIPE_ASSERT_MSG(seg(static_cast<size_t>(i)).local, "a call to another host's segment");
  uint64_t step = procs_[static_cast<size_t>(i)].ch->post_request(op, args);
  return wait(i, step);
}

void ShmWorkers::await_hello(int i) {
  Proc& p = procs_[static_cast<size_t>(i)];
  auto reply = wait(i, p.hello_step);
  std::memcpy(&p.hello, reply.data(), std::min(reply.size(), sizeof(proto::HelloReply)));
  p.ready = true;
}

void ShmWorkers::wait_ready(int i) {
  SEGPIPE_ASSERT_MSG(seg(static_cast<size_t>(i)).local, "waiting for another host's segment");
  if (!procs_[static_cast<size_t>(i)].ready) await_hello(i);
}

void ShmWorkers::restart(int i) {
  Proc& p = procs_[static_cast<size_t>(i)];
  std::atomic_ref<int32_t>(arena_.status()[i].dead).store(1);
  if (p.pid > 0) kill_and_reap(p.pid);
  p.pid = -1;
  // Let every other channel settle: workers that were waiting on the dead one answer with an error.
  auto deadline = Clock::now() + 5s;
  for (size_t j = 0; j < procs_.size(); j++) {
    if (static_cast<int>(j) == i) continue;
    if (!seg(j).local) {
      // A bank of another host that the dead worker was calling: this host's proxy answers its channel
      // once the bank's host answers (or is found silent), and the restarted worker posts there next.
      const shm::Channel ch = shm::Channel::attach(arena_.arena(), seg(j).spec.channel_block);
      while (ch.request_pending() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
      if (ch.request_pending()) throw RuntimeFailure("the call to '" + seg(j).desc.name + "' did not settle after a restart");
      continue;
    }
    Proc& q = procs_[j];
    while (q.ch->request_pending() && Clock::now() < deadline) {
      int st;
      if (q.pid > 0 && reap_if_exited(q.pid, st)) {
        q.reaped_status = st;  // reported by the next check_all, with this status
        break;
      }
      std::this_thread::sleep_for(1ms);
    }
    if (q.ch->request_pending()) throw RuntimeFailure("segment '" + seg(j).desc.name + "' did not settle after a restart");
  }
  p.ch->reset();
  spawn(i);
  p.hello_step = p.ch->post_request(proto::kHello);
  await_hello(i);
}

void ShmWorkers::note_lost_elsewhere(int i, const std::string& how) {
  {
    std::lock_guard lock(elsewhere_mu_);
    lost_elsewhere_.emplace(i, how);
  }
  std::atomic_ref<int32_t>(arena_.status()[i].dead).store(1);
}

void ShmWorkers::revive_elsewhere(int i) {
  {
    std::lock_guard lock(elsewhere_mu_);
    lost_elsewhere_.erase(i);
  }
  std::atomic_ref<uint64_t>(arena_.status()[i].generation).fetch_add(1);
  std::atomic_ref<int32_t>(arena_.status()[i].dead).store(0);
}

void ShmWorkers::shutdown() noexcept {
  if (stopped_) return;
  stopped_ = true;
  for (auto& p : procs_) {
    if (p.pid <= 0 || !p.ch) continue;
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
}

}  // namespace segpipe
