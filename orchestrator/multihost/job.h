// This process's MPI job (multihost.h): the link to the other hosts' processes and, on rank 0, the
// thread that tells the agents every 100 ms that the orchestrator is still there (an agent that hears
// nothing from rank 0 for its silence limit stops its host's segments and leaves: nothing is left on a
// host whose link to the orchestrator was cut).
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "net/mpi_link.h"
#include "orchestrator/planning/run_plan.h"

namespace segpipe::multihost {

inline constexpr std::chrono::milliseconds kBeatEvery{100};

class Job {
 public:
  Job(int* argc, char*** argv);
  ~Job();
  net::Link& link() { return *link_; }
  // Rank 0: beats to every agent until stop().
  void start_beats();
  void stop_beats();

 private:
  std::unique_ptr<net::Link> link_;
  std::atomic<bool> beating_{false};
  std::thread beats_;
};

// The process's job; null outside one (or before enter()).
Job* job();

// The command line as main() received it (for the relaunch under the launcher).
const std::vector<std::string>& command_line();

// Starts the command line again under the launcher, one process per host of the plan (execvp: does
// not return). InputError where no launcher is installed.
[[noreturn]] void relaunch(const RunPlan& plan);

// Serves as the agent of hosts[rank] until rank 0 ends the job; returns the exit status.
int serve_agent(net::Link& link);

}  // namespace segpipe::multihost
