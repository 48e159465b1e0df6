// Runs across hosts (pipeline key `hosts`; docs/multi-host.md). One MPI job: rank 0 is the command the
// user ran (the orchestrator), rank k the agent of hosts[k], which runs that host's segment processes
// through the shared-memory transport and answers rank 0 over MPI. Builds without MPI refuse
// multi-host plans (exit 2) and have no agent.
#pragma once
#include <memory>
#include <optional>

#include "orchestrator/drivers/cuda_ipc.h"
#include "orchestrator/drivers/runner.h"
#include "orchestrator/drivers/shm_runner.h"

namespace segpipe::multihost {

// Call first in main(), with the command line: the process keeps it (a relaunch under the launcher
// repeats it) and, where the launcher started it as an agent (rank > 0 of an MPI job), serves as one
// and returns its exit status. nullopt: the process goes on as the command.
std::optional<int> enter(int argc, char** argv);
// Call last in main() with the command's exit status: rank 0 of a job tells the agents to end and leaves
// the job (the launcher then returns this status). Returns it.
int leave(int status);

// The runner for a plan whose segments run on several hosts: outside an MPI job, the command is started
// again under the launcher (mpirun) with one process per host and this call does not return; inside
// one (rank 0), the driver over the network transport.
std::unique_ptr<Runner> make_runner(const RunPlan& plan, const ShmOptions& opt, const CudaShmOptions& cuda = {});

}  // namespace segpipe::multihost
