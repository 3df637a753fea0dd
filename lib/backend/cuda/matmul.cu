// Linear layer y = x w^T (HF Linear: weight [out, in]) on cuBLAS, fp32 accumulation always:
// bf16 x bf16 -> bf16 or f32 output on tensor cores (CUBLAS_COMPUTE_32F), f32 x f32 -> f32 in
// plain fp32 (the handle's default math mode: no TF32), so the all-f32 path matches the CPU.
//
// Row-major to cuBLAS's column-major: a row-major [R, C] matrix with leading dimension L is the
// column-major [C, R] matrix (its transpose) with the same L. Hence, with w [N, K], x [M, K] ld
// ldx, dy [M, N]:
//   y^T  [N, M] = w . x^T     = gemm(T, N; m=N, n=M, k=K; A = w (ld K), B = x (ld ldx))
//   dx^T [K, M] = w^T . dy^T  = gemm(N, N; m=K, n=M, k=N; A = w (ld K), B = dy (ld N))
//   dw^T [K, N] = x^T . dy    = gemm(N, T; m=K, n=N, k=M; A = x (ld ldx), B = dy (ld N))
// Accumulation (+=) is beta = 1; the fp32 parameter gradients accumulate in fp32.
#include <string>

#include "backend/cuda/ops.h"

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

cudaDataType_t cuda_type(const Tensor& t, const char* what) {
  if (t.dtype == DType::bf16) return CUDA_R_16BF;
  if (t.dtype == DType::f32) return CUDA_R_32F;
  fail(std::string("cuda matmul: ") + what + " is f64; the CUDA backend supports f32 and bf16");
}

// C (=|+=) op(A) op(B), column-major, fp32 accumulation. A and B must share a dtype; with f32
// inputs the output must be f32 too (cuBLAS has no f32 x f32 -> bf16 GEMM).
void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n,
          int64_t k, const Tensor& A, int64_t lda, const Tensor& B, int64_t ldb, const Tensor& C,
          int64_t ldc, bool accumulate, const char* what) {
  if (m <= 0 || n <= 0) return;
  const cudaDataType_t at = cuda_type(A, what), bt = cuda_type(B, what), ct = cuda_type(C, what);
  if (at != bt || (at == CUDA_R_32F && ct != CUDA_R_32F))
    fail(std::string("cuda matmul (") + what + "): unsupported dtypes " + dtype_name(A.dtype) +
         " x " + dtype_name(B.dtype) + " -> " + dtype_name(C.dtype) +
         " (inputs must share a dtype; f32 inputs need an f32 output)");
  const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
  const cublasStatus_t s =
      cublasGemmEx(h, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &alpha,
                   A.data, at, static_cast<int>(lda), B.data, bt, static_cast<int>(ldb), &beta,
                   C.data, ct, static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS)
    fail(std::string("cuda matmul (") + what + "): cublasGemmEx failed: " + cublas_status(s) +
         " (m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) + ")");
}

}  // namespace

void matmul_forward(Ctx&, cublasHandle_t h, const Tensor& y, const Tensor& x, int64_t ldx,
                    const Tensor& w, int64_t M, int64_t K, int64_t N, bool accumulate) {
  gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, w, K, x, ldx, y, N, accumulate, "forward");
}

void matmul_backward(Ctx&, cublasHandle_t h, const Tensor& dx, const Tensor& dw, const Tensor& dy,
                     const Tensor& x, int64_t ldx, const Tensor& w, int64_t M, int64_t K,
                     int64_t N) {
  if (dx) gemm(h, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, w, K, dy, N, dx, ldx, true, "dx");
  if (dw) gemm(h, CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, x, ldx, dy, N, dw, K, true, "dw");
}

}  // namespace sl::cuda
