// Shared pieces of the CUDA ops: error checks, the dtype-dispatching device pointer and the
// checks that unwrap a Tensor, warp/block reductions, the scalar activations, and the
// deterministic column reduction used by every parameter-gradient sum over tokens.
//
// Each op of the list (core/backend_ops.inc) is defined once, as its CudaBackend member, in this
// folder's file for the op (forward and backward side by side), after the file's kernels (in
// sl::cuda, which the definitions use unqualified). In an op's definition a Tensor parameter is
// named <x>_t and the DPtr its body computes with is <x>, the list's name; everything is enqueued
// on the backend's stream (cuda_ctx()) and nothing waits for the device, so a step can be
// captured into a CUDA graph.
//
// Dtypes: every op reads and writes its tensors through DPtr, which carries the element type
// (f32 or bf16) at run time and converts to/from fp32 on every access. All arithmetic is fp32;
// the branch on the dtype is uniform across a launch, so it costs next to nothing in these
// memory-bound kernels, and any mix of f32/bf16 tensors works (the tests run every op both
// all-f32 and with the Model's mix). f64 is rejected on the host (dptr()).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/error.h"
#include "core/tensor.h"

#define SL_CUDA_CHECK(expr)                                                                    \
  do {                                                                                         \
    const cudaError_t sl_err_ = (expr);                                                        \
    if (sl_err_ != cudaSuccess)                                                                \
      ::sl::fail(std::string("cuda: ") + #expr + ": " + cudaGetErrorString(sl_err_) + " at " + \
                 __FILE__ + ":" + std::to_string(__LINE__));                                   \
  } while (0)
// After a kernel launch: reports bad launch configurations at the call site.
#define SL_CUDA_LAUNCHED() SL_CUDA_CHECK(cudaGetLastError())
// Grid-stride loop over [0, n) in a kernel.
#define SL_GRID_STRIDE(i, n)                                                \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); \
       i += int64_t{gridDim.x} * blockDim.x)

namespace sl::cuda {

// A device pointer with its element type; null when the tensor is (a skipped gradient output).
struct DPtr {
  void* p = nullptr;
  bool bf = false;  // bf16 if true, else f32

  __host__ __device__ explicit operator bool() const { return p != nullptr; }
  __device__ float ld(int64_t i) const {
    return bf ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i])
              : static_cast<const float*>(p)[i];
  }
  __device__ void st(int64_t i, float v) const {
    if (bf)
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v);
    else
      static_cast<float*>(p)[i] = v;
  }
  // p[i] += v (rounded once to the element type).
  __device__ void add(int64_t i, float v) const { st(i, ld(i) + v); }
  // p[i] += v when accumulating, else p[i] = v (the `accumulate` flag of the backward ops).
  __device__ void put(int64_t i, float v, bool accumulate) const {
    st(i, accumulate ? ld(i) + v : v);
  }
};

