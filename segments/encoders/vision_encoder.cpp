#include "segments/encoders/vision_encoder.h"

#include <algorithm>
#include <cmath>

#include "segments/core/errors.h"
#include "segments/core/finite.h"
#include "segments/encoders/encoder_math.h"
#include "segments/encoders/encoder_weights.h"
#include "segments/kernels/cpu/linear.h"

namespace segpipe {

namespace {

// The tower's nn.LayerNorm(eps=1e-6) (blocks and mergers alike).
constexpr double kLayerNormEps = 1e-6;

// q, k [N, heads*head_dim] rotated in place: x * cos + rotate_half(x) * sin, where the angle of element
// e of a head is freqs[e mod head_dim/2] (the reference's cat(freqs, freqs)) and rotate_half pairs
// element e with e + head_dim/2.
void apply_rotary(ThreadPool& pool, float* x, int64_t N, int heads, int head_dim, const std::vector<float>& cos_t,
                  const std::vector<float>& sin_t, int64_t width) {
  const int half = head_dim / 2;
  pool.parallel_for(N, [&](int64_t n0, int64_t n1) {
    std::vector<float> tmp(static_cast<size_t>(head_dim));
    for (int64_t n = n0; n < n1; n++) {
      const float* c = cos_t.data() + n * half;
      const float* s = sin_t.data() + n * half;
      for (int h = 0; h < heads; h++) {
        float* v = x + n * width + static_cast<int64_t>(h) * head_dim;
        for (int e = 0; e < half; e++) {
          tmp[static_cast<size_t>(e)] = v[e] * c[e] + (-v[e + half]) * s[e];
          tmp[static_cast<size_t>(e + half)] = v[e + half] * c[e] + v[e] * s[e];
        }
        std::copy(tmp.begin(), tmp.end(), v);
      }
    }
  }, 16);
}

// Bidirectional attention of every token with the tokens of its segment (one frame of one image).
// qkv: [N, 3 * heads * head_dim] (q | k | v, heads side by side in each); out: [N, heads * head_dim].
// Scores are dot products in the linear kernel's order times head_dim^-0.5, the softmax is taken in
// double, and the weighted sum of values accumulates in double in key order.
void segment_attention(ThreadPool& pool, const float* qkv, int64_t N, int heads, int head_dim,
                       const std::vector<std::pair<int64_t, int64_t>>& segment_of, float* out) {
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  const int64_t stride = 3 * width;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  pool.parallel_for(N, [&](int64_t i0, int64_t i1) {
    std::vector<double> p;
    std::vector<double> acc(static_cast<size_t>(head_dim));
    for (int64_t i = i0; i < i1; i++) {
      const auto [b, e] = segment_of[static_cast<size_t>(i)];
      p.resize(static_cast<size_t>(e - b));
      for (int h = 0; h < heads; h++) {
        const float* qi = qkv + i * stride + static_cast<int64_t>(h) * head_dim;
        double mx = -INFINITY;
        for (int64_t j = b; j < e; j++) {
          const float* kj = qkv + j * stride + width + static_cast<int64_t>(h) * head_dim;
          const double sc = static_cast<double>(dot_f32(qi, kj, head_dim) * scale);
          p[static_cast<size_t>(j - b)] = sc;
          mx = std::max(mx, sc);
        }
        double sum = 0.0;
        for (auto& v : p) {
          v = std::exp(v - mx);
          sum += v;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = b; j < e; j++) {
          const double w = p[static_cast<size_t>(j - b)] / sum;
          const float* vj = qkv + j * stride + 2 * width + static_cast<int64_t>(h) * head_dim;
          for (int d = 0; d < head_dim; d++) acc[static_cast<size_t>(d)] += w * vj[d];
        }
        float* o = out + i * width + static_cast<int64_t>(h) * head_dim;
        for (int d = 0; d < head_dim; d++) o[d] = static_cast<float>(acc[static_cast<size_t>(d)]);
      }
    }
  }, 4);
}

}  // namespace

TensorView VisionEncoder::tensor(Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape) {
  return checked_tower_tensor(ck, prefix_ + name, shape, "vision", cfg_.where, loaded_);
}

Mat VisionEncoder::mat(Checkpoint& ck, const std::string& name, int64_t rows, int64_t cols,
                       const std::vector<int64_t>& shape) {
  TensorView v = tensor(ck, name, shape);
  return Mat{v.data, v.dtype, rows, cols};
}

std::vector<float> VisionEncoder::vec(Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape) {
  return tensor_to_f32(tensor(ck, name, shape));
}

VisionEncoder::Linear VisionEncoder::linear(Checkpoint& ck, const std::string& name, int64_t out, int64_t in) {
  return Linear{mat(ck, name + ".weight", out, in, {out, in}), vec(ck, name + ".bias", {out})};
}

VisionEncoder::Norm VisionEncoder::norm(Checkpoint& ck, const std::string& name, int64_t n) {
  return Norm{vec(ck, name + ".weight", {n}), vec(ck, name + ".bias", {n})};
}

VisionEncoder::Merger VisionEncoder::merger(Checkpoint& ck, const std::string& name, bool postshuffle) {
  const int64_t D = cfg_.hidden_size, wide = D * cfg_.merge_unit();
  Merger m;
  m.postshuffle_norm = postshuffle;
  m.norm = norm(ck, name + ".ln_q", postshuffle ? wide : D);
  m.fc1 = linear(ck, name + ".mlp.0", wide, wide);
  m.fc2 = linear(ck, name + ".mlp.2", cfg_.out_hidden_size, wide);
  return m;
}

VisionEncoder::VisionEncoder(Checkpoint& ck, const VisionEncoderConfig& cfg, const std::string& prefix)
    : cfg_(cfg), prefix_(prefix) {
  const int64_t D = cfg.hidden_size, I = cfg.intermediate_size;
  // Conv3d weight [D, C, T, p, p] is the [D, C*T*p*p] matrix of the patch vectors (same element order).
  patch_embed_.w = mat(ck, "patch_embed.proj.weight", D, cfg.patch_dim(),
                       {D, cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size});
  patch_embed_.b = vec(ck, "patch_embed.proj.bias", {D});
  pos_table_ = vec(ck, "pos_embed.weight", {cfg.num_position_embeddings, D});
  for (int i = 0; i < cfg.depth; i++) {
    const std::string p = "blocks." + std::to_string(i) + ".";
    Block b;
    b.norm1 = norm(ck, p + "norm1", D);
    b.norm2 = norm(ck, p + "norm2", D);
    b.qkv = linear(ck, p + "attn.qkv", 3 * D, D);
    b.proj = linear(ck, p + "attn.proj", D, D);
    b.fc1 = linear(ck, p + "mlp.linear_fc1", I, D);
    b.fc2 = linear(ck, p + "mlp.linear_fc2", D, I);
    blocks_.push_back(std::move(b));
  }
  for (size_t j = 0; j < cfg.deepstack_visual_indexes.size(); j++)
    deepstack_.push_back(merger(ck, "merger_list." + std::to_string(j), true));
  merger_ = merger(ck, "merger", false);
}

uint64_t VisionEncoder::loaded_bytes() const {
  uint64_t n = 0;
  for (const auto& t : loaded_) n += t.bytes;
  return n;
}

void VisionEncoder::apply(ThreadPool& pool, const Linear& l, const float* x, int64_t T, float* y) const {
  ::segpipe::linear(pool, x, T, l.w, y);
  const int64_t n = l.w.rows;
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < n; i++) y[t * n + i] += l.b[static_cast<size_t>(i)];
}

