#include "orchestrator/multihost/job.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "orchestrator/drivers/chain_driver.h"
#include "orchestrator/drivers/multihost.h"
#include "orchestrator/multihost/net_protocol.h"
#include "orchestrator/multihost/net_transport.h"
#include "segments/core/errors.h"
#include "workers/worker_main.h"

namespace segpipe::multihost {

namespace {
std::unique_ptr<Job> g_job;
std::vector<std::string> g_command_line;
}  // namespace

Job::Job(int* argc, char*** argv) : link_(std::make_unique<net::Link>(argc, argv)) { link_->set_beat_op(kBeat); }

Job::~Job() { stop_beats(); }

void Job::start_beats() {
  beating_ = true;
  beats_ = std::thread([this] {
    while (beating_) {
      for (int r = 1; r < link_->size(); r++) {
        try {
          link_->send(r, net::Header{kBeat});
        } catch (...) {
          // A peer that cannot be reached is noticed by the wait on it.
        }
      }
      std::this_thread::sleep_for(kBeatEvery);
    }
  });
}

void Job::stop_beats() {
  beating_ = false;
  if (beats_.joinable()) beats_.join();
}

Job* job() { return g_job.get(); }
const std::vector<std::string>& command_line() { return g_command_line; }

std::optional<int> enter(int argc, char** argv) {
  g_command_line.assign(argv, argv + argc);
  // A segment process (spawned by a rank with the launcher's environment) is no rank of the job.
  if (argc > 1 && std::strcmp(argv[1], kWorkerCommand) == 0) return std::nullopt;
  const std::optional<net::JobPlace> place = net::launched_job();
  if (!place) return std::nullopt;
  g_job = std::make_unique<Job>(&argc, &argv);
  if (g_job->link().rank() == 0) {
    g_job->start_beats();
    return std::nullopt;
  }
  const int status = serve_agent(g_job->link());
  if (status != 0) std::_Exit(status);  // rank 0 is gone: no peer to finalize with
  g_job.reset();
  return 0;
}

int leave(int status) {
  if (!g_job) return status;
  g_job->stop_beats();
  net::Link& link = g_job->link();
  if (link.lost()) {
    std::fflush(stdout);
    std::fflush(stderr);
    link.abort(status);  // a lost peer would hang MPI_Finalize; the launcher returns this status
  }
  for (int r = 1; r < link.size(); r++) {
    try {
      link.send(r, net::Header{kExit});
    } catch (...) {
    }
  }
  g_job.reset();  // MPI_Finalize
  return status;
}

std::unique_ptr<Runner> make_runner(const RunPlan& plan, const ShmOptions& opt, const CudaShmOptions& cuda) {
  if (!g_job) relaunch(plan);  // does not return
  return make_chain_runner(plan, std::make_unique<NetTransport>(plan, opt, cuda, g_job->link()));
}

}  // namespace segpipe::multihost