// Eight consecutive elements p[i .. i+8) as fp32 from and to memory as 32-bit words (bf16: four
// words of two elements, the lower address in the low half; f32: eight), in accesses of A bytes:
// 16 where the chunk is 16-byte aligned (i a multiple of 8 and the base aligned, vec8_ok), else
// 8 or 4 (an offset column block, e.g. the GDN gate after the projection's b|a columns). RO: loads
// through the read-only path (ld.global.nc), for a tensor no thread of the kernel writes, so the
// compiler may issue them ahead of earlier stores to other tensors (a plain load waits behind any
// store that might alias it: one memory round trip per step of a sliding loop). For the
// memory-bound kernels: scalar 2-byte accesses leave most of the bandwidth unused.
template <int A, bool RO, int N>
__device__ inline void ld_words(const void* at, unsigned (&w)[N]) {
  static_assert((A == 16 || A == 8 || A == 4) && N % (A / 4) == 0);
#pragma unroll
  for (int j = 0; j < N / (A / 4); ++j) {
    if constexpr (A == 16) {
      const uint4* q = static_cast<const uint4*>(at) + j;
      const uint4 u = RO ? __ldg(q) : *q;
      w[4 * j] = u.x, w[4 * j + 1] = u.y, w[4 * j + 2] = u.z, w[4 * j + 3] = u.w;
    } else if constexpr (A == 8) {
      const uint2* q = static_cast<const uint2*>(at) + j;
      const uint2 u = RO ? __ldg(q) : *q;
      w[2 * j] = u.x, w[2 * j + 1] = u.y;
    } else {
      const unsigned* q = static_cast<const unsigned*>(at) + j;
      w[j] = RO ? __ldg(q) : *q;
    }
  }
}
template <int A, int N>
__device__ inline void st_words(void* at, const unsigned (&w)[N]) {
  static_assert((A == 16 || A == 8 || A == 4) && N % (A / 4) == 0);
#pragma unroll
  for (int j = 0; j < N / (A / 4); ++j) {
    if constexpr (A == 16)
      static_cast<uint4*>(at)[j] = make_uint4(w[4 * j], w[4 * j + 1], w[4 * j + 2], w[4 * j + 3]);
    else if constexpr (A == 8)
      static_cast<uint2*>(at)[j] = make_uint2(w[2 * j], w[2 * j + 1]);
    else
      static_cast<unsigned*>(at)[j] = w[j];
  }
}
template <int A, bool RO = false>
__device__ inline void ld8a(DPtr p, int64_t i, float (&v)[8]) {
  if (p.bf) {
    unsigned w[4];
    ld_words<A, RO>(static_cast<const __nv_bfloat16*>(p.p) + i, w);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      v[2 * e] = __uint_as_float(w[e] << 16);
      v[2 * e + 1] = __uint_as_float(w[e] & 0xffff0000u);
    }
  } else {
    unsigned w[8];
    ld_words<A, RO>(static_cast<const float*>(p.p) + i, w);
#pragma unroll
    for (int e = 0; e < 8; ++e) v[e] = __uint_as_float(w[e]);
  }
}
template <int A>
__device__ inline void st8a(DPtr p, int64_t i, const float (&v)[8]) {
  if (p.bf) {
    unsigned w[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const __nv_bfloat162 b = __floats2bfloat162_rn(v[2 * e], v[2 * e + 1]);
      w[e] = *reinterpret_cast<const unsigned*>(&b);
    }
    st_words<A>(static_cast<__nv_bfloat16*>(p.p) + i, w);
  } else {
    unsigned w[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) w[e] = __float_as_uint(v[e]);
    st_words<A>(static_cast<float*>(p.p) + i, w);
  }
}
// The 16-byte forms.
__device__ inline void ld8(DPtr p, int64_t i, float (&v)[8]) { ld8a<16>(p, i, v); }
__device__ inline void ld8_ro(DPtr p, int64_t i, float (&v)[8]) { ld8a<16, true>(p, i, v); }
__device__ inline void st8(DPtr p, int64_t i, const float (&v)[8]) { st8a<16>(p, i, v); }
// One element through the read-only path.
__device__ inline float ld1_ro(DPtr p, int64_t i) {
  if (p.bf) {
    const unsigned short u = __ldg(reinterpret_cast<const unsigned short*>(p.p) + i);
    return __uint_as_float(static_cast<unsigned>(u) << 16);
  }
  return __ldg(static_cast<const float*>(p.p) + i);
}
// V consecutive elements, V = 8 (ld8 / st8) or 1: kernels templated on their vector width.
template <int V>
__device__ inline void ldv(DPtr p, int64_t i, float (&v)[V]) {
  static_assert(V == 1 || V == 8);
  if constexpr (V == 8)
    ld8(p, i, v);
  else
    v[0] = p.ld(i);
}
// ldv through the read-only path (ld8_ro), for inputs the kernel does not write.
template <int V>
__device__ inline void ldv_ro(DPtr p, int64_t i, float (&v)[V]) {
  static_assert(V == 1 || V == 8);
  if constexpr (V == 8)
    ld8_ro(p, i, v);
  else
    v[0] = ld1_ro(p, i);
}
template <int V>
__device__ inline void stv(DPtr p, int64_t i, const float (&v)[V]) {
  static_assert(V == 1 || V == 8);
  if constexpr (V == 8)
    st8(p, i, v);
  else
    p.st(i, v[0]);
}
// Host: the largest of 16, 8, 4 bytes that every non-null base is aligned to (0: none); with C
// and the row stride multiples of 8 elements, every 8-element chunk of every row then is too.
inline int vec_align(std::initializer_list<DPtr> ps) {
  int a = 16;
  for (const DPtr& p : ps)
    if (p)
      while (a >= 4 && reinterpret_cast<uintptr_t>(p.p) % a != 0) a /= 2;
  return a >= 4 ? a : 0;
}
// Host: whether ld8/st8 may be used on these tensors (16-byte aligned bases; null ones skipped).
inline bool vec8_ok(std::initializer_list<DPtr> ps) { return vec_align(ps) == 16; }

