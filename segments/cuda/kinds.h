// The segment kinds on the GPU, mirroring segments/kinds/*.h: embeddings, layers (norms, attention
// with its KV cache, router, dense MLPs, local experts), expert banks and the lm_head. Activations
// stay in device memory: the residual stream is float32 [T, H]; matrices and the inputs of the
// matrix products are in the compute dtype (F32: verification; BF16: speed, fp32 accumulation).
// Positions are read from a device int (pos0) so that a decode step can be captured once into a
// CUDA graph and replayed at every position.
//
// Each kind is a Segment (segments/core/segment.h), made by the GPU's makers (cuda_makers.h); StepIO's
// pointers are device pointers or host memory mapped for the device. The step() of each kind is in
// segment_steps.cpp; the methods below it (forward, decode_into) are its fast paths, which the
// segments call among themselves.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "segments/core/boundary_observer.h"
#include "segments/core/expert_bank.h"
#include "segments/core/segment.h"
#include "segments/cuda/device.h"
#include "segments/cuda/weights.h"
#include "segments/model/config.h"

namespace segpipe::cuda {

struct EngineOptions {
  int gemv_max_tokens = 4;     // MoE: up to this many tokens per step, GEMVs over the chosen experts;
                               // above, slots grouped by expert and one GEMM per expert
  bool grouped_gemm = true;    // one cublasGemmGroupedBatchedEx call for a layer's experts
  bool device_grouped = true;  // bf16 prefill: slots grouped on the device and the experts through
                               // moe_grouped.cuh's GEMMs (no host copy of the routing, no sync);
                               // false, or float32: host grouping and cuBLAS
  int attn_gemm_min_tokens = 64;  // prefills of at least this many tokens: attention through cuBLAS
  // Decode (one-token steps) through the fused single-token kernels (gemv.cuh: RMSNorm folded into
  // the products, the router with its top-k in one kernel, expert down-projection + combine in one)
  // rather than the library path (cuBLAS products, separate one-block kernels). false: the library
  // path, which tests compare the fused kernels against.
  bool fused_decode = true;
  // Long prefills in bfloat16 through the fused (flash) attention kernel rather than cuBLAS products
  // over a materialized score matrix (float32 keeps the cuBLAS path).
  bool flash_attention = true;
};

// What the GPU kinds share as segments: their params are what they were built with (the device of
// their context, the compute dtype of their weight source), and what they loaded is what their maker
// saw the weight source upload while it made them (a GPU runner's segments share one weight source).
class DeviceSegment : public Segment {
 public:
  using Segment::Segment;
  const std::vector<LoadedTensor>& loaded() const override { return loaded_; }
  void set_loaded(std::vector<LoadedTensor> tensors) { loaded_ = std::move(tensors); }

 private:
  std::vector<LoadedTensor> loaded_;
};

// The params of a GPU segment of `kind` built on ctx and w with these ranges (segment_steps.cpp).
SegmentParams gpu_segment_params(SegmentKind kind, const Context& ctx, const WeightSource& w, int layer_first = -1,
                                 int layer_last = -1, bool banks = false, int expert_first = -1,
                                 int expert_last = -1);

class Embeddings : public DeviceSegment {
 public:
  Embeddings(Context& ctx, WeightSource& w, const ModelConfig& cfg);
  // io.ids() [T] (checked against vocab() on the host by the caller: they are device memory here) ->
  // io.out [T, H] float32; the observer (if any) gets a host copy (synchronizing).
  void step(const StepIO& io) override;
  // ids: [T] on the device (checked against vocab() on the host); out: [T, H] float32.
  void forward(const int32_t* d_ids, int64_t T, float* out);
  const void* table() const { return table_.get(); }
  int64_t vocab() const { return vocab_; }
  uint64_t weight_bytes() const override { return table_.bytes(); }

 private:
  Context& ctx_;
  DType dt_;
  int64_t vocab_, hidden_;
  Buffer<char> table_;
};

// A bank: experts [e0, e1] of the MoE layers in [l0, l1]. What a layers segment calls for the routed
// experts of its MoE layers when they are not local (segments/core/expert_bank.h; the bank processes
// of a shm run are one workers/cuda_remote_banks.h): the layer calls every bank holding the layer, then
// combines all the slots itself, so the math is one code path wherever the experts run. Its requests:
// device pointers, x in the compute dtype, slots in moe_slot_dtype(compute dtype, grouped) (moe.cuh:
// bf16 for a bf16 grouped request, float32 otherwise; every bank of the layer writes that one dtype).
class Experts : public DeviceSegment, public ExpertBank {
 public:
  Experts(Context& ctx, WeightSource& w, const ModelConfig& cfg, const EngineOptions& opt, int l0, int l1, int e0,
          int e1);
  // A bank has no step of its own (RuntimeFailure): its layers segments call compute().
  void step(const StepIO& io) override;
  ExpertBank* bank() override { return this; }
  // A MoE layer of its range.
  bool holds_layer(int layer) const override;
  bool owns(int layer, int expert) const override;
  int layer_first() const { return l0_; }
  int layer_last() const { return l1_; }
  // Fills the slots of the experts it owns.
  void compute(const ExpertRequest& r) override;
  // Whether a grouped (prefill) request of T tokens is served from the device ids alone
  // (r.host_experts not needed).
  bool groups_on_device(int64_t T, int k) const override;
  // Decode with every expert in this bank (local experts), one token: x += the combined expert
  // outputs, without the slots buffer (moe_down_combine). False (nothing done) where it does not apply.
  bool decode_into(int layer, const void* h, int k, const int32_t* experts, const float* weights, float* x);
  // Whether decode_into applies to this layer and top-k.
  bool decodes(int layer, int k) const;
  uint64_t weight_bytes() const override;

