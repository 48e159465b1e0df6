// What a segment of kind `experts` offers the layers segments it serves: experts [e0, e1] of the MoE
// layers [a, b]. Given a layer's normalized hidden states and the router's choices, it computes, for
// every (token, slot) whose expert it owns, the weighted expert output down(silu(gate(x)) * up(x)) * w.
// The layer that asked combines the slots itself in a fixed order, so any split of the experts into
// banks (in this process or in others) gives the same bits as computing them all locally.
//
// One request and one interface for every backend. The request's pointers are where the bank's backend
// computes (StepIO's rule): host memory on the CPU; device memory, or host memory mapped for the device,
// on a GPU. The dtypes say what x and the slots hold: float32 on the CPU; on a GPU x is in the compute
// dtype and the slots in the dtype the layer's path implies (moe_slot_dtype in segments/kernels/cuda/
// moe.cuh). A bank refuses (RuntimeFailure) dtypes it does not compute in.
#pragma once
#include <cstdint>

#include "segments/core/dtype.h"

namespace segpipe {

struct ExpertRequest {
  int layer = 0;
  const void* x = nullptr;            // [T, H] post-attention-normalized hidden states, in x_dtype
  int64_t T = 0;
  int k = 0;                          // experts per token
  const int32_t* experts = nullptr;   // [T, k]
  const float* weights = nullptr;     // [T, k]
  void* slots = nullptr;              // [T * k, H] in slot_dtype: row t*k+j receives slot j of token t
  DType x_dtype = DType::F32;
  DType slot_dtype = DType::F32;
  // The layer's choice, the same for every bank of the layer: slots grouped by expert with one product
  // per expert (prefill), else per-slot products over the chosen experts' rows (a GPU's decode GEMVs).
  // The CPU groups always (the bits do not depend on it: segments/kernels/cpu/linear.h).
  bool grouped = false;
  // [T, k] on the host: the expert ids again, for a grouped request to a bank that groups on the host
  // while `experts` is device memory (!groups_on_device below); null otherwise.
  const int32_t* host_experts = nullptr;

  // x and the slots as float32 (callers check the dtypes first).
  const float* x_f32() const { return static_cast<const float*>(x); }
  float* slots_f32() const { return static_cast<float*>(slots); }
};

class ExpertBank {
 public:
  virtual ~ExpertBank() = default;
  // Whether requests for `layer` come to this bank (its layer range meets the layer).
  virtual bool holds_layer(int layer) const = 0;
  // Whether it computes `expert` of `layer` (a MoE layer of its range, an expert of its range).
  virtual bool owns(int layer, int expert) const = 0;
  // Fills the rows of req.slots for the slots it owns; other rows are left untouched. On a GPU: ordered
  // after the work already on the caller's stream, and before the work the caller puts on it next.
  virtual void compute(const ExpertRequest& req) = 0;
  // Whether a grouped request of T tokens, top-k, is served from req.experts alone, where the request's
  // memory is (no req.host_experts). True on the CPU, whose request memory is the host's; a GPU bank
  // that groups the slots on the host says false, and its layer copies the ids to the host first (a
  // synchronization it spares the banks that say true).
  virtual bool groups_on_device(int64_t T, int k) const {
    (void)T;
    (void)k;
    return true;
  }
};

}  // namespace segpipe
