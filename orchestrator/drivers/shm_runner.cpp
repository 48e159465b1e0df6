// One process per segment: the one driver (chain_driver.h) over the shared-memory transport
// (shm_transport.h: the arenas in shm_run_arena.h, the worker processes in shm_workers.h).
#include "orchestrator/drivers/shm_runner.h"

#include "orchestrator/drivers/chain_driver.h"
#include "orchestrator/drivers/shm_transport.h"

namespace segpipe {

std::unique_ptr<Runner> make_shm_runner(const RunPlan& plan, const ShmOptions& opt) {
  return make_chain_runner(plan, std::make_unique<ShmTransport>(plan, opt));
}

std::unique_ptr<Runner> make_shm_runner_cuda(const RunPlan& plan, const ShmOptions& opt, const CudaShmOptions& cuda) {
  return make_chain_runner(plan, std::make_unique<ShmTransport>(plan, opt, cuda));
}

}  // namespace segpipe
