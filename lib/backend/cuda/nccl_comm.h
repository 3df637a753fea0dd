// NCCL implementation of Comm (core/comm.h) for CudaBackend. Plain C++ header: no CUDA or NCCL
// types, so the trainer includes it whether or not the build has NCCL (SL_HAVE_NCCL).
#pragma once
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/comm.h"

namespace sl {

// Joins `world` ranks: rank 0 draws an NCCL unique id and publishes it at id_file (written
// atomically), the others wait up to `timeout_s` for it. be must be a CudaBackend (its device and
// stream are used). Gradient reductions run on a second stream ordered after be's stream by
// events; NCCL_NVLS_ENABLE defaults to 0 (no NVLink multicast on shared machines).
std::unique_ptr<Comm> make_nccl_comm(Backend& be, int rank, int world, const std::string& id_file,
                                     double timeout_s = 300);

}  // namespace sl
