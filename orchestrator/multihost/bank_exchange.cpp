#include "orchestrator/multihost/bank_exchange.h"

#include <algorithm>
#include <cstring>

#include "orchestrator/multihost/net_protocol.h"
#include "segments/core/errors.h"

namespace segpipe::multihost {

namespace {

using Clock = std::chrono::steady_clock;

std::span<const std::byte> bytes_of(const void* p, size_t n) { return {static_cast<const std::byte*>(p), n}; }

// A worker's reply holds at most kChannelReplyBytes: the message, cut there.
std::span<const std::byte> reply_text(const std::string& s) {
  return bytes_of(s.data(), std::min(s.size(), shm::kChannelReplyBytes));
}

}  // namespace

std::string host_label(const RunPlan& plan, int host) {
  const HostDesc& d = plan.hosts[static_cast<size_t>(host)];
  return "host '" + d.name + "'" + (d.address.empty() || d.address == d.name ? "" : " (" + d.address + ")");
}

std::vector<int64_t> owned_slots(const int32_t* experts, int64_t T, int k, int e0, int e1) {
  std::vector<int64_t> out;
  for (int64_t s = 0; s < T * k; s++)
    if (experts[s] >= e0 && experts[s] <= e1) out.push_back(s);
  return out;
}

BankProxy::BankProxy(ShmTransport& t, const RunPlan& plan, int host, net::Link& link)
    : t_(t), plan_(plan), host_(host), link_(link) {
  for (int bank : t_.banks_served_elsewhere()) threads_.emplace_back([this, bank] { serve(bank); });
}

void BankProxy::stop() noexcept {
  stop_ = true;
  for (std::thread& th : threads_)
    if (th.joinable()) th.join();
  threads_.clear();
}

bool BankProxy::host_lost(int segment) const {
  std::lock_guard lock(mu_);
  return hosts_lost_.count(segment) != 0;
}

void BankProxy::serve(int bank) {
  shm::Channel ch = t_.channel_of(bank);
  while (!stop_) {
    shm::Request rq = ch.wait_request(std::chrono::milliseconds(100), [this] { return !stop_.load(); });
    if (!rq.ok()) continue;
    try {
      call(bank, ch, rq);
    } catch (const std::exception& e) {
      // The link failed before an answer went out (call answers last): the worker must not wait forever.
      // A send the bank's host took nothing of (net/mpi_link.h) is that host's loss, and the bank's.
      const std::string why = std::string("the call could not be sent: ") + e.what();
      if (link_.lost()) {
        {
          std::lock_guard lock(mu_);
          hosts_lost_.insert(bank);
        }
        t_.note_lost_elsewhere(bank, why);
      }
      try {
        ch.post_response(rq.step, proto::kFailed,
                         reply_text("expert bank '" + plan_.segments[static_cast<size_t>(bank)].name + "': " + why));
      } catch (...) {
      }
    }
  }
}

void BankProxy::call(int bank, shm::Channel& ch, const shm::Request& rq) {
  const SegmentDesc& b = plan_.segments[static_cast<size_t>(bank)];
  const ModelConfig& cfg = t_.config();
  auto fail = [&](int32_t code, const std::string& why) { ch.post_response(rq.step, code, reply_text(why)); };
  // The request comes from a worker's shared memory: checked like any other input.
  proto::ExpertArgs a{};
  if (rq.opcode != proto::kExperts || rq.args.size() != sizeof a)
    return fail(proto::kFailed, "expert bank '" + b.name + "' was sent a request that is not an expert call");
  std::memcpy(&a, rq.args.data(), sizeof a);
  if (a.T < 1 || a.T > t_.max_step_tokens() || a.k != cfg.top_k || a.layer < b.layer_first || a.layer > b.layer_last ||
      !cfg.is_moe_layer(a.layer))
    return fail(proto::kFailed, "expert bank '" + b.name + "' was called for layer " + std::to_string(a.layer) + " with " +
                                    std::to_string(a.T) + " tokens and k = " + std::to_string(a.k) + ", which it cannot serve");
  const ExpertStaging x = t_.moe_exchange();
  const int64_t H = cfg.hidden, T = a.T;
  const int k = a.k;
  std::vector<std::byte> payload(static_cast<size_t>(T * H + 2 * T * k) * 4);
  std::memcpy(payload.data(), x.x, static_cast<size_t>(T * H) * 4);
  std::memcpy(payload.data() + T * H * 4, x.experts, static_cast<size_t>(T * k) * 4);
  std::memcpy(payload.data() + (T * H + T * k) * 4, x.weights, static_cast<size_t>(T * k) * 4);
  const int to = b.host;
  const Clock::time_point sent = Clock::now();
  link_.send(to, net::Header{kBankCall, bank, a.layer, T, k}, payload);
  const auto limit = std::chrono::milliseconds(plan_.timeout_ms);
  for (;;) {
    std::optional<net::Message> m = link_.receive_if(
        [&](int from, const net::Header& h) {
          return from == to && (h.op == kBankSlots || h.op == kBankFailed) && h.segment >= 0 &&
                 (h.op == kBankFailed || h.segment == bank);
        },
        std::chrono::milliseconds(100));
    if (!m) {
      if (stop_) return fail(proto::kFailed, "the run is ending");
      // The bank's host beats to this rank while the bank computes: silence is its loss (or its link's).
      if (Clock::now() - std::max(sent, link_.last_heard(to)) <= limit) continue;
      // Said of the host: whoever reports it puts the bank's name and host in front (host_lost).
      const std::string why = "the host stopped answering for " + std::to_string(plan_.timeout_ms) +
                              " ms during an expert call from " + host_label(plan_, host_) +
                              " (its link, its agent or the host is lost)";
      {
        std::lock_guard lock(mu_);
        hosts_lost_.insert(bank);
      }
      t_.note_lost_elsewhere(bank, why);
      return fail(proto::kFailed, "expert bank '" + b.name + "' on " + host_label(plan_, to) + ": " + why);
    }
    const std::string text(reinterpret_cast<const char*>(m->payload.data()), m->payload.size());
    if (m->h.op == kBankFailed) {
      const int seg = m->h.segment, code = m->h.c;
      if (code == 1 && seg < static_cast<int>(plan_.segments.size())) t_.note_lost_elsewhere(seg, text);
      return fail(code == 2 ? proto::kBadInput : proto::kFailed, text);
    }
    const std::vector<int64_t> owned = owned_slots(x.experts, T, k, b.expert_first, b.expert_last);
    if (m->h.a != static_cast<int64_t>(owned.size()) || m->payload.size() != owned.size() * static_cast<size_t>(H) * 4)
      return fail(proto::kFailed, "expert bank '" + b.name + "' on " + host_label(plan_, to) + " sent " +
                                      std::to_string(m->h.a) + " slot rows, its experts own " + std::to_string(owned.size()));
    const auto* rows = reinterpret_cast<const float*>(m->payload.data());
    for (size_t r = 0; r < owned.size(); r++)
      std::memcpy(x.slots + owned[r] * H, rows + static_cast<int64_t>(r) * H, static_cast<size_t>(H) * 4);
    return ch.post_response(rq.step, proto::kOk);
  }
}

BankCall parse_bank_call(const RunPlan& plan, int host, const ModelConfig& cfg, int64_t max_tokens, net::Message&& m) {
  BankCall c;
  c.from = m.from;
  c.bank = m.h.segment;
  if (c.bank < 0 || c.bank >= static_cast<int>(plan.segments.size()))
    throw InputError("an expert call names segment " + std::to_string(c.bank) + ", which the plan does not have");
  const SegmentDesc& b = plan.segments[static_cast<size_t>(c.bank)];
  if (!is_bank(b) || b.host != host)
    throw InputError("an expert call names segment '" + b.name + "', which is no expert bank of " + host_label(plan, host));
  if (m.h.a < b.layer_first || m.h.a > b.layer_last || !cfg.is_moe_layer(static_cast<int>(m.h.a)))
    throw InputError("an expert call asks bank '" + b.name + "' for layer " + std::to_string(m.h.a) + ", which it does not hold");
  c.layer = static_cast<int>(m.h.a);
  c.T = m.h.b;
  c.k = m.h.c;
  if (c.T < 1 || c.T > max_tokens || c.k != cfg.top_k)
    throw InputError("an expert call to bank '" + b.name + "' has " + std::to_string(c.T) + " tokens and k = " +
                     std::to_string(c.k));
  const int64_t H = cfg.hidden;
  if (m.payload.size() != static_cast<size_t>(c.T * H + 2 * c.T * c.k) * 4)
    throw InputError("an expert call to bank '" + b.name + "' carries " + std::to_string(m.payload.size()) +
                     " bytes, not the states, ids and weights of " + std::to_string(c.T) + " tokens");
  c.payload = std::move(m.payload);
  return c;
}

std::vector<float> run_bank_call(ShmTransport& t, const RunPlan& plan, const BankCall& c) {
  const SegmentDesc& b = plan.segments[static_cast<size_t>(c.bank)];
  const ExpertStaging x = t.moe_exchange();
  const int64_t H = t.config().hidden, T = c.T;
  const int k = c.k;
  std::memcpy(x.x, c.payload.data(), static_cast<size_t>(T * H) * 4);
  std::memcpy(x.experts, c.payload.data() + T * H * 4, static_cast<size_t>(T * k) * 4);
  std::memcpy(x.weights, c.payload.data() + (T * H + T * k) * 4, static_cast<size_t>(T * k) * 4);
  t.call_bank(c.bank, proto::ExpertArgs{c.layer, c.k, c.T});
  const std::vector<int64_t> owned = owned_slots(x.experts, T, k, b.expert_first, b.expert_last);
  std::vector<float> rows(owned.size() * static_cast<size_t>(H));
  for (size_t r = 0; r < owned.size(); r++)
    std::memcpy(rows.data() + static_cast<int64_t>(r) * H, x.slots + owned[r] * H, static_cast<size_t>(H) * 4);
  return rows;
}

void answer_bank_call(net::Link& link, const BankCall& c, const std::vector<float>& rows, int64_t H) {
  const int64_t n = static_cast<int64_t>(rows.size()) / H;
  link.send(c.from, net::Header{kBankSlots, c.bank, n, 0, 0}, bytes_of(rows.data(), rows.size() * 4));
}

void answer_bank_failure(net::Link& link, const RunPlan& plan, int host, int to, int bank, std::exception_ptr e) {
  int32_t code = 3;
  int seg = bank;
  std::string text;
  try {
    std::rethrow_exception(e);
  } catch (const SegmentLost& l) {
    code = 1;
    seg = l.segment;
    text = l.what();
  } catch (const InputError& x) {
    code = 2;
    text = x.what();
  } catch (const std::exception& x) {
    text = std::string(x.what()) + " (on " + host_label(plan, host) + ")";
  }
  link.send(to, net::Header{kBankFailed, seg, 0, 0, code}, bytes_of(text.data(), text.size()));
}

}  // namespace segpipe::multihost
