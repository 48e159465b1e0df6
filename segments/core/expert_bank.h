// What a segment of kind `experts` offers the layers segments it serves: experts [e0, e1] of the MoE
// layers [a, b]. Given a layer's normalized hidden states and the router's choices, it computes, for
// every (token, slot) whose expert it owns, the weighted expert output down(silu(gate(x)) * up(x)) * w.
// The layer that asked combines the slots itself in a fixed order, so any split of the experts into
// banks (in this process or in others) gives the same bits as computing them all locally.
//
// The request is the CPU's (host pointers) for now. The GPU bank (segments/cuda/kinds.h) has its own
// interface, cuda::ExpertBank with cuda::ExpertRequest: device pointers, x in the compute dtype, the
// layer's choice of grouped (prefill) or GEMV (decode) path, slots in the dtype that choice implies. It
// implements this interface next; the request then grows those fields (or becomes the backend's own
// type behind this interface), and holds_layer / compute keep their meaning.
#pragma once
#include <cstdint>

namespace segpipe {

struct ExpertRequest {
  int layer = 0;
  const float* x = nullptr;           // [T, H] post-attention-normalized hidden states
  int64_t T = 0;
  int k = 0;                          // experts per token
  const int32_t* experts = nullptr;   // [T, k]
  const float* weights = nullptr;     // [T, k]
  float* out = nullptr;               // [T * k, H]: row t*k+j receives slot j of token t
};

class ExpertBank {
 public:
  virtual ~ExpertBank() = default;
  // Whether requests for `layer` come to this bank (its layer range meets the layer).
  virtual bool holds_layer(int layer) const = 0;
  // Whether it computes `expert` of `layer` (a MoE layer of its range, an expert of its range).
  virtual bool owns(int layer, int expert) const = 0;
  // Fills the rows of req.out for the slots it owns; other rows are left untouched.
  virtual void compute(const ExpertRequest& req) = 0;
};

}  // namespace segpipe
