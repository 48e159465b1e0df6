// Expert banks on another host than the layers segments they serve (docs/multi-host.md).
//
// A layers worker calls every bank on that bank's channel in its own host's arena (workers/
// remote_banks.h), unchanged. For a bank of another host nobody there runs the bank: a BankProxy thread
// of the host's rank answers the channel. It sends the request (the normalized states, expert ids and
// weights from the bank exchange) to the bank's host (kBankCall), where run_bank_call runs the bank
// through that host's shared memory and returns only the rows of the slots the bank owns
// (kBankSlots); the proxy writes those rows into the exchange and answers the worker. Bytes are moved,
// never recomputed or converted: the layer combines the same slots, in the same order, as on one host.
//
// Faults: a bank lost on its host comes back as kBankFailed; a host silent for the plan's timeout_ms
// (the bank's host beats to the caller while the bank computes) is lost with its bank. Either way the
// proxy marks the bank lost here (ShmTransport::note_lost_elsewhere), so the layers segment's failure
// is reported as the bank's loss, naming it and its host; a bank restarted on its host is revived here
// (kRevive) and the step is repeated.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "net/mpi_link.h"
#include "orchestrator/drivers/shm_transport.h"

namespace segpipe::multihost {

// "host 'b'" or "host 'b' (10.1.0.2)": how messages name a host of the plan.
std::string host_label(const RunPlan& plan, int host);

// The slots (t * k + j) whose expert a bank with experts [e0, e1] computes, in slot order: the rows it
// writes, sent back in this order.
std::vector<int64_t> owned_slots(const int32_t* experts, int64_t T, int k, int e0, int e1);

class BankProxy {
 public:
  // One thread per bank of another host that a layers segment of `host` calls. Stop (or destroy)
  // before the transport's arena goes.
  BankProxy(ShmTransport& t, const RunPlan& plan, int host, net::Link& link);
  ~BankProxy() { stop(); }
  void stop() noexcept;
  bool empty() const { return threads_.empty(); }
  // Whether segment's loss came with its host's (no restart can bring it back).
  bool host_lost(int segment) const;

 private:
  void serve(int bank);
  void call(int bank, shm::Channel& ch, const shm::Request& rq);
  ShmTransport& t_;
  const RunPlan& plan_;
  int host_;
  net::Link& link_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::set<int> hosts_lost_;  // by segment
  std::vector<std::thread> threads_;
};

// The bank's host: one call, as the proxy sent it. parse_bank_call checks it against the plan (a bank
// of this host, a layer it holds, sizes that match): every field is untrusted. run_bank_call runs the
// bank (SegmentLost, InputError or RuntimeFailure as the transport throws them) and returns the owned
// rows [n, H]; answer_bank_call sends them, answer_bank_failure the failure, to the caller.
struct BankCall {
  int from = -1;  // the caller's rank
  int bank = -1;
  int layer = 0;
  int64_t T = 0;
  int k = 0;
  std::vector<std::byte> payload;
};
BankCall parse_bank_call(const RunPlan& plan, int host, const ModelConfig& cfg, int64_t max_tokens, net::Message&& m);
std::vector<float> run_bank_call(ShmTransport& t, const RunPlan& plan, const BankCall& c);
void answer_bank_call(net::Link& link, const BankCall& c, const std::vector<float>& rows, int64_t H);
// The failure in flight (std::current_exception() of run_bank_call or parse_bank_call's caller).
void answer_bank_failure(net::Link& link, const RunPlan& plan, int host, int to, int bank, std::exception_ptr e);

}  // namespace segpipe::multihost
