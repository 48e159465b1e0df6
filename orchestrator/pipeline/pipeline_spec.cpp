#include "orchestrator/pipeline/pipeline_spec.h"

namespace segpipe {

const char* to_string(Transport transport) { return transport == Transport::shm ? "shm" : "inproc"; }
const char* to_string(ExpertPlacement placement) { return placement == ExpertPlacement::local ? "local" : "banks"; }

}  // namespace segpipe
