// The generation loop that every text command shares (generate, its chat loop, eval): prefill what the
// runner's KV cache does not hold yet, then sample one token at a time until a stop id or the budget.
//
// A Generator remembers which tokens the runner's cache holds. A new prompt that starts with some of them
// (the next turn of a conversation, re-rendered through the chat template) is computed only from the first
// token that differs: positions past that point are overwritten, and attention never reads beyond the
// current position, so the result is bit-identical to a fresh run of the whole prompt (tested).
#pragma once
#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "orchestrator/drivers/media_prompt.h"
#include "orchestrator/drivers/runner.h"
#include "orchestrator/drivers/sampler.h"

namespace segpipe {

// Stop ids from the checkpoint's generation_config.json (eos_token_id: an id or a list); none when absent.
std::vector<int32_t> generation_config_stops(const std::string& model_dir);

struct GenerationResult {
  std::vector<int32_t> ids;  // sampled tokens, the stop id excluded
  bool stopped = false;      // ended by a stop id
  bool interrupted = false;  // ended by the interrupt flag or by on_token returning false
  int64_t prompt_tokens = 0;
  int64_t prefilled_tokens = 0;  // prompt tokens computed (the rest came from the cache)
  double prefill_s = 0, decode_s = 0;
  // One-time work before the first decode step (a GPU's decode graph capture), timed apart: it is
  // neither the prompt's prefill nor the steady decode rate that the benchmark reports.
  double decode_setup_s = 0;
};

class Generator {
 public:
  // Greedy steps chained per host round trip where the runner can (Runner::decode_greedy). At the
  // GPU's full-size rate (~300 tokens/s) 16 steps are ~50 ms: tokens still stream to the reader, and
  // one synchronization per 16 steps costs well under 1% of their time. A stop id inside a chunk
  // wastes at most 15 steps, whose cache rows lie past the reply and are overwritten by the next.
  static constexpr int kGreedyChunk = 16;

  Generator(Runner& runner, std::vector<int32_t> stop_ids, int64_t max_seq)
      : runner_(runner), stops_(std::move(stop_ids)), max_seq_(max_seq) {}

  // on_token sees every sampled token that is not a stop id, as soon as it is chosen; returning false
  // ends the reply there. `interrupt` (optional) is polled between tokens (a Ctrl-C flag).
  GenerationResult run(const std::vector<int32_t>& prompt, Sampler& sampler, int max_new,
                       const std::function<bool(int32_t)>& on_token,
                       const volatile std::sig_atomic_t* interrupt = nullptr);

  // A Qwen3-Omni prompt with audio or images (media_prompt.h): the encoders, the prefill with the media,
  // then decoding at the prompt's rope delta. Same contract otherwise.
  GenerationResult run(const MediaPrompt& prompt, const ModelConfig& cfg, const std::string& model_dir,
                       Sampler& sampler, int max_new, const std::function<bool(int32_t)>& on_token,
                       const volatile std::sig_atomic_t* interrupt = nullptr);

  // Forget what the cache holds (the next run computes its whole prompt).
  void reset() { cached_.clear(); }
  const std::vector<int32_t>& cached() const { return cached_; }
  int64_t max_seq() const { return max_seq_; }
  bool is_stop(int32_t id) const;

 private:
  // From the prompt's logits: samples, streams and steps until a stop, max_new or an interrupt; media
  // (optional) is what every decode step carries (the rope delta).
  void decode(GenerationResult& r, std::chrono::steady_clock::time_point t0, std::vector<float>& logits, int64_t pos,
              Sampler& sampler, int max_new, const std::function<bool(int32_t)>& on_token,
              const volatile std::sig_atomic_t* interrupt, const StepMedia* media);
  Runner& runner_;
  std::vector<int32_t> stops_;
  int64_t max_seq_;
  std::vector<int32_t> cached_;  // tokens whose keys and values the runner holds, from position 0
};

}  // namespace segpipe