std::vector<float> VisionEncoder::run_merger(ThreadPool& pool, const Merger& m, const std::vector<float>& x,
                                             int64_t N, const std::string& name, const Observer& observer) const {
  const int64_t D = cfg_.hidden_size, wide = D * cfg_.merge_unit(), M = N / cfg_.merge_unit();
  // The merge_size^2 patches of a block are consecutive rows, so [N, D] read as [M, wide] is the shuffle.
  std::vector<float> normed(x.size());
  if (m.postshuffle_norm) {
    layer_norm(pool, x.data(), M, wide, m.norm.w, m.norm.b, kLayerNormEps, normed.data());
    if (observer) observer(name + ".norm", normed.data(), {M, wide});
  } else {
    layer_norm(pool, x.data(), N, D, m.norm.w, m.norm.b, kLayerNormEps, normed.data());
    if (observer) observer(name + ".norm", normed.data(), {N, D});
  }
  std::vector<float> h(static_cast<size_t>(M * wide));
  apply(pool, m.fc1, normed.data(), M, h.data());
  for (float& v : h) v = gelu_erf(v);
  std::vector<float> out(static_cast<size_t>(M * cfg_.out_hidden_size));
  apply(pool, m.fc2, h.data(), M, out.data());
  if (observer) observer(name, out.data(), {M, cfg_.out_hidden_size});
  return out;
}

