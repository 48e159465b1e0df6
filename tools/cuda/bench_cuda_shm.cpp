// segpipe_bench_cuda_shm: the same synthetic preset on one GPU, (a) in this process (CudaRunner) and
// (b) cut into layer groups, one process per segment (transport: shm, CUDA IPC), each worker making
// only its own segment's weights on the GPU from the same seed. Decode after a 32-token prompt,
// greedy, through Runner::step (logits to the host each step) in both; the tokens and the logits of
// every step must be bit-identical between (a) and (b).
// usage: segpipe_bench_cuda_shm [--preset NAME] [--layers N] [--groups G] [--banks B] [--dtype D] [--decode N]
//                               [--sharing off|mps] [--json FILE]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "orchestrator/drivers/cuda_ipc.h"
#include "orchestrator/drivers/cuda_runner.h"
#include "orchestrator/planning/run_plan.h"
#include "segments/cuda/device.h"
#include "segments/model/synthetic.h"
#include "tools/cuda/bench_preflight.h"
#include "tools/flag_value.h"
#include "workers/worker_main.h"

using namespace segpipe;
namespace fs = std::filesystem;

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

uint64_t fnv(const std::vector<float>& v, uint64_t h) {
  const unsigned char* b = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * 4; i++) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

struct Result {
  double load_s = 0, prefill_ms = 0, decode_ms = 0;
  std::vector<int32_t> tokens;
  uint64_t hash = 1469598103934665603ull;
};

