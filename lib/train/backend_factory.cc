#include <string>

#include "backend/cpu/cpu_backend.h"
#include "core/backend.h"
#include "core/error.h"

namespace sl {

std::unique_ptr<Backend> make_backend(const std::string& device) {
  if (device == "cpu") return std::make_unique<CpuBackend<float>>();
  if (device == "cpu64") return std::make_unique<CpuBackend<double>>();
  if (device.rfind("cuda", 0) == 0)
    fail("--device " + device + ": the CUDA backend is not part of this build yet (CPU only)");
  fail("--device '" + device + "': expected cpu or cuda[:i]");
}

}  // namespace sl
