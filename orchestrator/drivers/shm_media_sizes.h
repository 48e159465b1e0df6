// How large a shm run's media blocks are (a plan with an encoder segment): a step's media (the 3-D
// positions, the rows over the embeddings, the DeepStack rows) for the longest step, and each encoder's
// input and output for the longest piece of media the plan's context holds (max_seq positions: a piece
// whose placeholders outnumber them could never be prompted). The arena reserves them up front, so they
// cost memory in proportion to max_seq (docs/multimodal.md gives the figures for the real thinker).
#pragma once
#include <cstdint>
#include <map>

#include "orchestrator/planning/run_plan.h"

namespace segpipe {

struct MediaSizes {
  bool step = false;         // the plan has an encoder: its steps may carry media
  int deepstack_levels = 0;  // of the vision tower (0: no vision encoder)
  struct Encoder {
    int64_t in_width = 0;    // audio: mel bins (the input is [mel, frames]); vision: a patch's values
    int64_t in_floats = 0;
    int64_t grids = 0;       // vision: images
    int64_t out_floats = 0;
  };
  std::map<SegmentKind, Encoder> encoders;  // the encoder segments of `host`, by kind
};

// Throws InputError naming config.json where the towers' configs are malformed.
MediaSizes media_sizes(const RunPlan& plan, int host);

}  // namespace segpipe