Result drive(Runner& r, const std::vector<int32_t>& prompt, int decode) {
  Result res;
  std::vector<float> l;
  const size_t V = static_cast<size_t>(r.vocab());
  double a = now_ms();
  r.step(prompt.data(), static_cast<int64_t>(prompt.size()), 0, false, nullptr, l);
  res.prefill_ms = now_ms() - a;
  res.hash = fnv(l, res.hash);
  auto argmax = [&] { return static_cast<int32_t>(std::max_element(l.begin(), l.begin() + V) - l.begin()); };
  int32_t tok = argmax();
  res.tokens.push_back(tok);
  const int warm = 3;  // eager step, graph capture, first replay
  for (int i = 0; i < decode + warm; i++) {
    if (i == warm) a = now_ms();
    r.step(&tok, 1, static_cast<int64_t>(prompt.size()) + i, false, nullptr, l);
    res.hash = fnv(l, res.hash);
    tok = argmax();
    res.tokens.push_back(tok);
  }
  res.decode_ms = (now_ms() - a) / decode;
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  if (const auto rc = run_if_worker(argc, argv)) return *rc;
  std::string preset = "qwen3-omni-30b-a3b-thinker", dtype = "bfloat16", json_out;
  int layers = 0, groups = 4, decode = 128, banks = 0;
  long spin = -1;
  std::string sharing = "off";
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&] { return segpipe::tools::flag_value(argc, argv, i); };
    if (a == "--preset") preset = next();
    else if (a == "--layers") layers = std::atoi(next().c_str());
    else if (a == "--groups") groups = std::atoi(next().c_str());
    else if (a == "--banks") banks = std::atoi(next().c_str());
    else if (a == "--dtype") dtype = next();
    else if (a == "--decode") decode = std::atoi(next().c_str());
    else if (a == "--json") json_out = next();
    else if (a == "--spin") spin = std::atol(next().c_str());
    else if (a == "--sharing") sharing = next();
    else {
      std::fprintf(stderr, "usage: segpipe_bench_cuda_shm [--preset NAME] [--layers N] [--groups G] [--dtype D] "
                           "[--decode N] [--spin N] [--sharing off|mps] [--banks B] [--json FILE]\n"
                           "  --banks B: the routed experts in B expert-bank segments (each all layers, 1/B of the\n"
                           "  experts) instead of inside the layers segments, in both runs\n"
                           "  --sharing mps: this process and its GPU workers share one private MPS server (the\n"
                           "  in-process baseline then runs through it too)\n");
      return 2;
    }
  }
  if (sharing != "off" && sharing != "mps") {
    std::fprintf(stderr, "--sharing: off or mps\n");
    return 2;
  }
  if (sharing == "mps") {
    // Before this process's first CUDA call, so that its own context joins the server.
    std::string why = start_private_mps();
    if (!why.empty()) {
      std::fprintf(stderr, "segpipe_bench_cuda_shm: no private MPS server: %s\n", why.c_str());
      return 3;
    }
  }
  if (const int rc = tools::bench_preflight(dtype)) return rc;
  fs::path dir;
  try {
    MakeModelOptions mo;
    mo.preset = preset;
    if (layers > 0) mo.num_layers = layers;
    nlohmann::json cj = synthetic_config(mo);
    ModelConfig cfg = parse_model_config(cj, "preset " + preset);
    char tmpl[] = "/tmp/segpipe-bench-XXXXXX";
    if (!mkdtemp(tmpl)) throw RuntimeFailure("mkdtemp failed");
    dir = tmpl;
    std::ofstream(dir / "config.json") << cj.dump(2);
    RunPlan plan;
    plan.model_dir = dir.string();
    plan.tokenizer_dir = plan.model_dir;
    plan.source = "preset " + preset;
    plan.max_seq = 512;
    plan.timeout_ms = 120000;
    auto seg = [&](const std::string& n, SegmentKind k, int l0, int l1) {
      SegmentDesc d{n, k};
      d.layer_first = l0;
      d.layer_last = l1;
      d.device = Device{Device::Type::cuda, 0};
      d.dtype = *parse_compute_dtype(dtype);
      plan.segments.push_back(d);
    };
    seg("embed", SegmentKind::embeddings, -1, -1);
    const int L = cfg.num_layers;
    for (int g = 0; g < groups; g++) {
      seg("layers-" + std::to_string(g), SegmentKind::layers, g * L / groups, (g + 1) * L / groups - 1);
      plan.segments.back().banks = banks > 0;
    }
    for (int b = 0; b < banks; b++) {
      seg("experts-" + std::to_string(b), SegmentKind::experts, 0, L - 1);
      plan.segments.back().expert_first = b * cfg.num_experts / banks;
      plan.segments.back().expert_last = (b + 1) * cfg.num_experts / banks - 1;
    }
    seg("head", SegmentKind::lm_head, -1, -1);
    std::vector<int32_t> prompt(32);
    uint32_t st = 12345;
    for (auto& x : prompt) x = int32_t((st = st * 1664525u + 1013904223u) % uint32_t(cfg.vocab));
    const std::string card = cuda::device_name(0);

    Result in, sh;
    {
      RunPlan p = plan;
      p.inproc = true;
      CudaRunnerOptions ro;
      ro.synthetic = true;
      double a = now_ms();
      auto r = make_cuda_runner(p, cfg, ro);
      in.load_s = (now_ms() - a) / 1e3;
      in = [&] { Result x = drive(*r, prompt, decode); x.load_s = in.load_s; return x; }();
    }
    {
      RunPlan p = plan;
      p.inproc = false;
      CudaShmOptions co;
      co.synthetic = true;
      if (spin >= 0) co.spin_count = static_cast<uint32_t>(spin);
      co.sharing = sharing == "mps" ? GpuSharing::Mps : GpuSharing::Off;
      double a = now_ms();
      auto r = make_shm_runner_cuda(p, {}, co);
      double load = (now_ms() - a) / 1e3;
      sh = drive(*r, prompt, decode);
      sh.load_s = load;
    }
    const bool same = in.tokens == sh.tokens && in.hash == sh.hash;
    std::printf("\n== segpipe_bench_cuda_shm: %s, %d layers, %s, card %s ==\n", preset.c_str(), L, dtype.c_str(),
                card.c_str());
    std::printf("in-process (1 process)       load %6.1f s  prefill 32 %7.2f ms  decode %7.3f ms/token %7.1f tokens/s\n",
                in.load_s, in.prefill_ms, in.decode_ms, 1e3 / in.decode_ms);
    std::printf("channel spins: %s; GPU sharing: %s (this process's context through MPS: %s)\n",
                spin >= 0 ? std::to_string(spin).c_str() : "default", sharing.c_str(),
                cuda_mps_enabled(0) ? "yes" : "no");
    if (banks > 0) std::printf("expert banks: %d segments, each all layers and 1/%d of the experts\n", banks, banks);
    std::printf("shm, %d layer groups (%zu proc) load %6.1f s  prefill 32 %7.2f ms  decode %7.3f ms/token %7.1f tokens/s\n",
                groups, plan.segments.size(), sh.load_s, sh.prefill_ms, sh.decode_ms, 1e3 / sh.decode_ms);
    std::printf("shm / in-process decode tokens/s: %.3f   tokens and logits of all %d steps: %s\n",
                in.decode_ms / sh.decode_ms, decode + 4, same ? "bit-identical" : "DIFFER");
    if (!json_out.empty())
      std::ofstream(json_out) << "{\"preset\":\"" << preset << "\",\"layers\":" << L << ",\"dtype\":\"" << dtype
                              << "\",\"card\":\"" << card << "\",\"groups\":" << groups << ",\"banks\":" << banks
                              << ",\"processes\":" << plan.segments.size() << ",\"decode_tokens\":" << decode
                              << ",\"inproc_decode_ms\":" << in.decode_ms << ",\"shm_decode_ms\":" << sh.decode_ms
                              << ",\"ratio\":" << in.decode_ms / sh.decode_ms << ",\"inproc_load_s\":" << in.load_s
                              << ",\"shm_load_s\":" << sh.load_s << ",\"bit_identical\":" << (same ? "true" : "false")
                              << "}\n";
    fs::remove_all(dir);
    return same ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segpipe_bench_cuda_shm: %s\n", e.what());
    if (!dir.empty()) fs::remove_all(dir);
    return 3;
  }
}
