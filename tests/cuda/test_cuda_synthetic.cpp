// Synthetic weights made on the GPU are the weights `segpipe make-model` writes: a tiny checkpoint is
// written on the CPU, and the GPU runner built from it and the GPU runner built from the formula
// alone (no files) give bit-identical logits, in float32 and in bfloat16, for each architecture's
// tiny preset (Qwen3-Omni, Qwen3, Qwen2-MoE: q/k/v biases, no q/k norm, a shared expert). (A slice of
// the full-size preset's last tensor is compared with synthetic_value in test_cuda_kernels.) Also the
// bf16 flash prefill continued at pos0 > 0 (the bf16 K/V copies of the earlier rows) against the same
// tokens in one prefill and against the cuBLAS attention path.
#include <unistd.h>

#include <filesystem>

#include "gpu_kernels_arg.h"
#include "gpu_test.h"
#include "orchestrator/drivers/cuda_runner.h"
#include "orchestrator/planning/run_plan.h"
#include "orchestrator/drivers/sampler.h"
#include "segments/model/config_file.h"
#include "segments/cuda/kinds.h"
#include "segments/model/synthetic.h"

using namespace segpipe;
using namespace segpipe::gputest;
namespace fs = std::filesystem;

namespace {
// The host's greedy choice, as generate makes it.
int32_t host_argmax(const std::vector<float>& v) {
  Sampler greedy(SamplingParams{});
  return greedy.next(v.data(), static_cast<int>(v.size()));
}
}  // namespace

