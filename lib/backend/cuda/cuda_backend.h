// CudaBackend: the GPU backend, mixed precision. Activations (and the Model's compute copy of the
// weights) are bf16, master parameters, their gradients and the optimizer state fp32; every op
// dispatches on each Tensor's dtype (f32 or bf16), computes in fp32 and accumulates GEMMs in fp32.
// Constructed with act = f32 it runs the same kernels on fp32 activations, which is how the tests
// check the GPU math against CpuBackend<float> at fp32 tolerances.
//
// All work goes to one CUDA stream in call order; no op waits for the device (only upload,
// download, wait and synchronize do), so a training step can be captured into a CUDA graph
// (capture()) and the host stays a step ahead. Each op of the list is defined once, as a member,
// in lib/backend/cuda/<op>.cu beside its kernels (common.cuh: the shared pieces); this header has
// no CUDA types so plain C++ (the backend factory, tests) can include it.
#pragma once
#include <memory>
#include <string>

#include "core/backend.h"

namespace sl {

namespace cuda {
struct Ctx;  // common.cuh
}  // namespace cuda

// Number of usable CUDA devices. 0 when there are none, with the reason in *why (no driver, no
// device, ...).
int cuda_device_count(std::string* why = nullptr);

class CudaBackend final : public Backend {
 public:
  // Fails (sl::Error, one line) when the device does not exist or CUDA cannot start.
  explicit CudaBackend(int device = 0, DType act = DType::bf16);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  std::string name() const override;
  // The device index and the CUDA stream all ops run on (a cudaStream_t; void* keeps CUDA types
  // out of this header), for work that must be ordered with the ops (NCCL collectives).
  int device() const { return device_; }
  void* stream_handle() const;

  DType act_dtype() const override { return act_; }
  DType param_dtype() const override { return DType::f32; }

  Tensor alloc(int64_t n, DType t) override;
  void free(Tensor t) override;
  void synchronize() override;
  double time_ms(const std::function<void()>& fn, int reps) override;
  void* alloc_host(size_t bytes) override;  // page-locked (cudaMallocHost)
  void free_host(void* p) override;
  void copy_to_device(Tensor dst, const void* host) override;
  void copy_to_host(void* host, Tensor src) override;
  uint64_t fence() override;
  void wait(uint64_t fence) override;
  uint64_t stamp() override;  // a timing event recorded on the stream
  double stamp_ms(uint64_t a, uint64_t b) override;
  void clear_stamps() override;
  int64_t bytes_in_use() const override;
  int64_t peak_bytes() const override;
  std::unique_ptr<Graph> capture(std::function<void()> fn) override;

#define SL_OP(name, params, args) void name params override;
#include "core/backend_ops.inc"
#undef SL_OP

 private:
  // The stream, workspaces and device limits every op launches with (cuda_backend.cu).
  cuda::Ctx& cuda_ctx();
  // Rotates x by sign * the RoPE angles (rope.cu).
  void rope(Tensor x, const RopeShape& shape, float sign);
  // Device cos table [T, hd/2], the sin table right after it; cached per (T, hd, theta)
  // (cuda_backend.cu).
  const float* rope_table(int64_t T, int64_t hd, float theta);

  struct Impl;  // stream, cuBLAS handle, workspaces, RoPE tables (CUDA types stay in the .cu)
  int device_;
  DType act_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sl
