#include "segments/kinds/layers.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "segments/core/errors.h"
#include "segments/core/finite.h"
#include "segments/kernels/cpu/attention.h"
#include "segments/kernels/cpu/rmsnorm.h"
#include "segments/kernels/cpu/router.h"
#include "segments/kernels/cpu/swiglu.h"
#include "segments/kinds/media_rows.h"

namespace segpipe {

struct LayersSegment::Layer {
  int index = 0;
  bool moe = false;
  std::vector<float> in_norm, post_norm, q_norm, k_norm;  // q_norm/k_norm: when cfg.qk_norm
  std::vector<float> q_bias, k_bias, v_bias;               // when cfg.qkv_bias
  Mat q, k, v, o;
  Mat router;                // MoE: [E, H]
  Mat gate, up, down;        // dense MLP
  Mat sh_gate, sh_up, sh_down, sh_gate_w;  // MoE with a shared expert: its SwiGLU and its [1, H] gate
};

namespace {
void add_bias(float* y, int64_t T, const std::vector<float>& b) {
  const int64_t n = static_cast<int64_t>(b.size());
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < n; i++) y[t * n + i] += b[static_cast<size_t>(i)];
}
}  // namespace

void BankedExperts::run(const ExpertRequest& req) {
  for (ExpertBank* b : banks_)
    if (b->holds_layer(req.layer)) b->compute(req);
}

