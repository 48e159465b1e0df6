// segpipe generate: prompt in, streamed continuation out, through the plan's runner.
#include <unistd.h>

#include <cerrno>
#include <csignal>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include <spdlog/spdlog.h>

#include "orchestrator/commands/cli_args.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/commands/demo.h"
#include "orchestrator/commands/media_inputs.h"
#include "orchestrator/drivers/generation.h"
#include "orchestrator/reports/output.h"
#include "orchestrator/planning/pipeline_loader.h"
#include "orchestrator/drivers/sampler.h"
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
    "                        [--audio FILE]... [--image FILE]...\n"
    "streams the continuation to standard output as it is produced; statistics go to standard error.\n"
    "With no model and no pipeline it runs the built-in demo (a multi-process pipeline with expert banks\n"
    "over the committed demo model, a small Qwen3-MoE trained to answer arithmetic, and the real Qwen3\n"
    "tokenizer).\n"
    "  --chat           apply the checkpoint's chat template to --prompt (as the user turn); without\n"
    "                   --prompt, a conversation: one user turn per line of standard input, the\n"
    "                   conversation kept, /reset starts over, end of input or Ctrl-C ends it\n"
    "  --ids            print token ids instead of text\n"
    "  --audio FILE     (Qwen3-Omni) a WAV, FLAC, MP3 or OGG file, resampled to the feature extractor's rate;\n"
    "  --image FILE     a PNG or JPEG file; each is placed, in command-line order, before the prompt's text\n"
    "                   (--chat: at the start of the user turn), as its placeholder block; the pipeline needs\n"
    "                   an audio_encoder / vision_encoder segment (transport: inproc for now)\n"
    "  --temperature 0  greedy (default); --seed makes sampling reproducible\n";

// Where --chat puts the media blocks in the rendered conversation (a string no user types).
constexpr const char* kMediaMarker = "\x01segpipe-media\x01";

// The built-in demo's question when no prompt is given.
constexpr const char* kDemoQuestion = "What is 2 + 2?";

volatile std::sig_atomic_t g_interrupted = 0;
struct sigaction g_previous_sigint {};

// Ctrl-C in the chat loop: the first ends the reply being written (or, at the prompt, the conversation)
// and lets the run end normally; a second one does what Ctrl-C did before the loop started (the arena
// cleanup and the default action).
extern "C" void on_chat_interrupt(int sig) {
  if (g_interrupted) {
    ::sigaction(sig, &g_previous_sigint, nullptr);
    std::raise(sig);
    return;
  }
  g_interrupted = 1;
}

// One reply: streamed to standard output as text (or ids), statistics to standard error. Returns the
// text (empty for ids) and whether the output is still open.
struct Reply {
  std::string text;
  GenerationResult result;
};

Reply reply(Generator& gen, Sampler& sampler, const std::vector<int32_t>& prompt, int max_new, const Tokenizer* tok,
            bool ids_out, const volatile std::sig_atomic_t* interrupt, const MediaPrompt* media = nullptr,
            const ModelConfig* cfg = nullptr, const std::string& model_dir = "") {
  Reply out;
  std::optional<StreamDecoder> dec;
  if (!ids_out) dec.emplace(*tok);
  bool first_id = true;
  auto on_token = [&](int32_t id) {
        if (dec) {
          std::string s = dec->push(id);
          out.text += s;
          std::fwrite(s.data(), 1, s.size(), stdout);
        } else {
          std::printf(first_id ? "%d" : " %d", id);
          first_id = false;
        }
        flush_stdout();  // a closed pipe or a full disk stops the run here (output.h)
        return true;
  };
  out.result = media ? gen.run(*media, *cfg, model_dir, sampler, max_new, on_token, interrupt)
                     : gen.run(prompt, sampler, max_new, on_token, interrupt);
  if (dec) {
    std::string s = dec->finish();
    out.text += s;
    std::fwrite(s.data(), 1, s.size(), stdout);
  }
  std::printf("\n");
  flush_stdout();
  const GenerationResult& r = out.result;
  // The stop token was generated too (the count users of other tools expect); decode steps are one fewer.
  const int generated = static_cast<int>(r.ids.size()) + (r.stopped ? 1 : 0);
  // The decode setup (a GPU's first decode step and graph capture) is shown apart when there is one:
  // the decode rate is the steady one, as the GPU benchmark measures it.
  char setup[64] = "";
  if (r.decode_setup_s > 0) std::snprintf(setup, sizeof setup, "decode setup %.1f ms; ", r.decode_setup_s * 1e3);
  std::fprintf(stderr,
               "prompt %lld tokens (%lld computed), generated %d tokens; time to first token %.1f ms; "
               "prefill %.1f tokens/s; %sdecode %.1f tokens/s%s\n",
               static_cast<long long>(r.prompt_tokens), static_cast<long long>(r.prefilled_tokens), generated,
               r.prefill_s * 1e3, static_cast<double>(r.prefilled_tokens) / std::max(r.prefill_s, 1e-9), setup,
               generated > 1 ? (generated - 1) / std::max(r.decode_s, 1e-9) : 0.0,
               r.interrupted ? " (interrupted)" : "");
  return out;
}

