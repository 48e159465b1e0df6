// A plan's step as data: which segments run, in which order, and what crosses between them. The one
// place where a segment's kind decides its part in a step (reads the token ids, writes the logits, is
// an expert bank reached by layers segments rather than by the driver); the driver and every transport
// read the chain instead of testing kinds.
#pragma once
#include <vector>

#include "orchestrator/planning/run_plan.h"
#include "segments/core/boundary_observer.h"

namespace segpipe {

// What a segment reads or writes in a step, named by what it is, not by where it lives: the token ids,
// a hidden-state boundary of the model (embeddings, layers.{i}.output), or the logits. A transport maps
// a port to its memory (a heap buffer, an arena block, a device slot, a peer on another host).
struct Port {
  enum class Kind { ids, hidden, logits };
  Kind kind = Kind::ids;
  Boundary boundary;  // hidden: which one; logits: Boundary::logits(); ids: unused

  static Port ids() { return {Kind::ids, Boundary::embeddings()}; }
  static Port hidden(Boundary b) { return {Kind::hidden, b}; }
  static Port logits() { return {Kind::logits, Boundary::logits()}; }
  bool is_ids() const { return kind == Kind::ids; }
  bool is_hidden() const { return kind == Kind::hidden; }
  bool is_logits() const { return kind == Kind::logits; }
  friend bool operator==(const Port&, const Port&) = default;
};

// One segment's place in a step.
struct Stage {
  int segment = 0;  // index in the plan's segments
  Port in, out;
};

// Every segment of the plan but the expert banks, in plan order (the plan lists them in data-flow order:
// validated by the pipeline loader), with the ports each reads and writes. A layers segment reads the
// output of the one before it and writes the output of its last layer.
std::vector<Stage> chain_of(const std::vector<SegmentDesc>& segments);

// What a segment is to a transport that lays out its state, by kind:
// an expert bank: no step of its own; the layers segments it serves call it (SegmentParams::serves);
inline bool is_bank(const SegmentParams& p) { return p.kind == SegmentKind::experts; }
// a layers segment: keeps KV caches, and computes the per-layer boundaries a capture shows;
inline bool is_layers(const SegmentParams& p) { return p.kind == SegmentKind::layers; }
// a layers segment whose routed experts live in banks: calls them through the bank exchange.
inline bool calls_banks(const SegmentParams& p) { return is_layers(p) && p.banks; }
// The segments a prompt's media reach in its steps: the embeddings (rows over its lookups) and the
// layers (rotary positions, DeepStack rows). The encoders make them, outside the chain.
inline bool takes_step_media(const SegmentParams& p) { return p.kind == SegmentKind::embeddings || is_layers(p); }

}  // namespace segpipe
