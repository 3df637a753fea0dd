// CudaBackend: device set-up, memory, host transfers, graphs, the state the ops share (the Ctx,
// the RoPE tables) and the memory ops zero, upload and download. Every other op is defined in its
// own file of this folder (common.cuh).
#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/common.cuh"

namespace sl {

int cuda_device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error state
    if (why) *why = cudaGetErrorString(e);
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device";
  return n;
}

struct CudaBackend::Impl {
  cudaStream_t stream = nullptr;
  cuda::GemmPlans* gemm = nullptr;
  cuda::Scratch work, reduce;
  cuda::Ctx ctx;
  // Fences: a ring of events; fence k is event k % kFences (an older fence whose event was
  // recorded again is waited for by a later point of the stream, which is still correct).
  static constexpr int kFences = 64;
  cudaEvent_t fences[kFences] = {};
  uint64_t next_fence = 0;
  // Stamps: timing events, stamp k is stamps[k]; the pool grows and is reused after
  // clear_stamps().
  std::vector<cudaEvent_t> stamps;
  size_t next_stamp = 0;
  // Device memory from alloc(): sizes by pointer, so free() can count exactly.
  std::map<void*, size_t> sizes;
  int64_t in_use = 0, peak = 0;
  // RoPE cos/sin tables [T, hd/2] per (T, hd, theta), built once on the host in double.
  std::map<std::tuple<int64_t, int64_t, float>, float*> rope;

  ~Impl() {
    for (cudaEvent_t e : fences)
      if (e) cudaEventDestroy(e);
    for (cudaEvent_t e : stamps) cudaEventDestroy(e);
    for (auto& kv : rope) cudaFree(kv.second);
    cuda::gemm_plans_destroy(gemm);
    if (stream) cudaStreamDestroy(stream);
  }
};

CudaBackend::CudaBackend(int device, DType act) : device_(device), act_(act) {
  if (act != DType::bf16 && act != DType::f32)
    fail("cuda: activation dtype must be bf16 or f32, not " + std::string(dtype_name(act)));
  std::string why;
  const int n = cuda_device_count(&why);
  if (n == 0)
    fail("--device cuda:" + std::to_string(device) + ": no CUDA device available (" + why + ")");
  if (device < 0 || device >= n)
    fail("--device cuda:" + std::to_string(device) + ": no such device (" + std::to_string(n) +
         " CUDA device" + (n == 1 ? "" : "s") + " present)");
  SL_CUDA_CHECK(cudaSetDevice(device));
  impl_ = std::make_unique<Impl>();
  SL_CUDA_CHECK(cudaStreamCreateWithFlags(&impl_->stream, cudaStreamNonBlocking));
  impl_->gemm = cuda::gemm_plans_create(impl_->stream);
  cudaDeviceProp prop{};
  SL_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  cuda::Ctx& c = impl_->ctx;
  c.stream = impl_->stream;
  c.work = &impl_->work;
  c.reduce = &impl_->reduce;
  for (cudaEvent_t& e : impl_->fences)
    SL_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  c.gemm = impl_->gemm;
  c.num_sms = prop.multiProcessorCount;
  c.smem_optin = prop.sharedMemPerBlockOptin;
}

CudaBackend::~CudaBackend() {
  if (impl_) cudaStreamSynchronize(impl_->stream);
}

void* CudaBackend::stream_handle() const { return impl_->stream; }
cuda::Ctx& CudaBackend::cuda_ctx() { return impl_->ctx; }

std::string CudaBackend::name() const { return "cuda:" + std::to_string(device_); }

// ---- memory
// --------------------------------------------------------------------------------------

Tensor CudaBackend::alloc(int64_t n, DType t) {
  // f64 and i32 tensors hold step scalars and indices (the ops compute on f32/bf16, dptr()).
  const size_t bytes = std::max<size_t>(static_cast<size_t>(n) * dtype_size(t), 256);
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    fail("cuda: out of device memory allocating " + std::to_string(bytes) + " bytes (" +
         cudaGetErrorString(e) + ")");
  }
  SL_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, impl_->stream));
  impl_->sizes[p] = bytes;
  impl_->in_use += static_cast<int64_t>(bytes);
  impl_->peak = std::max(impl_->peak, impl_->in_use);
  return Tensor(p, t, n);
}

