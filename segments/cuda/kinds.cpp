#include "segments/cuda/kinds.h"

#include <algorithm>
#include <cmath>

#include "segments/cuda/profile.h"
#include "segments/kernels/cuda/attention.cuh"
#include "segments/kernels/cuda/convert.cuh"
#include "segments/kernels/cuda/embed.cuh"
#include "segments/kernels/cuda/gemm.cuh"
#include "segments/kernels/cuda/gemv.cuh"
#include "segments/kernels/cuda/moe.cuh"
#include "segments/kernels/cuda/moe_grouped.cuh"
#include "segments/kernels/cuda/norm.cuh"
#include "segments/kernels/cuda/rope.cuh"
#include "segments/kernels/cuda/router.cuh"
#include "segments/kernels/cuda/swiglu.cuh"
#include "segments/model/tensor_map.h"

namespace segpipe::cuda {

namespace {

size_t numel(const TensorRole& r) {
  size_t n = 1;
  for (int64_t d : r.shape) n *= static_cast<size_t>(d);
  return n;
}

const TensorRole& find_role(const std::vector<TensorRole>& roles, const std::string& name) {
  for (auto& r : roles)
    if (r.role == name) return r;
  SEGPIPE_ASSERT_MSG(false, "tensor role missing from the table");
  return roles[0];
}

char* at(Buffer<char>& b, size_t elems, DType dt) { return b.get() + elems * dtype_size(dt); }

// Copies a device tensor to the host and hands it to the observer.
void observe(Context& ctx, BoundaryObserver* obs, const Boundary& b, const float* d, int64_t rows, int64_t cols,
             std::vector<float>& tmp) {
  tmp.resize(static_cast<size_t>(rows * cols));
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(tmp.data(), d, tmp.size() * 4, cudaMemcpyDeviceToHost, ctx.stream()));
  ctx.sync();
  obs->on_tensor(b, tmp.data(), rows, cols);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
Embeddings::Embeddings(Context& ctx, WeightSource& w, const ModelConfig& cfg)
    : DeviceSegment(gpu_segment_params(SegmentKind::embeddings, ctx, w)),
      ctx_(ctx), dt_(w.options().compute), vocab_(cfg.vocab), hidden_(cfg.hidden) {
  TensorRole r = embed_role(cfg);
  table_.grow(numel(r) * dtype_size(dt_));
  w.matrix(r, table_.get(), dt_);
  ctx_.sync();
}

void Embeddings::forward(const int32_t* d_ids, int64_t T, float* out) {
  embed_gather(d_ids, T, table_.get(), dt_, vocab_, hidden_, out, ctx_.stream());
}

// ---------------------------------------------------------------------------------------------
Experts::Experts(Context& ctx, WeightSource& w, const ModelConfig& cfg, const EngineOptions& opt, int l0, int l1,
                 int e0, int e1)
    : DeviceSegment(gpu_segment_params(SegmentKind::experts, ctx, w, l0, l1, false, e0, e1)),
      ctx_(ctx), cfg_(cfg), opt_(opt), dt_(w.options().compute), l0_(l0), l1_(l1), e0_(e0), e1_(e1) {
  const size_t H = static_cast<size_t>(cfg.hidden), I = static_cast<size_t>(cfg.moe_intermediate);
  const size_t n = static_cast<size_t>(e1 - e0 + 1), es = dtype_size(dt_);
  for (int l = l0; l <= l1; l++) {
    gate_up_.emplace_back();
    down_.emplace_back();
    if (!cfg.is_moe_layer(l)) continue;
    gate_up_.back().grow(n * 2 * I * H * es);
    down_.back().grow(n * H * I * es);
    for (int e = e0; e <= e1; e++) {
      size_t i = static_cast<size_t>(e - e0);
      w.expert(l, e, gate_up_.back().get() + i * 2 * I * H * es, down_.back().get() + i * H * I * es, dt_);
    }
  }
  ctx_.sync();
}

bool Experts::holds_layer(int layer) const {
  return layer >= l0_ && layer <= l1_ && gate_up_[static_cast<size_t>(layer - l0_)].size() > 0;
}

uint64_t Experts::weight_bytes() const {
  uint64_t b = 0;
  for (auto& x : gate_up_) b += x.bytes();
  for (auto& x : down_) b += x.bytes();
  return b;
}

bool Experts::decodes(int layer, int k) const {
  return holds_layer(layer) && e0_ == 0 && e1_ == cfg_.num_experts - 1 && moe_down_combine_fits(k);
}

bool Experts::decode_into(int layer, const void* h, int k, const int32_t* experts, const float* weights, float* x) {
  if (!decodes(layer, k)) return false;
  const int64_t H = cfg_.hidden, I = cfg_.moe_intermediate;
  const size_t li = static_cast<size_t>(layer - l0_);
  act_.grow(static_cast<size_t>(k * I) * dtype_size(dt_));
  moe_gate_up_gemv(h, k, k, experts, e0_, e1_, gate_up_[li].get(), dt_, I, H, act_.get(), ctx_.kernels(),
                   ctx_.stream());
  moe_down_combine(act_.get(), k, experts, weights, down_[li].get(), dt_, I, H, x, ctx_.kernels(), ctx_.stream());
  return true;
}

bool Experts::groups_on_device(int64_t T, int k) const {
  return dt_ == DType::BF16 && opt_.device_grouped &&
         moe_grouped_supported(T, k, cfg_.hidden, cfg_.moe_intermediate, e1_ - e0_ + 1);
}

void Experts::compute(const ExpertRequest& r) {
  if (!holds_layer(r.layer)) return;
  if (r.x_dtype != dt_ || r.slot_dtype != moe_slot_dtype(dt_, r.grouped))
    throw RuntimeFailure(std::string("an expert request in ") + dtype_name(r.x_dtype) + " / " +
                         dtype_name(r.slot_dtype) + " slots to a bank computing in " + dtype_name(dt_));
  const int64_t H = cfg_.hidden, I = cfg_.moe_intermediate, S = r.T * r.k;
  const size_t li = static_cast<size_t>(r.layer - l0_);
  const void* wgu = gate_up_[li].get();
  const void* wd = down_[li].get();
  cudaStream_t st = ctx_.stream();
  if (r.grouped && groups_on_device(r.T, r.k)) {
    // Prefill, grouped on the device: perm_ holds the grouping's workspace, act_ the SwiGLU rows.
    perm_.grow(moe_grouped_workspace_ints(S, e1_ - e0_ + 1));
    act_.grow(static_cast<size_t>(S * I) * dtype_size(dt_));
    moe_grouped_experts(r.x, r.T, r.k, r.experts, r.weights, e0_, e1_, wgu, wd, I, H, perm_.get(), act_.get(),
                        r.slots, ctx_.kernels(), st);
    return;
  }
  if (!r.grouped) {
    // Decode: only the chosen experts' rows are read.
    act_.grow(static_cast<size_t>(S * I) * dtype_size(dt_));
    moe_gate_up_gemv(r.x, S, r.k, r.experts, e0_, e1_, wgu, dt_, I, H, act_.get(), ctx_.kernels(), st);
    moe_down_gemv(act_.get(), S, r.experts, r.weights, e0_, e1_, wd, dt_, I, H, static_cast<float*>(r.slots), st);
    return;
  }
  // Prefill: slots grouped by expert (stable, so each expert's rows keep token order).
  if (!r.host_experts) throw RuntimeFailure("a grouped expert request without the host copy of the expert ids");
  std::vector<int32_t> perm;
  std::vector<int64_t> count(static_cast<size_t>(e1_ - e0_ + 1), 0);
  for (int64_t s = 0; s < S; s++) {
    int e = r.host_experts[s];
    if (e >= e0_ && e <= e1_) count[static_cast<size_t>(e - e0_)]++;
  }
  std::vector<int64_t> off(count.size() + 1, 0);
  for (size_t i = 0; i < count.size(); i++) off[i + 1] = off[i] + count[i];
  const int64_t n = off.back();
  if (n == 0) return;
  perm.resize(static_cast<size_t>(n));
  {
    std::vector<int64_t> fill(off.begin(), off.end() - 1);
    for (int64_t s = 0; s < S; s++) {
      int e = r.host_experts[s];
      if (e >= e0_ && e <= e1_) perm[static_cast<size_t>(fill[static_cast<size_t>(e - e0_)]++)] = static_cast<int32_t>(s);
    }
  }
  const size_t es = dtype_size(dt_);
  perm_.grow(static_cast<size_t>(n));
  xg_.grow(static_cast<size_t>(n * H) * es);
  gu_.grow(static_cast<size_t>(n * 2 * I) * es);
  act_.grow(static_cast<size_t>(n * I) * es);
  d_.grow(static_cast<size_t>(n * H) * es);
  ptrs_.grow(3 * count.size());
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(perm_.get(), perm.data(), perm.size() * 4, cudaMemcpyHostToDevice, st));
  moe_gather_rows(r.x, dt_, perm_.get(), n, r.k, H, xg_.get(), st);
  std::vector<GemmProblem> up, down;
  for (size_t i = 0; i < count.size(); i++) {
    if (count[i] == 0) continue;
    const size_t o = static_cast<size_t>(off[i]);
    up.push_back({xg_.get() + o * H * es, static_cast<const char*>(wgu) + i * 2 * I * H * es,
                  gu_.get() + o * 2 * I * es, count[i]});
    down.push_back({act_.get() + o * I * es, static_cast<const char*>(wd) + i * H * I * es, d_.get() + o * H * es,
                    count[i]});
  }
  gemm_xwT_many(ctx_.cublas(), up, dt_, 2 * I, H, ptrs_.get(), opt_.grouped_gemm, st);
  swiglu_rows(gu_.get(), dt_, n, I, act_.get(), dt_, st);
  gemm_xwT_many(ctx_.cublas(), down, dt_, H, I, ptrs_.get(), opt_.grouped_gemm, st);
  moe_scatter_weighted(d_.get(), dt_, perm_.get(), r.weights, n, H, r.slots, moe_slot_dtype(dt_, true), st);
}

// ---------------------------------------------------------------------------------------------
// What a layer holds follows the layer description (ModelConfig: qk_norm, qkv_bias,
// shared_expert_intermediate), never the architecture; a part the layer lacks is an empty buffer, whose
// null pointer tells the kernels to skip it.
struct Layers::Layer {
  int index = 0;
  bool moe = false;
  bool shared = false;  // an MoE layer with a shared expert
  Buffer<float> in_norm, post_norm, q_norm, k_norm;  // q_norm / k_norm: where cfg.qk_norm
  Buffer<float> qkv_bias;                        // where cfg.qkv_bias: [q_dim + 2 kv_dim], laid out as a qkv row
  Buffer<char> qkv, o, router, gate_up, down;  // compute dtype
  // The shared expert (compute dtype): gate and up stacked [2S, H] as the dense MLP's gate_up, down
  // [H, S], and its sigmoid gate's [1, H] row.
  Buffer<char> sh_gate_up, sh_down, sh_gate;
  Buffer<float> kv;                              // K [max_seq, kv_dim] then V [max_seq, kv_dim]
};

Layers::Layers(Context& ctx, WeightSource& w, const ModelConfig& cfg, const EngineOptions& opt, int first, int last,
               bool local_experts, int64_t max_seq)
    : DeviceSegment(gpu_segment_params(SegmentKind::layers, ctx, w, first, last, !local_experts)),
      ctx_(ctx), cfg_(cfg), opt_(opt), dt_(w.options().compute), first_(first), last_(last), max_seq_(max_seq) {
  SEGPIPE_ASSERT(first >= 0 && last < cfg.num_layers && first <= last);
  const size_t H = static_cast<size_t>(cfg.hidden), qd = static_cast<size_t>(cfg.q_dim()),
               kvd = static_cast<size_t>(cfg.kv_dim()), es = dtype_size(dt_);
  for (int i = first; i <= last; i++) {
    auto L = std::make_unique<Layer>();
    L->index = i;
    L->moe = cfg.is_moe_layer(i);
    L->shared = L->moe && cfg.shared_expert_intermediate > 0;
    auto roles = layer_roles(cfg, i);
    auto vec = [&](const char* role, Buffer<float>& b) {
      const TensorRole& r = find_role(roles, role);
      b.grow(numel(r));
      w.vector_f32(r, b.get());
    };
    vec("input_layernorm", L->in_norm);
    vec("post_attention_layernorm", L->post_norm);
    if (cfg.qk_norm) {
      vec("attn.q_norm", L->q_norm);
      vec("attn.k_norm", L->k_norm);
    }
    if (cfg.qkv_bias) {
      L->qkv_bias.grow(qd + 2 * kvd);
      w.vector_f32(find_role(roles, "attn.q_bias"), L->qkv_bias.get());
      w.vector_f32(find_role(roles, "attn.k_bias"), L->qkv_bias.get() + qd);
      w.vector_f32(find_role(roles, "attn.v_bias"), L->qkv_bias.get() + qd + kvd);
    }
    // q, k and v stacked into one [q_dim + 2 kv_dim, H] matrix: one product per step.
    L->qkv.grow((qd + 2 * kvd) * H * es);
    w.matrix(find_role(roles, "attn.q_proj"), L->qkv.get(), dt_);
    w.matrix(find_role(roles, "attn.k_proj"), at(L->qkv, qd * H, dt_), dt_);
    w.matrix(find_role(roles, "attn.v_proj"), at(L->qkv, (qd + kvd) * H, dt_), dt_);
    L->o.grow(H * qd * es);
    w.matrix(find_role(roles, "attn.o_proj"), L->o.get(), dt_);
    if (L->moe) {
      const TensorRole& r = find_role(roles, "router");
      L->router.grow(numel(r) * es);
      w.matrix(r, L->router.get(), dt_);
      if (L->shared) {
        const size_t S = static_cast<size_t>(cfg.shared_expert_intermediate);
        L->sh_gate_up.grow(2 * S * H * es);
        w.matrix(find_role(roles, "shared.gate_proj"), L->sh_gate_up.get(), dt_);
        w.matrix(find_role(roles, "shared.up_proj"), at(L->sh_gate_up, S * H, dt_), dt_);
        L->sh_down.grow(H * S * es);
        w.matrix(find_role(roles, "shared.down_proj"), L->sh_down.get(), dt_);
        L->sh_gate.grow(H * es);
        w.matrix(find_role(roles, "shared.gate"), L->sh_gate.get(), dt_);
      }
    } else {
      const size_t I = static_cast<size_t>(cfg.intermediate);
      L->gate_up.grow(2 * I * H * es);
      w.matrix(find_role(roles, "mlp.gate_proj"), L->gate_up.get(), dt_);
      w.matrix(find_role(roles, "mlp.up_proj"), at(L->gate_up, I * H, dt_), dt_);
      L->down.grow(H * I * es);
      w.matrix(find_role(roles, "mlp.down_proj"), L->down.get(), dt_);
    }
    L->kv.grow(2 * static_cast<size_t>(max_seq) * kvd);
    layers_.push_back(std::move(L));
  }
  bool any_moe = false;
  for (int i = first; i <= last; i++) any_moe |= cfg.is_moe_layer(i);
  if (local_experts && any_moe)
    local_ = std::make_unique<Experts>(ctx, w, cfg, opt, first, last, 0, cfg.num_experts - 1);
  for (auto& L : layers_) kv_.push_back(L->kv.get());
  counter_.grow(1);
  SEGPIPE_CUDA_CHECK(cudaMemsetAsync(counter_.get(), 0, sizeof(unsigned), ctx.stream()));
  {
    AttnShape as{cfg.num_heads, cfg.num_kv_heads, cfg.head_dim};
    attn_part_.grow(attention_decode_scratch_floats(as));
    attn_counters_.grow(static_cast<size_t>(cfg.num_heads));
    SEGPIPE_CUDA_CHECK(cudaMemsetAsync(attn_counters_.get(), 0, attn_counters_.bytes(), ctx.stream()));
  }
  auto f = rope_inv_freq(cfg.head_dim, cfg.rope_theta);
  inv_freq_.grow(f.size());
  SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(inv_freq_.get(), f.data(), f.size() * 4, cudaMemcpyHostToDevice, ctx.stream()));
  ctx_.sync();
}

