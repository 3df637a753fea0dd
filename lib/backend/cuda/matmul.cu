// Linear layer y = x w^T (HF Linear: weight [out, in]) on cuBLASLt, fp32 accumulation always:
// bf16 x bf16 -> bf16 or f32 output on tensor cores (CUBLAS_COMPUTE_32F), f32 x f32 -> f32 in
// plain fp32 (CUBLAS_COMPUTE_32F without the TF32 fast path), so the all-f32 path matches the CPU.
//
// Row-major to cuBLAS's column-major: a row-major [R, C] matrix with leading dimension L is the
// column-major [C, R] matrix (its transpose) with the same L. Hence, with w [N, K], x [M, K] ld
// ldx, y and dy [M, N] ld ldy (N unless the shape pads the rows):
//   y^T  [N, M] = w . x^T     = gemm(T, N; m=N, n=M, k=K; A = w (ld K), B = x (ld ldx))
//   dx^T [K, M] = w^T . dy^T  = gemm(N, N; m=K, n=M, k=N; A = w (ld K), B = dy (ld ldy))
//   dw^T [K, N] = x^T . dy    = gemm(N, T; m=K, n=N, k=M; A = x (ld ldx), B = dy (ld ldy))
// Accumulation (+=) is beta = 1 with C = D; the fp32 parameter gradients accumulate in fp32.
//
// Plans: cuBLASLt picks an algorithm per problem from its heuristic, which is slow next to a
// small GEMM, so each distinct problem (shape, transposes, leading dimensions, dtypes, beta and
// the pointers' alignment) is planned once and its descriptors and algorithm kept. Alignment is
// part of the key because the heuristic may return vectorised kernels that need it: parameter
// views inside the flat bf16 buffer can be only 2-byte aligned, and a plan made for 16-byte
// aligned pointers must never run on them. If the heuristic offers nothing (an unusual
// alignment or shape), the GEMM falls back to cublasGemmEx, which accepts any layout.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <map>
#include <string>
#include <tuple>

#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace sl::cuda {
namespace {

const char* cublas_status(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "execution failed";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "not supported";
    default:
      return "error";
  }
}

void check(cublasStatus_t s, const char* call) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail(std::string("cuda matmul: ") + call + " failed: " + cublas_status(s));
}

cudaDataType_t cuda_type(const Tensor& t, const char* what) {
  if (t.dtype == DType::bf16) return CUDA_R_16BF;
  if (t.dtype == DType::f32) return CUDA_R_32F;
  fail(std::string("cuda matmul: ") + what + " is f64; the CUDA backend supports f32 and bf16");
}

// Largest power of two (<= 256) dividing the address: what the plan may assume.
uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al /= 2;
  return al;
}

}  // namespace

struct GemmPlans {
  using Key = std::tuple<int, int, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int, int,
                         bool, uint32_t, uint32_t, uint32_t>;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
    bool have_algo = false;  // false: use cublasGemmEx
  };
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;  // the fallback
  void* workspace = nullptr;
  size_t workspace_bytes = 32u << 20;  // cuBLAS's recommendation for Hopper
  std::map<Key, Plan> plans;

  explicit GemmPlans(cudaStream_t stream) {
    check(cublasLtCreate(&lt), "cublasLtCreate");
    check(cublasCreate(&blas), "cublasCreate");
    check(cublasSetStream(blas, stream), "cublasSetStream");
    SL_CUDA_CHECK(cudaMalloc(&workspace, workspace_bytes));
    check(cublasSetWorkspace(blas, workspace, workspace_bytes), "cublasSetWorkspace");
  }
  ~GemmPlans() {
    for (auto& kv : plans) {
      cublasLtMatrixLayoutDestroy(kv.second.a);
      cublasLtMatrixLayoutDestroy(kv.second.b);
      cublasLtMatrixLayoutDestroy(kv.second.c);
      cublasLtMatmulDescDestroy(kv.second.op);
    }
    if (blas) cublasDestroy(blas);
    if (lt) cublasLtDestroy(lt);
    if (workspace) cudaFree(workspace);
  }
  GemmPlans(const GemmPlans&) = delete;
  GemmPlans& operator=(const GemmPlans&) = delete;
};

GemmPlans* gemm_plans_create(cudaStream_t stream) { return new GemmPlans(stream); }
void gemm_plans_destroy(GemmPlans* g) { delete g; }