// Short rows (C <= 256, a multiple of 8: per-head norms) in groups of G lanes, one 8-element
// chunk a lane, 32 / G rows a warp: lane l takes row 32/G (warp index) + l / G at columns
// 8 (l % G) .. + 8. Host: G = C/8 rounded up to a power of two, or 0 if C does not fit.
inline int row_group(int64_t C) {
  if (C % 8 != 0 || C > 256) return 0;
  int G = 1;
  while (8 * G < C) G *= 2;
  return G;
}
// Runs LAUNCH(G) with a row_group() G as a compile-time constant.
#define SL_FOR_GROUP(G, LAUNCH) \
  switch (G) {                  \
    case 1:                     \
      LAUNCH(1);                \
      break;                    \
    case 2:                     \
      LAUNCH(2);                \
      break;                    \
    case 4:                     \
      LAUNCH(4);                \
      break;                    \
    case 8:                     \
      LAUNCH(8);                \
      break;                    \
    case 16:                    \
      LAUNCH(16);               \
      break;                    \
    default:                    \
      LAUNCH(32);               \
      break;                    \
  }

// Host: whether rows of C elements at row stride ldx may go through ld8/st8.
inline bool vec_ok(int64_t C, int64_t ldx, std::initializer_list<DPtr> ps) {
  return C % 8 == 0 && ldx % 8 == 0 && vec8_ok(ps);
}

// Host: the DPtr of a tensor, checking the dtype. `op` and `what` name the argument in errors.
inline DPtr dptr(const Tensor& t, const char* op, const char* what) {
  if (!t.data) return {};
  if (t.dtype == DType::f64 || t.dtype == DType::i32)
    fail(std::string("cuda ") + op + ": " + what + " is " + dtype_name(t.dtype) +
         "; the CUDA ops compute on f32 and bf16 tensors");
  return {t.data, t.dtype == DType::bf16};
}
// Host: the device address of an f64 scalar / i32 index tensor (they bypass DPtr: no op computes
// on them elementwise).
inline double* f64_ptr(const Tensor& t, const char* op, const char* what) {
  if (t.dtype != DType::f64 || t.n < 1)
    fail(std::string("cuda ") + op + ": " + what + " must be an f64 scalar");
  return static_cast<double*>(t.data);
}
inline const int32_t* i32_ptr(const Tensor& t, int64_t n, const char* op, const char* what) {
  if (t.dtype != DType::i32 || t.n < n)
    fail(std::string("cuda ") + op + ": " + what + " must be an i32 tensor of at least " +
         std::to_string(n) + " elements");
  return static_cast<const int32_t*>(t.data);
}

