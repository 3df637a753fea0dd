// Gated DeltaNet recurrence on the CPU, in two forms that compute the same function:
//   recurrent: the naive per-step recurrence (the reference);
//   chunk:     the chunkwise (WY/UT) form over chunks of kGdnChunk steps, the algorithm the CUDA
//              kernel implements on tensor cores.
// Per (batch b, head h), state S in R^{dk x dv}, S_0 = 0, for t = 0..T-1:
//   S     <- exp(g_t) S
//   delta  = beta_t (v_t - S^T k_t)
//   S     <- S + k_t delta^T
//   o_t    = S^T q_t
// Layouts: q, k [B, T, H, dk]; v, out [B, T, H, dv]; beta, g [B, T, H];
// states [B, H, NC, dk, dv], NC = ceil(T / kGdnChunk): the state entering chunk c (S before step
// c*kGdnChunk), written by forward and read by backward. Backward ACCUMULATES into dq, dk, dv,
// dbeta, dg (core/backend.h convention).
#pragma once
#include <cstdint>

namespace sl::cpu {

inline constexpr int64_t kGdnChunk = 64;
inline int64_t gdn_num_chunks(int64_t T) { return (T + kGdnChunk - 1) / kGdnChunk; }

template <class T>
void gdn_recurrent_forward(T* out, T* states, const T* q, const T* k, const T* v, const T* beta,
                           const T* g, int64_t B, int64_t T_, int64_t H, int64_t dk, int64_t dv);
template <class T>
void gdn_recurrent_backward(T* dq, T* dk_, T* dv_, T* dbeta, T* dg, const T* dout, const T* states,
                            const T* q, const T* k, const T* v, const T* beta, const T* g,
                            int64_t B, int64_t T_, int64_t H, int64_t dk, int64_t dv);

template <class T>
void gdn_chunk_forward(T* out, T* states, const T* q, const T* k, const T* v, const T* beta,
                       const T* g, int64_t B, int64_t T_, int64_t H, int64_t dk, int64_t dv);
template <class T>
void gdn_chunk_backward(T* dq, T* dk_, T* dv_, T* dbeta, T* dg, const T* dout, const T* states,
                        const T* q, const T* k, const T* v, const T* beta, const T* g, int64_t B,
                        int64_t T_, int64_t H, int64_t dk, int64_t dv);

}  // namespace sl::cpu