Layers::~Layers() = default;

void Layers::bind_kv(float* base) {
  const int64_t per = kv_floats_per_layer(cfg_, max_seq_);
  for (size_t i = 0; i < layers_.size(); i++) {
    layers_[i]->kv = Buffer<float>();
    kv_[i] = base + static_cast<int64_t>(i) * per;
  }
}

uint64_t Layers::weight_bytes() const {
  uint64_t b = local_ ? local_->weight_bytes() : 0;
  for (auto& L : layers_)
    b += L->in_norm.bytes() + L->post_norm.bytes() + L->q_norm.bytes() + L->k_norm.bytes() + L->qkv_bias.bytes() +
         L->qkv.bytes() + L->o.bytes() + L->router.bytes() + L->gate_up.bytes() + L->down.bytes() +
         L->sh_gate_up.bytes() + L->sh_down.bytes() + L->sh_gate.bytes();
  return b;
}

uint64_t Layers::kv_bytes() const {
  return static_cast<uint64_t>(layers_.size()) * static_cast<uint64_t>(kv_floats_per_layer(cfg_, max_seq_)) * 4;
}

void Layers::ensure_scratch(int64_t T) {
  if (T <= cap_) return;
  const size_t t = static_cast<size_t>(T), H = static_cast<size_t>(cfg_.hidden),
               qd = static_cast<size_t>(cfg_.q_dim()), kvd = static_cast<size_t>(cfg_.kv_dim()),
               es = dtype_size(dt_);
  const size_t k = static_cast<size_t>(std::max(cfg_.top_k, 1)), E = static_cast<size_t>(std::max(cfg_.num_experts, 1));
  // gu_ / act_ serve the dense MLP and the shared expert, one after the other
  const size_t I = static_cast<size_t>(std::max({cfg_.intermediate, cfg_.shared_expert_intermediate, 1}));
  h_.grow(t * H * es);
  qkv_.grow(t * (qd + 2 * kvd));
  q_.grow(t * qd);
  att_.grow(t * qd * es);
  logits_.grow(t * E);
  experts_.grow(t * k);
  weights_.grow(t * k);
  slots_.grow(t * k * H);
  gu_.grow(t * 2 * I);
  act_.grow(t * I * es);
  if (cfg_.shared_expert_intermediate > 0) {
    shared_.grow(t * H);
    shared_gate_.grow(t);
  }
  cap_ = T;
}