// A device buffer that grows on demand and is reused by every op (ops run one after another on
// one stream). Growing frees the old buffer; cudaFree waits for the kernels still using it.
class Scratch {
 public:
  Scratch() = default;
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    if (p_) cudaFree(p_);
  }
  // While a graph is captured (frozen), a workspace must already have its size: growing would
  // free memory the captured kernels use.
  bool frozen = false;
  void* get(size_t bytes) {
    if (bytes > cap_) {
      if (frozen)
        fail(
            "cuda: a workspace had to grow while a step was captured into a graph (run the step "
            "once before capturing it)");
      if (p_) SL_CUDA_CHECK(cudaFree(p_));
      p_ = nullptr;
      cap_ = std::max(bytes, cap_ + cap_ / 2);
      SL_CUDA_CHECK(cudaMalloc(&p_, cap_));
    }
    return p_;
  }
  template <class T>
  T* get_as(size_t n) {
    return static_cast<T*>(get(n * sizeof(T)));
  }

 private:
  void* p_ = nullptr;
  size_t cap_ = 0;
};

struct GemmPlans;  // matmul.cu: the cuBLASLt handle, its workspace and the cached GEMM plans
GemmPlans* gemm_plans_create(cudaStream_t stream);
void gemm_plans_destroy(GemmPlans* g);

// What every op's launches need: the stream, the workspaces, and the device limits some kernels
// size themselves by.
struct Ctx {
  cudaStream_t stream = nullptr;
  Scratch* work = nullptr;    // per-op workspace (recomputed intermediates, per-tile partials)
  Scratch* reduce = nullptr;  // partial sums of colsum() and of the double reductions only
  GemmPlans* gemm = nullptr;
  int num_sms = 1;
  size_t smem_optin = 48 << 10;  // max dynamic shared memory per block after opt-in (bytes)
};

// Lets `kernel` be launched with `bytes` of dynamic shared memory: above the 48 KB default a
// kernel needs an explicit opt-in (up to Ctx::smem_optin, which callers check first).
template <class K>
void smem_opt_in(K kernel, size_t bytes) {
  if (bytes > (48u << 10))
    SL_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(bytes)));
}

// Grid for a grid-stride loop over n elements with `threads` per block.
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(b, 1, 8192));
}

// ---- scalar math (the functions of backend/cpu/scalar_math.h, in fp32) ------------------------
// sigmoid without the CPU's branch on the sign: 1 / (1 + exp(-z)) is as accurate for z < 0
// (exp(-z) is large, the quotient correctly rounded) and has the right limits (exp(-z) = inf
// gives 0), while the branch diverges inside a warp on mixed-sign inputs and doubled SwiGLU's
// cost.
__device__ inline float sigmoidf_(float z) { return 1.f / (1.f + expf(-z)); }
__device__ inline float siluf_(float z) { return z * sigmoidf_(z); }
__device__ inline float silu_gradf_(float z) {
  const float s = sigmoidf_(z);
  return s * (1.f + z * (1.f - s));
}
__device__ inline float softplusf_(float z) { return fmaxf(z, 0.f) + log1pf(expf(-fabsf(z))); }

