// Memory of segment processes, read from /proc: resident and proportional set sizes split into
// mapped weights (file-backed mappings of *.safetensors), anonymous memory (heap, scratch, stacks),
// the shared-memory arena (activations, KV caches, channels) and the rest (code, libraries); the
// peak; and a page-by-page check (/proc/PID/pagemap) that no page of another segment's weights is
// resident in a process. PSS divides every shared page among the processes that map it, so sums of
// PSS over processes count each page once.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "orchestrator/planning/run_plan.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/model/config.h"

namespace segpipe {

struct MappingMemory {
  uint64_t start = 0, end = 0, offset = 0;
  std::string path;
  uint64_t rss = 0, pss = 0, anonymous = 0;
};

struct ProcMemory {
  long pid = 0;
  uint64_t rss = 0, pss = 0;                 // smaps_rollup
  uint64_t pss_anon = 0, pss_file = 0, pss_shmem = 0;
  uint64_t rss_weights = 0, pss_weights = 0;  // *.safetensors mappings
  uint64_t rss_anon = 0, pss_anon_maps = 0;   // anonymous pages (heap, stacks, private scratch)
  uint64_t rss_arena = 0, pss_arena = 0;      // the run's activation/KV arena (memfd)
  uint64_t rss_other = 0;                     // code, libraries, everything else
  uint64_t peak_rss = 0;                      // VmHWM
  std::vector<MappingMemory> maps;
};

// Reads /proc/PID/smaps_rollup, /proc/PID/smaps and /proc/PID/status. RuntimeFailure if gone.
ProcMemory read_proc_memory(long pid);

// Byte ranges (absolute offsets in canonical shard paths) of the weights a segment loads.
struct WeightRange {
  std::string file;
  uint64_t begin = 0, end = 0;
};
std::vector<WeightRange> segment_weight_ranges(Checkpoint& ck, const ModelConfig& cfg, const SegmentDesc& d);

// What selective expert loading (max_resident_experts M > 0) promises a segment may hold resident of
// its weights: its non-expert tensors whole, plus the M largest experts of each MoE layer it holds.
// Slack: two pages per tensor that may be resident (a tensor's mapping is page-aligned, so its first
// and last page may hold a neighbour's bytes) and 1 MiB.
struct ExpertResidencyBound {
  int max_resident_experts = 0;
  uint64_t non_expert_bytes = 0;  // the segment's weights that are not routed experts
  uint64_t expert_bytes = 0;      // M largest experts per MoE layer held, summed over those layers
  uint64_t slack_bytes = 0;
  uint64_t limit() const { return non_expert_bytes + expert_bytes + slack_bytes; }
};
// Only for a segment with d.max_resident_experts > 0 (layers with local experts, or experts).
ExpertResidencyBound expert_residency_bound(Checkpoint& ck, const ModelConfig& cfg, const SegmentDesc& d);

struct WeightResidency {
  uint64_t own_resident_bytes = 0;      // resident pages holding only this segment's weights
  uint64_t edge_resident_pages = 0;     // resident pages shared with a neighbouring tensor's bytes
  uint64_t foreign_resident_pages = 0;  // resident pages holding none of this segment's weights (target: 0)
  uint64_t weight_mappings = 0;
  std::vector<std::string> foreign_examples;  // "file@offset" of the first few foreign pages
};
// Page by page (pagemap present bits) over every *.safetensors mapping of the process.
WeightResidency check_weight_residency(const ProcMemory& pm, const std::vector<WeightRange>& own);

nlohmann::json proc_memory_json(const ProcMemory& pm);

// One segment process's memory as its own host measures it: /proc of that machine (a pid means nothing
// on another host), so on a run across hosts each agent measures its host's segments and sends this.
struct SegmentMemory {
  ProcMemory proc;  // without `maps` once it has crossed hosts (the residency below is what they served)
  WeightResidency residency;
};
SegmentMemory measure_segment_memory(long pid, Checkpoint& ck, const ModelConfig& cfg, const SegmentDesc& d);
// Every figure of it, for the wire; the reader takes untrusted JSON (throws nlohmann::json::exception).
nlohmann::json segment_memory_to_json(const SegmentMemory& m);
SegmentMemory segment_memory_from_json(const nlohmann::json& j);

// Sum of PSS (bytes) of the given pids straight from smaps_rollup (tests cross-check reports with it).
uint64_t pss_of(long pid);

// KV-cache bytes of a layers segment: reserved (max_seq positions) and holding `positions`.
uint64_t kv_bytes(const ModelConfig& cfg, const SegmentDesc& d, int64_t positions);

}  // namespace segpipe
