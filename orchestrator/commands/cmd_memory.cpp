// segpipe memory: runs prompts through a pipeline with one process per segment and reports each
// process's memory from /proc (weights, anonymous, arena share, peak, PSS), the in-process run of the
// same pipeline beside it (in a forked child, so neither run's pages land in the other's figures),
// router usage, and checks its targets. --sweep runs the experiments: finer and finer cuts of a
// checkpoint, and selective expert loading (max_resident_experts) against M.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "orchestrator/debugging/capture.h"
#include "orchestrator/commands/cli_args.h"
#include "orchestrator/commands/commands.h"
#include "orchestrator/reports/output.h"
#include "orchestrator/debugging/debug_common.h"
#include "orchestrator/reports/memory_report.h"
#include "orchestrator/reports/report_html.h"
#include "orchestrator/debugging/router_stats.h"
#include "orchestrator/debugging/segment_compare.h"
#include "orchestrator/drivers/shm_runner.h"
#include "segments/checkpoint/checkpoint.h"
#include "segments/core/errors.h"
#include "segments/model/tensor_map.h"

namespace segpipe {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kMemoryHelp =
    "usage: segpipe memory --pipeline FILE [--prompt TEXT | --tokens \"ID ...\"]... [--max-new-tokens N]\n"
    "                      [--json FILE] [--html FILE] [--no-inproc] [--hold-until-file PATH]\n"
    "       segpipe memory --sweep --model DIR [--groups 1,2,4,8] [--banks 0,2] [--resident 0,1,2,4]\n"
    "                      [--resident-groups N] [--tokens ...]... [--max-new-tokens N] [--json FILE] [--html FILE]\n"
    "runs the prompts (default: a fixed 12-token prompt) with one process per segment and reports per\n"
    "process: weight bytes, resident memory split into mapped weights / anonymous / shm arena / other,\n"
    "PSS, peak, KV cache, GPU memory (a GPU segment's weights; per device, where the state GPU segments\n"
    "share lives: the device arena, or the shared arena under gpu_memory: unified, counted once there),\n"
    "expert loading counters, and whether a page\n"
    "of another segment's weights is resident (pagemap); totals by PSS (shared pages counted once);\n"
    "the in-process run of the same pipeline beside it; router usage per layer. Targets checked:\n"
    "resident <= weights + KV cache + 32 MiB per process, no foreign weight page resident; with\n"
    "max_resident_experts M: mapped weights resident <= non-expert weights + M experts per layer (+ edge\n"
    "pages, 1 MiB), and resident and peak <= that + KV cache + 32 MiB. A GPU segment: no foreign weight\n"
    "page resident; under gpu_memory: unified, checkpoint pages resident <= 2 pages per tensor + 1 MiB.\n"
    "  --max-new-tokens N   greedy decode steps per prompt, timed (default 8)\n"
    "  --hold-until-file P  keep the processes alive after writing the reports until P exists (tests)\n"
    "  --sweep              experiments on --model: cuts into 1,2,4,8 layer groups with and without expert\n"
    "                       banks; selective expert loading with M resident experts per layer\n"
    "exit: 0 ok, 1 a target missed, 2 bad input, 3 runtime failure\n";

constexpr uint64_t kSlack = 32ull << 20;
const uint64_t kPageBytes = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));

