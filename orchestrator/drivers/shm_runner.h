// One process per segment. The orchestrator lays out one arena (activations, KV caches, MoE
// exchange, capture buffers, a channel and a status slot per segment), starts a worker per segment,
// waits for each one's handshake, then drives steps through the channels. A segment that dies or
// stops answering is detected within about 100 ms (death) or at the timeout (silence); it is either
// reported (exit 3) or restarted, and the interrupted step is repeated (--restart). The driver is
// chain_driver.h's; everything particular to processes and shared memory is shm_transport.h's.
#pragma once
#include <memory>

#include "orchestrator/drivers/runner.h"

namespace segpipe {

struct ShmOptions {
  int64_t capture_tokens = 0;   // tokens of internal boundaries the capture buffers hold (verify)
  // Multi-host runs: the host (RunPlan::hosts index) whose segments this transport runs; the others are
  // another host's (net_transport.h). 0 on a single host: every segment.
  int host = 0;
};

std::unique_ptr<Runner> make_shm_runner(const RunPlan& plan, const ShmOptions& opt = {});

}  // namespace segpipe