void Layers::forward(float* x, int64_t T, int64_t pos0, const int32_t* d_pos0, const std::vector<ExpertBank*>& banks,
                     BoundaryObserver* obs) {
  // Written as pos0 > max_seq_ - T so that no sum can overflow: the KV cache is written at
  // (pos0 + t) * kv_dim, and a negative or huge pos0 from an input file must never reach that.
  if (T < 0 || pos0 < 0 || T > max_seq_ || pos0 > max_seq_ - T)
    throw RuntimeFailure("positions " + std::to_string(pos0) + " + " + std::to_string(T) +
                         " tokens do not fit the KV cache (0.." + std::to_string(max_seq_) + " positions)");
  ensure_scratch(T);
  cudaStream_t st = ctx_.stream();
  cublasHandle_t cb = ctx_.cublas();
  const int64_t H = cfg_.hidden, qd = cfg_.q_dim(), kvd = cfg_.kv_dim();
  const float eps = cfg_.rms_eps;
  const float scale = static_cast<float>(std::pow(static_cast<double>(cfg_.head_dim), -0.5));
  const bool attn_gemm = T >= opt_.attn_gemm_min_tokens;
  const AttnShape ashape{cfg_.num_heads, cfg_.num_kv_heads, cfg_.head_dim};
  const bool flash = attn_gemm && dt_ == DType::BF16 && opt_.flash_attention && attention_flash_supported(ashape);
  if (flash) {
    kb_.grow(static_cast<size_t>((pos0 + T) * kvd) * 2);
    vb_.grow(static_cast<size_t>((pos0 + T) * kvd) * 2);
  } else if (attn_gemm) {
    scores_.grow(static_cast<size_t>(cfg_.num_heads * T * (pos0 + T)));
    att_f32_.grow(static_cast<size_t>(T * qd));
  }
  const bool fused = T == 1 && opt_.fused_decode;
  const KernelPath& kp = ctx_.kernels();
  // The fused decode kernels ask L2 for two later matrices while the memory idles (where the path has
  // the bulk L2 prefetch): the o_proj matrix during the attention and the next layer's q/k/v during
  // the router (mask 9, the default of the former prefetch switch: faster on an H100, no change on an
  // H200). The other prefetches (the experts' down matrices during gate/up, q/k/v during down, o_proj
  // during q/k/v) and keeping the lines in L2 (evict_last) were slower and were removed on 2026-12-07
  // (third session); figures in docs/benchmarks-cuda.md.
  const uint64_t es = dtype_size(dt_);
  for (size_t li = 0; li < layers_.size(); li++) {
    Layer& L = *layers_[li];
    PhaseTimer pt(ctx_);
    float* kc = kv_[li];
    float* vc = kc + max_seq_ * kvd;
    // Attention block
    if (fused) {
      gemv_rmsnorm(x, L.in_norm.get(), eps, L.qkv.get(), dt_, qd + 2 * kvd, H, qkv_.get(), false, nullptr, kp, st);
    } else {
      rmsnorm(x, T, H, L.in_norm.get(), eps, h_.get(), dt_, st);
      gemm_xwT(cb, h_.get(), L.qkv.get(), dt_, T, qd + 2 * kvd, H, qkv_.get(), qd + 2 * kvd, 0.0f);
    }
    if (flash)
      // The flash kernel's operands written by the same pass: q as bf16, and the new K/V rows' bf16
      // copies beside the float32 cache rows.
      qk_norm_rope_kv_bf16(qkv_.get(), T, d_pos0, {cfg_.num_heads, cfg_.num_kv_heads, cfg_.head_dim},
                           L.qkv_bias.get(), L.q_norm.get(), L.k_norm.get(), eps, inv_freq_.get(), q_.get(), kc, vc,
                           kb_.get(), vb_.get(), st);
    else if (!fused)
      qk_norm_rope_kv(qkv_.get(), T, d_pos0, {cfg_.num_heads, cfg_.num_kv_heads, cfg_.head_dim}, L.qkv_bias.get(),
                      L.q_norm.get(), L.k_norm.get(), eps, inv_freq_.get(), q_.get(), kc, vc, st);
    pt.mark("norm+qkv+rope");
    if (flash) {
      // bf16 copies of the earlier rows (a prompt continued at pos0 > 0; kb_/vb_ are shared by the
      // layers, so they are made again per layer), then the fused kernel
      convert(kc, DType::F32, kb_.get(), DType::BF16, pos0 * kvd, st);
      convert(vc, DType::F32, vb_.get(), DType::BF16, pos0 * kvd, st);
      attention_flash(q_.get(), DType::BF16, T, pos0, ashape, kb_.get(), vb_.get(), scale, att_.get(), dt_, kp, st);
    } else if (attn_gemm)
      attention_gemm(cb, q_.get(), T, pos0, ashape, kc, vc, scale, dt_ == DType::BF16, scores_.get(),
                     att_f32_.get(), att_.get(), dt_, st);
    else if (fused)
      // bias, q/k-norm, RoPE and the KV write folded in (the o_proj weights asked into L2 meanwhile)
      attention_decode_rope(qkv_.get(), d_pos0, ashape, L.qkv_bias.get(), L.q_norm.get(), L.k_norm.get(), eps,
                            inv_freq_.get(), kc, vc, scale, att_.get(), dt_, attn_part_.get(), attn_counters_.get(),
                            L.o.get(), uint64_t(H * qd) * es, kp, st);
    else
      attention(q_.get(), T, d_pos0, {cfg_.num_heads, cfg_.num_kv_heads, cfg_.head_dim}, kc, vc, scale, att_.get(),
                dt_, st);
    pt.mark("attention");
    // x += att · Wo^T (the residual add folded into the product: beta = 1)
    if (fused)
      gemv(att_.get(), dt_, L.o.get(), dt_, H, qd, x, true, kp, st);
    else
      gemm_xwT(cb, att_.get(), L.o.get(), dt_, T, H, qd, x, H, 1.0f);
    // MLP block
    if (!fused || !L.moe) rmsnorm(x, T, H, L.post_norm.get(), eps, h_.get(), dt_, st);
    pt.mark("o_proj+norm");
    if (L.moe) {
      const int E = cfg_.num_experts, k = cfg_.top_k;
      const Layer* next_layer = li + 1 < layers_.size() ? layers_[li + 1].get() : nullptr;
      if (fused) {
        router_fused(x, L.post_norm.get(), eps, L.router.get(), dt_, E, H, logits_.get(), h_.get(), k,
                     cfg_.norm_topk_prob, experts_.get(), weights_.get(), counter_.get(), kp, st,
                     next_layer ? next_layer->qkv.get() : nullptr,
                     next_layer ? uint64_t(qd + 2 * kvd) * uint64_t(H) * es : 0);
        if (obs) observe(ctx_, obs, Boundary::router_logits(L.index), logits_.get(), T, E, host_tmp_);
      } else {
        gemm_xwT(cb, h_.get(), L.router.get(), dt_, T, E, H, logits_.get(), E, 0.0f);
        if (obs) observe(ctx_, obs, Boundary::router_logits(L.index), logits_.get(), T, E, host_tmp_);
        route_topk(logits_.get(), T, E, k, cfg_.norm_topk_prob, experts_.get(), weights_.get(), st);
      }
      pt.mark("router+topk");
      ExpertRequest req;
      req.layer = L.index;
      req.x = h_.get();
      req.T = T;
      req.k = k;
      req.experts = experts_.get();
      req.weights = weights_.get();
      req.slots = slots_.get();
      bool grouped = T > opt_.gemv_max_tokens;
      req.grouped = grouped;
      req.x_dtype = dt_;
      req.slot_dtype = moe_slot_dtype(dt_, grouped);
      // The ids go to the host (a synchronization) only for banks that group there.
      bool host_groups = false;
      if (grouped) {
        if (local_)
          host_groups = !local_->groups_on_device(T, k);
        else
          for (ExpertBank* b : banks)
            if (b->holds_layer(L.index) && !b->groups_on_device(T, k)) host_groups = true;
      }
      if (host_groups || obs) {
        host_experts_.resize(static_cast<size_t>(T * k));
        SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(host_experts_.data(), experts_.get(), host_experts_.size() * 4,
                                           cudaMemcpyDeviceToHost, st));
        ctx_.sync();
        if (grouped) req.host_experts = host_experts_.data();
      }
      if (obs) {
        std::vector<float> w(static_cast<size_t>(T * k));
        SEGPIPE_CUDA_CHECK(cudaMemcpyAsync(w.data(), weights_.get(), w.size() * 4, cudaMemcpyDeviceToHost, st));
        ctx_.sync();
        obs->on_route(L.index, host_experts_.data(), w.data(), T, k);
      }
      // (not with a shared expert: its gated output joins the routed sum before the residual add, in
      // moe_combine_add, as for experts in banks)
      if (fused && !L.shared && local_ &&
          local_->decode_into(L.index, h_.get(), k, experts_.get(), weights_.get(), x)) {
        pt.mark("experts");
        if (obs) observe(ctx_, obs, Boundary::output(L.index), x, T, H, host_tmp_);
        continue;
      }
      bool served = false;
      if (local_) {
        local_->compute(req);
        served = true;
      } else {
        for (ExpertBank* b : banks)
          if (b->holds_layer(L.index)) {
            b->compute(req);
            served = true;
          }
      }
      if (!served) throw RuntimeFailure("layer " + std::to_string(L.index) + " has routed experts but no expert bank");
      pt.mark("experts");
      SharedExpertOut shared;
      if (L.shared) {
        shared_expert(L, T, fused);
        shared = {shared_.get(), shared_gate_.get()};
        pt.mark("shared expert");
      }
      moe_combine_add(slots_.get(), moe_slot_dtype(dt_, grouped), experts_.get(), T, k, H, x, st, shared);
      pt.mark("combine");
    } else {
      const int64_t I = cfg_.intermediate;
      if (fused)
        gemv(h_.get(), dt_, L.gate_up.get(), dt_, 2 * I, H, gu_.get(), false, kp, st);
      else
        gemm_xwT(cb, h_.get(), L.gate_up.get(), dt_, T, 2 * I, H, gu_.get(), 2 * I, 0.0f);
      swiglu_rows(gu_.get(), DType::F32, T, I, act_.get(), dt_, st);
      if (fused)
        gemv(act_.get(), dt_, L.down.get(), dt_, H, I, x, true, kp, st);
      else
        gemm_xwT(cb, act_.get(), L.down.get(), dt_, T, H, I, x, H, 1.0f);
      pt.mark("dense mlp");
    }
    if (obs) observe(ctx_, obs, Boundary::output(L.index), x, T, H, host_tmp_);
  }
}

