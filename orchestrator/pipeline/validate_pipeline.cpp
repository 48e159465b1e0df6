// PipelineSpec + ModelSummary -> PipelinePlan: the rules of shared/docs/pipeline-yaml.md that need
// the checkpoint or the machine. The first violation found is thrown as one InputError that points
// at the key at fault; rules are checked in the order the doc lists them, so that a file with several
// faults reports the most basic one first (a name clash before a coverage gap it may cause).
//
// Decision on "an experts segment names only MoE layers of such segments": an experts segment's
// `layers: [a, b]` may contain dense layers, which it skips; every MoE layer in the range must belong
// to a layers segment with `experts: banks`, and the range must contain at least one MoE layer.
// Reading the rule strictly (no dense layer in range) would force one experts segment per layer on
// checkpoints with decoder_sparse_step 2 or mlp_only_layers, where MoE layers alternate with dense ones.
#include <algorithm>
#include <map>

#include "orchestrator/pipeline/pipeline.h"
#include "orchestrator/pipeline/yaml_errors.h"

namespace segpipe {

int PipelinePlan::layer_owner(int layer) const {
  SEGPIPE_ASSERT(layer >= 0 && layer < num_layers);
  return layer_owner_[static_cast<size_t>(layer)];
}

int PipelinePlan::expert_owner(int layer, int expert) const {
  SEGPIPE_ASSERT(layer >= 0 && layer < num_layers && expert >= 0 && expert < num_experts);
  return expert_owner_[static_cast<size_t>(layer) * static_cast<size_t>(num_experts) + static_cast<size_t>(expert)];
}

namespace pipeline_detail {

namespace {
// Built by appending: GCC 12 warns falsely (-Wrestrict, PR 105651) on "literal" + std::string&&.
std::string range_text(const IndexRange& r) {
  std::string s = "[";
  s += std::to_string(r.first);
  s += ", ";
  s += std::to_string(r.last);
  s += "]";
  return s;
}
// "layer 3" or "layers 3..7" (likewise for experts)
std::string span_text(const char* one, const char* many, int first, int last) {
  std::string s = first == last ? one : many;
  s += " ";
  s += std::to_string(first);
  if (first != last) {
    s += "..";
    s += std::to_string(last);
  }
  return s;
}
std::string layers_text(int first, int last) { return span_text("layer", "layers", first, last); }
std::string experts_text(int first, int last) { return span_text("expert", "experts", first, last); }
}  // namespace

class Validator {
 public:
  Validator(const PipelineSpec& spec, const ModelSummary& model, int cuda_device_count)
      : spec_(spec), model_(model), cuda_device_count_(cuda_device_count) {}

  PipelinePlan run();

 private:
  [[noreturn]] void fail(SourceMark m, const std::string& message) const { fail_at(spec_.source, m, message); }
  const SegmentSpec& seg(int i) const { return spec_.segments[static_cast<size_t>(i)]; }
  int count() const { return static_cast<int>(spec_.segments.size()); }
  bool is_moe(int layer) const { return model_.moe_layer[static_cast<size_t>(layer)]; }
  int& owner(int layer, int expert) {
    return plan_.expert_owner_[static_cast<size_t>(layer) * static_cast<size_t>(model_.num_experts) +
                               static_cast<size_t>(expert)];
  }
  bool banks(const SegmentSpec& s) const {
    return s.kind == SegmentKind::layers && s.placement.value_or(ExpertPlacement::local) == ExpertPlacement::banks;
  }

  void check_required_ranges() const;
  void check_names() const;
  void check_kinds_and_order();
  void check_layer_range(const SegmentSpec& s) const;
  void check_layer_coverage();
  void check_banks_segments() const;
  void assign_experts();
  void check_expert_coverage() const;
  void check_devices() const;
  void check_hosts();
  PlannedSegment resolve(const SegmentSpec& s) const;

