// segpipe generate: prompt in, streamed continuation out, through the plan's runner.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "orchestrator/cli_args.h"
#include "orchestrator/commands.h"
#include "orchestrator/demo.h"
#include "orchestrator/output.h"
#include "orchestrator/pipeline_loader.h"
#include "orchestrator/sampler.h"
#include "orchestrator/tokenizer/chat_template.h"
#include "orchestrator/tokenizer/stream_decoder.h"
#include "orchestrator/tokenizer/tokenizer.h"
#include "orchestrator/tokenizer/utf8.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"

namespace segpipe {

namespace fs = std::filesystem;

namespace {

const char* kHelp =
    "usage: segpipe generate [--model DIR | --pipeline FILE] [--prompt TEXT | --tokens \"ID ...\"]\n"
    "                        [--chat] [--system TEXT] [--no-thinking] [--max-new-tokens N]\n"
    "                        [--temperature T] [--top-k K] [--top-p P] [--seed S] [--ids]\n"
    "streams the continuation to standard output as it is produced; statistics go to standard error.\n"
    "With no model and no pipeline it runs the built-in demo (a multi-process pipeline with expert banks\n"
    "over a synthetic Qwen3-Omni-layout checkpoint and the real Qwen3 tokenizer).\n"
    "  --chat           apply the checkpoint's chat template to --prompt (as the user turn)\n"
    "  --ids            print token ids instead of text\n"
    "  --temperature 0  greedy (default); --seed makes sampling reproducible\n";

// Stop ids from generation_config.json (eos_token_id: int or list).
std::vector<int32_t> generation_config_stops(const std::string& model_dir) {
  std::vector<int32_t> out;
  fs::path p = fs::path(model_dir) / "generation_config.json";
  if (!fs::exists(p)) return out;
  nlohmann::json j = read_json_file(p.string());
  if (!j.is_object() || !j.contains("eos_token_id")) return out;
  const auto& e = j["eos_token_id"];
  if (e.is_number_integer()) out.push_back(e.get<int32_t>());
  if (e.is_array())
    for (auto& x : e)
      if (x.is_number_integer()) out.push_back(x.get<int32_t>());
  return out;
}

}  // namespace

int cmd_generate(const Args& args) {
  CliArgs a("generate", args,
            {"--model", "--pipeline", "--prompt", "--tokens", "--system", "--max-new-tokens", "--temperature", "--top-k",
             "--top-p", "--seed"},
            {"--chat", "--no-thinking", "--ids", "--restart"});
  if (a.help()) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (a.has("--model") && a.has("--pipeline")) throw InputError("generate: give at most one of --model and --pipeline");
  if (a.has("--prompt") && a.has("--tokens")) throw InputError("generate: give at most one of --prompt and --tokens");
  // Bad text is bad input before anything is loaded (or the demo checkpoint is created).
  for (const char* flag : {"--prompt", "--system"})
    if (auto v = a.get(flag))
      if (size_t bad = utf8::find_invalid(*v); bad != std::string::npos)
        throw InputError(std::string("generate: ") + flag + ": invalid UTF-8 at byte " + std::to_string(bad));
  bool demo = !a.has("--model") && !a.has("--pipeline");
  LoadedPlan lp = a.has("--model") ? load_model_plan(*a.get("--model"))
                                   : load_pipeline_plan(demo ? ensure_demo_pipeline() : *a.get("--pipeline"));
  if (a.has("--restart")) lp.plan.restart = true;
  const nlohmann::json& g = lp.generation;
  int max_new = static_cast<int>(a.get_int("--max-new-tokens", g.value("max_new_tokens", demo ? 32 : 64), 1, 1 << 20));
  SamplingParams sp;
  sp.temperature = a.get_double("--temperature", g.value("temperature", 0.0), 0.0, 1e6);
  sp.top_k = static_cast<int>(a.get_int("--top-k", g.value("top_k", 0), 0, 1 << 30));
  sp.top_p = a.get_double("--top-p", g.value("top_p", 1.0), 0.0, 1.0, /*lo_open=*/true);
  sp.seed = static_cast<uint64_t>(a.get_int("--seed", g.value("seed", 0), 0, (1ll << 62)));

  // The tokenizer is needed for text in or out; a checkpoint without one works with ids only.
  std::optional<Tokenizer> tok;
  bool have_tok = fs::exists(fs::path(lp.plan.tokenizer_dir) / "tokenizer.json") ||
                  (fs::is_regular_file(lp.plan.tokenizer_dir) && fs::path(lp.plan.tokenizer_dir).extension() == ".json");
  if (have_tok) tok.emplace(Tokenizer::load(lp.plan.tokenizer_dir));
  bool chat = a.has("--chat") || (demo && !a.has("--tokens"));
  std::vector<int32_t> prompt;
  if (a.has("--tokens")) {
    prompt = parse_id_list(*a.get("--tokens"), "--tokens");
  } else {
    if (!tok)
      throw InputError("generate: " + lp.plan.tokenizer_dir + " has no tokenizer.json; pass --tokens \"ID ...\"");
    std::string text = a.get_or("--prompt", demo ? "What is 2 + 2? Answer briefly." : "");
    if (text.empty()) throw InputError("generate: give --prompt TEXT or --tokens \"ID ...\"");
    if (chat) {
      if (!tok->chat_template()) throw InputError(tok->config_path() + ": no chat_template for --chat");
      ChatTemplate ct(*tok->chat_template(), tok->config_path());
      std::vector<ChatMessage> msgs;
      if (auto s = a.get("--system")) msgs.push_back({"system", *s, std::nullopt, nullptr});
      msgs.push_back({"user", text, std::nullopt, nullptr});
      text = ct.render(msgs, true, !a.has("--no-thinking"));
    }
    prompt = tok->encode(text);
  }
  if (prompt.empty()) throw InputError("generate: the prompt is empty");
  for (int32_t id : prompt)
    if (id >= lp.cfg.vocab)
      throw InputError("generate: token id " + std::to_string(id) + " is out of range (vocabulary size " +
                       std::to_string(lp.cfg.vocab) + ")");
  if (static_cast<int64_t>(prompt.size()) + max_new > lp.plan.max_seq)
    throw InputError("generate: prompt (" + std::to_string(prompt.size()) + ") + --max-new-tokens (" +
                     std::to_string(max_new) + ") exceed the context of " + std::to_string(lp.plan.max_seq) + " positions");
  std::vector<int32_t> stops = generation_config_stops(lp.plan.model_dir);
  if (tok)
    for (int32_t s : tok->stop_token_ids()) stops.push_back(s);

  auto t_load = std::chrono::steady_clock::now();
  auto runner = make_runner(lp.plan);
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  if (isatty(2))
    std::fprintf(stderr, "segpipe: %zu segments ready (%s) in %.2f s\n", lp.plan.segments.size(),
                 lp.plan.inproc ? "in-process" : "one process each", load_s);

  Sampler sampler(sp);
  std::optional<StreamDecoder> dec;
  if (tok && !a.has("--ids")) dec.emplace(*tok);
  std::vector<float> logits;
  auto t0 = std::chrono::steady_clock::now();
  runner->step(prompt.data(), static_cast<int64_t>(prompt.size()), 0, false, nullptr, logits);
  auto t_first = std::chrono::steady_clock::now();
  int generated = 0;
  int64_t pos = static_cast<int64_t>(prompt.size());
  bool first_id = true;
  for (;;) {
    int32_t next = sampler.next(logits.data(), runner->vocab());
    generated++;
    bool stop = std::find(stops.begin(), stops.end(), next) != stops.end();
    if (!stop) {
      if (dec) {
        std::string s = dec->push(next);
        std::fwrite(s.data(), 1, s.size(), stdout);
      } else {
        std::printf(first_id ? "%d" : " %d", next);
        first_id = false;
      }
      flush_stdout();  // a closed pipe or a full disk stops the run here (output.h)
    }
    if (stop || generated >= max_new) break;
    runner->step(&next, 1, pos++, false, nullptr, logits);
  }
  if (dec) {
    std::string s = dec->finish();
    std::fwrite(s.data(), 1, s.size(), stdout);
  }
  std::printf("\n");
  flush_stdout();
  auto t_end = std::chrono::steady_clock::now();
  double prefill_s = std::chrono::duration<double>(t_first - t0).count();
  double decode_s = std::chrono::duration<double>(t_end - t_first).count();
  std::fprintf(stderr,
               "prompt %zu tokens, generated %d tokens; time to first token %.1f ms; prefill %.1f tokens/s; "
               "decode %.1f tokens/s\n",
               prompt.size(), generated, prefill_s * 1e3, static_cast<double>(prompt.size()) / std::max(prefill_s, 1e-9),
               generated > 1 ? (generated - 1) / std::max(decode_s, 1e-9) : 0.0);
  return 0;
}

}  // namespace segpipe
