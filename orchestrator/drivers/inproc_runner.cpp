// The monolithic baseline: every segment of the plan built and called in this process, in data-flow
// order, with the same segment classes the worker processes use: the one driver (chain_driver.h) over
// the in-process transport (inproc_transport.h). SegmentSet::step (the traced runs of dump and bisect)
// is the same driver over the same transport, so there is one in-process path.
#include "orchestrator/drivers/chain_driver.h"
#include "orchestrator/drivers/inproc_transport.h"

namespace segpipe {

std::unique_ptr<Runner> make_inproc_runner(const RunPlan& plan) {
  return make_chain_runner(plan, make_inproc_transport(plan));
}

}  // namespace segpipe
