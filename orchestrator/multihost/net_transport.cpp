#include "orchestrator/multihost/net_transport.h"

#include <algorithm>
#include <cstring>

#include "orchestrator/drivers/shm_media_sizes.h"
#include "orchestrator/multihost/job.h"
#include "orchestrator/multihost/media_wire.h"
#include "orchestrator/multihost/report_json.h"
#include "orchestrator/planning/run_plan_json.h"
#include "segments/core/errors.h"

namespace segpipe::multihost {

namespace {

std::span<const std::byte> bytes_of(const void* p, size_t n) { return {static_cast<const std::byte*>(p), n}; }
std::string text_of(const net::Message& m) {
  return std::string(reinterpret_cast<const char*>(m.payload.data()), m.payload.size());
}

nlohmann::json cuda_json(const CudaShmOptions& c) {
  return {{"synthetic", c.synthetic}, {"seed", c.seed}, {"graphs", c.graphs}, {"spin_count", c.spin_count}};
}

}  // namespace

NetTransport::NetTransport(const RunPlan& plan, const ShmOptions& opt, const CudaShmOptions& cuda, net::Link& link)
    : plan_(plan), link_(link), open_(plan.hosts.size(), false), lost_(plan.hosts.size(), false) {
  link_.set_send_timeout(std::chrono::milliseconds(plan_.timeout_ms));
  if (static_cast<int>(plan_.hosts.size()) != link_.size())
    throw InputError(plan_.source + ": the pipeline lists " + std::to_string(plan_.hosts.size()) +
                     " hosts, but this MPI job has " + std::to_string(link_.size()) +
                     " processes (one per host: rank k serves hosts[k])");
  // The other hosts start loading first: the slowest load, not the sum, is the start-up time.
  const std::string open = nlohmann::json{{"plan", to_json(plan_)},
                                          {"capture_tokens", opt.capture_tokens},
                                          {"cuda", cuda_json(cuda)}}
                               .dump();
  for (size_t h = 1; h < plan_.hosts.size(); h++) {
    send_to(static_cast<int>(h), net::Header{kOpen}, bytes_of(open.data(), open.size()));
    open_[h] = true;
  }
  ShmOptions local = opt;
  local.host = 0;
  local_ = std::make_unique<ShmTransport>(plan_, local, cuda);
  proxy_ = std::make_unique<BankProxy>(*local_, plan_, 0, link_);
  for (size_t h = 1; h < plan_.hosts.size(); h++) await(static_cast<int>(h), -1, kOpen);
}

// Every message to another host goes through here: a host that takes nothing for timeout_ms is lost.
void NetTransport::send_to(int h, const net::Header& hd, std::span<const std::byte> payload) {
  try {
    link_.send(h, hd, payload);
  } catch (const std::runtime_error& e) {
    lost_[static_cast<size_t>(h)] = true;
    link_.mark_lost();
    const int seg = hd.segment;
    throw SegmentLost(std::max(seg, 0), (seg >= 0 ? "segment '" + plan_.segments[static_cast<size_t>(seg)].name + "' on " : std::string()) +
                                            where(h) + ": " + e.what());
  }
}

void NetTransport::request(int h, int segment, uint32_t op, int64_t a, int64_t b, int32_t c,
                           std::span<const std::byte> payload) {
  net::Header hd{op, segment, a, b, c};
  send_to(h, hd, payload);
  await(h, segment, op);
}

// Until the agent's answer to `op`: forwards the boundaries and logits it sends meanwhile, and notices
// its silence.
void NetTransport::await(int h, int segment, uint32_t op) {
  const auto limit = std::chrono::milliseconds(plan_.timeout_ms);
  for (;;) {
    // h's answers, and an expert call from any host (a bank here serves a layers segment there); an
    // answer to a bank call of this rank is its proxy's.
    std::optional<net::Message> m = link_.receive_if(
        [h](int from, const net::Header& hd) {
          return hd.op == kBankCall || (from == h && hd.op != kBankSlots && hd.op != kBankFailed);
        },
        std::chrono::milliseconds(100));
    if (!m) {
      if (std::chrono::steady_clock::now() - link_.last_heard(h) <= limit) continue;
      lost_[static_cast<size_t>(h)] = true;
      link_.mark_lost();
      const std::string who =
          segment >= 0 ? "segment '" + plan_.segments[static_cast<size_t>(segment)].name + "' on " : std::string();
      throw SegmentLost(std::max(segment, 0), who + where(h) + ": the host stopped answering for " +
                                                   std::to_string(plan_.timeout_ms) +
                                                   " ms (its link, its agent or the host is lost)");
    }
    const net::Header& r = m->h;
    switch (r.op) {
      case kDone:
        if (static_cast<uint32_t>(r.c) != op) throw RuntimeFailure(where(h) + " answered another request");
        return;
      case kLost:
        // The segment may be of another host than h: an expert bank h's layers segment called.
        if (r.segment < 0 || r.segment >= static_cast<int>(plan_.segments.size()))
          throw RuntimeFailure(where(h) + " reported a segment the plan does not have as lost");
        if (host_of(r.segment) != h) lost_elsewhere(r.segment, text_of(*m), r.c == 1);
        throw SegmentLost(r.segment, text_of(*m) + " on " + where(h));
      case kBankCall:
        serve_bank(std::move(*m));
        break;
      case kEncoded:
        if (!encoding_ || m->payload.size() != static_cast<size_t>(encoding_->out_floats) * 4)
          throw RuntimeFailure(where(h) + " sent an encoder's rows of the wrong size");
        std::memcpy(encoding_->out, m->payload.data(), m->payload.size());
        break;
      case kFailed:
        if (r.c == 2) throw InputError(text_of(*m));
        throw RuntimeFailure(text_of(*m) + " (on " + where(h) + ")");
      case kTensor: {
        const int64_t rows = r.b, cols = r.c;
        if (!in_.observer || rows < 0 || cols < 0 || m->payload.size() != static_cast<size_t>(rows * cols) * 4)
          throw RuntimeFailure(where(h) + " sent a malformed boundary");
        in_.observer->on_tensor(unpack_boundary(r.a), reinterpret_cast<const float*>(m->payload.data()), rows, cols);
        break;
      }
      case kRoute: {
        const int64_t T = r.b;
        const int k = r.c;
        if (!in_.observer || T < 0 || k < 0 || m->payload.size() != static_cast<size_t>(T * k) * 8)
          throw RuntimeFailure(where(h) + " sent a malformed route");
        const auto* experts = reinterpret_cast<const int32_t*>(m->payload.data());
        in_.observer->on_route(static_cast<int>(r.a), experts, reinterpret_cast<const float*>(experts + T * k), T, k);
        break;
      }
      case kLogits:
        if (!in_.logits || m->payload.size() != in_.logits->size() * 4)
          throw RuntimeFailure(where(h) + " sent logits of the wrong size");
        std::memcpy(in_.logits->data(), m->payload.data(), m->payload.size());
        break;
      default:
        throw RuntimeFailure(where(h) + " sent an unexpected message (op " + std::to_string(r.op) + ")");
    }
  }
}

void NetTransport::wait_ready(int segment) {
  const int h = host_of(segment);
  if (h == 0) return local_->wait_ready(segment);
  request(h, segment, kReady);
}

void NetTransport::begin_step(const StepInput& in) {
  in_ = in;
  written_.clear();
  local_->begin_step(in);
  const int32_t flags = (in.all_logits ? 1 : 0) | (in.observer ? 2 : 0) | (in.media ? 4 : 0);
  std::vector<std::byte> payload(static_cast<size_t>(in.T) * 4);
  std::memcpy(payload.data(), in.ids, payload.size());
  if (in.media) {
    const std::vector<std::byte> media = pack_step_media(*in.media, in.T, config().hidden);
    payload.insert(payload.end(), media.begin(), media.end());
  }
  for (size_t h = 1; h < plan_.hosts.size(); h++)
    send_to(static_cast<int>(h), net::Header{kBegin, -1, in.T, in.pos0, flags}, payload);
}

void NetTransport::move_port(const Port& port, int from, int to) {
  const int64_t T = in_.T, H = config().hidden;
  const size_t bytes = static_cast<size_t>(T * H) * 4;
  if (from == 0) {
    send_to(to, net::Header{kRecvPort, -1, pack_port(port), T, 0});
    send_to(to, net::Header{kPortData}, bytes_of(local_->hidden_port(port), bytes));
  } else if (to == 0) {
    send_to(from, net::Header{kSendPort, -1, pack_port(port), T, 0});
    for (;;) {
      std::optional<net::Message> m = link_.receive_if(
          [from](int f, const net::Header& hd) { return f == from && hd.op != kBankSlots && hd.op != kBankFailed; },
          std::chrono::milliseconds(100));
      if (!m) {
        if (std::chrono::steady_clock::now() - link_.last_heard(from) <= std::chrono::milliseconds(plan_.timeout_ms))
          continue;
        lost_[static_cast<size_t>(from)] = true;
        link_.mark_lost();
        throw SegmentLost(0, where(from) + " stopped answering for " + std::to_string(plan_.timeout_ms) +
                                 " ms while sending " + port.boundary.name() + " (its link, its agent or the host is lost)");
      }
      if (m->h.op != kPortData || m->payload.size() != bytes)
        throw RuntimeFailure(where(from) + " sent " + port.boundary.name() + " malformed");
      std::memcpy(local_->hidden_port(port), m->payload.data(), bytes);
      return;
    }
  } else {
    // Host to host, not through rank 0: the producer sends, the consumer receives before its stage runs.
    send_to(from, net::Header{kSendPort, -1, pack_port(port), T, to});
    send_to(to, net::Header{kRecvPort, -1, pack_port(port), T, from});
  }
}

void NetTransport::run(const Stage& stage) {
  const int h = host_of(stage.segment);
  if (stage.in.is_hidden()) {
    auto it = std::find_if(written_.begin(), written_.end(), [&](const auto& w) { return w.first == stage.in; });
    SEGPIPE_ASSERT_MSG(it != written_.end(), "a stage reads a port no earlier stage of the step wrote");
    if (it->second != h) move_port(stage.in, it->second, h);
  }
  if (h == 0) {
    try {
      local_->run(stage);
    } catch (const SegmentLost& e) {
      // An expert bank of another host that a layers segment here called, lost there.
      if (host_of(e.segment) != 0) lost_elsewhere(e.segment, e.what(), proxy_->host_lost(e.segment));
      throw;
    }
  } else
    request(h, stage.segment, kRun, pack_port(stage.in), pack_port(stage.out));
  written_.emplace_back(stage.out, h);
}

void NetTransport::restart(int segment) {
  const int h = host_of(segment);
  if (lost_[static_cast<size_t>(h)])
    throw RuntimeFailure("segment '" + plan_.segments[static_cast<size_t>(segment)].name + "' on " + where(h) +
                         " cannot be restarted: its host is lost, and its state (KV caches) with it");
  if (h == 0)
    local_->restart(segment);
  else
    request(h, segment, kRestart);
  // Hosts whose layers segments call it (an expert bank) let calls to it go on.
  if (h != 0) local_->revive_elsewhere(segment);
  for (size_t o = 1; o < plan_.hosts.size(); o++)
    if (static_cast<int>(o) != h && open_[o] && !lost_[o]) request(static_cast<int>(o), segment, kRevive);
}

void NetTransport::encode(int segment, const EncoderIO& io) {
  const int h = host_of(segment);
  if (h == 0) return local_->encode(segment, io);
  // Its input's width (mel bins, a patch's values) as the encoder's host lays out its block.
  const SegmentKind kind = plan_.segments[static_cast<size_t>(segment)].kind;
  const int64_t width = media_sizes(plan_, h).encoders.at(kind).in_width;
  const std::vector<std::byte> payload = pack_encode(io, io.frames * width);
  encoding_ = &io;
  struct Done {
    const EncoderIO*& p;
    ~Done() { p = nullptr; }
  } done{encoding_};
  request(h, segment, kEncode, io.frames, io.n_grids, 0, payload);
}

void NetTransport::lost_elsewhere(int segment, const std::string& how, bool host_lost) {
  const int h = host_of(segment);
  if (host_lost) {
    lost_[static_cast<size_t>(h)] = true;
    link_.mark_lost();
  }
  // A host's loss is said of the host ("the host stopped answering ..."), a process's of the segment.
  if (host_lost) throw SegmentLost(segment, "segment '" + plan_.segments[static_cast<size_t>(segment)].name + "' on " + where(h) + ": " + how);
  throw SegmentLost(segment, how + " on " + where(h));
}

void NetTransport::serve_bank(net::Message&& m) {
  const int from = m.from, bank = m.h.segment;
  try {
    const BankCall c = parse_bank_call(plan_, 0, config(), max_step_tokens(), std::move(m));
    answer_bank_call(link_, c, run_bank_call(*local_, plan_, c), config().hidden);
  } catch (...) {
    answer_bank_failure(link_, plan_, 0, from, bank, std::current_exception());
  }
}

void NetTransport::shutdown() noexcept {
  if (closed_) return;
  closed_ = true;
  if (proxy_) proxy_->stop();
  for (size_t h = 1; h < plan_.hosts.size(); h++) {
    if (!open_[h] || lost_[h]) continue;
    try {
      request(static_cast<int>(h), -1, kClose);
    } catch (...) {
      // A host that cannot be closed is lost; the job ends with an abort (leave()).
    }
  }
  if (local_) local_->shutdown();
}

std::vector<SegmentReport> NetTransport::reports() {
  std::vector<SegmentReport> all = local_->reports();
  for (SegmentReport& r : all) r.host = plan_.hosts[0].name;
  for (size_t h = 1; h < plan_.hosts.size(); h++) {
    send_to(static_cast<int>(h), net::Header{kReports});
    std::optional<net::Message> m = link_.receive_if(
        [h](int f, const net::Header& hd) { return f == static_cast<int>(h) && hd.op == kReportsData; },
        std::chrono::milliseconds(plan_.timeout_ms));
    if (!m || m->h.op != kReportsData) throw RuntimeFailure(where(static_cast<int>(h)) + " sent no reports");
    try {
      for (const auto& j : nlohmann::json::parse(text_of(*m))) {
        all.push_back(report_from_json(j));
        all.back().host = plan_.hosts[h].name;
        all.back().measured_memory = j.value("memory", nlohmann::json());
      }
    } catch (const nlohmann::json::exception& e) {
      throw RuntimeFailure(where(static_cast<int>(h)) + " sent malformed reports: " + e.what());
    }
  }
  // In plan order, whichever host runs each segment.
  auto index = [&](const SegmentReport& r) {
    for (size_t i = 0; i < plan_.segments.size(); i++)
      if (plan_.segments[i].name == r.name) return i;
    return plan_.segments.size();
  };
  std::stable_sort(all.begin(), all.end(), [&](const auto& a, const auto& b) { return index(a) < index(b); });
  return all;
}

}  // namespace segpipe::multihost
