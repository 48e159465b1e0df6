#include "orchestrator/drivers/generation.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>

#include "orchestrator/drivers/media_prompt.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"

namespace segpipe {

std::vector<int32_t> generation_config_stops(const std::string& model_dir) {
  std::vector<int32_t> out;
  std::filesystem::path p = std::filesystem::path(model_dir) / "generation_config.json";
  if (!std::filesystem::exists(p)) return out;
  nlohmann::json j = read_json_file(p.string());
  if (!j.is_object() || !j.contains("eos_token_id")) return out;
  const auto& e = j["eos_token_id"];
  if (e.is_number_integer()) out.push_back(e.get<int32_t>());
  if (e.is_array())
    for (auto& x : e)
      if (x.is_number_integer()) out.push_back(x.get<int32_t>());
  return out;
}

bool Generator::is_stop(int32_t id) const { return std::find(stops_.begin(), stops_.end(), id) != stops_.end(); }

GenerationResult Generator::run(const std::vector<int32_t>& prompt, Sampler& sampler, int max_new,
                                const std::function<bool(int32_t)>& on_token,
                                const volatile std::sig_atomic_t* interrupt) {
  if (prompt.empty()) throw InputError("the prompt is empty");
  const int64_t T = static_cast<int64_t>(prompt.size());
  if (T + max_new > max_seq_)
    throw InputError("prompt (" + std::to_string(T) + " tokens) + " + std::to_string(max_new) +
                     " new tokens exceed the context of " + std::to_string(max_seq_) + " positions");
  for (int32_t id : prompt)
    if (id < 0 || id >= runner_.vocab())
      throw InputError("token id " + std::to_string(id) + " is out of range (vocabulary size " +
                       std::to_string(runner_.vocab()) + ")");
  // Reuse the common prefix, but always compute the last prompt token: its logits pick the first reply token.
  auto [mismatch, unused] = std::mismatch(prompt.begin(), prompt.end(), cached_.begin(), cached_.end());
  (void)unused;
  const int64_t from = std::min<int64_t>(mismatch - prompt.begin(), T - 1);
  cached_.assign(prompt.begin(), prompt.begin() + from);  // what stays valid if the step below fails

  GenerationResult r;
  r.prompt_tokens = T;
  r.prefilled_tokens = T - from;
  std::vector<float> logits;
  auto t0 = std::chrono::steady_clock::now();
  runner_.step(prompt.data() + from, T - from, from, false, nullptr, logits);
  cached_ = prompt;
  decode(r, t0, logits, T, sampler, max_new, on_token, interrupt, nullptr);
  return r;
}

GenerationResult Generator::run(const MediaPrompt& prompt, const ModelConfig& cfg, const std::string& model_dir,
                                Sampler& sampler, int max_new, const std::function<bool(int32_t)>& on_token,
                                const volatile std::sig_atomic_t* interrupt) {
  const int64_t T = static_cast<int64_t>(prompt.ids.size());
  if (T == 0) throw InputError("the prompt is empty");
  if (T + max_new > max_seq_)
    throw InputError("prompt (" + std::to_string(T) + " tokens) + " + std::to_string(max_new) +
                     " new tokens exceed the context of " + std::to_string(max_seq_) + " positions");
  // The media's rows and positions are not the ids': nothing of an earlier prompt's cache is reused, and
  // this prompt's is not offered to the next (a text continuation would need its rope delta).
  cached_.clear();
  GenerationResult r;
  r.prompt_tokens = r.prefilled_tokens = T;
  std::vector<float> logits;
  auto t0 = std::chrono::steady_clock::now();
  const MediaPrefill pre = prefill_media_prompt(runner_, cfg, model_dir, prompt, false, nullptr, logits);
  StepMedia after;
  after.rope_delta = pre.rope_delta;
  decode(r, t0, logits, T, sampler, max_new, on_token, interrupt, &after);
  return r;
}

void Generator::decode(GenerationResult& r, std::chrono::steady_clock::time_point t0, std::vector<float>& logits,
                       int64_t pos, Sampler& sampler, int max_new, const std::function<bool(int32_t)>& on_token,
                       const volatile std::sig_atomic_t* interrupt, const StepMedia* media) {
  const auto t_prefilled = std::chrono::steady_clock::now();
  auto t_first = t_prefilled;  // the first decode step (after the decode setup, if any)
  // Greedy on a runner that chains it (GPU): steps run kGreedyChunk at a time where the logits are,
  // and their tokens are handed out here one by one, as the host loop below would have chosen them.
  // (A prompt with media decodes at its rope delta, which the chain does not take.)
  const bool chain = !media && sampler.greedy() && runner_.has_greedy_chain();
  std::vector<int32_t> ahead;  // chosen on the device, not handed out yet
  size_t taken = 0;
  int32_t next = max_new > 0 ? sampler.next(logits.data(), runner_.vocab()) : 0;
  if (chain && max_new > 1 && !is_stop(next)) {
    runner_.prepare_greedy(next, pos);
    const auto t_ready = std::chrono::steady_clock::now();
    r.decode_setup_s = std::chrono::duration<double>(t_ready - t_first).count();
    t_first = t_ready;
  }
  for (int n = 0; n < max_new;) {
    if (is_stop(next)) {
      r.stopped = true;
      break;
    }
    r.ids.push_back(next);
    if (!on_token(next) || (interrupt && *interrupt)) {
      r.interrupted = true;
      break;
    }
    if (++n == max_new) break;
    if (chain) {
      if (taken == ahead.size()) {
        ahead = runner_.decode_greedy(next, pos, std::min(kGreedyChunk, max_new - n));
        taken = 0;
      }
      cached_.push_back(next);  // its keys and values were computed at `pos` by the chain
      pos++;
      next = ahead[taken++];
    } else {
      if (media)
        runner_.step_media(&next, 1, pos++, false, nullptr, logits, *media);
      else
        runner_.step(&next, 1, pos++, false, nullptr, logits);
      cached_.push_back(next);
      next = sampler.next(logits.data(), runner_.vocab());
    }
  }
  auto t_end = std::chrono::steady_clock::now();
  r.prefill_s = std::chrono::duration<double>(t_prefilled - t0).count();
  r.decode_s = std::chrono::duration<double>(t_end - t_first).count();
  if (media) cached_.clear();  // its cache is not reusable by ids alone (see run(MediaPrompt))
}

}  // namespace segpipe
