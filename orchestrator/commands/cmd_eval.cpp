// segpipe eval: a set of chat questions with expected answers, answered greedily through a model or a
// pipeline; accuracy per task, and agreement between the segmented run, the same pipeline in-process and
// the reference answers recorded in the set (transformers'). A question set is JSON lines:
//   {"task": "add", "prompt": "What is 17 + 25?", "answer": "17 + 25 = 42.", "transformers": "17 + 25 = 42."}
// ("task" and "transformers" optional). Every line is untrusted input: a malformed one is exit 2 naming
// the file, line and key.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include <spdlog/spdlog.h>

#include "orchestrator/commands/cli_args.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/drivers/generation.h"
#include "orchestrator/planning/pipeline_loader.h"
#include "orchestrator/debugging/segment_compare.h"
#include "orchestrator/tokenizer/chat_template.h"
#include "orchestrator/tokenizer/tokenizer.h"
#include "orchestrator/tokenizer/utf8.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"

namespace segpipe {

namespace fs = std::filesystem;

namespace {

const char* kHelp =
    "usage: segpipe eval (--model DIR | --pipeline FILE) --set FILE [--limit N] [--task NAME]...\n"
    "                    [--no-thinking] [--max-new-tokens N] [--json FILE] [--min-accuracy X]\n"
    "answers each question of the set greedily through the chat template and compares the answer\n"
    "(the reply after any <think>...</think> block, trimmed) with the expected one, exactly.\n"
    "  --set FILE         JSON lines: {\"task\", \"prompt\", \"answer\", [\"transformers\"]}\n"
    "  --pipeline FILE    with one process per segment, the same pipeline also runs in-process and the\n"
    "                     two runs' answers must be identical (exit 1 otherwise)\n"
    "  --limit N          the first N questions of each task\n"
    "  --task NAME        only this task (repeatable)\n"
    "  --min-accuracy X   exit 1 when a task's accuracy is below X (0..1)\n"
    "  --json FILE        every question with every run's answer, and the summary\n"
    "exit: 0 ok, 1 a check failed, 2 bad input, 3 runtime failure\n";

constexpr uintmax_t kMaxSetBytes = 64ull << 20;  // a question set is text; anything larger is not one

struct Question {
  std::string task, prompt, answer;
  std::optional<std::string> reference;
};

std::string field(const nlohmann::json& j, const char* key, const std::string& where, bool required) {
  if (!j.contains(key)) {
    if (required) throw InputError(where + ": key '" + key + "' is missing");
    return {};
  }
  if (!j[key].is_string()) throw InputError(where + ": key '" + key + "': expected a string");
  std::string s = j[key].get<std::string>();
  if (size_t bad = utf8::find_invalid(s); bad != std::string::npos)
    throw InputError(where + ": key '" + key + "': invalid UTF-8 at byte " + std::to_string(bad));
  return s;
}

std::vector<Question> read_set(const std::string& path, long long limit, const std::vector<std::string>& tasks) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw InputError(path + ": not a regular file");
  if (fs::file_size(path, ec) > kMaxSetBytes) throw InputError(path + ": larger than 64 MiB; not a question set");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot be read");
  std::vector<Question> out;
  std::map<std::string, long long> per_task;
  std::string line;
  for (long long n = 1; std::getline(in, line); n++) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(n);
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw InputError(where + ": not a JSON object");
    Question q;
    q.task = j.contains("task") ? field(j, "task", where, true) : "all";
    q.prompt = field(j, "prompt", where, true);
    q.answer = field(j, "answer", where, true);
    if (q.prompt.empty()) throw InputError(where + ": key 'prompt' is empty");
    if (j.contains("transformers")) q.reference = field(j, "transformers", where, true);
    if (!tasks.empty() && std::find(tasks.begin(), tasks.end(), q.task) == tasks.end()) continue;
    if (limit > 0 && per_task[q.task] >= limit) continue;
    per_task[q.task]++;
    out.push_back(std::move(q));
  }
  if (out.empty()) throw InputError(path + ": no questions" + (tasks.empty() ? "" : " of the tasks asked for"));
  return out;
}

