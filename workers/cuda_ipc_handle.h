// A CUDA IPC memory handle as text (hex), for a worker's command line. Needs the CUDA runtime headers.
#pragma once
#include <cuda_runtime_api.h>

#include <cstring>
#include <string>

#include "segments/core/errors.h"

namespace segpipe {

inline std::string ipc_handle_to_hex(const cudaIpcMemHandle_t& h) {
  static const char* digits = "0123456789abcdef";
  const unsigned char* b = reinterpret_cast<const unsigned char*>(&h);
  std::string s;
  for (size_t i = 0; i < sizeof h; i++) {
    s += digits[b[i] >> 4];
    s += digits[b[i] & 15];
  }
  return s;
}

inline cudaIpcMemHandle_t ipc_handle_from_hex(const std::string& s) {
  cudaIpcMemHandle_t h;
  if (s.size() != 2 * sizeof h) throw RuntimeFailure("malformed CUDA IPC handle");
  unsigned char* b = reinterpret_cast<unsigned char*>(&h);
  auto nib = [&](char c) -> unsigned {
    if (c >= '0' && c <= '9') return unsigned(c - '0');
    if (c >= 'a' && c <= 'f') return unsigned(c - 'a' + 10);
    throw RuntimeFailure("malformed CUDA IPC handle");
  };
  for (size_t i = 0; i < sizeof h; i++) b[i] = static_cast<unsigned char>(nib(s[2 * i]) << 4 | nib(s[2 * i + 1]));
  return h;
}

}  // namespace segpipe