VisionEncoderOutput VisionEncoder::forward(const float* pixel_values, int64_t rows,
                                           const std::vector<VisionGrid>& grids, ThreadPool& pool,
                                           const Observer& observer) const {
  const int64_t D = cfg_.hidden_size, I = cfg_.intermediate_size, merge = cfg_.spatial_merge_size;
  const int heads = cfg_.num_heads, hd = cfg_.head_dim();
  if (grids.empty()) throw InputError("vision encoder: no image grids given");
  int64_t N = 0;
  std::vector<std::pair<int64_t, int64_t>> segment_of;
  for (size_t g = 0; g < grids.size(); g++) {
    const VisionGrid& gr = grids[g];
    const std::string what = "vision encoder: image " + std::to_string(g) + " grid (" + std::to_string(gr.t) + ", " +
                             std::to_string(gr.h) + ", " + std::to_string(gr.w) + ")";
    if (gr.t <= 0 || gr.h <= 0 || gr.w <= 0 || gr.h > (1 << 20) || gr.w > (1 << 20) || gr.t > (1 << 20))
      throw InputError(what + ": sizes must be positive (at most 2^20)");
    if (gr.h % merge != 0 || gr.w % merge != 0)
      throw InputError(what + ": h and w must be multiples of spatial_merge_size " + std::to_string(merge));
    // cu_seqlens: one attention segment per frame (repeat_interleave(h * w, t)).
    for (int64_t t = 0; t < gr.t; t++) {
      const int64_t b = N + t * gr.h * gr.w;
      for (int64_t k = 0; k < gr.h * gr.w; k++) segment_of.emplace_back(b, b + gr.h * gr.w);
    }
    N += gr.patches();
    if (N > rows) break;
  }
  if (N != rows)
    throw InputError("vision encoder: the grids hold " + std::to_string(N) + " patches but pixel_values has " +
                     std::to_string(rows) + " rows");
  auto see = [&](const std::string& name, const float* p, int64_t r, int64_t c) {
    if (observer) observer(name, p, {r, c});
  };

  std::vector<float> x(static_cast<size_t>(N * D));
  apply(pool, patch_embed_, pixel_values, N, x.data());
  see("patch_embed", x.data(), N, D);
  const std::vector<float> pos =
      interpolate_position_embedding(pos_table_.data(), cfg_.num_grid_per_side(), D, grids, merge);
  see("pos_embed", pos.data(), N, D);
  for (size_t i = 0; i < x.size(); i++) x[i] += pos[i];
  see("blocks_input", x.data(), N, D);

  const std::vector<float> freqs = vision_rotary_freqs(grids, merge, hd, cfg_.rope_theta);
  see("rotary_freqs", freqs.data(), N, hd / 2);
  std::vector<float> cos_t(freqs.size()), sin_t(freqs.size());
  for (size_t i = 0; i < freqs.size(); i++) {
    cos_t[i] = static_cast<float>(std::cos(static_cast<double>(freqs[i])));
    sin_t[i] = static_cast<float>(std::sin(static_cast<double>(freqs[i])));
  }

  VisionEncoderOutput out;
  out.tokens = N / cfg_.merge_unit();
  std::vector<float> h(static_cast<size_t>(N * D)), qkv(static_cast<size_t>(N * 3 * D)),
      att(static_cast<size_t>(N * D)), mid(static_cast<size_t>(N * I)), y(static_cast<size_t>(N * D));
  for (int i = 0; i < cfg_.depth; i++) {
    const Block& b = blocks_[static_cast<size_t>(i)];
    const std::string p = "blocks." + std::to_string(i) + ".";
    layer_norm(pool, x.data(), N, D, b.norm1.w, b.norm1.b, kLayerNormEps, h.data());
    see(p + "norm1", h.data(), N, D);
    apply(pool, b.qkv, h.data(), N, qkv.data());
    apply_rotary(pool, qkv.data(), N, heads, hd, cos_t, sin_t, 3 * D);              // q
    apply_rotary(pool, qkv.data() + D, N, heads, hd, cos_t, sin_t, 3 * D);          // k
    segment_attention(pool, qkv.data(), N, heads, hd, segment_of, att.data());
    apply(pool, b.proj, att.data(), N, y.data());
    see(p + "attn", y.data(), N, D);
    for (size_t k = 0; k < x.size(); k++) x[k] += y[k];
    layer_norm(pool, x.data(), N, D, b.norm2.w, b.norm2.b, kLayerNormEps, h.data());
    apply(pool, b.fc1, h.data(), N, mid.data());
    if (cfg_.hidden_act == VisionActivation::GeluTanh)
      for (float& v : mid) v = gelu_tanh(v);
    else
      for (float& v : mid) v = gelu_erf(v);
    apply(pool, b.fc2, mid.data(), N, y.data());
    see(p + "mlp", y.data(), N, D);
    for (size_t k = 0; k < x.size(); k++) x[k] += y[k];
    see(p + "output", x.data(), N, D);
    check_finite(x.data(), N, D, "vision block " + std::to_string(i) + " output");
    const auto& ds = cfg_.deepstack_visual_indexes;
    const auto it = std::find(ds.begin(), ds.end(), i);
    if (it != ds.end()) {
      const size_t j = static_cast<size_t>(it - ds.begin());
      out.deepstack.resize(ds.size());
      out.deepstack[j] = run_merger(pool, deepstack_[j], x, N, "deepstack." + std::to_string(j), observer);
    }
  }
  out.merged = run_merger(pool, merger_, x, N, "merged", observer);
  check_finite(out.merged.data(), out.tokens, cfg_.out_hidden_size, "vision encoder output");
  return out;
}

}  // namespace segpipe
