#include "orchestrator/planning/pipeline_loader.h"

#include "orchestrator/drivers/multihost.h"

#include "orchestrator/drivers/cuda_ipc.h"
#include "orchestrator/drivers/cuda_runner.h"
#include "orchestrator/planning/pipeline_to_plan.h"
#include "orchestrator/drivers/shm_runner.h"
#include "segments/model/config_file.h"
#include "segments/model/synthetic.h"
#include "segments/core/errors.h"
#include "orchestrator/pipeline/hf_cache.h"

namespace segpipe {

ModelConfig load_model_config(const std::string& model_dir) { return read_model_config(model_dir); }

LoadedPlan load_model_plan(const std::string& model) {
  // A folder, or a Hugging Face repository id found in the local cache (orchestrator/pipeline/hf_cache.h).
  const std::string model_dir = hf::resolve_model(model);
  LoadedPlan lp;
  lp.cfg = load_model_config(model_dir);
  lp.plan = default_plan(model_dir, lp.cfg);
  lp.generation = nlohmann::json::object();
  return lp;
}

LoadedPlan load_pipeline_plan(const std::string& yaml_path) {
  LoadedPlan lp;
  lp.plan = plan_from_pipeline_file(yaml_path, lp.cfg, lp.generation);
  return lp;
}

std::unique_ptr<Runner> make_runner(const RunPlan& plan, const ShmOptions& opt) {
  // Segments on other hosts: the network transport (in-process runs ignore placement: one process).
  if (!plan.inproc && spans_hosts(plan)) {
    CudaShmOptions co;
    if (const std::optional<FormulaWeights> f = read_formula_weights(plan.model_dir)) {
      co.synthetic = true;
      co.seed = f->seed;
    }
    return multihost::make_runner(plan, opt, co);
  }
  bool on_gpu = false;
  for (const SegmentDesc& s : plan.segments) on_gpu |= s.device.is_cuda();
  // Weights given as their formula (make-model --weights formula): only GPU segments can make them.
  const std::optional<FormulaWeights> formula = read_formula_weights(plan.model_dir);
  if (formula)
    for (const SegmentDesc& s : plan.segments)
      if (!s.device.is_cuda())
        throw InputError(plan.source + ": segment '" + s.name + "' runs on the CPU, but " + plan.model_dir + " holds its "
                         "weights as their formula (" + kFormulaWeightsFile + "), which only GPU segments evaluate; "
                         "write the files with `segpipe make-model` without --weights formula");
  if (on_gpu) {
    // inproc: the whole plan on one GPU in this process (segments/cuda); shm: one process per
    // segment, GPU segments sharing device memory through CUDA IPC (workers/cuda_worker.h).
    if (plan.inproc) {
      CudaRunnerOptions ro;
      if (formula) {
        ro.synthetic = true;
        ro.seed = formula->seed;
      }
      return make_cuda_runner(plan, read_model_config(plan.model_dir), ro);
    }
    if (!cuda_backend_built())
      throw InputError(plan.source + ": segments on a cuda device need the CUDA backend, which this build does not "
                       "have (configure with -DSEGPIPE_CUDA=ON)");
    if (formula) {
      CudaShmOptions co;
      co.synthetic = true;
      co.seed = formula->seed;
      return make_shm_runner_cuda(plan, opt, co);
    }
    return make_shm_runner(plan, opt);
  }
  if (plan.inproc) return make_inproc_runner(plan);
  return make_shm_runner(plan, opt);
}

nlohmann::json segment_reports_json(const std::vector<SegmentReport>& r) {
  nlohmann::json a = nlohmann::json::array();
  for (auto& s : r) {
    a.push_back({{"name", s.name},
                 {"kind", s.kind},
                 {"pid", s.pid},
                 {"tensors", s.tensors},
                 {"weight_bytes", s.weight_bytes},
                 {"peak_rss_bytes", s.peak_rss_bytes},
                 {"tensor_names", s.tensor_names}});
    if (!s.host.empty()) a.back()["host"] = s.host;
  }
  return a;
}

}  // namespace segpipe