// The shared expert of an MoE layer on h_ (the post-attention-normed states the routed experts saw):
// shared_ = SwiGLU_shared(h_) and shared_gate_ = h_ . w_g, both float32, for moe_combine_add to add
// as sigmoid(gate) * out after the routed sum. The dense MLP's products and SwiGLU (gu_, act_): the
// single-token GEMVs where the step decodes through the fused kernels, cuBLAS otherwise.
void Layers::shared_expert(const Layer& L, int64_t T, bool fused) {
  const int64_t H = cfg_.hidden, S = cfg_.shared_expert_intermediate;
  cudaStream_t st = ctx_.stream();
  const KernelPath& kp = ctx_.kernels();
  if (fused) {
    gemv(h_.get(), dt_, L.sh_gate_up.get(), dt_, 2 * S, H, gu_.get(), false, kp, st);
    gemv(h_.get(), dt_, L.sh_gate.get(), dt_, 1, H, shared_gate_.get(), false, kp, st);
  } else {
    gemm_xwT(ctx_.cublas(), h_.get(), L.sh_gate_up.get(), dt_, T, 2 * S, H, gu_.get(), 2 * S, 0.0f);
    gemm_xwT(ctx_.cublas(), h_.get(), L.sh_gate.get(), dt_, T, 1, H, shared_gate_.get(), 1, 0.0f);
  }
  swiglu_rows(gu_.get(), DType::F32, T, S, act_.get(), dt_, st);
  if (fused)
    gemv(act_.get(), dt_, L.sh_down.get(), dt_, H, S, shared_.get(), false, kp, st);
  else
    gemm_xwT(ctx_.cublas(), act_.get(), L.sh_down.get(), dt_, T, H, S, shared_.get(), H, 0.0f);
}

