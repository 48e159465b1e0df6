// Sample-rate conversion with libsoxr at its HQ recipe: what librosa.load(sr=...) does by default
// (res_type "soxr_hq" -> python-soxr quality "HQ", the same libsoxr engine), including librosa's length
// fix: the output has exactly ceil(n * out_rate / in_rate) samples (zero-padded or cut).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace segpipe {

// `what` names the input in error messages (the file). Same rates: a copy.
std::vector<float> resample_soxr_hq(const float* x, int64_t n, int in_rate, int out_rate, const std::string& what);

// ceil(n * out_rate / in_rate), exactly (integer arithmetic).
int64_t resampled_length(int64_t n, int in_rate, int out_rate);

}  // namespace segpipe