// A KV cache of the segment's own, where the caller provides none: an anonymous mapping, whose pages
// cost memory only once written.
class LayersSegment::OwnedKv {
 public:
  explicit OwnedKv(size_t floats) : n_(floats) {
    if (!n_) return;
    void* m = mmap(nullptr, n_ * 4, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw RuntimeFailure("cannot allocate a KV cache of " + std::to_string(n_ * 4) + " bytes");
    p_ = static_cast<float*>(m);
  }
  ~OwnedKv() {
    if (p_) munmap(p_, n_ * 4);
  }
  OwnedKv(const OwnedKv&) = delete;
  OwnedKv& operator=(const OwnedKv&) = delete;
  std::span<float> span() const { return {p_, n_}; }

 private:
  float* p_ = nullptr;
  size_t n_ = 0;
};

LayersSegment::LayersSegment(const SegmentParams& params, SegmentEnv& env)
    : Segment(params), cfg_(*env.cfg), pool_(*env.pool), first_(params.layer_first), last_(params.layer_last),
      banks_(params.banks ? env.experts : nullptr), rope_(env.cfg->head_dim, env.cfg->rope_theta) {
  const ModelConfig& cfg = cfg_;
  // The Omni thinker's rotary embedding is M-RoPE (its sections, or the reference's default ones).
  mrope_ = cfg.arch == Arch::Qwen3OmniMoe || !cfg.mrope_section.empty();
  if (mrope_) rope_.set_mrope_sections(cfg.mrope_section);
  const int first = first_, last = last_;
  SEGPIPE_ASSERT(first >= 0 && last < cfg.num_layers && first <= last);
  WeightBinder b(*env.checkpoint, cfg);
  for (int i = first; i <= last; i++) {
    auto L = std::make_unique<Layer>();
    L->index = i;
    L->moe = cfg.is_moe_layer(i);
    auto roles = layer_roles(cfg, i);
    auto role = [&](const std::string& r) -> const TensorRole& {
      for (auto& x : roles)
        if (x.role == r) return x;
      SEGPIPE_ASSERT_MSG(false, "tensor role missing from the table");
      return roles[0];
    };
    L->in_norm = b.vec(role("input_layernorm"));
    L->q = b.mat(role("attn.q_proj"));
    L->k = b.mat(role("attn.k_proj"));
    L->v = b.mat(role("attn.v_proj"));
    L->o = b.mat(role("attn.o_proj"));
    if (cfg.qk_norm) {
      L->q_norm = b.vec(role("attn.q_norm"));
      L->k_norm = b.vec(role("attn.k_norm"));
    }
    if (cfg.qkv_bias) {
      L->q_bias = b.vec(role("attn.q_bias"));
      L->k_bias = b.vec(role("attn.k_bias"));
      L->v_bias = b.vec(role("attn.v_bias"));
    }
    L->post_norm = b.vec(role("post_attention_layernorm"));
    if (L->moe) {
      L->router = b.mat(role("router"));
      if (cfg.shared_expert_intermediate > 0) {
        L->sh_gate = b.mat(role("shared.gate_proj"));
        L->sh_up = b.mat(role("shared.up_proj"));
        L->sh_down = b.mat(role("shared.down_proj"));
        L->sh_gate_w = b.mat(role("shared.gate"));
      }
    } else {
      L->gate = b.mat(role("mlp.gate_proj"));
      L->up = b.mat(role("mlp.up_proj"));
      L->down = b.mat(role("mlp.down_proj"));
    }
    layers_.push_back(std::move(L));
  }
  loaded_ = b.loaded();
  bool any_moe = false;
  for (int i = first; i <= last; i++) any_moe |= cfg.is_moe_layer(i);
  if (!params.banks && any_moe) {
    // One bank over every expert of these layers, in this segment.
    SegmentParams local = params;
    local.kind = SegmentKind::experts;
    local.expert_first = 0;
    local.expert_last = cfg.num_experts - 1;
    local_ = std::make_unique<ExpertsSegment>(local, env);
    local_exec_ = std::make_unique<BankedExperts>(std::vector<ExpertBank*>{local_.get()});
    for (auto& l : local_->loaded()) loaded_.push_back(l);
  }
  // KV storage: the caller's, or the segment's own.
  const int64_t per = kv_floats_per_layer(cfg, env.max_seq);
  const size_t need = static_cast<size_t>(per) * layers_.size();
  std::span<float> kv = env.kv;
  if (kv.empty()) {
    owned_kv_ = std::make_unique<OwnedKv>(need);
    kv = owned_kv_->span();
  }
  if (kv.size() < need)
    throw RuntimeFailure("the KV storage holds " + std::to_string(kv.size()) + " floats, layers " + std::to_string(first) +
                         ".." + std::to_string(last) + " need " + std::to_string(need) + " for " +
                         std::to_string(env.max_seq) + " positions");
  for (size_t i = 0; i < layers_.size(); i++) kv_.push_back({kv.data() + per * i, kv.data() + per * i + per / 2});
  max_seq_ = env.max_seq;
}

LayersSegment::~LayersSegment() = default;

void LayersSegment::step(const StepIO& io) {
  // Computing in out, not in in: see StepIO::out.
  if (io.hidden() != io.out && io.T > 0)  // a negative T is refused below, before any use
    std::memcpy(io.out, io.hidden(), static_cast<size_t>(io.T * cfg_.hidden) * sizeof(float));
  forward(io.out, io);
}

// Qwen3-Omni's extras are checked before the step changes anything, so a refused step leaves x as it was.
void LayersSegment::check_media_inputs(const StepIO& io) const {
  if ((io.rope_positions || io.rope_delta != 0) && !mrope_)
    throw InputError("M-RoPE positions were given to layers of a " + std::string(cfg_.arch_name()) +
                     " model, which has no M-RoPE");
  // Decoding after a prompt with images: positions pos0 + t + delta must stay >= 0 and far from overflow.
  const int64_t lim = int64_t{1} << 31;
  if (io.rope_delta < -lim || io.rope_delta > lim || (io.T > 0 && io.pos0 + io.rope_delta < 0))
    throw InputError("rope delta " + std::to_string(io.rope_delta) + " at position " + std::to_string(io.pos0) +
                     " gives a negative or out-of-range M-RoPE position");
  check_media_rows(io.deepstack, io.T, "DeepStack rows for layers " + std::to_string(first_) + ".." + std::to_string(last_));
}

void LayersSegment::forward(float* x, const StepIO& io) {
  const int64_t T = io.T, pos0 = io.pos0;
  BoundaryObserver* obs = io.observer;
  // Written as pos0 > max_seq_ - T so that no sum can overflow: the KV cache is written at
  // (pos0 + t) * kv_dim, and a negative or huge pos0 from an input file must never reach that.
  if (T < 0 || pos0 < 0 || T > max_seq_ || pos0 > max_seq_ - T)
    throw RuntimeFailure("positions " + std::to_string(pos0) + " + " + std::to_string(T) +
                         " tokens do not fit the KV cache (0.." + std::to_string(max_seq_) + " positions)");
  check_media_inputs(io);
  const int64_t H = cfg_.hidden, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), hd = cfg_.head_dim;
  h_.resize(static_cast<size_t>(T * H));
  q_.resize(static_cast<size_t>(T * qd));
  k_.resize(static_cast<size_t>(T * kvd));
  v_.resize(static_cast<size_t>(T * kvd));
  att_.resize(static_cast<size_t>(T * qd));
  o_.resize(static_cast<size_t>(T * H));
  ExpertExecutor* exec = local_exec_ ? local_exec_.get() : banks_;
  for (size_t li = 0; li < layers_.size(); li++) {
    Layer& L = *layers_[li];
    KvLayer& kv = kv_[li];
    // Attention block
    rmsnorm(x, T, H, L.in_norm.data(), cfg_.rms_eps, h_.data());
    linear(pool_, h_.data(), T, L.q, q_.data());
    linear(pool_, h_.data(), T, L.k, k_.data());
    linear(pool_, h_.data(), T, L.v, v_.data());
    if (cfg_.qkv_bias) {
      add_bias(q_.data(), T, L.q_bias);
      add_bias(k_.data(), T, L.k_bias);
      add_bias(v_.data(), T, L.v_bias);
    }
    if (cfg_.qk_norm) {  // q/k RMSNorm over head_dim, before RoPE (as the reference applies them)
      rmsnorm(q_.data(), T * cfg_.num_heads, hd, L.q_norm.data(), cfg_.rms_eps, q_.data());
      rmsnorm(k_.data(), T * cfg_.num_kv_heads, hd, L.k_norm.data(), cfg_.rms_eps, k_.data());
    }
    for (int64_t t = 0; t < T; t++) {
      if (const int32_t* P = io.rope_positions) {  // M-RoPE: (time, height, width) rows [3, T]
        rope_.apply3(q_.data() + t * qd, cfg_.num_heads, P[t], P[T + t], P[2 * T + t]);
        rope_.apply3(k_.data() + t * kvd, cfg_.num_kv_heads, P[t], P[T + t], P[2 * T + t]);
      } else {
        rope_.apply(q_.data() + t * qd, cfg_.num_heads, pos0 + t + io.rope_delta);
        rope_.apply(k_.data() + t * kvd, cfg_.num_kv_heads, pos0 + t + io.rope_delta);
      }
      std::copy(k_.begin() + t * kvd, k_.begin() + (t + 1) * kvd, kv.k + (pos0 + t) * kvd);
      std::copy(v_.begin() + t * kvd, v_.begin() + (t + 1) * kvd, kv.v + (pos0 + t) * kvd);
    }
    attention(pool_, {cfg_.num_heads, cfg_.num_kv_heads, cfg_.head_dim}, q_.data(), T, pos0, kv.k, kv.v, att_.data());
    linear(pool_, att_.data(), T, L.o, o_.data());
    for (int64_t i = 0; i < T * H; i++) x[i] = x[i] + o_[static_cast<size_t>(i)];
    // MLP block
    if (L.moe) {
      const int E = cfg_.num_experts, k = cfg_.top_k;
      if (!exec) throw RuntimeFailure("layer " + std::to_string(L.index) + " has routed experts but no expert bank");
      ExpertStaging st = exec->staging(T, k);
      if (!st.x) {
        h_.resize(static_cast<size_t>(T * H));
        top_e_.resize(static_cast<size_t>(T * k));
        top_w_.resize(static_cast<size_t>(T * k));
        slots_.resize(static_cast<size_t>(T * k * H));
        st = {h_.data(), top_e_.data(), top_w_.data(), slots_.data()};
      }
      rmsnorm(x, T, H, L.post_norm.data(), cfg_.rms_eps, st.x);
      logits_.resize(static_cast<size_t>(T * E));
      linear(pool_, st.x, T, L.router, logits_.data());
      if (obs) obs->on_tensor(Boundary::router_logits(L.index), logits_.data(), T, E);
      route_topk(logits_.data(), T, E, k, cfg_.norm_topk_prob, st.experts, st.weights);
      if (obs) obs->on_route(L.index, st.experts, st.weights, T, k);
      ExpertRequest req{L.index, st.x, T, k, st.experts, st.weights, st.slots};
      exec->run(req);
      mlp_.resize(static_cast<size_t>(T * H));
      combine_expert_outputs(st.slots, st.experts, T, k, static_cast<int>(H), mlp_.data());
      if (cfg_.shared_expert_intermediate > 0) shared_expert(L, st.x, T);
    } else {
      rmsnorm(x, T, H, L.post_norm.data(), cfg_.rms_eps, h_.data());
      const int64_t I = cfg_.intermediate;
      g_.resize(static_cast<size_t>(T * I));
      u_.resize(static_cast<size_t>(T * I));
      mlp_.resize(static_cast<size_t>(T * H));
      linear(pool_, h_.data(), T, L.gate, g_.data());
      linear(pool_, h_.data(), T, L.up, u_.data());
      swiglu(g_.data(), u_.data(), T * I, g_.data());
      linear(pool_, g_.data(), T, L.down, mlp_.data());
    }
    for (int64_t i = 0; i < T * H; i++) x[i] = x[i] + mlp_[static_cast<size_t>(i)];
    // DeepStack: the reference adds level i's rows after decoder layer i has returned (residual included).
    const MediaRows& ds = io.deepstack;
    if (ds.n > 0 && L.index < ds.levels) {
      const float* rows = ds.rows + static_cast<int64_t>(L.index) * ds.n * H;
      for (int64_t r = 0; r < ds.n; r++) {
        float* xr = x + static_cast<int64_t>(ds.index[r]) * H;
        for (int64_t c = 0; c < H; c++) xr[c] = xr[c] + rows[r * H + c];
      }
    }
    if (obs) obs->on_tensor(Boundary::output(L.index), x, T, H);
    // Where the first NaN or Inf appears, named by layer: later layers and the logits only inherit it.
    if (first_non_finite(x, T * H) >= 0) check_finite(x, T, H, "output of layer " + std::to_string(L.index));
  }
}

// The reference adds the shared expert after summing the routed ones: routed + sigmoid(x . w_g) * shared(x),
// x being the post-attention-normed states the routed experts saw.
void LayersSegment::shared_expert(const Layer& L, const float* xn, int64_t T) {
  const int64_t H = cfg_.hidden, S = cfg_.shared_expert_intermediate;
  g_.resize(static_cast<size_t>(T * S));
  u_.resize(static_cast<size_t>(T * S));
  sh_.resize(static_cast<size_t>(T * H));
  sg_.resize(static_cast<size_t>(T));
  linear(pool_, xn, T, L.sh_gate, g_.data());
  linear(pool_, xn, T, L.sh_up, u_.data());
  swiglu(g_.data(), u_.data(), T * S, g_.data());
  linear(pool_, g_.data(), T, L.sh_down, sh_.data());
  linear(pool_, xn, T, L.sh_gate_w, sg_.data());
  for (int64_t t = 0; t < T; t++) {
    const float g = 1.0f / (1.0f + std::exp(-sg_[static_cast<size_t>(t)]));
    for (int64_t i = 0; i < H; i++) mlp_[static_cast<size_t>(t * H + i)] += g * sh_[static_cast<size_t>(t * H + i)];
  }
}

}  // namespace segpipe
