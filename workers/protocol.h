// What the orchestrator and a segment worker agree on: opcodes, fixed-size argument structs that
// travel in a channel's args area, the per-segment status table, and the worker's spec (block
// indices of the arena, passed as JSON on the worker's command line).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "segments/core/segment_params.h"
#include "segments/core/segment_types.h"

namespace segpipe::proto {

enum Op : uint32_t {
  kHello = 1,    // worker has loaded its weights: reply HelloReply
  kStep = 2,     // run one step: args StepArgs
  kExperts = 3,  // expert bank: compute the owned slots of one layer: args ExpertArgs
  kReport = 4,   // reply ReportReply
  kStop = 5,     // answer, then exit 0
  kNames = 6,    // args: uint64 index of the first name; reply: loaded tensor names from there, '\n'-terminated
  kEncode = 7,   // encoder: one piece of media from the spec's enc_in (and enc_grids) into enc_out: args EncodeArgs
};

// Reply codes (channel `code`): 0 ok; otherwise the reply bytes hold a one-line message.
enum Code : int32_t { kOk = 0, kBadInput = 2, kFailed = 3 };

struct StepArgs {
  int64_t pos0;        // position of the first token
  int64_t T;           // tokens in this step
  uint32_t in_block;   // block read (ids for embeddings, hidden states otherwise)
  uint32_t out_block;  // block written (hidden states, or logits for lm_head)
  uint32_t all_logits; // lm_head: logits for every position (else the last only)
  uint32_t capture;    // write internal boundaries to the segment's capture blocks
  // A Qwen3-Omni prompt's media (orchestrator/drivers/step_media.h), in the spec's media blocks:
  // embeddings: media_embed_n rows written over the looked-up embeddings; layers: the 3-D positions
  // (media_rope != 0), else pos0 + t + rope_delta on every axis, and media_ds_n DeepStack rows of
  // media_ds_levels levels. All zero: a text step.
  int64_t rope_delta = 0;
  int32_t media_embed_n = 0;
  int32_t media_ds_n = 0;
  int32_t media_ds_levels = 0;
  uint32_t media_rope = 0;
};

// kEncode: the media's floats are in enc_in ([num_mel_bins, frames] audio features, or [frames,
// patch_dim] image patches), an image's grids in enc_grids ([n_grids, 3] int32); the encoder writes
// out_floats floats to enc_out (its out_rows, as the orchestrator sized them).
struct EncodeArgs {
  int64_t frames;
  int64_t n_grids;
  int64_t in_floats;
  int64_t out_floats;
};

struct ExpertArgs {
  int32_t layer;
  int32_t k;
  int64_t T;
};

struct HelloReply {
  uint64_t tensors;
  uint64_t weight_bytes;
  int32_t pid;
  int32_t reserved;
};

struct ReportReply {
  uint64_t peak_rss_bytes;
  uint64_t rss_bytes;
  // Selective expert loading counters (zero without it): see ExpertCacheStats.
  uint64_t expert_uses, expert_hits, expert_loads, expert_evictions, expert_bytes_loaded;
  int32_t max_resident_experts;
  int32_t reserved;
  // GPU segments under gpu_memory: unified: checkpoint tensors the device read in place (no staging copy).
  uint64_t weights_in_place;
};

// One per segment, in the status block. The worker bumps `heartbeat` from a side thread; a stopped
// or wedged process stops bumping it, which the orchestrator reads as "hung".
struct alignas(64) SegmentStatus {
  uint64_t heartbeat;
  int32_t pid;          // written by the orchestrator at spawn
  int32_t dead;         // set by the orchestrator when it saw the process die
  uint64_t generation;  // bumped at each (re)start
  uint8_t pad[40];
};

static_assert(std::is_trivially_copyable_v<StepArgs> && std::is_trivially_copyable_v<ExpertArgs> &&
              std::is_trivially_copyable_v<HelloReply> && std::is_trivially_copyable_v<ReportReply> &&
              std::is_trivially_copyable_v<SegmentStatus>);

// Everything a worker needs, as plain data (serialized to JSON for its command line): the segment it
// runs (SegmentParams, a base so that the worker hands its spec to make_segment as it is; the kind and
// the device are written as their names) and where its state and buffers live.
// The orchestrator's GPU path fills device and dtype in CudaWorkerSpec today, so a GPU worker's spec
// holds the default cpu / float32 here until the runner copies the plan's params whole.
struct WorkerSpec : SegmentParams {
  std::string arena;
  int index = 0;                 // this segment's index in the plan (status slot)
  std::string name;
  std::string model_dir;
  int threads = 1;
  int64_t max_seq = 0;           // KV positions
  int64_t max_tokens = 0;        // tokens per step the buffers hold
  int64_t capture_tokens = 0;    // tokens the capture blocks hold (0: no capture)
  int timeout_ms = 10000;
  int parent_pid = 0;
  uint32_t status_block = 0;
  uint32_t channel_block = 0;
  uint32_t kv_block = 0;                 // layers (0: none; block 0 is the status table)
  uint32_t capture_block = 0;            // layers: [n_layers, Tcap, H] outputs, then router logits, routes
  uint32_t norm_block = 0;               // lm_head: capture of the final norm [Tcap, H]
  // MoE exchange (layers with banks, experts): x [Tmax,H], experts [Tmax,k] i32, weights [Tmax,k], slots [Tmax*k,H]
  uint32_t moe_x = 0, moe_experts = 0, moe_weights = 0, moe_slots = 0;
  // A prompt's media (plans with an encoder; 0: none). embeddings, layers: the step's 3-D positions
  // [3, Tmax] i32, the rows over the embeddings (index [Tmax] i32, rows [Tmax, H]), the DeepStack rows
  // (index [Tmax] i32, rows [levels, Tmax, H]). Encoders: their input, grids and output.
  uint32_t media_rope = 0, media_embed_index = 0, media_embed_rows = 0, media_ds_index = 0, media_ds_rows = 0;
  uint32_t enc_in = 0, enc_grids = 0, enc_out = 0;
  // layers with banks: the banks it calls (segment index, channel block, expert range, layer range)
  struct Bank {
    int index;
    uint32_t channel_block;
    int layer_first, layer_last;
    std::string name;  // for messages: a bank that fails is named, not numbered
  };
  std::vector<Bank> bank_list;
};

nlohmann::json to_json(const WorkerSpec& s);
// Throws InputError ("worker spec: ...") for a missing key, a wrong type or a value out of range.
WorkerSpec worker_spec_from_json(const nlohmann::json& j);
// The fields as they are, unchecked (nlohmann exceptions escape): worker_spec_from_json's reader.
WorkerSpec worker_spec_from_json_unchecked(const nlohmann::json& j);

}  // namespace segpipe::proto