void CudaBackend::free(Tensor t) {
  if (!t.data) return;
  SL_CUDA_CHECK(cudaFree(t.data));
  auto it = impl_->sizes.find(t.data);
  if (it != impl_->sizes.end()) {
    impl_->in_use -= static_cast<int64_t>(it->second);
    impl_->sizes.erase(it);
  }
}
int64_t CudaBackend::bytes_in_use() const { return impl_->in_use; }
int64_t CudaBackend::peak_bytes() const { return impl_->peak; }

void* CudaBackend::alloc_host(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMallocHost(&p, std::max<size_t>(bytes, 1));
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    fail("cuda: out of page-locked host memory allocating " + std::to_string(bytes) + " bytes (" +
         cudaGetErrorString(e) + ")");
  }
  return p;
}
void CudaBackend::free_host(void* p) {
  if (p) SL_CUDA_CHECK(cudaFreeHost(p));
}
void CudaBackend::copy_to_device(Tensor dst, const void* host) {
  if (dst.n > 0)
    SL_CUDA_CHECK(cudaMemcpyAsync(dst.data, host,
                                  static_cast<size_t>(dst.n) * dtype_size(dst.dtype),
                                  cudaMemcpyHostToDevice, impl_->stream));
}
void CudaBackend::copy_to_host(void* host, Tensor src) {
  if (src.n > 0)
    SL_CUDA_CHECK(cudaMemcpyAsync(host, src.data,
                                  static_cast<size_t>(src.n) * dtype_size(src.dtype),
                                  cudaMemcpyDeviceToHost, impl_->stream));
}
uint64_t CudaBackend::fence() {
  const uint64_t f = impl_->next_fence++;
  SL_CUDA_CHECK(cudaEventRecord(impl_->fences[f % Impl::kFences], impl_->stream));
  return f;
}
void CudaBackend::wait(uint64_t f) {
  SL_CUDA_CHECK(cudaEventSynchronize(impl_->fences[f % Impl::kFences]));
}

uint64_t CudaBackend::stamp() {
  Impl& m = *impl_;
  if (m.next_stamp == m.stamps.size()) {
    cudaEvent_t e;
    SL_CUDA_CHECK(cudaEventCreate(&e));
    m.stamps.push_back(e);
  }
  SL_CUDA_CHECK(cudaEventRecord(m.stamps[m.next_stamp], m.stream));
  return m.next_stamp++;
}
double CudaBackend::stamp_ms(uint64_t a, uint64_t b) {
  const Impl& m = *impl_;
  if (a >= m.next_stamp || b >= m.next_stamp) fail("cuda: stamp_ms of a stamp not taken");
  float ms = 0;
  SL_CUDA_CHECK(cudaEventElapsedTime(&ms, m.stamps[a], m.stamps[b]));
  return static_cast<double>(ms);
}
void CudaBackend::clear_stamps() { impl_->next_stamp = 0; }

namespace {
// A captured stream: instantiated once, replayed on the stream it was captured from.
class CudaGraph final : public Backend::Graph {
 public:
  CudaGraph(cudaGraphExec_t exec, cudaStream_t stream) : exec_(exec), stream_(stream) {}
  ~CudaGraph() override { cudaGraphExecDestroy(exec_); }
  void launch() override { SL_CUDA_CHECK(cudaGraphLaunch(exec_, stream_)); }

 private:
  cudaGraphExec_t exec_;
  cudaStream_t stream_;
};
}  // namespace

