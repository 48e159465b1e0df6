// The text model's architecture, read from a Hugging Face config.json. Every field the engine uses is
// here, with its unit or shape; features the engine does not implement are rejected at parse time
// (never silently wrong math).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace segpipe {

enum class Arch {
  Qwen3,         // model_type qwen3: dense decoder
  Qwen3Moe,      // model_type qwen3_moe: routed experts, optional dense layers
  Qwen3OmniMoe,  // model_type qwen3_omni_moe: the thinker's text model (thinker_config.text_config)
  Qwen2Moe,      // model_type qwen2_moe: q/k/v biases, no q/k norm, a gated shared expert beside the routed ones
};

struct ModelConfig {
  Arch arch = Arch::Qwen3;
  std::string model_type;      // as written in config.json
  std::string where;           // config.json path, for messages
  std::string tensor_prefix;   // "model." or "thinker.model." (decoder tensors)
  std::string lm_head_name;    // "lm_head.weight" or "thinker.lm_head.weight"

  int hidden = 0;              // H: hidden size
  int num_layers = 0;          // L: decoder layers
  int num_heads = 0;           // query heads
  int num_kv_heads = 0;        // key/value heads (GQA: num_heads % num_kv_heads == 0)
  int head_dim = 0;            // per-head dimension (independent of hidden / num_heads)
  int vocab = 0;               // V: rows of the embedding table and lm_head
  int intermediate = 0;        // dense MLP inner size (layers without routed experts)
  float rms_eps = 1e-6f;       // RMSNorm epsilon
  double rope_theta = 10000.0; // RoPE base
  std::vector<int> mrope_section;  // Omni M-RoPE sections (T,H,W); text-only positions make it 1-D RoPE
  bool mrope_interleaved = false;
  bool tie_word_embeddings = false;  // lm_head reuses the embedding table
  int max_position = 0;        // max_position_embeddings (0: unknown)

  // What a decoder layer holds beyond the common core (norms, q/k/v/o, RoPE attention, MLP or router).
  // The architectures differ only here; the tensor map and every backend read these flags, never the arch.
  bool qk_norm = true;         // RMSNorm over head_dim on q and k before RoPE (Qwen3)
  bool qkv_bias = false;       // q/k/v projections carry biases (Qwen2-MoE)
  int shared_expert_intermediate = 0;  // > 0: MoE layers add sigmoid(x . w_g) * SwiGLU_shared(x) (Qwen2-MoE)
  std::string weight_dtype;    // dtype/torch_dtype as written (informational)

  // Mixture of experts (num_experts == 0: dense model)
  int num_experts = 0;         // E: routed experts per MoE layer
  int top_k = 0;               // experts chosen per token
  int moe_intermediate = 0;    // inner size of one expert
  int decoder_sparse_step = 1; // layer i is MoE when (i + 1) % step == 0 ...
  std::vector<int> mlp_only_layers;  // ... and i is not listed here
  bool norm_topk_prob = false; // renormalize the top-k probabilities to sum to 1

  bool is_moe_layer(int i) const;
  int kv_dim() const { return num_kv_heads * head_dim; }
  int q_dim() const { return num_heads * head_dim; }
  const char* arch_name() const;
};

// Parses config.json; `where` names the file in errors. Throws InputError for a missing or
// contradictory field, an unknown model_type, or a feature the engine does not implement.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& where);

}  // namespace segpipe