namespace segpipe::proto {

// Layout of a layers segment's capture block, in 4-byte elements: the output of each layer
// [n_layers, Tcap, H], then for each MoE layer in range its router logits [Tcap, E], then the
// chosen experts (int32) [Tcap, k], then their weights [Tcap, k].
struct CaptureLayout {
  int64_t Tcap = 0, H = 0, E = 0, k = 0;
  int layer_first = 0, n_layers = 0;
  std::vector<int> moe_index;  // per layer in range: index among the MoE layers, or -1
  int n_moe = 0;
  int64_t output(int layer) const { return (layer - layer_first) * Tcap * H; }
  int64_t logits(int layer) const { return n_layers * Tcap * H + moe_index[static_cast<size_t>(layer - layer_first)] * Tcap * E; }
  int64_t experts(int layer) const {
    return n_layers * Tcap * H + n_moe * Tcap * E + moe_index[static_cast<size_t>(layer - layer_first)] * Tcap * k;
  }
  int64_t weights(int layer) const { return experts(layer) + n_moe * Tcap * k; }
  int64_t total() const { return n_layers * Tcap * H + n_moe * Tcap * (E + 2 * k); }
};

template <typename IsMoe>
CaptureLayout make_capture_layout(int first, int last, int64_t Tcap, int64_t H, int64_t E, int64_t k, IsMoe is_moe) {
  CaptureLayout c{Tcap, H, E, k, first, last - first + 1, {}, 0};
  for (int l = first; l <= last; l++) c.moe_index.push_back(is_moe(l) ? c.n_moe++ : -1);
  return c;
}

}  // namespace segpipe::proto
