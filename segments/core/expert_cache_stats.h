// Counters of selective expert loading (max_resident_experts > 0: at most that many experts of a layer
// stay resident, loaded on first use, the least recently used released). A segment that holds experts
// reports them (an expert bank, a layers segment with local experts); every other segment reports zero.
#pragma once
#include <cstdint>

namespace segpipe {

// All zero with full residency, except uses.
struct ExpertCacheStats {
  int max_resident = 0;          // per layer; 0: every expert may stay resident
  uint64_t uses = 0;             // (layer, expert) uses, one per expert per request
  uint64_t hits = 0;             // uses that found the expert resident
  uint64_t loads = 0;            // uses that had to load it
  uint64_t evictions = 0;        // experts released to make room
  uint64_t bytes_loaded = 0;     // weight bytes of the loads
  uint64_t resident_experts = 0; // experts resident now, over all layers
};

}  // namespace segpipe
