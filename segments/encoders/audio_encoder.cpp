#include "segments/encoders/audio_encoder.h"

#include <algorithm>
#include <cmath>

#include "segments/core/errors.h"
#include "segments/core/finite.h"
#include "segments/encoders/encoder_math.h"
#include "segments/encoders/encoder_weights.h"
#include "segments/encoders/audio_conv.h"
#include "segments/encoders/audio_lengths.h"
#include "segments/kernels/cpu/linear.h"

namespace segpipe {

namespace {

// nn.LayerNorm's default.
constexpr double kLayerNormEps = 1e-5;

void gelu_inplace(std::vector<float>& v) {
  for (float& x : v) x = gelu_erf(x);
}

// SinusoidsPositionEmbedding(length, channels): row t = [sin(t * f_i) for i < C/2, cos(t * f_i) ...]
// with f_i = exp(-i * log(10000) / (C/2 - 1)). The reference builds it in float32 (the increment
// rounded to float32, each product in float32); the transcendental functions here are evaluated in
// double and rounded once (the reference's SLEEF kernels are within an ulp of that).
std::vector<float> sinusoid_positions(int length, int channels) {
  const int half = channels / 2;
  const float inc = static_cast<float>(std::log(10000.0) / (half - 1));
  std::vector<float> inv(static_cast<size_t>(half));
  for (int i = 0; i < half; i++) inv[static_cast<size_t>(i)] = static_cast<float>(std::exp(static_cast<double>(-inc * static_cast<float>(i))));
  std::vector<float> pos(static_cast<size_t>(length) * channels);
  for (int t = 0; t < length; t++)
    for (int i = 0; i < half; i++) {
      const float a = static_cast<float>(t) * inv[static_cast<size_t>(i)];
      pos[static_cast<size_t>(t) * channels + i] = static_cast<float>(std::sin(static_cast<double>(a)));
      pos[static_cast<size_t>(t) * channels + half + i] = static_cast<float>(std::cos(static_cast<double>(a)));
    }
  return pos;
}

// Bidirectional multi-head attention inside windows: token i attends to the tokens of its window.
// q, k, v, out: [T, heads * head_dim]; window_of[i] = [begin, end).
void windowed_attention(ThreadPool& pool, const float* q, const float* k, const float* v, int64_t T, int heads,
                        int head_dim, const std::vector<std::pair<int64_t, int64_t>>& window_of, float* out) {
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  pool.parallel_for(T, [&](int64_t i0, int64_t i1) {
    std::vector<float> s;
    std::vector<double> acc(static_cast<size_t>(head_dim));
    for (int64_t i = i0; i < i1; i++) {
      const auto [b, e] = window_of[static_cast<size_t>(i)];
      s.resize(static_cast<size_t>(e - b));
      for (int h = 0; h < heads; h++) {
        const float* qi = q + i * width + h * head_dim;
        // scores = (q . k) * scaling, as the reference's matmul then multiply.
        float mx = -INFINITY;
        for (int64_t j = b; j < e; j++) {
          s[static_cast<size_t>(j - b)] = dot_f32(qi, k + j * width + h * head_dim, head_dim) * scale;
          mx = std::max(mx, s[static_cast<size_t>(j - b)]);
        }
        double sum = 0.0;
        for (int64_t j = b; j < e; j++) {
          s[static_cast<size_t>(j - b)] = std::exp(s[static_cast<size_t>(j - b)] - mx);
          sum += s[static_cast<size_t>(j - b)];
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = b; j < e; j++) {
          const float p = static_cast<float>(s[static_cast<size_t>(j - b)] / sum);
          const float* vj = v + j * width + h * head_dim;
          for (int d = 0; d < head_dim; d++) acc[static_cast<size_t>(d)] += static_cast<double>(p) * vj[d];
        }
        float* o = out + i * width + h * head_dim;
        for (int d = 0; d < head_dim; d++) o[d] = static_cast<float>(acc[static_cast<size_t>(d)]);
      }
    }
  }, 4);
}

}  // namespace

TensorView AudioEncoder::tensor(Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape) {
  return checked_tower_tensor(ck, prefix_ + name, shape, "audio", cfg_.where, loaded_);
}

Mat AudioEncoder::mat(Checkpoint& ck, const std::string& name, const std::vector<int64_t>& shape) {
  TensorView v = tensor(ck, name, shape);
  return Mat{v.data, v.dtype, shape[0], v.numel() / shape[0]};
}

std::vector<float> AudioEncoder::vec(Checkpoint& ck, const std::string& name, int64_t n) {
  return tensor_to_f32(tensor(ck, name, {n}));
}

AudioEncoder::Linear AudioEncoder::linear(Checkpoint& ck, const std::string& name, int64_t out, int64_t in, bool bias) {
  Linear l;
  l.w = mat(ck, name + ".weight", {out, in});
  if (bias) l.b = vec(ck, name + ".bias", out);
  return l;
}

AudioEncoder::Norm AudioEncoder::norm(Checkpoint& ck, const std::string& name, int64_t n) {
  return Norm{vec(ck, name + ".weight", n), vec(ck, name + ".bias", n)};
}

AudioEncoder::AudioEncoder(Checkpoint& ck, const AudioEncoderConfig& cfg, const std::string& prefix)
    : cfg_(cfg), prefix_(prefix) {
  const int64_t C = cfg.downsample_hidden_size, d = cfg.d_model;
  // Conv weights [C_out, C_in, 3, 3] are read as the [C_out, C_in * 9] matrices im2col multiplies.
  conv1_.w = mat(ck, "conv2d1.weight", {C, 1, 3, 3});
  conv1_.b = vec(ck, "conv2d1.bias", C);
  conv2_.w = mat(ck, "conv2d2.weight", {C, C, 3, 3});
  conv2_.b = vec(ck, "conv2d2.bias", C);
  conv3_.w = mat(ck, "conv2d3.weight", {C, C, 3, 3});
  conv3_.b = vec(ck, "conv2d3.bias", C);
  conv_out_ = linear(ck, "conv_out", d, C * cfg.conv_freq_bins(), false);
  for (int i = 0; i < cfg.encoder_layers; i++) {
    const std::string p = "layers." + std::to_string(i) + ".";
    Layer L;
    L.attn_norm = norm(ck, p + "self_attn_layer_norm", d);
    L.q = linear(ck, p + "self_attn.q_proj", d, d, true);
    L.k = linear(ck, p + "self_attn.k_proj", d, d, true);
    L.v = linear(ck, p + "self_attn.v_proj", d, d, true);
    L.o = linear(ck, p + "self_attn.out_proj", d, d, true);
    L.mlp_norm = norm(ck, p + "final_layer_norm", d);
    L.fc1 = linear(ck, p + "fc1", cfg.encoder_ffn_dim, d, true);
    L.fc2 = linear(ck, p + "fc2", d, cfg.encoder_ffn_dim, true);
    layers_.push_back(std::move(L));
  }
  ln_post_ = norm(ck, "ln_post", d);
  proj1_ = linear(ck, "proj1", d, d, true);
  proj2_ = linear(ck, "proj2", cfg.output_dim, d, true);
  positions_ = sinusoid_positions(cfg.max_source_positions, cfg.d_model);
}

uint64_t AudioEncoder::loaded_bytes() const {
  uint64_t n = 0;
  for (const auto& t : loaded_) n += t.bytes;
  return n;
}

void AudioEncoder::apply(ThreadPool& pool, const Linear& l, const float* x, int64_t T, float* y) const {
  ::segpipe::linear(pool, x, T, l.w, y);
  if (l.b.empty()) return;
  const int64_t n = l.w.rows;
  for (int64_t t = 0; t < T; t++)
    for (int64_t i = 0; i < n; i++) y[t * n + i] += l.b[static_cast<size_t>(i)];
}

int64_t AudioEncoder::tokens(int64_t n_frames) const { return audio_encoder_tokens(n_frames, cfg_.n_window); }

std::vector<int64_t> AudioEncoder::window_offsets(int64_t n_frames) const {
  // get_audio_cu_seqlens: windows of (tokens of the longest chunk) * (n_window_infer // chunk) tokens.
  const int64_t chunk = cfg_.chunk_frames();
  const int64_t longest = n_frames >= chunk ? chunk : n_frames;
  const int64_t window = audio_conv_length(longest) * (cfg_.n_window_infer / chunk);
  const int64_t total = tokens(n_frames);
  std::vector<int64_t> cu{0};
  for (int64_t i = 0; i < total / window; i++) cu.push_back(cu.back() + window);
  if (total % window) cu.push_back(cu.back() + total % window);
  return cu;
}

std::vector<float> AudioEncoder::forward(const float* features, int64_t n_frames, ThreadPool& pool,
                                         const Observer& observer) const {
  const AudioEncoderConfig& c = cfg_;
  if (n_frames < 1) throw InputError("audio encoder: no feature frames");
  if (audio_encoder_tokens(n_frames, c.n_window) != audio_placeholder_tokens(n_frames, c.n_window))
    throw InputError(c.where + ".n_window: " + std::to_string(c.n_window) + " makes " +
                     std::to_string(audio_conv_length(c.chunk_frames())) + " tokens per chunk of " +
                     std::to_string(c.chunk_frames()) + " frames, but transformers counts 13 (its placeholder "
                     "count assumes n_window 50), so " + std::to_string(n_frames) +
                     " frames of audio cannot be encoded as the reference would; at most " +
                     std::to_string(c.chunk_frames() - 1) + " frames can");
  const int64_t chunk = c.chunk_frames();
  const int64_t n_chunks = (n_frames + chunk - 1) / chunk;
  const int64_t longest = n_frames >= chunk ? chunk : n_frames;
  const int64_t mel = c.num_mel_bins, C = c.downsample_hidden_size, d = c.d_model;
  const int64_t h1 = conv3s2_out(mel), h2 = conv3s2_out(h1), h3 = conv3s2_out(h2);
  const int64_t w1 = conv3s2_out(longest), w2 = conv3s2_out(w1), w3 = conv3s2_out(w2);
  SEGPIPE_ASSERT(h3 == c.conv_freq_bins() && w3 <= c.max_source_positions);
  const int64_t total = tokens(n_frames);

  std::vector<float> x(static_cast<size_t>(total * d));
  std::vector<float> seen1, seen2, seen3, seen_out;  // for the observer only
  std::vector<float> img(static_cast<size_t>(mel * longest)), a1, a2, a3, flat(static_cast<size_t>(w3 * C * h3)),
      proj(static_cast<size_t>(w3 * d));
  int64_t row = 0;
  for (int64_t ci = 0; ci < n_chunks; ci++) {
    const int64_t f0 = ci * chunk, len = std::min(chunk, n_frames - f0);
    // pad_sequence: the chunk's frames, zeros after them up to the longest chunk.
    for (int64_t m = 0; m < mel; m++)
      for (int64_t t = 0; t < longest; t++)
        img[static_cast<size_t>(m * longest + t)] = t < len ? features[m * n_frames + f0 + t] : 0.0f;
    conv3x3_stride2(pool, img.data(), 1, mel, longest, conv1_.w, conv1_.b, a1);
    if (observer) seen1.insert(seen1.end(), a1.begin(), a1.end());
    gelu_inplace(a1);
    conv3x3_stride2(pool, a1.data(), C, h1, w1, conv2_.w, conv2_.b, a2);
    if (observer) seen2.insert(seen2.end(), a2.begin(), a2.end());
    gelu_inplace(a2);
    conv3x3_stride2(pool, a2.data(), C, h2, w2, conv3_.w, conv3_.b, a3);
    if (observer) seen3.insert(seen3.end(), a3.begin(), a3.end());
    gelu_inplace(a3);
    // permute(0, 3, 1, 2).view(b, t, c * f): per time step, channel-major then frequency.
    for (int64_t t = 0; t < w3; t++)
      for (int64_t ch = 0; ch < C; ch++)
        for (int64_t f = 0; f < h3; f++)
          flat[static_cast<size_t>(t * C * h3 + ch * h3 + f)] = a3[static_cast<size_t>((ch * h3 + f) * w3 + t)];
    apply(pool, conv_out_, flat.data(), w3, proj.data());
    if (observer) seen_out.insert(seen_out.end(), proj.begin(), proj.end());
    // + positions, and only the chunk's own steps go on (valid_indices).
    const int64_t valid = audio_conv_length(len);
    for (int64_t t = 0; t < valid; t++, row++)
      for (int64_t i = 0; i < d; i++)
        x[static_cast<size_t>(row * d + i)] = proj[static_cast<size_t>(t * d + i)] + positions_[static_cast<size_t>(t * d + i)];
  }
  SEGPIPE_ASSERT(row == total);
  if (observer) {
    observer("conv2d1", seen1.data(), {n_chunks, C, h1, w1});
    observer("conv2d2", seen2.data(), {n_chunks, C, h2, w2});
    observer("conv2d3", seen3.data(), {n_chunks, C, h3, w3});
    observer("conv_out", seen_out.data(), {n_chunks, w3, d});
    observer("encoder_input", x.data(), {total, d});
  }

  const std::vector<int64_t> cu = window_offsets(n_frames);
  std::vector<std::pair<int64_t, int64_t>> window_of(static_cast<size_t>(total));
  for (size_t w = 0; w + 1 < cu.size(); w++)
    for (int64_t i = cu[w]; i < cu[w + 1]; i++) window_of[static_cast<size_t>(i)] = {cu[w], cu[w + 1]};

  std::vector<float> h(x.size()), q(x.size()), k(x.size()), v(x.size()), att(x.size()), o(x.size()),
      ff(static_cast<size_t>(total * c.encoder_ffn_dim));
  for (size_t li = 0; li < layers_.size(); li++) {
    const Layer& L = layers_[li];
    layer_norm(pool, x.data(), total, d, L.attn_norm.w, L.attn_norm.b, kLayerNormEps, h.data());
    apply(pool, L.q, h.data(), total, q.data());
    apply(pool, L.k, h.data(), total, k.data());
    apply(pool, L.v, h.data(), total, v.data());
    windowed_attention(pool, q.data(), k.data(), v.data(), total, c.encoder_attention_heads, c.head_dim(), window_of,
                       att.data());
    apply(pool, L.o, att.data(), total, o.data());
    for (size_t i = 0; i < x.size(); i++) x[i] = x[i] + o[i];
    layer_norm(pool, x.data(), total, d, L.mlp_norm.w, L.mlp_norm.b, kLayerNormEps, h.data());
    apply(pool, L.fc1, h.data(), total, ff.data());
    gelu_inplace(ff);
    apply(pool, L.fc2, ff.data(), total, o.data());
    for (size_t i = 0; i < x.size(); i++) x[i] = x[i] + o[i];
    if (observer) observer("layers." + std::to_string(li) + ".output", x.data(), {total, d});
  }
  layer_norm(pool, x.data(), total, d, ln_post_.w, ln_post_.b, kLayerNormEps, h.data());
  if (observer) observer("ln_post", h.data(), {total, d});
  apply(pool, proj1_, h.data(), total, q.data());
  if (observer) observer("proj1", q.data(), {total, d});
  gelu_inplace(q);
  std::vector<float> out(static_cast<size_t>(total * c.output_dim));
  apply(pool, proj2_, q.data(), total, out.data());
  check_finite(out.data(), total, c.output_dim, "audio encoder output");
  if (observer) observer("output", out.data(), {total, static_cast<int64_t>(c.output_dim)});
  return out;
}

}  // namespace segpipe
