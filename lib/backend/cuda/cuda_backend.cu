// CudaBackend: device set-up, memory, host transfers, and the dispatch of every op to its
// launcher in ops.h (one .cu file per op group), checking each tensor's dtype on the way.
#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/ops.h"

namespace sl {

using cuda::DPtr;

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
  // Device memory from alloc(): sizes by pointer, so free() can count exactly.
  std::map<void*, size_t> sizes;
  int64_t in_use = 0, peak = 0;
  // RoPE cos/sin tables [T, hd/2] per (T, hd, theta), built once on the host in double.
  std::map<std::tuple<int64_t, int64_t, float>, float*> rope;

  ~Impl() {
    for (cudaEvent_t e : fences)
      if (e) cudaEventDestroy(e);
    for (auto& kv : rope) cudaFree(kv.second);
    cuda::gemm_plans_destroy(gemm);
    if (stream) cudaStreamDestroy(stream);
  }
};

namespace {

DPtr P(const Tensor& t, const char* op, const char* what) { return cuda::dptr(t, op, what); }

}  // namespace

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
  P(dst, "upload", "dst");
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
  P(src, "download", "src");
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

void CudaBackend::convert(Tensor dst, Tensor src) {
  SL_ASSERT(dst.n == src.n);
  cuda::convert(impl_->ctx, P(dst, "convert", "dst"), P(src, "convert", "src"), src.n);
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

// ---- elementwise / copies ---------------------------------------------------------------------

void CudaBackend::axpy(Tensor y, Tensor x, float alpha, int64_t n) {
  cuda::axpy(impl_->ctx, P(y, "axpy", "y"), P(x, "axpy", "x"), alpha, n);
}
void CudaBackend::copy2d(Tensor dst, int64_t ld_dst, Tensor src, int64_t ld_src, int64_t rows,
                         int64_t cols, bool accumulate) {
  cuda::copy2d(impl_->ctx, P(dst, "copy2d", "dst"), ld_dst, P(src, "copy2d", "src"), ld_src, rows,
               cols, accumulate);
}
namespace {
// The device address of an f64 scalar / i32 index tensor (they bypass DPtr: no op computes on
// them elementwise).
double* f64_ptr(const Tensor& t, const char* op, const char* what) {
  if (t.dtype != DType::f64 || t.n < 1)
    fail(std::string("cuda ") + op + ": " + what + " must be an f64 scalar");
  return static_cast<double*>(t.data);
}
const int32_t* i32_ptr(const Tensor& t, int64_t n, const char* op, const char* what) {
  if (t.dtype != DType::i32 || t.n < n)
    fail(std::string("cuda ") + op + ": " + what + " must be an i32 tensor of at least " +
         std::to_string(n) + " elements");
  return static_cast<const int32_t*>(t.data);
}
}  // namespace

void CudaBackend::sum_squares(Tensor out, Tensor x, int64_t n) {
  cuda::sum_squares(impl_->ctx, f64_ptr(out, "sum_squares", "out"), P(x, "sum_squares", "x"), n);
}
void CudaBackend::scale(Tensor x, float s, int64_t n) {
  cuda::scale(impl_->ctx, P(x, "scale", "x"), s, n);
}

// ---- ops ----------------------------------------------------------------------------------------

void CudaBackend::embedding_forward(Tensor out, Tensor index, Tensor wte, int64_t BT, int64_t d) {
  const char* op = "embedding_forward";
  cuda::embedding_forward(impl_->ctx, P(out, op, "out"),
                          i32_ptr(index, embedding_index_size(BT), op, "index"), P(wte, op, "wte"),
                          BT, d);
}
void CudaBackend::embedding_backward(Tensor dwte, Tensor index, Tensor dout, int64_t BT,
                                     int64_t d) {
  const char* op = "embedding_backward";
  cuda::embedding_backward(impl_->ctx, P(dwte, op, "dwte"),
                           i32_ptr(index, embedding_index_size(BT), op, "index"),
                           P(dout, op, "dout"), BT, d);
}
void CudaBackend::matmul_forward(Tensor y, Tensor x, int64_t ldx, Tensor w, int64_t M, int64_t K,
                                 int64_t N, bool accumulate) {
  cuda::matmul_forward(impl_->ctx, y, x, ldx, w, M, K, N, accumulate);
}
void CudaBackend::matmul_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx, Tensor w,
                                  int64_t M, int64_t K, int64_t N) {
  cuda::matmul_backward(impl_->ctx, dx, dw, dy, x, ldx, w, M, K, N);
}
void CudaBackend::rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, int64_t ldx, Tensor w, int64_t R,
                                  int64_t C, float eps) {
  const char* op = "rmsnorm_forward";
  cuda::rmsnorm_forward(impl_->ctx, P(y, op, "y"), P(rstd, op, "rstd"), P(x, op, "x"), ldx,
                        P(w, op, "w"), R, C, eps);
}
void CudaBackend::rmsnorm_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx, Tensor w,
                                   Tensor rstd, int64_t R, int64_t C) {
  const char* op = "rmsnorm_backward";
  cuda::rmsnorm_backward(impl_->ctx, P(dx, op, "dx"), P(dw, op, "dw"), P(dy, op, "dy"),
                         P(x, op, "x"), ldx, P(w, op, "w"), P(rstd, op, "rstd"), R, C);
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

void CudaBackend::rope_forward(Tensor x, int64_t B, int64_t T, int64_t H, int64_t hd, float theta) {
  rope(x, B, T, H, hd, theta, 1.f);
}
// The rotation is orthogonal: its gradient is the rotation by the opposite angle.
void CudaBackend::rope_backward(Tensor dx, int64_t B, int64_t T, int64_t H, int64_t hd,
                                float theta) {
  rope(dx, B, T, H, hd, theta, -1.f);
}
void CudaBackend::rope(Tensor x, int64_t B, int64_t T, int64_t H, int64_t hd, float theta,
                       float sign) {
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
  const float* cs = it->second;
  const float* sn = cs + T * (hd / 2);
  cuda::rope(impl_->ctx, P(x, "rope", "x"), cs, sn, B, T, H, hd, sign);
}

void CudaBackend::attention_forward(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v,
                                    int64_t ldv, int64_t B, int64_t T, int64_t H, int64_t hd) {
  const char* op = "attention_forward";
  cuda::attention_forward(impl_->ctx, P(out, op, "out"), P(lse, op, "lse"), P(q, op, "q"),
                          P(k, op, "k"), P(v, op, "v"), ldv, B, T, H, hd);
}
void CudaBackend::attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q,
                                     Tensor k, Tensor v, int64_t ldv, Tensor out, Tensor lse,
                                     int64_t B, int64_t T, int64_t H, int64_t hd) {
  const char* op = "attention_backward";
  cuda::attention_backward(impl_->ctx, P(dq, op, "dq"), P(dk, op, "dk"), P(dv, op, "dv"),
                           P(dout, op, "dout"), P(q, op, "q"), P(k, op, "k"), P(v, op, "v"), ldv,
                           P(out, op, "out"), P(lse, op, "lse"), B, T, H, hd);
}
void CudaBackend::swiglu_forward(Tensor h, Tensor gu, int64_t R, int64_t m) {
  cuda::swiglu_forward(impl_->ctx, P(h, "swiglu_forward", "h"), P(gu, "swiglu_forward", "gu"), R,
                       m);
}
void CudaBackend::swiglu_backward(Tensor dgu, Tensor dh, Tensor gu, int64_t R, int64_t m) {
  const char* op = "swiglu_backward";
  cuda::swiglu_backward(impl_->ctx, P(dgu, op, "dgu"), P(dh, op, "dh"), P(gu, op, "gu"), R, m);
}
void CudaBackend::conv1d_silu_forward(Tensor y, Tensor x, int64_t ldx, Tensor w, int64_t B,
                                      int64_t T, int64_t C, int64_t K) {
  const char* op = "conv1d_silu_forward";
  cuda::conv1d_silu_forward(impl_->ctx, P(y, op, "y"), P(x, op, "x"), ldx, P(w, op, "w"), B, T, C,
                            K);
}
void CudaBackend::conv1d_silu_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, int64_t ldx,
                                       Tensor w, int64_t B, int64_t T, int64_t C, int64_t K) {
  const char* op = "conv1d_silu_backward";
  cuda::conv1d_silu_backward(impl_->ctx, P(dx, op, "dx"), P(dw, op, "dw"), P(dy, op, "dy"),
                             P(x, op, "x"), ldx, P(w, op, "w"), B, T, C, K);
}
void CudaBackend::l2norm_forward(Tensor y, Tensor rnorm, Tensor x, int64_t ldx, int64_t BT,
                                 int64_t H, int64_t C, float scale, float eps) {
  const char* op = "l2norm_forward";
  cuda::l2norm_forward(impl_->ctx, P(y, op, "y"), P(rnorm, op, "rnorm"), P(x, op, "x"), ldx, BT, H,
                       C, scale, eps);
}
void CudaBackend::l2norm_backward(Tensor dx, Tensor dy, Tensor x, int64_t ldx, Tensor rnorm,
                                  int64_t BT, int64_t H, int64_t C, float scale) {
  const char* op = "l2norm_backward";
  cuda::l2norm_backward(impl_->ctx, P(dx, op, "dx"), P(dy, op, "dy"), P(x, op, "x"), ldx,
                        P(rnorm, op, "rnorm"), BT, H, C, scale);
}
void CudaBackend::gdn_gates_forward(Tensor beta, Tensor g, Tensor b, Tensor a, int64_t ld,
                                    Tensor A_log, Tensor dt_bias, int64_t BT, int64_t H,
                                    float beta_scale) {
  const char* op = "gdn_gates_forward";
  cuda::gdn_gates_forward(impl_->ctx, P(beta, op, "beta"), P(g, op, "g"), P(b, op, "b"),
                          P(a, op, "a"), ld, P(A_log, op, "A_log"), P(dt_bias, op, "dt_bias"), BT,
                          H, beta_scale);
}
void CudaBackend::gdn_gates_backward(Tensor db, Tensor da, Tensor dA_log, Tensor ddt_bias,
                                     Tensor dbeta, Tensor dg, Tensor b, Tensor a, int64_t ld,
                                     Tensor A_log, Tensor dt_bias, int64_t BT, int64_t H,
                                     float beta_scale) {
  const char* op = "gdn_gates_backward";
  cuda::gdn_gates_backward(impl_->ctx, P(db, op, "db"), P(da, op, "da"), P(dA_log, op, "dA_log"),
                           P(ddt_bias, op, "ddt_bias"), P(dbeta, op, "dbeta"), P(dg, op, "dg"),
                           P(b, op, "b"), P(a, op, "a"), ld, P(A_log, op, "A_log"),
                           P(dt_bias, op, "dt_bias"), BT, H, beta_scale);
}
void CudaBackend::gdn_forward(Tensor out, Tensor states, Tensor q, Tensor k, Tensor v, Tensor beta,
                              Tensor g, int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv) {
  const char* op = "gdn_forward";
  cuda::gdn_forward(impl_->ctx, P(out, op, "out"), P(states, op, "states"), P(q, op, "q"),
                    P(k, op, "k"), P(v, op, "v"), P(beta, op, "beta"), P(g, op, "g"), B, T, H, dk,
                    dv);
}
void CudaBackend::gdn_backward(Tensor dq, Tensor dk_, Tensor dv_, Tensor dbeta, Tensor dg,
                               Tensor dout, Tensor states, Tensor q, Tensor k, Tensor v,
                               Tensor beta, Tensor g, int64_t B, int64_t T, int64_t H, int64_t dk,
                               int64_t dv) {
  const char* op = "gdn_backward";
  cuda::gdn_backward(impl_->ctx, P(dq, op, "dq"), P(dk_, op, "dk"), P(dv_, op, "dv"),
                     P(dbeta, op, "dbeta"), P(dg, op, "dg"), P(dout, op, "dout"),
                     P(states, op, "states"), P(q, op, "q"), P(k, op, "k"), P(v, op, "v"),
                     P(beta, op, "beta"), P(g, op, "g"), B, T, H, dk, dv);
}
void CudaBackend::gated_rmsnorm_forward(Tensor y, Tensor rstd, Tensor x, Tensor gate, int64_t ldg,
                                        Tensor w, int64_t R, int64_t H, int64_t C, float eps) {
  const char* op = "gated_rmsnorm_forward";
  cuda::gated_rmsnorm_forward(impl_->ctx, P(y, op, "y"), P(rstd, op, "rstd"), P(x, op, "x"),
                              P(gate, op, "gate"), ldg, P(w, op, "w"), R, H, C, eps);
}
void CudaBackend::gated_rmsnorm_backward(Tensor dx, Tensor dgate, Tensor dw, Tensor dy, Tensor x,
                                         Tensor gate, int64_t ldg, Tensor w, Tensor rstd, int64_t R,
                                         int64_t H, int64_t C) {
  const char* op = "gated_rmsnorm_backward";
  cuda::gated_rmsnorm_backward(impl_->ctx, P(dx, op, "dx"), P(dgate, op, "dgate"), P(dw, op, "dw"),
                               P(dy, op, "dy"), P(x, op, "x"), P(gate, op, "gate"), ldg,
                               P(w, op, "w"), P(rstd, op, "rstd"), R, H, C);
}
void CudaBackend::cross_entropy(Tensor loss_sum, Tensor losses, Tensor dlogits, Tensor logits,
                                Tensor targets, int64_t BT, int64_t V, Tensor dscale) {
  const char* op = "cross_entropy";
  cuda::cross_entropy(impl_->ctx, f64_ptr(loss_sum, op, "loss_sum"), P(losses, op, "losses"),
                      P(dlogits, op, "dlogits"), P(logits, op, "logits"),
                      i32_ptr(targets, BT, op, "targets"), BT, V,
                      dlogits ? f64_ptr(dscale, op, "dscale") : nullptr);
}
void CudaBackend::adamw(Tensor p, Tensor g, Tensor m, Tensor v, Tensor p_compute, Tensor items,
                        int64_t n_items, Tensor step, float b1, float b2, float eps, float wd,
                        float max_norm) {
  const char* op = "adamw";
  if (step.n < kStepSlots) fail("cuda adamw: step must hold the 4 step scalars");
  // A compute copy of the same dtype is the master itself (fp32 activations): nothing to write.
  const bool copy = p_compute && p_compute.data != p.data;
  cuda::adamw(impl_->ctx, P(p, op, "p"), P(g, op, "g"), P(m, op, "m"), P(v, op, "v"),
              copy ? P(p_compute, op, "p_compute") : DPtr{},
              i32_ptr(items, 3 * n_items, op, "items"), n_items, p.n, f64_ptr(step, op, "step"), b1,
              b2, eps, wd, max_norm);
}

}  // namespace sl