// `generate --chat` without a prompt: each line of standard input is a user turn; the conversation is
// kept (each turn renders the whole conversation through the chat template, as the reference does, and
// only what the KV cache does not hold yet is computed). "/reset" starts a new conversation. Ends at
// end of input or Ctrl-C, with exit 0 and every segment process stopped.
int chat_loop(Generator& gen, Sampler& sampler, const Tokenizer& tok, const ChatTemplate& ct,
              std::vector<ChatMessage> history, bool thinking, int max_new, bool ids_out) {
  const std::vector<ChatMessage> start = history;
  const bool tty = isatty(0) != 0;
  struct sigaction sa{};
  sa.sa_handler = on_chat_interrupt;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a Ctrl-C at the prompt ends the blocking read
  ::sigaction(SIGINT, &sa, &g_previous_sigint);
  if (tty) std::fprintf(stderr, "segpipe: chat; one message per line, /reset starts over, Ctrl-C or Ctrl-D ends\n");
  std::string line;
  for (;;) {
    if (tty) std::fputs("> ", stderr);
    line.clear();
    int c = 0;
    errno = 0;
    while (!g_interrupted && (c = std::fgetc(stdin)) != EOF && c != '\n') line.push_back(static_cast<char>(c));
    if (g_interrupted || (c == EOF && line.empty())) break;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line == "/reset") {
      history = start;
      gen.reset();
      continue;
    }
    if (size_t bad = utf8::find_invalid(line); bad != std::string::npos) {
      spdlog::warn("that line is not valid UTF-8 (byte {}); ignored", bad);
      continue;
    }
    history.push_back({"user", line, std::nullopt, nullptr});
    std::vector<int32_t> prompt = tok.encode(ct.render(history, true, thinking));
    if (static_cast<int64_t>(prompt.size()) + max_new > gen.max_seq()) {
      spdlog::info("the conversation reached the context of {} positions; starting a new one", gen.max_seq());
      history = start;
      history.push_back({"user", line, std::nullopt, nullptr});
      gen.reset();
      prompt = tok.encode(ct.render(history, true, thinking));
      if (static_cast<int64_t>(prompt.size()) + max_new > gen.max_seq()) {
        spdlog::warn("that message alone does not fit the context; ignored");
        history = start;
        continue;
      }
    }
    Reply r = reply(gen, sampler, prompt, max_new, &tok, ids_out, &g_interrupted);
    if (g_interrupted) break;
    // The reply as the model wrote it (think block included): the template strips the reasoning of
    // earlier turns when the next turn is rendered, exactly as transformers does.
    history.push_back({"assistant", ids_out ? tok.decode(r.result.ids) : r.text, std::nullopt, nullptr});
  }
  if (g_interrupted) std::fputs("\n", stderr);
  ::sigaction(SIGINT, &g_previous_sigint, nullptr);
  return 0;
}

}  // namespace