// ---------------------------------------------------------------------------------------------
LmHead::LmHead(Context& ctx, WeightSource& w, const ModelConfig& cfg, const void* tied_table,
               const EngineOptions& opt)
    : DeviceSegment(gpu_segment_params(SegmentKind::lm_head, ctx, w)),
      ctx_(ctx), cfg_(cfg), opt_(opt), dt_(w.options().compute), vocab_(cfg.vocab) {
  TensorRole nr = final_norm_role(cfg);
  norm_.grow(numel(nr));
  w.vector_f32(nr, norm_.get());
  if (cfg.tie_word_embeddings) {
    if (tied_table) {
      head_ptr_ = tied_table;
    } else {
      TensorRole r = embed_role(cfg);
      head_.grow(numel(r) * dtype_size(dt_));
      w.matrix(r, head_.get(), dt_);
      head_ptr_ = head_.get();
    }
  } else {
    TensorRole r = lm_head_roles(cfg).back();
    head_.grow(numel(r) * dtype_size(dt_));
    w.matrix(r, head_.get(), dt_);
    head_ptr_ = head_.get();
  }
  ctx_.sync();
}

void LmHead::forward(const float* x, int64_t T, bool all_positions, float* normed, float* logits) {
  const int64_t H = cfg_.hidden;
  cudaStream_t st = ctx_.stream();
  if (!all_positions && opt_.fused_decode) {
    // One row: the final norm folded into the vocabulary product.
    if (normed) rmsnorm(x, T, H, norm_.get(), cfg_.rms_eps, normed, DType::F32, st);
    gemv_rmsnorm(x + (T - 1) * H, norm_.get(), cfg_.rms_eps, head_ptr_, dt_, vocab_, H, logits, false, nullptr,
                 ctx_.kernels(), st);
    return;
  }
  h_.grow(static_cast<size_t>(T * H) * dtype_size(dt_));
  rmsnorm(x, T, H, norm_.get(), cfg_.rms_eps, h_.get(), dt_, st);
  if (normed) rmsnorm(x, T, H, norm_.get(), cfg_.rms_eps, normed, DType::F32, st);
  if (all_positions)
    gemm_xwT(ctx_.cublas(), h_.get(), head_ptr_, dt_, T, vocab_, H, logits, vocab_, 0.0f);
  else
    gemm_xwT(ctx_.cublas(), h_.get() + static_cast<size_t>((T - 1) * H) * dtype_size(dt_), head_ptr_, dt_, 1, vocab_,
             H, logits, vocab_, 0.0f);
}

}  // namespace segpipe::cuda
