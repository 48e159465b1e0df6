// What a segment is, whatever runs it: its kind, the part of the model it holds, where it runs and in
// which dtype. One description from the plan to the process that runs the segment: the orchestrator's
// SegmentDesc (orchestrator/planning/run_plan.h) and a worker's spec (workers/protocol.h) are
// SegmentParams plus what only they need (a name, threads, arena blocks), and the factory makes a
// segment from it (segments/factory/segment_factory.h).
#pragma once
#include "segments/core/segment_types.h"

namespace segpipe {

struct SegmentParams {
  SegmentKind kind = SegmentKind::layers;
  int layer_first = -1, layer_last = -1;    // layers, experts
  bool banks = false;                       // layers: routed experts live in experts segments
  int expert_first = -1, expert_last = -1;  // experts
  int max_resident_experts = 0;             // layers (local experts), experts: at most this many experts
                                            // resident per layer, loaded on demand (0: all)
  Device device{};                          // cpu or cuda:N
  ComputeDType dtype = ComputeDType::float32;

  // Whether this segment is an expert bank that serves `layers`, a layers segment whose routed experts
  // live in banks: their layer ranges meet. Which banks a layers segment calls is where the kinds decide
  // how segments connect, so it is answered once, here (every driver and transport asks it).
  bool serves(const SegmentParams& layers) const {
    return kind == SegmentKind::experts && layers.kind == SegmentKind::layers && layers.banks &&
           layer_last >= layers.layer_first && layer_first <= layers.layer_last;
  }
};

}  // namespace segpipe