  const PipelineSpec& spec_;
  const ModelSummary& model_;
  int cuda_device_count_;
  PipelinePlan plan_;
};

// The parser guarantees these; a spec built in code (by `segpipe plan`, by tests) may not.
void Validator::check_required_ranges() const {
  for (const SegmentSpec& s : spec_.segments) {
    bool needs_layers = s.kind == SegmentKind::layers || s.kind == SegmentKind::experts;
    if (needs_layers && !s.layers) fail(s.marks.self, "segment '" + s.name + "' has no 'layers'");
    if (s.kind == SegmentKind::experts && !s.experts) fail(s.marks.self, "segment '" + s.name + "' has no 'experts'");
  }
}

void Validator::check_names() const {
  std::map<std::string, int> first_use;
  for (int i = 0; i < count(); ++i) {
    auto [it, inserted] = first_use.emplace(seg(i).name, i);
    if (!inserted)
      fail(seg(i).marks.at("name"), "duplicate segment name '" + seg(i).name + "' (first used at line " +
                                        std::to_string(seg(it->second).marks.at("name").line) + ")");
  }
}

// Exactly one embeddings and one lm_head; data-flow order: embeddings before every layers and lm_head
// segment, lm_head after every layers segment. Experts segments are called from inside layers
// segments, so their place in the list carries no meaning.
void Validator::check_kinds_and_order() {
  // Exactly one embeddings and one lm_head; at most one encoder of each kind (a prompt's audio goes to the
  // one audio tower).
  int encoders[2] = {-1, -1};
  for (SegmentKind k : {SegmentKind::embeddings, SegmentKind::lm_head, SegmentKind::audio_encoder,
                        SegmentKind::vision_encoder}) {
    const bool one = !is_encoder(k);
    int& slot = k == SegmentKind::embeddings ? plan_.embeddings_
                : k == SegmentKind::lm_head  ? plan_.lm_head_
                                             : encoders[k == SegmentKind::vision_encoder];
    for (int i = 0; i < count(); ++i) {
      if (seg(i).kind != k) continue;
      if (slot >= 0)
        fail(seg(i).marks.at("kind"), std::string("second ") + to_string(k) + " segment '" + seg(i).name +
                                          "': a pipeline has " + (one ? "exactly" : "at most") + " one (first: '" +
                                          seg(slot).name + "')");
      slot = i;
    }
    if (slot < 0 && one)
      fail(spec_.marks.at("segments"), std::string("no ") + to_string(k) + " segment: a pipeline has exactly one");
  }
  // Encoders feed the embeddings segment, so they come before it.
  for (int e : encoders)
    if (e > plan_.embeddings_)
      fail(seg(e).marks.at("kind"), std::string(to_string(seg(e).kind)) + " segment '" + seg(e).name +
                                        "' comes after embeddings segment '" + seg(plan_.embeddings_).name +
                                        "': segments are listed in data-flow order, encoders first");
  for (int i = 0; i < plan_.embeddings_; ++i)
    if (seg(i).kind != SegmentKind::experts && !is_encoder(seg(i).kind))
      fail(seg(plan_.embeddings_).marks.at("kind"),
           "embeddings segment '" + seg(plan_.embeddings_).name + "' comes after " + to_string(seg(i).kind) +
               " segment '" + seg(i).name + "': segments are listed in data-flow order, embeddings first");
  for (int i = plan_.lm_head_ + 1; i < count(); ++i)
    if (seg(i).kind == SegmentKind::layers)
      fail(seg(i).marks.at("kind"), "layers segment '" + seg(i).name + "' comes after lm_head segment '" +
                                        seg(plan_.lm_head_).name +
                                        "': segments are listed in data-flow order, lm_head after all layers");
}

void Validator::check_layer_range(const SegmentSpec& s) const {
  if (s.layers->last >= model_.num_layers)
    fail(s.marks.at("layers"), "'layers' " + range_text(*s.layers) + " in segment '" + s.name +
                                   "' is out of bounds: the model has " + std::to_string(model_.num_layers) +
                                   " decoder layers (0.." + std::to_string(model_.num_layers - 1) + ")");
}

// Layers segments, in list order, must tile 0..num_layers-1: each starts where the previous ended.
void Validator::check_layer_coverage() {
  plan_.layer_owner_.assign(static_cast<size_t>(model_.num_layers), -1);
  int next = 0;  // first layer not yet covered
  int previous = -1;
  for (int i = 0; i < count(); ++i) {
    const SegmentSpec& s = seg(i);
    if (s.kind != SegmentKind::layers) continue;
    check_layer_range(s);
    const IndexRange& r = *s.layers;
    if (r.first > next)
      fail(s.marks.at("layers"), "'layers' in segment '" + s.name + "' starts at " + std::to_string(r.first) + ": " +
                                     layers_text(next, r.first - 1) + (next + 1 == r.first ? " is" : " are") +
                                     " in no layers segment" +
                                     (previous < 0 ? "" : " (gap after segment '" + seg(previous).name + "')"));
    if (r.first < next)
      fail(s.marks.at("layers"), "'layers' " + range_text(r) + " in segment '" + s.name + "' overlaps segment '" +
                                     seg(previous).name + "' " + range_text(*seg(previous).layers) +
                                     ": each decoder layer belongs to exactly one layers segment, in order");
    for (int l = r.first; l <= r.last; ++l) plan_.layer_owner_[static_cast<size_t>(l)] = i;
    next = r.last + 1;
    previous = i;
  }
  if (next < model_.num_layers)
    fail(previous < 0 ? spec_.marks.at("segments") : seg(previous).marks.at("layers"),
         layers_text(next, model_.num_layers - 1) + std::string(next + 1 == model_.num_layers ? " is" : " are") +
             " in no layers segment (the model has " + std::to_string(model_.num_layers) + " decoder layers)");
}

// `experts: banks` must move something: a banks segment whose layers are all dense is a mistake, and
// an expert cache size on a segment that holds no experts would silently do nothing.
void Validator::check_banks_segments() const {
  for (const SegmentSpec& s : spec_.segments) {
    if (!banks(s)) continue;
    bool any_moe = false;
    for (int l = s.layers->first; l <= s.layers->last; ++l) any_moe = any_moe || is_moe(l);
    if (!any_moe)
      fail(s.marks.at("experts"),
           "'experts: banks' in segment '" + s.name + "': " +
               (model_.num_experts == 0
                    ? std::string("the model has no routed experts")
                    : layers_text(s.layers->first, s.layers->last) +
                          (s.layers->first == s.layers->last ? " has no routed experts" : " have no routed experts")));
    if (s.max_resident_experts)
      fail(s.marks.at("max_resident_experts"), "'max_resident_experts' in segment '" + s.name +
                                                   "' has no effect: its experts live in experts segments "
                                                   "(experts: banks)");
  }
}

void Validator::assign_experts() {
  plan_.expert_owner_.assign(static_cast<size_t>(model_.num_layers) * static_cast<size_t>(model_.num_experts), -1);
  for (int i = 0; i < count(); ++i) {
    const SegmentSpec& s = seg(i);
    if (s.kind != SegmentKind::experts) continue;
    if (model_.num_experts == 0)
      fail(s.marks.at("kind"), "experts segment '" + s.name + "', but the model has no routed experts");
    check_layer_range(s);
    const IndexRange& e = *s.experts;
    if (e.last >= model_.num_experts)
      fail(s.marks.at("experts"), "'experts' " + range_text(e) + " in segment '" + s.name +
                                      "' is out of bounds: the model has " + std::to_string(model_.num_experts) +
                                      " experts per MoE layer (0.." + std::to_string(model_.num_experts - 1) + ")");
    bool any_moe = false;
    for (int l = s.layers->first; l <= s.layers->last; ++l) {
      if (!is_moe(l)) continue;  // dense layers in range are skipped (see the decision at the top)
      any_moe = true;
      const SegmentSpec& owner_seg = seg(plan_.layer_owner_[static_cast<size_t>(l)]);
      if (!banks(owner_seg))
        fail(s.marks.at("layers"), "'layers' in experts segment '" + s.name + "' names MoE layer " + std::to_string(l) +
                                       ", but its layers segment '" + owner_seg.name +
                                       "' computes its own experts (experts: local); set 'experts: banks' there "
                                       "or narrow the range");
      for (int x = e.first; x <= e.last; ++x) {
        int& o = owner(l, x);
        if (o >= 0)
          fail(s.marks.at("experts"), "expert " + std::to_string(x) + " of layer " + std::to_string(l) +
                                          " is in experts segments '" + seg(o).name + "' and '" + s.name +
                                          "': each expert belongs to exactly one");
        o = i;
      }
    }
    if (!any_moe)
      fail(s.marks.at("layers"), "'layers' " + range_text(*s.layers) + " in experts segment '" + s.name +
                                     "' names no MoE layer (" + layers_text(s.layers->first, s.layers->last) +
                                     (s.layers->first == s.layers->last ? " is dense)" : " are dense)"));
  }
}

// Every expert of every MoE layer in a banks segment has an owner; reports the first missing run.
void Validator::check_expert_coverage() const {
  for (const SegmentSpec& s : spec_.segments) {
    if (!banks(s)) continue;
    for (int l = s.layers->first; l <= s.layers->last; ++l) {
      if (!is_moe(l)) continue;
      for (int x = 0; x < model_.num_experts; ++x) {
        if (plan_.expert_owner(l, x) >= 0) continue;
        int end = x;
        while (end + 1 < model_.num_experts && plan_.expert_owner(l, end + 1) < 0) ++end;
        fail(s.marks.at("experts"), experts_text(x, end) + " of layer " + std::to_string(l) +
                                        (x == end ? " is" : " are") + " in no experts segment (segment '" + s.name +
                                        "' has experts: banks)");
      }
    }
  }
}

void Validator::check_devices() const {
  for (const SegmentSpec& s : spec_.segments) {
    bool own = s.settings.device.has_value();
    Device d = own ? *s.settings.device : spec_.defaults.device.value_or(Device{});
    if (d.type != Device::Type::cuda || d.index < cuda_device_count_) continue;
    std::string visible =
        cuda_device_count_ == 0
            ? "no CUDA device is visible"
            : std::to_string(cuda_device_count_) + " CUDA device" + (cuda_device_count_ == 1 ? " is" : "s are") +
                  " visible (cuda:0" +
                  (cuda_device_count_ == 1 ? "" : "..cuda:" + std::to_string(cuda_device_count_ - 1)) + ")";
    fail(own ? s.marks.at("device") : spec_.defaults_marks.at("device"),
         "segment '" + s.name + "' uses " + to_string(d) + (own ? "" : " (from 'defaults')") +
             ", which does not exist: " + visible);
  }
}

// `hosts:` names the machines; each segment runs on the one its `host` (or the defaults') names, else
// on the first, where segpipe runs. One process cannot span machines, so several hosts need the
// one-process-per-segment transport; a host that runs nothing is almost surely a typo in a `host` key.
void Validator::check_hosts() {
  if (!spec_.hosts) {
    for (const SegmentSpec& s : spec_.segments)
      if (s.settings.host)
        fail(s.marks.at("host"), "'host' in segment '" + s.name + "' names '" + *s.settings.host +
                                     "', but the pipeline has no 'hosts' list");
    if (spec_.defaults.host)
      fail(spec_.defaults_marks.at("host"), "'host' in 'defaults' names '" + *spec_.defaults.host +
                                                "', but the pipeline has no 'hosts' list");
    plan_.hosts.push_back(PlannedHost{"local", "", true});
    return;
  }
  const std::vector<HostSpec>& hosts = *spec_.hosts;
  for (size_t i = 0; i < hosts.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (hosts[i].name == hosts[j].name)
        fail(hosts[i].marks.at("name"), "duplicate host name '" + hosts[i].name + "' in 'hosts' (first at line " +
                                            std::to_string(hosts[j].marks.at("name").line) + ")");
  auto index_of = [&](const std::string& name) {
    for (size_t i = 0; i < hosts.size(); ++i)
      if (hosts[i].name == name) return static_cast<int>(i);
    return -1;
  };
  auto known = [&] {
    std::string k;
    for (const HostSpec& h : hosts) k += (k.empty() ? "" : ", ") + h.name;
    return k;
  };
  if (spec_.defaults.host && index_of(*spec_.defaults.host) < 0)
    fail(spec_.defaults_marks.at("host"),
         "'host' in 'defaults' names '" + *spec_.defaults.host + "', which 'hosts' does not list (" + known() + ")");
  std::vector<int> used(hosts.size(), 0);
  for (const SegmentSpec& s : spec_.segments) {
    if (s.settings.host && index_of(*s.settings.host) < 0)
      fail(s.marks.at("host"), "'host' in segment '" + s.name + "' names '" + *s.settings.host +
                                   "', which 'hosts' does not list (" + known() + ")");
    used[static_cast<size_t>(index_of(s.settings.host.value_or(spec_.defaults.host.value_or(hosts[0].name))))]++;
  }
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (i > 0 && used[i] == 0)
      fail(hosts[i].marks.self, "host '" + hosts[i].name + "' runs no segment (no 'host: " + hosts[i].name + "')");
    // The first host is where segpipe runs: without an address, the launcher starts its process here.
    plan_.hosts.push_back(
        PlannedHost{hosts[i].name, hosts[i].address.value_or(i == 0 ? "localhost" : hosts[i].name), i == 0});
  }
  // A layers segment reaches its banks through its host's bank exchange; a bank on another host through
  // that host's proxy, which carries the exchange over the network (docs/multi-host.md). A GPU's bank
  // exchange lives on its device, which no proxy reaches: across hosts, both run on the CPU.
  auto host_of = [&](const SegmentSpec& s) {
    return index_of(s.settings.host.value_or(spec_.defaults.host.value_or(hosts[0].name)));
  };
  auto on_gpu = [&](const SegmentSpec& s) {
    return s.settings.device.value_or(spec_.defaults.device.value_or(Device{})).type == Device::Type::cuda;
  };
  for (const SegmentSpec& b : spec_.segments) {
    if (b.kind != SegmentKind::experts) continue;
    for (const SegmentSpec& l : spec_.segments)
      if (banks(l) && l.layers->first <= b.layers->last && b.layers->first <= l.layers->last &&
          host_of(l) != host_of(b) && (on_gpu(l) || on_gpu(b)))
        fail(b.settings.host ? b.marks.at("host") : b.marks.self,
             "experts segment '" + b.name + "' runs on host '" + hosts[size_t(host_of(b))].name +
                 "', but layers segment '" + l.name + "', which it serves, runs on host '" +
                 hosts[size_t(host_of(l))].name + "' and one of them on a GPU: a bank on another host than its " +
                 "layers segments runs on the CPU, and so do they");
  }
  if (hosts.size() > 1 && spec_.transport.value_or(Transport::shm) == Transport::inproc)
    fail(spec_.marks.at("transport"), "'transport: inproc' runs every segment in one process, on one machine, but "
                                      "'hosts' lists " + std::to_string(hosts.size()) + " hosts");
}

PlannedSegment Validator::resolve(const SegmentSpec& s) const {
  PlannedSegment p;
  p.name = s.name;
  p.kind = s.kind;
  p.device = s.settings.device.value_or(spec_.defaults.device.value_or(Device{}));
  p.dtype = s.settings.dtype.value_or(spec_.defaults.dtype.value_or(ComputeDType::float32));
  p.threads = s.settings.threads.value_or(spec_.defaults.threads.value_or(kDefaultThreads));
  if (const auto& h = s.settings.host ? s.settings.host : spec_.defaults.host)
    for (size_t i = 0; i < plan_.hosts.size(); ++i)
      if (plan_.hosts[i].name == *h) p.host = static_cast<int>(i);
  p.layers = s.layers;
  p.placement = s.placement.value_or(ExpertPlacement::local);
  p.experts = s.experts;
  p.max_resident_experts = s.max_resident_experts;
  if (s.kind == SegmentKind::experts)
    for (int l = s.layers->first; l <= s.layers->last; ++l)
      if (is_moe(l)) p.moe_layers.push_back(l);
  return p;
}

PipelinePlan Validator::run() {
  plan_.num_layers = model_.num_layers;  // the lookups below use these while the tables are built
  plan_.num_experts = model_.num_experts;
  check_required_ranges();
  check_names();
  check_kinds_and_order();
  check_layer_coverage();
  check_banks_segments();
  assign_experts();
  check_expert_coverage();
  check_devices();
  check_hosts();

  plan_.source = spec_.source;
  plan_.model_dir = spec_.model_dir;
  plan_.tokenizer_dir = spec_.tokenizer_dir;
  plan_.transport = spec_.transport.value_or(Transport::shm);
  plan_.gpu_kernels = spec_.gpu_kernels.value_or(GpuKernels::automatic);
  plan_.gpu_memory = spec_.gpu_memory.value_or(GpuMemory::automatic);
  plan_.restart = spec_.restart.value_or(false);
  plan_.timeout_ms = spec_.timeout_ms.value_or(kDefaultTimeoutMs);
  plan_.generation = spec_.generation.value_or(GenerationSpec{});
  for (const SegmentSpec& s : spec_.segments) plan_.segments.push_back(resolve(s));
  return std::move(plan_);
}

}  // namespace pipeline_detail

PipelinePlan validate_pipeline(const PipelineSpec& spec, const ModelSummary& model, int cuda_device_count) {
  // The summary comes from the caller's reading of config.json; an inconsistent one is a bug there.
  SEGPIPE_ASSERT(model.num_layers >= 0 && model.num_experts >= 0 && cuda_device_count >= 0);
  // A config.json with no layers is bad input, not a bug: say so instead of reporting every range.
  if (model.num_layers == 0) throw InputError(spec.source + ": the model has no decoder layers to place");
  SEGPIPE_ASSERT(model.moe_layer.size() == static_cast<size_t>(model.num_layers));
  for (int l = 0; l < model.num_layers; ++l)
    SEGPIPE_ASSERT(model.num_experts > 0 || !model.moe_layer[static_cast<size_t>(l)]);
  return pipeline_detail::Validator(spec, model, cuda_device_count).run();
}

}  // namespace segpipe
