// Shared by the GPU tests (label `gpu`): the skip-without-GPU fixture and the comparison helpers.
//
// Without a usable CUDA device each test executable prints one line "GPU_SKIP: <reason>" and exits
// 0 before any test case runs; ctest turns that line into "skipped" (SKIP_REGULAR_EXPRESSION in
// tests/CMakeLists.txt), so CI machines without a GPU stay green.
#pragma once
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "backend/cuda/cuda_backend.h"

namespace sl::test {

struct GpuOrSkip {
  GpuOrSkip() {
    std::string why;
    if (sl::cuda_device_count(&why) == 0) {
      std::printf("GPU_SKIP: no usable CUDA device (%s)\n", why.c_str());
      std::fflush(stdout);
      std::exit(0);
    }
  }
};

// max |a - b| / max(max |b|, floor): the error of the largest entries, normalised by the
// reference's scale (or by `floor` where the reference is ~0 by construction).
inline double rel_err(const std::vector<float>& a, const std::vector<float>& b, double floor = 0) {
  double num = 0, den = floor;
  for (size_t i = 0; i < b.size(); ++i) {
    num = std::max(num, std::abs(double(a[i]) - double(b[i])));
    den = std::max(den, std::abs(double(b[i])));
  }
  return num / std::max(den, 1e-30);
}

inline bool has_nan(const std::vector<float>& a) {
  for (float v : a)
    if (!std::isfinite(v)) return true;
  return false;
}

// Rounds a float to the nearest bf16 (ties to even), as the device conversion does.
inline float round_bf16(float x) {
  if (!std::isfinite(x)) return x;
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

// Appends a line to the report file named by $SL_GPU_REPORT (if set) and logs it.
inline void report(const std::string& line) {
  BOOST_TEST_MESSAGE(line);
  std::printf("%s\n", line.c_str());
  if (const char* path = std::getenv("SL_GPU_REPORT")) {
    std::ofstream f(path, std::ios::app);
    f << line << "\n";
  }
}

}  // namespace sl::test