namespace {

// The plan of one problem (made on first use).
const GemmPlans::Plan& plan(GemmPlans& G, cublasOperation_t ta, cublasOperation_t tb, int64_t m,
                            int64_t n, int64_t k, cudaDataType_t at, const void* A, int64_t lda,
                            const void* B, int64_t ldb, cudaDataType_t ct, const void* C,
                            int64_t ldc, bool accumulate) {
  const GemmPlans::Key key{
      ta, tb, m, n, k, lda, ldb, ldc, at, ct, accumulate, alignment(A), alignment(B), alignment(C)};
  auto it = G.plans.find(key);
  if (it != G.plans.end()) return it->second;
  GemmPlans::Plan p;
  check(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
  check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta),
        "set TRANSA");
  check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb),
        "set TRANSB");
  // Stored shapes: op(A) is [m, k], so A is [m, k] (N) or [k, m] (T); likewise B [k, n].
  const bool na = ta == CUBLAS_OP_N, nb = tb == CUBLAS_OP_N;
  check(cublasLtMatrixLayoutCreate(&p.a, at, na ? m : k, na ? k : m, lda), "layout A");
  check(cublasLtMatrixLayoutCreate(&p.b, at, nb ? k : n, nb ? n : k, ldb), "layout B");
  check(cublasLtMatrixLayoutCreate(&p.c, ct, m, n, ldc), "layout C");
  cublasLtMatmulPreference_t pref = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
  const uint64_t ws = G.workspace_bytes;
  check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                             sizeof ws),
        "set workspace");
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> al[4] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment(A)},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment(B)},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment(C)},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment(C)}};
  for (const auto& [attr, bytes] : al)
    check(cublasLtMatmulPreferenceSetAttribute(pref, attr, &bytes, sizeof bytes), "set alignment");
  cublasLtMatmulHeuristicResult_t res{};
  int found = 0;
  const cublasStatus_t s =
      cublasLtMatmulAlgoGetHeuristic(G.lt, p.op, p.a, p.b, p.c, p.c, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  p.have_algo = s == CUBLAS_STATUS_SUCCESS && found > 0;
  if (p.have_algo) p.algo = res.algo;
  return G.plans.emplace(key, p).first->second;
}

// C (=|+=) op(A) op(B), column-major [m, n], fp32 accumulation. A and B must share a dtype; with
// f32 inputs the output must be f32 too (no f32 x f32 -> bf16 GEMM).
void gemm(Ctx& ctx, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k,
          const Tensor& A, int64_t lda, const Tensor& B, int64_t ldb, const Tensor& C, int64_t ldc,
          bool accumulate, const char* what) {
  if (m <= 0 || n <= 0) return;
  const cudaDataType_t at = cuda_type(A, what), bt = cuda_type(B, what), ct = cuda_type(C, what);
  if (at != bt || (at == CUDA_R_32F && ct != CUDA_R_32F))
    fail(std::string("cuda matmul (") + what + "): unsupported dtypes " + dtype_name(A.dtype) +
         " x " + dtype_name(B.dtype) + " -> " + dtype_name(C.dtype) +
         " (inputs must share a dtype; f32 inputs need an f32 output)");
  if (!ctx.gemm) fail("cuda matmul: no GEMM plans (backend not initialised)");
  GemmPlans& G = *ctx.gemm;
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  const auto where = [&] {
    return " (m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) + ")";
  };
  // k = 0 (C = beta C) is left to cublasGemmEx, which defines it; cuBLASLt layouts need k >= 1.
  const GemmPlans::Plan* p =
      k > 0 ? &plan(G, ta, tb, m, n, k, at, A.data, lda, B.data, ldb, ct, C.data, ldc, accumulate)
            : nullptr;
  if (p && p->have_algo) {
    const cublasStatus_t s =
        cublasLtMatmul(G.lt, p->op, &alpha, A.data, p->a, B.data, p->b, &beta, C.data, p->c, C.data,
                       p->c, &p->algo, G.workspace, G.workspace_bytes, ctx.stream);
    if (s != CUBLAS_STATUS_SUCCESS)
      fail(std::string("cuda matmul (") + what + "): cublasLtMatmul failed: " + cublas_status(s) +
           where());
    return;
  }
  const cublasStatus_t s = cublasGemmEx(
      G.blas, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &alpha, A.data,
      at, static_cast<int>(lda), B.data, bt, static_cast<int>(ldb), &beta, C.data, ct,
      static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS)
    fail(std::string("cuda matmul (") + what + "): cublasGemmEx failed: " + cublas_status(s) +
         where());
}

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's GEMM, common.cuh

void CudaBackend::matmul_forward(Tensor y, Tensor x, Tensor w, const MatmulShape& shape,
                                 bool accumulate) {
  const int64_t M = shape.M, K = shape.K, N = shape.N, ldx = shape.ldx, ldy = shape.y_stride();
  gemm(cuda_ctx(), CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, w, K, x, ldx, y, ldy, accumulate, "forward");
}

void CudaBackend::matmul_backward(Tensor dx, Tensor dw, Tensor dy, Tensor x, Tensor w,
                                  const MatmulShape& shape, bool accumulate) {
  const int64_t M = shape.M, K = shape.K, N = shape.N, ldx = shape.ldx, ldy = shape.y_stride();
  Ctx& ctx = cuda_ctx();
  if (dx) gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, w, K, dy, ldy, dx, ldx, accumulate, "dx");
  if (dw) gemm(ctx, CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, x, ldx, dy, ldy, dw, K, true, "dw");
}

}  // namespace sl
