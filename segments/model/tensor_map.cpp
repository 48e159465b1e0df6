#include "segments/model/tensor_map.h"

#include <algorithm>
#include <set>

#include "segments/core/errors.h"
#include "segments/kernels/cpu/linear.h"  // mat_row_to_f32

namespace segpipe {

namespace {
std::string layer_prefix(const ModelConfig& c, int i) { return c.tensor_prefix + "layers." + std::to_string(i) + "."; }
int64_t I64(int v) { return static_cast<int64_t>(v); }
}  // namespace

TensorRole embed_role(const ModelConfig& c) {
  return {c.tensor_prefix + "embed_tokens.weight", {I64(c.vocab), I64(c.hidden)}, "embed_tokens"};
}
TensorRole final_norm_role(const ModelConfig& c) { return {c.tensor_prefix + "norm.weight", {I64(c.hidden)}, "norm"}; }
std::vector<TensorRole> lm_head_roles(const ModelConfig& c) {
  std::vector<TensorRole> v{final_norm_role(c)};
  if (!c.tie_word_embeddings) v.push_back({c.lm_head_name, {I64(c.vocab), I64(c.hidden)}, "lm_head"});
  return v;
}

std::vector<TensorRole> layer_roles(const ModelConfig& c, int i) {
  std::string p = layer_prefix(c, i);
  int64_t H = c.hidden, hd = c.head_dim;
  std::vector<TensorRole> v = {
      {p + "input_layernorm.weight", {H}, "input_layernorm"},
      {p + "self_attn.q_proj.weight", {I64(c.q_dim()), H}, "attn.q_proj"},
      {p + "self_attn.k_proj.weight", {I64(c.kv_dim()), H}, "attn.k_proj"},
      {p + "self_attn.v_proj.weight", {I64(c.kv_dim()), H}, "attn.v_proj"},
      {p + "self_attn.o_proj.weight", {H, I64(c.q_dim())}, "attn.o_proj"},
      {p + "post_attention_layernorm.weight", {H}, "post_attention_layernorm"},
  };
  if (c.qkv_bias) {
    v.push_back({p + "self_attn.q_proj.bias", {I64(c.q_dim())}, "attn.q_bias"});
    v.push_back({p + "self_attn.k_proj.bias", {I64(c.kv_dim())}, "attn.k_bias"});
    v.push_back({p + "self_attn.v_proj.bias", {I64(c.kv_dim())}, "attn.v_bias"});
  }
  if (c.qk_norm) {
    v.push_back({p + "self_attn.q_norm.weight", {hd}, "attn.q_norm"});
    v.push_back({p + "self_attn.k_norm.weight", {hd}, "attn.k_norm"});
  }
  if (c.is_moe_layer(i)) {
    v.push_back({p + "mlp.gate.weight", {I64(c.num_experts), H}, "router"});
    if (c.shared_expert_intermediate > 0) {  // the shared expert lives with its layer (every token uses it)
      int64_t S = c.shared_expert_intermediate;
      v.push_back({p + "mlp.shared_expert.gate_proj.weight", {S, H}, "shared.gate_proj"});
      v.push_back({p + "mlp.shared_expert.up_proj.weight", {S, H}, "shared.up_proj"});
      v.push_back({p + "mlp.shared_expert.down_proj.weight", {H, S}, "shared.down_proj"});
      v.push_back({p + "mlp.shared_expert_gate.weight", {1, H}, "shared.gate"});
    }
  } else {
    int64_t I = c.intermediate;
    v.push_back({p + "mlp.gate_proj.weight", {I, H}, "mlp.gate_proj"});
    v.push_back({p + "mlp.up_proj.weight", {I, H}, "mlp.up_proj"});
    v.push_back({p + "mlp.down_proj.weight", {H, I}, "mlp.down_proj"});
  }
  return v;
}

ExpertLayout expert_layout(const Checkpoint& ck, const ModelConfig& c, int layer) {
  return ck.has(layer_prefix(c, layer) + "mlp.experts.gate_up_proj") ? ExpertLayout::Fused : ExpertLayout::PerExpert;
}

std::vector<TensorRole> expert_roles(const ModelConfig& c, int layer, int e, ExpertLayout layout) {
  std::string p = layer_prefix(c, layer) + "mlp.experts.";
  int64_t H = c.hidden, I = c.moe_intermediate, E = c.num_experts;
  if (layout == ExpertLayout::Fused)
    return {{p + "gate_up_proj", {E, 2 * I, H}, "experts.gate_up_proj"}, {p + "down_proj", {E, H, I}, "experts.down_proj"}};
  std::string q = p + std::to_string(e) + ".";
  return {{q + "gate_proj.weight", {I, H}, "expert.gate_proj"},
          {q + "up_proj.weight", {I, H}, "expert.up_proj"},
          {q + "down_proj.weight", {H, I}, "expert.down_proj"}};
}

std::vector<TensorRole> all_roles(const Checkpoint& ck, const ModelConfig& c) {
  std::vector<TensorRole> v{embed_role(c)};
  for (int i = 0; i < c.num_layers; i++) {
    for (auto& r : layer_roles(c, i)) v.push_back(r);
    if (c.is_moe_layer(i)) {
      ExpertLayout lay = expert_layout(ck, c, i);
      if (lay == ExpertLayout::Fused) {
        for (auto& r : expert_roles(c, i, 0, lay)) v.push_back(r);
      } else {
        for (int e = 0; e < c.num_experts; e++)
          for (auto& r : expert_roles(c, i, e, lay)) v.push_back(r);
      }
    }
  }
  for (auto& r : lm_head_roles(c)) v.push_back(r);
  return v;
}

TensorView WeightBinder::checked(const TensorRole& role, bool populate) {
  check_roles(ck_, {role});
  return ck_.view(role.name, populate);
}

void WeightBinder::note(const std::string& name, uint64_t bytes) {
  for (auto& l : loaded_)
    if (l.name == name) {
      l.bytes += bytes;
      return;
    }
  loaded_.push_back({name, bytes});
}

Mat WeightBinder::mat(const TensorRole& role, bool populate) {
  TensorView v = checked(role, populate);
  note(v.name, v.nbytes);
  return Mat{v.data, v.dtype, v.shape[0], v.numel() / std::max<int64_t>(1, v.shape[0])};
}

std::vector<float> WeightBinder::vec(const TensorRole& role) {
  TensorView v = checked(role);
  note(v.name, v.nbytes);
  std::vector<float> out(static_cast<size_t>(v.numel()));
  Mat m{v.data, v.dtype, 1, v.numel()};
  mat_row_to_f32(m, 0, out.data());
  return out;
}

WeightBinder::ExpertMats WeightBinder::expert(int layer, int e, bool populate) {
  ExpertLayout lay = expert_layout(ck_, cfg_, layer);
  auto roles = expert_roles(cfg_, layer, e, lay);
  if (lay == ExpertLayout::PerExpert) return {mat(roles[0], populate), mat(roles[1], populate), mat(roles[2], populate)};
  // Fused: slices of [E, 2I, H] and [E, H, I]; gate rows come first, then up (chunk(2) order).
  TensorView gu = checked(roles[0], false);
  TensorView dn = checked(roles[1], false);
  int64_t H = cfg_.hidden, I = cfg_.moe_intermediate;
  size_t es = dtype_size(gu.dtype);
  const auto* gbase = static_cast<const std::byte*>(gu.data) + static_cast<size_t>(e) * 2 * I * H * es;
  ExpertMats m;
  m.gate = Mat{gbase, gu.dtype, I, H};
  m.up = Mat{gbase + static_cast<size_t>(I * H) * es, gu.dtype, I, H};
  size_t ds = dtype_size(dn.dtype);
  m.down = Mat{static_cast<const std::byte*>(dn.data) + static_cast<size_t>(e) * H * I * ds, dn.dtype, H, I};
  note(gu.name + "[" + std::to_string(e) + "]", m.gate.bytes() + m.up.bytes());
  note(dn.name + "[" + std::to_string(e) + "]", m.down.bytes());
  return m;
}

uint64_t WeightBinder::loaded_bytes() const {
  uint64_t s = 0;
  for (auto& l : loaded_) s += l.bytes;
  return s;
}

}  // namespace segpipe

namespace segpipe {
void check_roles(Checkpoint& ck, const std::vector<TensorRole>& roles) {
  for (const TensorRole& role : roles) {
    if (!ck.has(role.name))
      throw InputError(ck.dir() + ": missing tensor '" + role.name + "' (" + role.role + ", expected shape " +
                       shape_str(role.shape) + ")");
    const TensorEntry& e = ck.entry(role.name);
    if (e.shape != role.shape)
      throw InputError(ck.file_of(role.name) + ": tensor '" + role.name + "' has shape " + shape_str(e.shape) +
                       ", expected " + shape_str(role.shape) + " for " + role.role);
    if (!is_float_dtype(e.dtype))
      throw InputError(ck.file_of(role.name) + ": tensor '" + role.name + "' has dtype " + dtype_name(e.dtype) +
                       ", expected F32, BF16 or F16");
  }
}
}  // namespace segpipe