 private:
  Context& ctx_;
  const ModelConfig& cfg_;
  EngineOptions opt_;
  DType dt_;
  int l0_, l1_, e0_, e1_;
  std::vector<Buffer<char>> gate_up_, down_;  // per layer l0..l1 (empty for dense layers)
  Buffer<char> xg_, act_, gu_, d_;  // compute dtype
  Buffer<int32_t> perm_;
  Buffer<void*> ptrs_;
};

class Layers : public DeviceSegment {
 public:
  // local_experts: this segment computes its MoE layers' experts itself (one bank over all experts).
  Layers(Context& ctx, WeightSource& w, const ModelConfig& cfg, const EngineOptions& opt, int first, int last,
         bool local_experts, int64_t max_seq);
  ~Layers() override;
  // io.hidden() [T, H] -> io.out (StepIO: in place when in == out, else in is copied to out first),
  // float32 on the device; the position from io.pos0_at where given (a captured graph replays at every
  // position), else copied to the device here (synchronizing). The banks are use_banks()'s.
  void step(const StepIO& io) override;
  // The banks of its MoE layers when the experts are not local (each layer calls those holding it).
  void use_banks(std::vector<ExpertBank*> banks) { banks_ = std::move(banks); }
  int first() const { return first_; }
  int last() const { return last_; }
  // The KV caches in memory the caller owns (e.g. a device arena shared between processes, so that
  // a restarted worker finds them as they were): layer i of the segment at base + i * kv_floats_per_layer,
  // K rows then V rows. Replaces (frees) the caches the constructor allocated.
  void bind_kv(float* base);
  static int64_t kv_floats_per_layer(const ModelConfig& cfg, int64_t max_seq) { return 2 * max_seq * cfg.kv_dim(); }
  // x: [T, H] float32 on the device, in place. pos0 on the host (capacity checks), d_pos0 the same
  // value on the device. banks serve MoE layers when the experts are not local. With an observer,
  // every boundary is copied to the host (synchronizing).
  void forward(float* x, int64_t T, int64_t pos0, const int32_t* d_pos0, const std::vector<ExpertBank*>& banks,
               BoundaryObserver* obs);
  uint64_t weight_bytes() const override;
  uint64_t kv_bytes() const;

 private:
  struct Layer;
  void ensure_scratch(int64_t T);
  std::vector<ExpertBank*> banks_;  // use_banks()
  Buffer<int32_t> pos0_;            // step() without io.pos0_at: the position, copied here
  void shared_expert(const Layer& L, int64_t T, bool fused);
  Context& ctx_;
  const ModelConfig& cfg_;
  EngineOptions opt_;
  DType dt_;
  int first_, last_;
  int64_t max_seq_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::unique_ptr<Experts> local_;
  Buffer<float> inv_freq_;
  int64_t cap_ = 0;
  Buffer<char> h_, att_, act_;
  Buffer<float> qkv_, q_, logits_, weights_, slots_, gu_, scores_, att_f32_;
  Buffer<float> shared_, shared_gate_;  // a shared expert's output [T, H] and gate logits [T]
  Buffer<char> kb_, vb_;  // flash attention: bf16 copies of the layer's K and V rows
  Buffer<int32_t> experts_;
  Buffer<unsigned> counter_;  // router_fused's completion counter
  Buffer<float> attn_part_;   // attention_decode's partials
  Buffer<unsigned> attn_counters_;
  std::vector<float*> kv_;     // per layer: K [max_seq, kv_dim] then V
  std::vector<int32_t> host_experts_;
  std::vector<float> host_tmp_;
};

class LmHead : public DeviceSegment {
 public:
  // tied_table: the embedding table when the model ties them (shared, not copied), else null.
  // opt: fused_decode chooses the one-row product's kernel.
  LmHead(Context& ctx, WeightSource& w, const ModelConfig& cfg, const void* tied_table,
         const EngineOptions& opt = {});
  // io.hidden() [T, H] -> io.out: logits [T, V] when io.all_positions, else [1, V] (the last
  // position's); io.normed (optional) the final norm's output. The observer (if any) gets host copies
  // of the norm and, with all_positions, of the logits (synchronizing); the caller checks the logits
  // are finite on its own host copy (StepIO's pointers are device memory here).
  void step(const StepIO& io) override;
  // x: [T, H] float32. normed (device, optional): [T, H] float32. logits: [T, V] when all_positions,
  // else [V] for the last position (device, float32).
  void forward(const float* x, int64_t T, bool all_positions, float* normed, float* logits);
  int64_t vocab() const { return vocab_; }
  uint64_t weight_bytes() const override { return head_.bytes() + norm_.bytes(); }

 private:
  Context& ctx_;
  const ModelConfig& cfg_;
  EngineOptions opt_;
  DType dt_;
  int64_t vocab_;
  Buffer<float> norm_;
  Buffer<char> head_;
  const void* head_ptr_ = nullptr;
  Buffer<char> h_;
  Buffer<float> normed_;  // step() with an observer and no io.normed
};

}  // namespace segpipe::cuda
