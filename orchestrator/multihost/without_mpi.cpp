// A build without an MPI library (multihost.h): no agent, and plans across hosts refused.
#include "orchestrator/drivers/multihost.h"
#include "segments/core/errors.h"

namespace segpipe::multihost {

std::optional<int> enter(int, char**) { return std::nullopt; }
int leave(int status) { return status; }
std::unique_ptr<Runner> make_runner(const RunPlan& plan, const ShmOptions&, const CudaShmOptions&) {
  throw InputError(plan.source + ": the pipeline places segments on " + std::to_string(plan.hosts.size()) +
                   " hosts, and this build of segpipe has no MPI library to reach them (install libopenmpi-dev "
                   "and openmpi-bin, and build again)");
}

}  // namespace segpipe::multihost