struct RunResult {
  json j;
  bool targets_met = true;
  std::vector<float> last_logits;  // of every decode step, concatenated (bit-identity across runs)
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Prefill every prompt with capture (router usage), then decode greedily; returns tokens/s of decode.
json drive(Runner& r, const ModelConfig& cfg, const std::vector<std::vector<int32_t>>& prompts, int new_tokens,
           RouterStats* router, std::vector<float>* all_logits, int64_t& positions) {
  double decode_s = 0, prefill_s = 0;
  int64_t decoded = 0, prefilled = 0;
  positions = 0;
  const int64_t V = cfg.vocab;
  for (auto& p : prompts) {
    const int64_t T = static_cast<int64_t>(p.size());
    Capture cap;
    std::vector<float> logits;
    double t0 = now_s();
    r.step(p.data(), T, 0, router != nullptr, router ? &cap : nullptr, logits);
    prefill_s += now_s() - t0;
    prefilled += T;
    if (router)
      for (auto& [l, rt] : cap.routes) router->add(l, rt.experts.data(), T, rt.k);
    int32_t next = argmax_row(logits.data() + logits.size() - V, V);
    if (all_logits) all_logits->insert(all_logits->end(), logits.end() - V, logits.end());
    for (int n = 0; n < new_tokens; n++) {
      Capture c2;
      double t1 = now_s();
      r.step(&next, 1, T + n, false, router ? &c2 : nullptr, logits);
      decode_s += now_s() - t1;
      decoded++;
      if (router)
        for (auto& [l, rt] : c2.routes) router->add(l, rt.experts.data(), 1, rt.k);
      if (all_logits) all_logits->insert(all_logits->end(), logits.begin(), logits.end());
      next = argmax_row(logits.data(), V);
    }
    positions = std::max<int64_t>(positions, T + new_tokens);
  }
  return {{"prompts", prompts.size()},
          {"prefill_tokens", prefilled},
          {"decode_tokens", decoded},
          {"prefill_tokens_per_s", prefill_s > 0 ? prefilled / prefill_s : 0.0},
          {"decode_tokens_per_s", decode_s > 0 ? decoded / decode_s : 0.0}};
}

// The run's arena is an unnamed memfd this process holds: found among its own descriptors.
uint64_t arena_file_bytes() {
  uint64_t b = 0;
  for (auto& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::string target = fs::read_symlink(e.path(), ec).string();
    if (ec || target.rfind("/memfd:segpipe-arena", 0) != 0) continue;
    struct stat st {};
    if (stat(e.path().c_str(), &st) == 0) b += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return b;
}

// The in-process run, measured in a forked child (before this process starts any thread).
json measure_inproc(const RunPlan& plan, const ModelConfig& cfg, const std::vector<std::vector<int32_t>>& prompts,
                    int new_tokens) {
  int fds[2];
  if (pipe(fds) != 0) throw RuntimeFailure("pipe failed");
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) throw RuntimeFailure("fork failed");
  if (pid == 0) {
    close(fds[0]);
    std::string out;
    try {
      RunPlan p = plan;
      p.inproc = true;
      auto r = make_inproc_runner(p);
      int64_t pos = 0;
      json j = drive(*r, cfg, prompts, new_tokens, nullptr, nullptr, pos);
      ProcMemory m = read_proc_memory(getpid());
      uint64_t wb = 0;
      for (auto& s : r->reports()) wb += s.weight_bytes;
      j["memory"] = proc_memory_json(m);
      j["weight_bytes"] = wb;
      j["processes"] = 1;
      out = j.dump();
    } catch (const std::exception& e) {
      out = json{{"error", e.what()}}.dump();
    }
    size_t off = 0;
    while (off < out.size()) {
      ssize_t w = write(fds[1], out.data() + off, out.size() - off);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string s;
  char buf[65536];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (s.empty()) throw RuntimeFailure("the in-process measurement (child " + std::to_string(pid) + ") " + "died");
  json j = json::parse(s);
  if (j.contains("error")) throw RuntimeFailure("in-process measurement: " + j["error"].get<std::string>());
  return j;
}

std::string mb(uint64_t b) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f", static_cast<double>(b) / (1 << 20));
  return s;
}

// The segmented run: runner alive on return (in `keep`), so the processes can be held for checks.
RunResult measure_segmented(const RunPlan& plan_in, const ModelConfig& cfg, const std::vector<std::vector<int32_t>>& prompts,
                            int new_tokens, std::unique_ptr<Runner>& keep, bool with_router) {
  RunPlan plan = plan_in;
  plan.inproc = false;
  ShmOptions so;
  for (auto& p : prompts) so.capture_tokens = std::max<int64_t>(so.capture_tokens, static_cast<int64_t>(p.size()));
  keep = make_runner(plan, so);  // one process per segment, on the hosts the plan names
  RouterStats router(cfg);
  RunResult rr;
  int64_t positions = 0;
  rr.j["run"] = drive(*keep, cfg, prompts, new_tokens, with_router ? &router : nullptr, &rr.last_logits, positions);
  if (with_router) rr.j["router"] = router.to_json();
  auto reports = keep->reports();
  auto ck = Checkpoint::open(plan.model_dir);
  json segs = json::array();
  uint64_t sum_pss = 0, sum_rss = 0, sum_w = 0;
  for (size_t i = 0; i < reports.size(); i++) {
    const SegmentReport& s = reports[i];
    const SegmentDesc& d = plan.segments[i];
    // Measured by the host that runs it: here, or by its host's agent on a run across hosts.
    SegmentMemory sm;
    if (s.measured_memory.is_null()) {
      sm = measure_segment_memory(s.pid, *ck, cfg, d);
    } else {
      const std::string at = "segment '" + s.name + "' on host '" + s.host + "'";
      if (s.measured_memory.contains("error"))
        throw RuntimeFailure(at + ": its memory could not be measured there: " + s.measured_memory["error"].dump());
      try {
        sm = segment_memory_from_json(s.measured_memory);
      } catch (const nlohmann::json::exception& e) {
        throw RuntimeFailure(at + ": its host sent a malformed memory measurement: " + e.what());
      }
    }
    const ProcMemory& m = sm.proc;
    const WeightResidency& wr = sm.residency;
    uint64_t kv = kv_bytes(cfg, d, positions);
    uint64_t limit = s.weight_bytes + kv + kSlack;
    bool ok = m.rss <= limit && wr.foreign_resident_pages == 0;
    std::string rule = "rss <= weight_bytes + kv_cache_bytes + 32 MiB, and no foreign weight page resident";
    json bound_j;
    if (d.device.is_cuda()) {
      // A GPU process's weights are device memory (not in its RSS), its RSS holds the CUDA runtime and
      // the whole shared arena (registered for the GPU: every page resident), counted once in the
      // totals. Under unified the checkpoint's pages were given back once the device read them.
      limit = 2 * kPageBytes * segment_weight_ranges(*ck, cfg, d).size() + (1ull << 20);
      const bool unified = s.gpu_memory == "unified";
      ok = wr.foreign_resident_pages == 0 && (!unified || m.rss_weights <= limit);
      rule = unified ? "gpu_memory unified: rss_weights (checkpoint pages still resident) <= 2 pages per tensor + "
                       "1 MiB, and no foreign weight page resident"
                     : "GPU segment: no foreign weight page resident";
    } else if (d.max_resident_experts > 0) {
      // With every weight resident the rule above holds trivially; selective loading promises more:
      // the bound on what it may hold, for the mapped weights now and for the whole process now and
      // at its peak (VmHWM: since the process started, so from load to this point).
      ExpertResidencyBound b = expert_residency_bound(*ck, cfg, d);
      limit = b.limit() + kv + kSlack;
      ok = m.rss_weights <= b.limit() && m.rss <= limit && m.peak_rss <= limit && wr.foreign_resident_pages == 0;
      rule = "max_resident_experts " + std::to_string(b.max_resident_experts) +
             ": rss_weights <= non-expert weights + M largest experts per MoE layer + slack (2 pages per resident "
             "tensor + 1 MiB); rss and peak_rss <= that + kv_cache_bytes + 32 MiB; no foreign weight page resident";
      bound_j = {{"non_expert_bytes", b.non_expert_bytes},
                 {"expert_bytes", b.expert_bytes},
                 {"slack_bytes", b.slack_bytes},
                 {"weights_limit_bytes", b.limit()}};
    }
    rr.targets_met &= ok;
    json e = proc_memory_json(m);
    e["name"] = s.name;
    e["kind"] = s.kind;
    if (d.layer_first >= 0) e["layers"] = {d.layer_first, d.layer_last};
    if (d.expert_first >= 0) e["experts"] = {d.expert_first, d.expert_last};
    e["tensors"] = s.tensors;
    e["weight_bytes"] = s.weight_bytes;
    e["kv_cache_bytes"] = kv;
    e["kv_cache_reserved_bytes"] = kv_bytes(cfg, d, plan.max_seq);
    if (d.device.is_cuda()) {
      const bool unified = s.gpu_memory == "unified";
      e["gpu_memory"] = s.gpu_memory;
      e["gpu_bytes"] = s.weight_bytes;  // its device-layout weights; the state it shares: gpu_devices
      e["gpu"] = to_string(d.device) + ", gpu_memory " + s.gpu_memory + ": weights in device memory" +
                 (unified ? " (" + std::to_string(s.weights_in_place) +
                                " checkpoint tensors read in place, their pages given back); activations, KV "
                                "cache and bank exchange in the shared arena (counted there)"
                          : "; activations between GPU segments, KV cache and bank exchange in the device arena of " +
                                to_string(d.device) + " (counted once, in gpu_devices)");
      e["weights_in_place"] = s.weights_in_place;
    } else {
      e["gpu_bytes"] = nullptr;
      e["gpu"] = "none: " + to_string(d.device) + " segment (this build has no CUDA backend)";
    }
    e["weights_resident"] = {{"own_bytes", wr.own_resident_bytes},
                             {"edge_pages", wr.edge_resident_pages},
                             {"foreign_pages", wr.foreign_resident_pages},
                             {"mappings", wr.weight_mappings},
                             {"foreign_examples", wr.foreign_examples}};
    e["target"] = {{"rule", rule}, {"limit_bytes", limit}, {"met", ok}};
    if (!bound_j.is_null()) e["target"]["expert_bound"] = bound_j;
    if (s.max_resident_experts > 0 || s.expert_uses > 0)
      e["expert_cache"] = {{"max_resident_experts", s.max_resident_experts},
                           {"uses", s.expert_uses},
                           {"hits", s.expert_hits},
                           {"loads", s.expert_loads},
                           {"evictions", s.expert_evictions},
                           {"bytes_loaded", s.expert_bytes_loaded},
                           {"hit_rate", s.expert_uses ? static_cast<double>(s.expert_hits) / s.expert_uses : 0.0}};
    if (!s.host.empty()) e["host"] = s.host;  // runs across hosts: whose machine the figures are of
    segs.push_back(e);
    sum_pss += m.pss;
    sum_rss += m.rss;
    sum_w += s.weight_bytes;
  }
  ProcMemory me = read_proc_memory(getpid());
  rr.j["segments"] = segs;
  rr.j["orchestrator"] = proc_memory_json(me);
  rr.j["totals"] = {{"processes", reports.size() + 1},
                    {"pss_bytes", sum_pss + me.pss},
                    {"segments_pss_bytes", sum_pss},
                    {"rss_bytes_double_counted", sum_rss + me.rss},
                    {"weight_bytes", sum_w},
                    {"arena_allocated_bytes", arena_file_bytes()},
                    {"note", "pss_bytes = sum of PSS (smaps_rollup) over the segment processes and the orchestrator: "
                             "each shared page counted once. arena_allocated_bytes: the shared-memory arena (its "
                             "pages are in PSS only where mapped and touched)."}};
  // Each byte once: device memory is the GPU segments' weights plus the device arenas; what a device
  // under unified shares lives in the shared arena (arena_allocated_bytes), not again here.
  json devices = json::array();
  uint64_t gpu_weights = 0, dev_arenas = 0;
  for (size_t i = 0; i < reports.size(); i++)
    if (plan.segments[i].device.is_cuda()) gpu_weights += reports[i].weight_bytes;
  std::string gpu;
  for (const GpuDeviceState& g : keep->gpu_devices()) {
    dev_arenas += g.device_arena_bytes;
    devices.push_back({{"device", "cuda:" + std::to_string(g.device)},
                       {"gpu_memory", to_string(g.memory)},
                       {"device_arena_bytes", g.device_arena_bytes},
                       {"shared_arena_bytes", g.shared_arena_bytes}});
    gpu += std::string(gpu.empty() ? "" : "; ") + "cuda:" + std::to_string(g.device) + " gpu_memory " + to_string(g.memory) +
           (g.memory == GpuMemory::unified ? " (shared state in the shared arena: " + mb(g.shared_arena_bytes) + " MiB)"
                                           : " (device arena " + mb(g.device_arena_bytes) + " MiB)");
  }
  if (!devices.empty()) {
    rr.j["gpu_devices"] = devices;
    rr.j["totals"]["gpu_weight_bytes"] = gpu_weights;
    rr.j["totals"]["gpu_device_arena_bytes"] = dev_arenas;
    rr.j["gpu"] = "GPU segments: " + gpu;
  } else {
    rr.j["gpu"] = "none: every segment runs on the CPU in this build";
  }
  rr.j["targets_met"] = rr.targets_met;
  return rr;
}

void print_report(const json& r) {
  std::printf("memory: %s (%zu segment processes; MiB)\n", r.value("pipeline", std::string()).c_str(), r["segments"].size());
  std::printf("  %-12s %-10s %7s %8s %8s %8s %8s %8s %8s %8s %8s  %s\n", "segment", "kind", "pid", "weights", "rss",
              "pss", "rss.wts", "anon", "arena", "peak", "kv", "target");
  for (auto& s : r["segments"])
    std::printf("  %-12s %-10s %7ld %8s %8s %8s %8s %8s %8s %8s %8s  %s%s\n",
                (s["name"].get<std::string>() + (s.contains("host") ? "@" + s["host"].get<std::string>() : "")).c_str(),
                s["kind"].get<std::string>().c_str(), s["pid"].get<long>(), mb(s["weight_bytes"]).c_str(),
                mb(s["rss_bytes"]).c_str(), mb(s["pss_bytes"]).c_str(), mb(s["rss_weights_bytes"]).c_str(),
                mb(s["rss_anon_bytes"]).c_str(), mb(s["rss_arena_bytes"]).c_str(), mb(s["peak_rss_bytes"]).c_str(),
                mb(s["kv_cache_bytes"]).c_str(), s["target"]["met"].get<bool>() ? "ok" : "MISSED",
                s["weights_resident"]["foreign_pages"].get<uint64_t>() ? " (foreign weight pages resident)" : "");
  auto& o = r["orchestrator"];
  std::printf("  %-12s %-10s %7ld %8s %8s %8s %8s %8s %8s %8s\n", "orchestrator", "-", o["pid"].get<long>(), "-",
              mb(o["rss_bytes"]).c_str(), mb(o["pss_bytes"]).c_str(), "-", mb(o["rss_anon_bytes"]).c_str(),
              mb(o["rss_arena_bytes"]).c_str(), mb(o["peak_rss_bytes"]).c_str());
  auto& t = r["totals"];
  std::printf("  total PSS %s MiB over %d processes (weights %s MiB; RSS summed, shared pages counted repeatedly: %s MiB; "
              "arena file %s MiB)\n",
              mb(t["pss_bytes"]).c_str(), t["processes"].get<int>(), mb(t["weight_bytes"]).c_str(),
              mb(t["rss_bytes_double_counted"]).c_str(), mb(t["arena_allocated_bytes"]).c_str());
  if (r.contains("inproc")) {
    auto& i = r["inproc"]["memory"];
    std::printf("  in-process run of the same pipeline: rss %s, pss %s, weights resident %s, anon %s, peak %s MiB\n",
                mb(i["rss_bytes"]).c_str(), mb(i["pss_bytes"]).c_str(), mb(i["rss_weights_bytes"]).c_str(),
                mb(i["rss_anon_bytes"]).c_str(), mb(i["peak_rss_bytes"]).c_str());
  }
  std::printf("  decode %.1f tokens/s segmented%s; GPU memory: %s\n", r["run"]["decode_tokens_per_s"].get<double>(),
              r.contains("inproc") ? (", " + std::to_string(r["inproc"]["decode_tokens_per_s"].get<double>()).substr(0, 6) + " in-process").c_str() : "",
              r.contains("gpu_devices") ? r["gpu"].get<std::string>().c_str() : "none (CPU segments)");
}

void write_text(const std::string& path, const std::string& s) { write_output_file(path, s); }

void hold(const CliArgs& a) {
  auto p = a.get("--hold-until-file");
  if (!p) return;
  std::printf("memory: holding the segment processes until %s exists\n", p->c_str());
  std::fflush(stdout);
  for (int i = 0; i < 1200 && !fs::exists(*p); i++) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

// Cuts like `segpipe plan`: embeddings, N groups of layers balanced by weight bytes, optionally K
// banks over every MoE layer (expert ranges of equal size), lm_head.
RunPlan cut_plan(const std::string& model_dir, const ModelConfig& cfg, Checkpoint& ck, int groups, int banks, int resident) {
  RunPlan p = default_plan(model_dir, cfg);
  p.inproc = false;
  p.threads = 1;
  p.segments.clear();
  p.segments.push_back({"embed", SegmentKind::embeddings});
  std::vector<uint64_t> bytes(static_cast<size_t>(cfg.num_layers));
  for (int l = 0; l < cfg.num_layers; l++) {
    for (auto& r : layer_roles(cfg, l)) bytes[static_cast<size_t>(l)] += ck.entry(r.name).end - ck.entry(r.name).begin;
    if (cfg.is_moe_layer(l) && banks == 0) {
      ExpertLayout lay = expert_layout(ck, cfg, l);
      for (int e = 0; e < cfg.num_experts; e++) {
        for (auto& r : expert_roles(cfg, l, e, lay)) bytes[static_cast<size_t>(l)] += ck.entry(r.name).end - ck.entry(r.name).begin;
        if (lay == ExpertLayout::Fused) break;
      }
    }
  }
  uint64_t total = 0;
  for (auto b : bytes) total += b;
  int start = 0, made = 0;
  uint64_t run = 0;
  int first_moe = -1, last_moe = -1;
  for (int l = 0; l < cfg.num_layers; l++)
    if (cfg.is_moe_layer(l)) {
      if (first_moe < 0) first_moe = l;
      last_moe = l;
    }
  auto add_group = [&](int a, int b) {
    SegmentDesc d{"layers-" + std::to_string(made++), SegmentKind::layers};
    d.layer_first = a;
    d.layer_last = b;
    bool any = false;
    for (int l = a; l <= b; l++) any |= cfg.is_moe_layer(l);
    d.banks = banks > 0 && any;
    d.max_resident_experts = d.banks ? 0 : resident;
    d.threads = 1;
    p.segments.push_back(d);
  };
  for (int l = 0; l < cfg.num_layers; l++) {
    run += bytes[static_cast<size_t>(l)];
    int left = groups - made, layers_left = cfg.num_layers - l - 1;
    bool cut = static_cast<long double>(run) >= static_cast<long double>(total) * (made + 1) / groups;
    if (left > 1 && (cut || layers_left < left)) {
      add_group(start, l);
      start = l + 1;
    }
  }
  add_group(start, cfg.num_layers - 1);
  for (int b = 0; b < banks && first_moe >= 0; b++) {
    SegmentDesc d{"bank-" + std::to_string(b), SegmentKind::experts};
    d.layer_first = first_moe;
    d.layer_last = last_moe;
    d.expert_first = cfg.num_experts * b / banks;
    d.expert_last = cfg.num_experts * (b + 1) / banks - 1;
    d.max_resident_experts = resident;
    d.threads = 1;
    p.segments.push_back(d);
  }
  p.segments.push_back({"head", SegmentKind::lm_head});
  p.segments.back().threads = 1;
  p.source = model_dir + " (cut: " + std::to_string(groups) + " layer groups, " + std::to_string(banks) + " banks" +
             (resident ? ", max_resident_experts " + std::to_string(resident) : "") + ")";
  return p;
}

std::vector<int> int_list(const CliArgs& a, const std::string& flag, std::vector<int> dflt) {
  auto v = a.get(flag);
  if (!v) return dflt;
  std::vector<int> out;
  for (int32_t x : parse_id_list(*v, flag)) out.push_back(x);
  return out;
}

int run_sweep(const CliArgs& a) {
  if (!a.has("--model")) throw InputError("memory --sweep: --model DIR is required");
  LoadedPlan lp = load_model_plan(*a.get("--model"));
  const ModelConfig& cfg = lp.cfg;
  auto prompts = prompts_from_args(a, lp, "memory", default_verify_prompt(cfg));
  int new_tokens = static_cast<int>(a.get_int("--max-new-tokens", 8, 0, 4096));
  auto ck = Checkpoint::open(lp.plan.model_dir);
  std::vector<int> groups = int_list(a, "--groups", {1, 2, 4, 8});
  std::vector<int> banks = int_list(a, "--banks", {0, 2});
  std::vector<int> resident = int_list(a, "--resident", {0, 1, 2, 4});
  int rgroups = static_cast<int>(a.get_int("--resident-groups", 1, 1, cfg.num_layers));
  json out{{"model", lp.plan.model_dir}, {"prompts", prompts}, {"max_new_tokens", new_tokens}};
  json cuts = json::array();
  std::printf("sweep over cuts of %s (%zu prompts, %d decode tokens each)\n", lp.plan.model_dir.c_str(), prompts.size(), new_tokens);
  std::printf("  %6s %5s %5s %12s %12s %12s %10s\n", "groups", "banks", "procs", "total PSS", "max proc PSS", "weights", "decode t/s");
  std::vector<float> ref_logits;
  RouterStats router(cfg);
  for (int g : groups) {
    if (g > cfg.num_layers) continue;
    for (int b : banks) {
      if (b > 0 && cfg.num_experts == 0) continue;
      RunPlan p = cut_plan(lp.plan.model_dir, cfg, *ck, g, b, 0);
      std::unique_ptr<Runner> keep;
      RunResult r = measure_segmented(p, cfg, prompts, new_tokens, keep, cuts.empty());
      if (cuts.empty()) {
        ref_logits = r.last_logits;
        out["router"] = r.j["router"];
      }
      bool same = r.last_logits.size() == ref_logits.size() &&
                  std::memcmp(r.last_logits.data(), ref_logits.data(), ref_logits.size() * 4) == 0;
      uint64_t maxp = 0;
      json per = json::array();
      for (auto& s : r.j["segments"]) {
        maxp = std::max<uint64_t>(maxp, s["pss_bytes"]);
        per.push_back({{"name", s["name"]}, {"pss_bytes", s["pss_bytes"]}, {"rss_bytes", s["rss_bytes"]},
                       {"weight_bytes", s["weight_bytes"]}});
      }
      json c{{"layer_groups", g},
             {"expert_banks", b},
             {"processes", r.j["totals"]["processes"]},
             {"total_pss_bytes", r.j["totals"]["pss_bytes"]},
             {"max_process_pss_bytes", maxp},
             {"weight_bytes", r.j["totals"]["weight_bytes"]},
             {"decode_tokens_per_s", r.j["run"]["decode_tokens_per_s"]},
             {"prefill_tokens_per_s", r.j["run"]["prefill_tokens_per_s"]},
             {"identical_logits", same},
             {"targets_met", r.targets_met},
             {"per_process", per}};
      std::printf("  %6d %5d %5d %10s M %10s M %10s M %10.1f%s\n", g, b, c["processes"].get<int>(),
                  mb(c["total_pss_bytes"]).c_str(), mb(maxp).c_str(), mb(c["weight_bytes"]).c_str(),
                  c["decode_tokens_per_s"].get<double>(), same ? "" : "  (logits differ!)");
      cuts.push_back(c);
    }
  }
  out["cuts"] = cuts;
  json res = json::array();
  if (cfg.num_experts > 0) {
    std::printf("selective expert loading (%d layer group(s), local experts; M = max resident experts per layer)\n", rgroups);
    std::printf("  %4s %9s %7s %9s %12s %12s %10s %s\n", "M", "hit rate", "loads", "evictions", "bytes read", "weights rss", "decode t/s", "output");
    std::vector<float> full;
    for (int m : resident) {
      RunPlan p = cut_plan(lp.plan.model_dir, cfg, *ck, rgroups, 0, m);
      std::unique_ptr<Runner> keep;
      RunResult r = measure_segmented(p, cfg, prompts, new_tokens, keep, false);
      if (full.empty()) full = r.last_logits;
      bool same = r.last_logits.size() == full.size() && std::memcmp(r.last_logits.data(), full.data(), full.size() * 4) == 0;
      uint64_t uses = 0, hits = 0, loads = 0, ev = 0, bytes = 0, wrss = 0;
      for (auto& s : r.j["segments"]) {
        wrss += s["rss_weights_bytes"].get<uint64_t>();
        if (!s.contains("expert_cache")) continue;
        auto& c = s["expert_cache"];
        uses += c["uses"].get<uint64_t>();
        hits += c["hits"].get<uint64_t>();
        loads += c["loads"].get<uint64_t>();
        ev += c["evictions"].get<uint64_t>();
        bytes += c["bytes_loaded"].get<uint64_t>();
      }
      double hr = m == 0 ? 1.0 : uses ? static_cast<double>(hits) / uses : 0.0;
      json e{{"max_resident_experts", m},
             {"uses", uses},
             {"hits", hits},
             {"loads", loads},
             {"evictions", ev},
             {"bytes_loaded", bytes},
             {"hit_rate", hr},
             {"weights_resident_bytes", wrss},
             {"total_pss_bytes", r.j["totals"]["pss_bytes"]},
             {"decode_tokens_per_s", r.j["run"]["decode_tokens_per_s"]},
             {"identical_to_full_residency", same}};
      std::printf("  %4s %8.1f%% %7llu %9llu %10s M %10s M %10.1f %s\n", m ? std::to_string(m).c_str() : "all", 100 * hr,
                  static_cast<unsigned long long>(loads), static_cast<unsigned long long>(ev), mb(bytes).c_str(),
                  mb(wrss).c_str(), e["decode_tokens_per_s"].get<double>(), same ? "bit-identical" : "DIFFERS");
      res.push_back(e);
    }
  }
  out["selective_loading"] = res;
  if (auto j = a.get("--json")) write_text(*j, out.dump(2) + "\n");
  if (auto h = a.get("--html")) write_text(*h, render_report_html({}, out));
  bool ok = true;
  for (auto& e : res) ok &= e["identical_to_full_residency"].get<bool>();
  for (auto& c : cuts) ok &= c["identical_logits"].get<bool>();
  return ok ? 0 : 1;
}

}  // namespace

int cmd_memory(const Args& args) {
  CliArgs a("memory", args,
            {"--pipeline", "--model", "--prompt", "--tokens", "--max-new-tokens", "--json", "--html", "--hold-until-file",
             "--groups", "--banks", "--resident", "--resident-groups"},
            {"--no-inproc", "--sweep"});
  if (a.help()) {
    std::fputs(kMemoryHelp, stdout);
    return 0;
  }
  if (a.has("--sweep")) return run_sweep(a);
  if (!a.has("--pipeline")) throw InputError("memory: --pipeline FILE is required (or --sweep --model DIR)");
  LoadedPlan lp = load_pipeline_plan(*a.get("--pipeline"));
  auto prompts = prompts_from_args(a, lp, "memory", default_verify_prompt(lp.cfg));
  int new_tokens = static_cast<int>(a.get_int("--max-new-tokens", 8, 0, 4096));
  json report{{"pipeline", lp.plan.source}, {"model", lp.plan.model_dir}, {"prompts", prompts}, {"max_new_tokens", new_tokens}};
  if (!a.has("--no-inproc")) report["inproc"] = measure_inproc(lp.plan, lp.cfg, prompts, new_tokens);
  std::unique_ptr<Runner> keep;
  RunResult r = measure_segmented(lp.plan, lp.cfg, prompts, new_tokens, keep, true);
  for (auto& [k, v] : r.j.items()) report[k] = v;
  print_report(report);
  if (report.contains("router")) {
    std::printf("router: expert usage per layer over the prompts\n");
    RouterStats rs(lp.cfg);  // printed from the JSON to keep one source
    for (auto& l : report["router"]["layers"]) {
      std::string never;
      // append(), not += " " + ...: GCC 12 reports a false -Wrestrict on the temporary (bug 105329).
      for (auto& e : l["never_used"]) never.append(" ").append(std::to_string(e.get<int>()));
      std::printf("  layer %-3d %4d/%d experts used, top-%d take %5.1f%%, never used:%s\n", l["layer"].get<int>(),
                  l["experts_used"].get<int>(), lp.cfg.num_experts, lp.cfg.top_k, 100 * l["topk_share"].get<double>(),
                  never.empty() ? " -" : never.c_str());
    }
  }
  std::printf("memory: targets %s\n", r.targets_met ? "met" : "MISSED (see the table)");
  if (auto j = a.get("--json")) write_text(*j, report.dump(2) + "\n");
  if (auto h = a.get("--html")) write_text(*h, render_report_html(report, {}));
  std::fflush(stdout);
  hold(a);
  return r.targets_met ? 0 : 1;
}

}  // namespace segpipe
