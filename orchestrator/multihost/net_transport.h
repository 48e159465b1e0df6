// The network transport (transport.h's third implementation): the segments of hosts[0] run here through
// the shared-memory transport; those of hosts[k] through the agent of rank k, which runs them the same
// way on its host. A step's ports stay where they were written and move, host to host, only when the
// next stage runs elsewhere: directly from the producer's host to the consumer's (one MPI message;
// rank 0 only tells both). Captures and logits of a remote stage come back to rank 0 for the observer
// and the caller. A host that sends nothing (no reply, no beat) for the plan's timeout_ms is lost: its
// segment is reported with the host's name, and the job can only be ended (its state went with it).
// Expert banks may run on another host than their layers segments: bank_exchange.h carries the calls.
#pragma once
#include <map>
#include <memory>
#include <optional>

#include "net/mpi_link.h"
#include "orchestrator/multihost/bank_exchange.h"
#include "orchestrator/drivers/shm_transport.h"
#include "orchestrator/multihost/net_protocol.h"

namespace segpipe::multihost {

class NetTransport : public Transport {
 public:
  NetTransport(const RunPlan& plan, const ShmOptions& opt, const CudaShmOptions& cuda, net::Link& link);
  ~NetTransport() override { shutdown(); }

  const ModelConfig& config() const override { return local_->config(); }
  int64_t max_step_tokens() const override { return local_->max_step_tokens(); }
  int64_t capture_tokens() const override { return local_->capture_tokens(); }
  void wait_ready(int segment) override;
  void begin_step(const StepInput& in) override;
  void run(const Stage& stage) override;
  bool can_restart() const override { return true; }
  void restart(int segment) override;
  void shutdown() noexcept override;
  std::vector<SegmentReport> reports() override;
  std::vector<GpuDeviceState> gpu_devices() const override { return local_->gpu_devices(); }
  // Media as the shared-memory transport takes them, on every host: a step's media ride with its ids to
  // each host, and an encoder runs where the plan puts it (its rows come back here).
  bool carries_media() const override { return local_->carries_media(); }
  void encode(int segment, const EncoderIO& io) override;

 private:
  int host_of(int segment) const { return plan_.segments[static_cast<size_t>(segment)].host; }
  std::string where(int host) const { return host_label(plan_, host); }
  // An expert bank of this host called from another host's layers segment (while rank 0 waits on it).
  void serve_bank(net::Message&& m);
  // A segment of another host, lost: its host's too when `host_lost`.
  [[noreturn]] void lost_elsewhere(int segment, const std::string& how, bool host_lost);
  // Sends a request to host h's agent and handles what comes back until its kDone.
  void request(int h, int segment, uint32_t op, int64_t a = 0, int64_t b = 0, int32_t c = 0,
               std::span<const std::byte> payload = {});
  void await(int h, int segment, uint32_t op);
  void send_to(int h, const net::Header& hd, std::span<const std::byte> payload = {});
  // Makes the port's content, written on host `from` this step, present on host `to`.
  void move_port(const Port& port, int from, int to);
  RunPlan plan_;
  net::Link& link_;
  std::unique_ptr<ShmTransport> local_;
  std::unique_ptr<BankProxy> proxy_;  // after local_: stopped before its arena goes
  std::vector<bool> open_;  // per host: an agent holds this plan's segments
  std::vector<bool> lost_;  // per host
  StepInput in_;
  std::vector<std::pair<Port, int>> written_;  // this step's ports and the host that wrote each
  bool closed_ = false;
  const EncoderIO* encoding_ = nullptr;  // the remote encode in progress: where its rows go (kEncoded)
};

}  // namespace segpipe::multihost