int cmd_generate(const Args& args) {
  CliArgs a("generate", args,
            {"--model", "--pipeline", "--prompt", "--tokens", "--system", "--max-new-tokens", "--temperature", "--top-k",
             "--top-p", "--seed", "--audio", "--image"},
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
                                   : load_pipeline_plan(demo ? demo_pipeline() : *a.get("--pipeline"));
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
  // --chat with no prompt: a conversation read from standard input, one user turn per line.
  bool interactive = a.has("--chat") && !a.has("--prompt") && !a.has("--tokens");
  std::optional<ChatTemplate> ct;
  if (chat) {
    if (!tok) throw InputError("generate: " + lp.plan.tokenizer_dir + " has no tokenizer.json for --chat");
    if (!tok->chat_template()) throw InputError(tok->config_path() + ": no chat_template for --chat");
    ct.emplace(*tok->chat_template(), tok->config_path());
  }
  std::vector<ChatMessage> history;
  if (auto s = a.get("--system")) history.push_back({"system", *s, std::nullopt, nullptr});
  const bool thinking = !a.has("--no-thinking");
  // Audio and images (Qwen3-Omni), processed before anything is loaded: a bad file is bad input.
  const std::vector<MediaInput> media = load_media_args(args, lp.plan.model_dir);
  if (!media.empty() && interactive) throw InputError("generate: --audio and --image need --prompt or --tokens");
  size_t media_at = 0;  // where the media blocks go in the prompt's ids
  std::vector<int32_t> prompt;
  if (a.has("--tokens")) {
    prompt = parse_id_list(*a.get("--tokens"), "--tokens");
  } else if (!interactive) {
    if (!tok)
      throw InputError("generate: " + lp.plan.tokenizer_dir + " has no tokenizer.json; pass --tokens \"ID ...\"");
    std::string text = a.get_or("--prompt", demo ? kDemoQuestion : "");
    if (text.empty()) throw InputError("generate: give --prompt TEXT or --tokens \"ID ...\"");
    if (chat) {
      // The media go at the start of the user's turn: rendered with a marker there, tokenized on either
      // side of it (a special token starts each media block, so no token spans the cut).
      history.push_back({"user", (media.empty() ? "" : kMediaMarker) + text, std::nullopt, nullptr});
      text = ct->render(history, true, thinking);
    }
    const size_t cut = media.empty() ? std::string::npos : text.find(kMediaMarker);
    if (cut == std::string::npos) {
      prompt = tok->encode(text);
    } else {
      prompt = tok->encode(text.substr(0, cut));
      media_at = prompt.size();
      const std::vector<int32_t> rest = tok->encode(text.substr(cut + std::strlen(kMediaMarker)));
      prompt.insert(prompt.end(), rest.begin(), rest.end());
    }
  }
  if (!media.empty()) prompt = insert_media_blocks(prompt, media_at, media, lp.plan.model_dir);
  if (!interactive) {
    if (prompt.empty()) throw InputError("generate: the prompt is empty");
    for (int32_t id : prompt)
      if (id < 0 || id >= lp.cfg.vocab)
        throw InputError("generate: token id " + std::to_string(id) + " is out of range (vocabulary size " +
                         std::to_string(lp.cfg.vocab) + ")");
    if (static_cast<int64_t>(prompt.size()) + max_new > lp.plan.max_seq)
      throw InputError("generate: prompt (" + std::to_string(prompt.size()) + ") + --max-new-tokens (" +
                       std::to_string(max_new) + ") exceed the context of " + std::to_string(lp.plan.max_seq) +
                       " positions");
  }
  std::vector<int32_t> stops = generation_config_stops(lp.plan.model_dir);
  if (tok)
    for (int32_t s : tok->stop_token_ids()) stops.push_back(s);

  auto t_load = std::chrono::steady_clock::now();
  auto runner = make_runner(lp.plan);
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  // Shown at the default level on a terminal only, as before logging had levels; --log-level debug
  // shows it in pipes and files too.
  spdlog::log(isatty(2) ? spdlog::level::info : spdlog::level::debug, "{} segments ready ({}) in {:.2f} s",
              lp.plan.segments.size(), lp.plan.inproc ? "in-process" : "one process each", load_s);

  Sampler sampler(sp);
  Generator gen(*runner, stops, lp.plan.max_seq);
  const bool ids_out = a.has("--ids") || !tok;
  if (interactive) return chat_loop(gen, sampler, *tok, *ct, history, thinking, max_new, ids_out);
  if (!media.empty()) {
    MediaPrompt mp{prompt, media};
    reply(gen, sampler, prompt, max_new, tok ? &*tok : nullptr, ids_out, nullptr, &mp, &lp.cfg, lp.plan.model_dir);
  } else {
    reply(gen, sampler, prompt, max_new, tok ? &*tok : nullptr, ids_out, nullptr);
  }
  return 0;
}

}  // namespace segpipe
