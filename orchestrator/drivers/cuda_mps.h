// GPU worker processes sharing one GPU through a private CUDA MPS server.
//
// Why: without MPS every process owns a CUDA context and the GPU time-slices between contexts; a
// pipeline on one GPU hands the device from process to process several times a token, and each
// hand-off pays a context switch (measured on an H200: 0.80 of the in-process decode rate with
// 4 layer groups, 0.89 with MPS). With MPS the processes' work runs in one shared context.
//
// The server is private to this orchestrator: its pipe and log directories are a fresh temporary
// directory, handed to this process and its children through CUDA_MPS_PIPE_DIRECTORY /
// CUDA_MPS_LOG_DIRECTORY, so it neither needs nor touches a system-wide MPS daemon and other users'
// processes keep their own contexts. It runs in its own process group, dies with the orchestrator
// (PR_SET_PDEATHSIG) and is shut down at exit; the directory is removed.
//
// The orchestrator itself must be an MPS client too (it allocates the device arena the workers map
// through CUDA IPC), so MPS is used only where this process has no CUDA context yet when the run
// starts; otherwise (and where nvidia-cuda-mps-control is missing or does not start) the run goes
// on without it (mode auto) or fails with exit 2 (mode mps).
#pragma once
#include <string>

namespace segpipe {

enum class GpuSharing { Auto, Mps, Off };

// SEGPIPE_GPU_SHARING = auto (default) | mps | off. Throws InputError on another value.
GpuSharing gpu_sharing_from_env();
const char* gpu_sharing_name(GpuSharing s);

// Starts the private server once per process and sets the MPS environment of this process (its
// children inherit it). Returns "" when running, else why not (nothing changed then).
std::string start_private_mps();
// Quits the server, restores the environment, removes the directory. Safe to call when not running.
void stop_private_mps();
bool private_mps_running();

// CUDA side (cuda_mps_cuda.cpp; answers false / "" without the CUDA backend):
// does this process already hold a CUDA context on device `device` (the N of cuda:N)?
bool cuda_context_active(int device);
// do this process's contexts on `device` run through MPS (CU_DEVICE_ATTRIBUTE_MPS_ENABLED)?
bool cuda_mps_enabled(int device);

}  // namespace segpipe