std::unique_ptr<Backend::Graph> CudaBackend::capture(std::function<void()> fn) {
  cudaStream_t st = impl_->stream;
  impl_->work.frozen = impl_->reduce.frozen = true;
  SL_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    fn();
  } catch (...) {
    (void)cudaStreamEndCapture(st, &graph);
    if (graph) cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    impl_->work.frozen = impl_->reduce.frozen = false;
    throw;
  }
  impl_->work.frozen = impl_->reduce.frozen = false;
  SL_CUDA_CHECK(cudaStreamEndCapture(st, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  SL_CUDA_CHECK(e);
  return std::make_unique<CudaGraph>(exec, st);
}

void CudaBackend::zero(Tensor t) {
  if (t.n > 0)
    SL_CUDA_CHECK(
        cudaMemsetAsync(t.data, 0, static_cast<size_t>(t.n) * dtype_size(t.dtype), impl_->stream));
}

void CudaBackend::upload(Tensor dst, const float* src) {
  if (dst.n <= 0) return;
  cuda::dptr(dst, "upload", "dst");
  if (dst.dtype == DType::f32) {
    SL_CUDA_CHECK(cudaMemcpyAsync(dst.data, src, static_cast<size_t>(dst.n) * sizeof(float),
                                  cudaMemcpyHostToDevice, impl_->stream));
  } else {
    std::vector<__nv_bfloat16> h(static_cast<size_t>(dst.n));
    for (int64_t i = 0; i < dst.n; ++i) h[i] = __float2bfloat16(src[i]);
    SL_CUDA_CHECK(cudaMemcpyAsync(dst.data, h.data(), h.size() * sizeof(__nv_bfloat16),
                                  cudaMemcpyHostToDevice, impl_->stream));
  }
  SL_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
}

void CudaBackend::download(float* dst, Tensor src) {
  if (src.n <= 0) return;
  cuda::dptr(src, "download", "src");
  if (src.dtype == DType::f32) {
    SL_CUDA_CHECK(cudaMemcpyAsync(dst, src.data, static_cast<size_t>(src.n) * sizeof(float),
                                  cudaMemcpyDeviceToHost, impl_->stream));
    SL_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
  } else {
    std::vector<__nv_bfloat16> h(static_cast<size_t>(src.n));
    SL_CUDA_CHECK(cudaMemcpyAsync(h.data(), src.data, h.size() * sizeof(__nv_bfloat16),
                                  cudaMemcpyDeviceToHost, impl_->stream));
    SL_CUDA_CHECK(cudaStreamSynchronize(impl_->stream));
    for (int64_t i = 0; i < src.n; ++i) dst[i] = __bfloat162float(h[i]);
  }
}

void CudaBackend::synchronize() { SL_CUDA_CHECK(cudaStreamSynchronize(impl_->stream)); }

double CudaBackend::time_ms(const std::function<void()>& fn, int reps) {
  cudaEvent_t e0, e1;
  SL_CUDA_CHECK(cudaEventCreate(&e0));
  SL_CUDA_CHECK(cudaEventCreate(&e1));
  SL_CUDA_CHECK(cudaEventRecord(e0, impl_->stream));
  for (int i = 0; i < reps; ++i) fn();
  SL_CUDA_CHECK(cudaEventRecord(e1, impl_->stream));
  SL_CUDA_CHECK(cudaEventSynchronize(e1));
  float ms = 0;
  SL_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
  SL_CUDA_CHECK(cudaEventDestroy(e0));
  SL_CUDA_CHECK(cudaEventDestroy(e1));
  return static_cast<double>(ms) / (reps > 0 ? reps : 1);
}

namespace {
// cos/sin(t * theta^(-2i/hd)) for t < T, i < hd/2, in double then rounded, as backend/cpu/rope.cc.
std::vector<float> rope_table_host(int64_t T, int64_t hd, float theta) {
  const int64_t half = hd / 2;
  std::vector<float> tab(static_cast<size_t>(2 * T * half));
  for (int64_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(static_cast<double>(theta), -2.0 * double(i) / double(hd));
    for (int64_t t = 0; t < T; ++t) {
      const double ang = double(t) * inv_freq;
      tab[t * half + i] = static_cast<float>(std::cos(ang));
      tab[T * half + t * half + i] = static_cast<float>(std::sin(ang));
    }
  }
  return tab;
}
}  // namespace

const float* CudaBackend::rope_table(int64_t T, int64_t hd, float theta) {
  if (hd % 2 != 0) fail("rope: head dim " + std::to_string(hd) + " must be even");
  auto key = std::make_tuple(T, hd, theta);
  auto it = impl_->rope.find(key);
  if (it == impl_->rope.end()) {
    const std::vector<float> tab = rope_table_host(T, hd, theta);
    float* d = nullptr;
    SL_CUDA_CHECK(cudaMalloc(&d, std::max<size_t>(tab.size(), 1) * sizeof(float)));
    SL_CUDA_CHECK(cudaMemcpy(d, tab.data(), tab.size() * sizeof(float), cudaMemcpyHostToDevice));
    it = impl_->rope.emplace(key, d).first;
  }
  return it->second;
}

}  // namespace sl