int main(int argc, char** argv) {
  const GpuKernels kernels = take_gpu_kernels_arg(argc, argv);
  if (argc > 1) {
    std::fprintf(stderr, "usage: test_cuda_synthetic [--gpu-kernels=auto|portable]\n");
    return 2;
  }
  if (const int rc = gpu_start("test_cuda_synthetic"); rc >= 0) return rc;
  Checks c;
  std::string tmpl = (fs::temp_directory_path() / "segpipe-cuda-synth-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    std::printf("test_cuda_synthetic: error: mkdtemp failed\n");
    return 1;
  }
  fs::path dir = tmpl;
  try {
    for (std::string preset : {"tiny-qwen3-omni", "tiny-qwen3", "tiny-qwen2-moe"}) {
      MakeModelOptions o;
      o.preset = preset;
      o.out_dir = dir.string();
      o.seed = 7;
      make_synthetic_model(o);
      ModelConfig cfg = read_model_config(dir.string());
      std::vector<int32_t> ids = {1, 17, 300, 42, 5, 511, 8, 99, 123};
      for (std::string dtype : {"float32", "bfloat16"}) {
        RunPlan p = default_plan(dir.string(), cfg);
        p.max_seq = 64;
        for (auto& s : p.segments) s.device = Device{Device::Type::cuda, 0}, s.dtype = *parse_compute_dtype(dtype);
        CudaRunnerOptions from_files, from_formula;
        from_files.kernels = from_formula.kernels = kernels;
        from_formula.synthetic = true;
        from_formula.seed = 7;
        auto a = make_cuda_runner(p, cfg, from_files);
        auto b = make_cuda_runner(p, cfg, from_formula);
        std::vector<float> la, lb;
        a->step(ids.data(), int64_t(ids.size()), 0, true, nullptr, la);
        b->step(ids.data(), int64_t(ids.size()), 0, true, nullptr, lb);
        bool same = la.size() == lb.size() && std::memcmp(la.data(), lb.data(), la.size() * 4) == 0;
        c.expect(same && a->weight_bytes() == b->weight_bytes(),
                 "%s %s: logits from checkpoint files and from the GPU formula are %s (%zu values)", preset.c_str(),
                 dtype.c_str(), same ? "bit-identical" : "DIFFERENT", la.size());
        // decode steps too (graph replay after the first)
        int32_t next = 3;
        bool dsame = true;
        for (int i = 0; i < 4; i++) {
          a->step(&next, 1, int64_t(ids.size()) + i, false, nullptr, la);
          b->step(&next, 1, int64_t(ids.size()) + i, false, nullptr, lb);
          dsame &= std::memcmp(la.data(), lb.data(), la.size() * 4) == 0;
          next = (next * 31 + 7) % cfg.vocab;
        }
        c.expect(dsame, "%s %s: 4 decode steps bit-identical", preset.c_str(), dtype.c_str());
        // Greedy decoding chained on the device (decode_greedy: the next token chosen by a kernel, no
        // host round trip) against the host loop (step(), then the host's first-maximum argmax),
        // with and without graphs: the same tokens and the same last logits, bit for bit.
        for (const bool graphs : {true, false}) {
          CudaRunnerOptions go = from_formula;
          go.graphs = graphs;
          auto r = make_cuda_runner(p, cfg, go);
          const int n = 7;
          const int64_t p0 = int64_t(ids.size());
          std::vector<float> l;
          r->step(ids.data(), p0, 0, false, nullptr, l);
          const int32_t first = host_argmax(l);
          std::vector<int32_t> host_tokens;
          int32_t tok = first;
          for (int i = 0; i < n; i++) {
            r->step(&tok, 1, p0 + i, false, nullptr, l);
            tok = host_argmax(l);
            host_tokens.push_back(tok);
          }
          const std::vector<float> host_last = l;
          const std::vector<int32_t> dev_tokens = r->decode_greedy(first, p0, n);
          std::vector<float> dev_last(host_last.size());
          SEGPIPE_CUDA_CHECK(cudaMemcpy(dev_last.data(), r->logits_device(), dev_last.size() * 4, cudaMemcpyDeviceToHost));
          // once more from the same point: the chain's graph replayed, not captured
          const std::vector<int32_t> again = r->decode_greedy(first, p0, n);
          c.expect(dev_tokens == host_tokens && again == host_tokens && dev_last == host_last,
                   "%s %s, graphs %s: %d greedy steps chained on the device give the host loop's tokens (%s, again "
                   "%s) and last logits (%s)",
                   preset.c_str(), dtype.c_str(), graphs ? "on" : "off", n,
                   dev_tokens == host_tokens ? "same" : "DIFFERENT", again == host_tokens ? "same" : "DIFFERENT",
                   dev_last == host_last ? "bit-identical" : "DIFFERENT");
        }
        {
          // A longer prefill after the decode graph was captured grows the scratch buffers the graph
          // uses: the next decode steps must capture again (cuda::buffer_epoch), not replay freed
          // addresses. Against a fresh runner doing the same prefill and steps.
          std::vector<int32_t> longer(40);
          for (size_t i = 0; i < longer.size(); i++) longer[i] = int32_t((i * 131 + 17) % size_t(cfg.vocab));
          auto r = make_cuda_runner(p, cfg, from_formula);
          auto fresh = make_cuda_runner(p, cfg, from_formula);
          std::vector<float> l, lf;
          r->step(ids.data(), int64_t(ids.size()), 0, false, nullptr, l);
          int32_t tok = 9;
          for (int i = 0; i < 3; i++) r->step(&tok, 1, int64_t(ids.size()) + i, false, nullptr, l);
          r->step(longer.data(), 40, 0, false, nullptr, l);
          fresh->step(longer.data(), 40, 0, false, nullptr, lf);
          bool ok = l == lf;
          for (int i = 0; i < 3; i++) {
            r->step(&tok, 1, 40 + i, false, nullptr, l);
            fresh->step(&tok, 1, 40 + i, false, nullptr, lf);
            ok &= l == lf;
          }
          c.expect(ok, "%s %s: decode after a longer prefill (buffers grown after the graph's capture) equals a "
                   "fresh runner's, bit for bit", preset.c_str(), dtype.c_str());
        }
      }
      fs::remove_all(dir);
    }
    // head_dim 64 (bench-moe) and 128 (Qwen1.5-MoE's shapes: q/k/v biases, no q/k norm, a shared
    // expert): the flash kernel runs for prefills of >= 64 tokens. A 200-token prompt in one step, then
    // as 120 + 80 tokens (the second at pos0 = 120 needs the bf16 copies of rows 0..119 of every
    // layer), then 120 + 80 through the cuBLAS attention path: last-position logits agree up to bf16
    // rounding (a missing or stale K/V row moves them far more).
    for (const char* preset : {"bench-moe", "qwen1.5-moe-a2.7b"}) {
      MakeModelOptions o;
      o.preset = preset;
      o.num_layers = 2;
      ModelConfig cfg = parse_model_config(synthetic_config(o), std::string("preset ") + preset);
      RunPlan p = default_plan(std::string("synthetic:") + preset, cfg);
      p.max_seq = 256;
      for (auto& s : p.segments) s.device = Device{Device::Type::cuda, 0}, s.dtype = ComputeDType::bfloat16;
      CudaRunnerOptions ro;
      ro.synthetic = true;
      ro.kernels = kernels;
      auto r = make_cuda_runner(p, cfg, ro);
      CudaRunnerOptions ro_cublas = ro;  // the same weights, attention through cuBLAS
      ro_cublas.flash_attention = false;
      auto r_cublas = make_cuda_runner(p, cfg, ro_cublas);
      std::vector<int32_t> ids(200);
      uint32_t st = 99;
      for (auto& x : ids) x = int32_t((st = st * 1664525u + 1013904223u) % uint32_t(cfg.vocab));
      std::vector<float> whole, chunked, chunked_cublas, tmp;
      r->step(ids.data(), 200, 0, false, nullptr, whole);
      r->step(ids.data(), 120, 0, false, nullptr, tmp);
      r->step(ids.data() + 120, 80, 120, false, nullptr, chunked);
      r_cublas->step(ids.data(), 120, 0, false, nullptr, tmp);
      r_cublas->step(ids.data() + 120, 80, 120, false, nullptr, chunked_cublas);
      const bool sized = !whole.empty() && chunked.size() == whole.size() && chunked_cublas.size() == whole.size();
      const double e1 = sized ? rel_l2(chunked.data(), whole.data(), whole.size()) : 1.0;
      const double e2 = sized ? rel_l2(chunked.data(), chunked_cublas.data(), whole.size()) : 1.0;
      c.expect(sized && e1 < 1e-2 && e2 < 2e-2,
               "%s: bf16 flash prefill continued at pos0 = 120: last logits vs one 200-token prefill rel_l2=%.2e, vs "
               "the cuBLAS attention path rel_l2=%.2e",
               preset, e1, e2);
    }
  } catch (const std::exception& e) {
    fs::remove_all(dir);
    std::printf("test_cuda_synthetic: error: %s\n", e.what());
    return 1;
  }
  return c.finish("test_cuda_synthetic");
}
