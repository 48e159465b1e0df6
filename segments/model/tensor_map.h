// The one table that maps Hugging Face tensor names to roles, per architecture, with the shape each
// role must have. Loaders ask for roles; a missing tensor, a wrong shape or a non-float dtype fails
// with the tensor's name, expected vs actual.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "segments/checkpoint/checkpoint.h"
#include "segments/core/loaded_tensor.h"
#include "segments/core/mat.h"
#include "segments/model/config.h"

namespace segpipe {

struct TensorRole {
  std::string name;            // full checkpoint name
  std::vector<int64_t> shape;  // expected shape
  std::string role;            // e.g. "attn.q_proj", "expert.down_proj"
};

// Roles of the embedding table, the final norm and the lm_head (none when tied).
TensorRole embed_role(const ModelConfig& c);
TensorRole final_norm_role(const ModelConfig& c);
std::vector<TensorRole> lm_head_roles(const ModelConfig& c);
// Roles of decoder layer i except its routed experts (norms, attention, dense MLP or router).
std::vector<TensorRole> layer_roles(const ModelConfig& c, int i);
// Expert weights come in two layouts: one tensor per expert and projection (what save_pretrained
// and the hub write) or fused per layer (transformers 5 in memory: gate_up_proj [E, 2I, H] and
// down_proj [E, H, I]). Both are read as zero-copy views.
enum class ExpertLayout { PerExpert, Fused };
ExpertLayout expert_layout(const Checkpoint& ck, const ModelConfig& c, int layer);
std::vector<TensorRole> expert_roles(const ModelConfig& c, int layer, int expert, ExpertLayout layout);
// Every role of the text model (for inspect: missing / extra / malformed).
std::vector<TensorRole> all_roles(const Checkpoint& ck, const ModelConfig& c);

// Binds roles to views of one checkpoint, checking shape and dtype.
class WeightBinder {
 public:
  WeightBinder(Checkpoint& ck, const ModelConfig& c) : ck_(ck), cfg_(c) {}
  Mat mat(const TensorRole& role, bool populate = true);
  // Norm weights are small: converted to float32 once.
  std::vector<float> vec(const TensorRole& role);
  // One expert's gate, up and down projections, in either layout. populate: fault its pages in now
  // (full residency); selective loading passes false so that an expert is resident only from its
  // first use to its eviction. A fused tensor is never populated: a bank or an expert uses only its
  // slice, and populating the whole [E, ...] tensor would make every other expert resident too.
  struct ExpertMats {
    Mat gate, up, down;
  };
  ExpertMats expert(int layer, int expert, bool populate = true);
  const std::vector<LoadedTensor>& loaded() const { return loaded_; }
  uint64_t loaded_bytes() const;

 private:
  TensorView checked(const TensorRole& role, bool populate = true);
  void note(const std::string& name, uint64_t bytes);
  Checkpoint& ck_;
  const ModelConfig& cfg_;
  std::vector<LoadedTensor> loaded_;
};

}  // namespace segpipe

namespace segpipe {
// Checks, from the headers alone (no tensor bytes touched), that every role is present with its
// shape and a float dtype; throws the same InputError the loader would.
void check_roles(Checkpoint& ck, const std::vector<TensorRole>& roles);
}  // namespace segpipe
