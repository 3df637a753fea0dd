// make_backend() and cuda_devices() (declared in core/backend.h, so callers need only the
// interface): beside the backends they construct, in the one library (sl_backend) that links
// them all; a caller that picks a device by name links sl_backend, not the code that trains.
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "core/backend.h"
#include "core/error.h"
#ifdef SL_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

namespace sl {

int cuda_devices() {
#ifdef SL_HAVE_CUDA
  return cuda_device_count();
#else
  return 0;
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& device) {
  if (device == "cpu") return std::make_unique<CpuBackend<float>>();
  if (device == "cpu64") return std::make_unique<CpuBackend<double>>();
  if (device.rfind("cuda", 0) == 0) {
    // "cuda" = "cuda:0"; "cuda:N" picks device N.
    int index = 0;
    if (device != "cuda") {
      const std::string num = device.size() > 5 && device[4] == ':' ? device.substr(5) : "";
      if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos || num.size() > 4)
        fail("--device '" + device + "': expected cuda or cuda:N");
      index = std::stoi(num);
    }
#ifdef SL_HAVE_CUDA
    return std::make_unique<CudaBackend>(index);
#else
    (void)index;
    fail("--device " + device +
         ": this build has no CUDA backend (nvcc was not found at build time)");
#endif
  }
  fail("--device '" + device + "': expected cpu, cpu64, cuda or cuda:N");
}

}  // namespace sl
