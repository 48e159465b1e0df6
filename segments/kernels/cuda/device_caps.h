// What the current device can run, for the host-side choice between kernels built for several
// targets (the sm_90a wgmma kernels of sm90a/ against their mma.sync fallbacks).
#pragma once

namespace segpipe::cuda {

// Compute capability exactly 9.0 (H100, H200): the sm_90a machine code runs there and nowhere else.
// Cached per device (the first 64 device ids).
bool device_is_sm90(int dev);
bool current_device_is_sm90();

}  // namespace segpipe::cuda