// ---- reductions ---------------------------------------------------------------------------------
template <class T>
__device__ inline T warp_sum(T v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Sum over each aligned group of G lanes (G a power of two <= 32); every lane of the warp calls it.
template <int G, class T>
__device__ inline T group_sum(T v) {
#pragma unroll
  for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, <= 1024), in a fixed order; every thread gets
// the result. `sh` holds 32 elements; the call begins and ends with a barrier so it can be reused.
template <class T>
__device__ inline T block_sum(T v, T* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  T s = 0;
  for (int w = 0; w < nw; ++w) s += sh[w];
  __syncthreads();
  return s;
}

// ---- deterministic column sums: out[c] += sum_r f(r, c) -------------------------------------
// For parameter gradients reduced over tokens (norm weights, conv weights, A_log, dt_bias).
// Stage 1: a (32 columns x 8 rows) block sums a chunk of rows per column into partial[chunk, c];
// stage 2 adds the chunks the same way, 32 columns x 8 lanes of chunks (lane y: chunks y, y + 8,
// ... in order), then the 8 lanes in order. (With one thread a column, stage 2 was nchunks
// dependent loads: 512 for the GDN gates' 6 columns, ~80 us for a 6-element result.) Fixed
// partition and order, so the result is bitwise reproducible (no atomics). F is a functor with
// `__device__ float operator()(int64_t r, int64_t c)`.
template <class F>
__global__ void colsum_partial_kernel(F f, int64_t R, int64_t C, int64_t rows_per_chunk,
                                      float* partial) {
  __shared__ float sh[8][33];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = min(R, r0 + rows_per_chunk);
  float acc = 0.f;
  if (c < C) {
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) acc += f(r, c);
  }
  sh[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float s = 0.f;
    for (int y = 0; y < 8; ++y) s += sh[y][threadIdx.x];
    partial[blockIdx.y * C + c] = s;
  }
}
__global__ void colsum_finish_kernel(const float* partial, int64_t nchunks, int64_t C, DPtr out);

// Rows per chunk of colsum(): about 16 blocks per SM in total, each chunk at least 64 rows.
// (With 4 per SM, the conv weight gradient of S4 - 9216 columns, 16k rows - got one chunk: 288
// blocks looping over all rows, 8% of a hybrid step.)
inline int64_t colsum_rows_per_chunk(const Ctx& ctx, int64_t R, int64_t C) {
  const int64_t want = std::max<int64_t>(1, 16 * ctx.num_sms / ((C + 31) / 32));
  return std::max<int64_t>(64, (R + want - 1) / want);
}
// The [chunks, C] floats colsum() needs for its partial sums.
inline int64_t colsum_partial_size(const Ctx& ctx, int64_t R, int64_t C) {
  const int64_t rpc = colsum_rows_per_chunk(ctx, R, C);
  return (R + rpc - 1) / rpc * C;
}

// The one-pass row kernels' dw: each warp's column sums in sh[warp][0 .. C), written before the
// call; the block's sum over its warps (in warp order) goes to partial[blockIdx.x, 0 .. C).
template <int W, int LD>
__device__ inline void store_block_colsum(const float (&sh)[W][LD], int64_t C, float* partial) {
  __syncthreads();
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float t = 0.f;
#pragma unroll
    for (int q = 0; q < W; ++q) t += sh[q][c];
    partial[blockIdx.x * C + c] = t;
  }
}
// Rows of per-block partial column sums [blocks, C] (the one-pass row kernels' dw), summed by
// colsum in a fixed order.
struct PartialRows {
  const float* p;
  int64_t C;
  __device__ float operator()(int64_t r, int64_t c) const { return p[r * C + c]; }
};

// partial: colsum_partial_size floats, or null for ctx.reduce.
template <class F>
void colsum(Ctx& ctx, const F& f, int64_t R, int64_t C, DPtr out, float* partial = nullptr) {
  if (!out || R <= 0 || C <= 0) return;
  const int64_t col_blocks = (C + 31) / 32;
  const int64_t rows_per_chunk = colsum_rows_per_chunk(ctx, R, C);
  const int64_t nchunks = (R + rows_per_chunk - 1) / rows_per_chunk;
  if (!partial) partial = ctx.reduce->get_as<float>(static_cast<size_t>(nchunks * C));
  colsum_partial_kernel<<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(nchunks)),
                          dim3(32, 8), 0, ctx.stream>>>(f, R, C, rows_per_chunk, partial);
  SL_CUDA_LAUNCHED();
  colsum_finish_kernel<<<static_cast<unsigned>(col_blocks), dim3(32, 8), 0, ctx.stream>>>(
      partial, nchunks, C, out);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl::cuda
