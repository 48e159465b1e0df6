#include "workers/serve_loop.h"

#include <unistd.h>

#include <atomic>
#include <chrono>

#include "workers/worker_support.h"

namespace segpipe::worker {

using namespace std::chrono_literals;

int serve(const proto::WorkerSpec& spec, shm::Channel& ch, proto::SegmentStatus* status, ServedSegment& seg) {
  const pid_t parent = static_cast<pid_t>(spec.parent_pid);
  FaultPlan fault;
  if (std::atomic_ref<uint64_t>(status[spec.index].generation).load() == 1) fault = FaultPlan::from_env(spec.name);
  auto parent_alive = [parent] { return getppid() == parent; };
  for (;;) {
    shm::Request rq = ch.wait_request(1s, parent_alive, 100ms);
    if (rq.status == shm::WaitStatus::kPeerDead) return 3;  // orchestrator gone: nothing to serve
    if (!rq.ok()) continue;
    BusyScope busy;
    fault.on(rq.opcode);
    int32_t code = proto::kOk;
    std::string err;
    try {
      switch (rq.opcode) {
        case proto::kHello: {
          proto::HelloReply h{seg.loaded().size(), seg.weight_bytes(), static_cast<int32_t>(getpid()), 0};
          ch.post_response(rq.step, proto::kOk, bytes_of(h));
          continue;
        }
        case proto::kReport: {
          proto::ReportReply r{proc_status_kb("VmHWM:") * 1024, proc_status_kb("VmRSS:") * 1024, 0, 0, 0, 0, 0, 0, 0, 0};
          seg.add_to_report(r);
          ch.post_response(rq.step, proto::kOk, bytes_of(r));
          continue;
        }
        case proto::kStop:
          ch.post_response(rq.step, proto::kOk);
          return 0;
        case proto::kNames:
          post_names_page(ch, rq, seg.loaded());
          continue;
        case proto::kStep:
          seg.step(args_as<proto::StepArgs>(rq.args));
          break;
        case proto::kExperts:
          seg.experts(rq.args);
          break;
        case proto::kEncode:
          seg.encode(rq.args);
          break;
        default:
          throw RuntimeFailure("unknown opcode " + std::to_string(rq.opcode));
      }
    } catch (const InputError& e) {
      code = proto::kBadInput;
      err = e.what();
    } catch (const std::exception& e) {
      code = proto::kFailed;
      err = e.what();
    }
    post_status(ch, rq.step, code, err);
  }
}

}  // namespace segpipe::worker