// The answer in a reply: what follows the reasoning block (the chat template's own rule for assistant
// content: the text after the last "</think>", leading newlines dropped), trimmed.
std::string answer_of(const std::string& reply) {
  std::string s = reply;
  if (size_t e = s.rfind("</think>"); e != std::string::npos) s = s.substr(e + 8);
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

// Every question answered by one runner; prompts share the generator so common prefixes are reused.
std::vector<std::string> answer_all(const RunPlan& plan, const std::vector<Question>& qs, const Tokenizer& tok,
                                    const ChatTemplate& ct, bool thinking, int max_new,
                                    const std::vector<int32_t>& stops, double& seconds) {
  auto runner = make_runner(plan);
  Generator gen(*runner, stops, plan.max_seq);
  SamplingParams greedy;
  std::vector<std::string> out;
  auto t0 = std::chrono::steady_clock::now();
  for (const Question& q : qs) {
    Sampler sampler(greedy);
    std::vector<ChatMessage> msgs{{"user", q.prompt, std::nullopt, nullptr}};
    std::vector<int32_t> prompt = tok.encode(ct.render(msgs, true, thinking));
    GenerationResult r = gen.run(prompt, sampler, max_new, [](int32_t) { return true; });
    out.push_back(answer_of(tok.decode(r.ids)));
  }
  seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace

int cmd_eval(const Args& args) {
  CliArgs a("eval", args, {"--model", "--pipeline", "--set", "--limit", "--task", "--max-new-tokens", "--json",
                           "--min-accuracy"},
            {"--no-thinking"});
  if (a.help()) {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (a.has("--model") == a.has("--pipeline")) throw InputError("eval: give exactly one of --model DIR or --pipeline FILE");
  if (!a.has("--set")) throw InputError("eval: --set FILE is required");
  const long long limit = a.get_int("--limit", 0, 0, 1ll << 40);
  const int max_new = static_cast<int>(a.get_int("--max-new-tokens", 48, 1, 1 << 20));
  const double min_acc = a.get_double("--min-accuracy", 0.0, 0.0, 1.0);
  std::vector<Question> qs = read_set(*a.get("--set"), limit, a.all("--task"));
  LoadedPlan lp = a.has("--model") ? load_model_plan(*a.get("--model")) : load_pipeline_plan(*a.get("--pipeline"));
  if (!fs::exists(fs::path(lp.plan.tokenizer_dir) / "tokenizer.json"))
    throw InputError("eval: " + lp.plan.tokenizer_dir + " has no tokenizer.json");
  Tokenizer tok = Tokenizer::load(lp.plan.tokenizer_dir);
  if (!tok.chat_template()) throw InputError(tok.config_path() + ": no chat_template");
  ChatTemplate ct(*tok.chat_template(), tok.config_path());
  std::vector<int32_t> stops = generation_config_stops(lp.plan.model_dir);
  for (int32_t s : tok.stop_token_ids()) stops.push_back(s);
  const bool thinking = !a.has("--no-thinking");

  // The run as asked, and, for a pipeline of segment processes, the same pipeline in one process.
  struct Run {
    std::string name;
    std::vector<std::string> answers;
    double seconds = 0;
  };
  std::vector<Run> runs;
  const bool twin = !lp.plan.inproc;
  if (twin && inproc_baseline_problem(lp.plan).empty()) {
    RunPlan base = lp.plan;
    base.inproc = true;
    runs.push_back({"in-process", {}, 0});
    runs.back().answers = answer_all(base, qs, tok, ct, thinking, max_new, stops, runs.back().seconds);
  }
  runs.push_back({twin ? "segmented" : "in-process", {}, 0});
  runs.back().answers = answer_all(lp.plan, qs, tok, ct, thinking, max_new, stops, runs.back().seconds);
  const Run& main_run = runs.back();

  struct Tally {
    long long n = 0, correct = 0, with_ref = 0, agree_ref = 0, agree_twin = 0;
  };
  std::map<std::string, Tally> tally;
  nlohmann::json rows = nlohmann::json::array();
  bool twins_agree = true;
  for (size_t i = 0; i < qs.size(); i++) {
    Tally& t = tally[qs[i].task];
    const std::string& ans = main_run.answers[i];
    t.n++;
    t.correct += ans == qs[i].answer;
    if (qs[i].reference) {
      t.with_ref++;
      t.agree_ref += ans == *qs[i].reference;
    }
    bool same = runs.size() < 2 || runs[0].answers[i] == ans;
    t.agree_twin += same;
    twins_agree &= same;
    nlohmann::json row = {{"task", qs[i].task}, {"prompt", qs[i].prompt}, {"expected", qs[i].answer}};
    for (const Run& r : runs) row[r.name] = r.answers[i];
    if (qs[i].reference) row["transformers"] = *qs[i].reference;
    rows.push_back(row);
  }

  std::printf("%-10s %6s %8s %9s  %s%s\n", "task", "n", "correct", "accuracy", "agrees with transformers",
              runs.size() > 1 ? "   segmented = in-process" : "");
  bool below = false;
  nlohmann::json summary = nlohmann::json::object();
  Tally all;
  for (auto& [task, t] : tally) {
    double acc = static_cast<double>(t.correct) / static_cast<double>(t.n);
    below |= acc < min_acc;
    std::string ref = t.with_ref ? std::to_string(t.agree_ref) + "/" + std::to_string(t.with_ref) : "-";
    std::printf("%-10s %6lld %8lld %8.1f%%  %-24s%s\n", task.c_str(), t.n, t.correct, 100.0 * acc, ref.c_str(),
                runs.size() > 1 ? ("   " + std::to_string(t.agree_twin) + "/" + std::to_string(t.n)).c_str() : "");
    summary[task] = {{"n", t.n}, {"correct", t.correct}, {"accuracy", acc}, {"with_reference", t.with_ref},
                     {"agrees_with_reference", t.agree_ref}, {"agrees_in_process", t.agree_twin}};
    all.n += t.n, all.correct += t.correct, all.with_ref += t.with_ref, all.agree_ref += t.agree_ref;
  }
  for (const Run& r : runs)
    spdlog::info("eval: {} run: {} questions in {:.1f} s", r.name, qs.size(), r.seconds);
  if (!twins_agree) std::fprintf(stderr, "eval: the segmented and the in-process answers differ\n");
  if (below) std::fprintf(stderr, "eval: a task's accuracy is below --min-accuracy %.3f\n", min_acc);
  if (auto j = a.get("--json")) {
    nlohmann::json rep = {{"source", lp.plan.source}, {"set", *a.get("--set")}, {"tasks", summary},
                          {"segmented_equals_in_process", twins_agree}, {"questions", rows}};
    for (const Run& r : runs) rep["seconds"][r.name] = r.seconds;
    std::ofstream out(*j);
    out << rep.dump(2) << "\n";
    out.flush();
    if (!out) throw InputError(*j + ": cannot write the JSON report");
  }
  return twins_agree && !below ? 0 : 1;
}

}  // namespace segpipe
