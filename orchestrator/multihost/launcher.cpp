// The relaunch under MPI's launcher: `segpipe <command> --pipeline P ...` on a plan whose segments run
// on several hosts becomes `mpirun ... -np 1 --host hosts[0] segpipe <same> : -np 1 --host hosts[1]
// segpipe <same> : ...`, so the user's one command starts every host's process (rank k serves hosts[k];
// the launcher forwards rank 0's standard input and output and returns its exit status).
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "orchestrator/multihost/job.h"
#include "segments/core/errors.h"

namespace segpipe::multihost {

void relaunch(const RunPlan& plan) {
  std::vector<std::string> args = {"mpirun", "-q"};
  // mpirun refuses to run as root unless told; a root user has chosen to be root.
  if (geteuid() == 0) args.push_back("--allow-run-as-root");
  // The launcher's own connections to its daemons on the other hosts: a host whose link is cut is
  // noticed within keepalive_time + 2 probes of 1 s (default: 300 s + 9 x 20 s), so that the daemon
  // there stops its processes and the launcher returns, instead of both waiting for TCP to give up.
  const int keepalive_s = std::max(1, plan.timeout_ms / 2000);
  // Every host runs its segment processes beside the MPI process: a rank that waits gives up the core
  // instead of spinning in the library (on a 2-core machine: 40 us a hop instead of a 4 ms tick).
  for (auto [k, v] : {std::pair<const char*, std::string>{"oob_tcp_keepalive_time", std::to_string(keepalive_s)},
                      {"oob_tcp_keepalive_intvl", "1"},
                      {"oob_tcp_keepalive_probes", "2"},
                      {"mpi_yield_when_idle", "1"}}) {
    args.push_back("--mca");
    args.push_back(k);
    args.push_back(v);
  }
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) throw RuntimeFailure("cannot find this executable (/proc/self/exe) to start it on the other hosts");
  exe[n] = 0;
  const std::vector<std::string>& cmd = command_line();
  // Several hosts of the plan may be one machine (all at localhost, say, to try a placement on one):
  // each names its machine with as many slots as the plan puts there, or the launcher finds the
  // machine full after its first process.
  auto address = [&](size_t h) { return plan.hosts[h].address.empty() ? std::string("localhost") : plan.hosts[h].address; };
  for (size_t h = 0; h < plan.hosts.size(); h++) {
    const auto slots = std::count_if(plan.hosts.begin(), plan.hosts.end(),
                                     [&](const HostDesc& o) { return (o.address.empty() ? "localhost" : o.address) == address(h); });
    if (h) args.push_back(":");
    args.insert(args.end(), {"-np", "1", "--host", address(h) + ":" + std::to_string(slots), exe});
    args.insert(args.end(), cmd.begin() + 1, cmd.end());
  }
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  std::fflush(stderr);
  execvp("mpirun", argv.data());
  throw InputError(plan.source + ": the pipeline places segments on " + std::to_string(plan.hosts.size()) +
                   " hosts, which segpipe starts with MPI's launcher, but mpirun cannot be run (" +
                   std::strerror(errno) + "; Debian: apt install openmpi-bin)");
}

}  // namespace segpipe::multihost
