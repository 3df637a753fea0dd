// Fused causal softmax attention, flash style. Two paths: bf16 inputs take the bf16 tensor-core
// kernels of attention_flash.cu (FlashAttention-2 style, P rounded to bf16 for P V as
// FlashAttention does); fp32 inputs (the doctor's and the tests' fp32 mode) the fp32-exact
// kernels below.
// scores never leave the chip, the forward saves
// lse = logsumexp of each score row, the backward recomputes P from it. For one (b, h), with
// Q, K, V [T, hd] and scale = 1/sqrt(hd):
//   S = scale Q K^T (s <= t),  lse_t = logsumexp_s S_ts,  P = exp(S - lse),  O = P V
//   D_t = dO_t . O_t,  dS = P (dO V^T - D),  dQ += scale dS K,  dK += scale dS^T Q,  dV += P^T dO
//
// Tiles of BQ query rows x BQ keys staged in shared memory (fp32, widened from bf16 on load,
// zero-padded to BQ rows and hd to a multiple of 16); every product is a block-wide 3xTF32
// tensor-core product (tile_mma.cuh), so the result is fp32-accurate while q, k, v, dout from bf16
// cost one MMA per product. The softmax runs a warp per row. The backward runs two kernels, one
// over key blocks (dK, dV) and one over query blocks (dQ), each recomputing P and dP: no atomics,
// so the result is deterministic (FlashAttention-2 adds dQ with atomics instead).
//
// BQ = 64 where the shared memory allows it (head dims up to 128 in the forward and the dQ
// kernel; up to 64 in the dK/dV kernel, which holds six [BQ, hd] tiles), else 32.
#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cuda/attention_flash.cuh"
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/tile_mma.cuh"

namespace sl::cuda {
namespace {

// Threads per block: the forward runs two 8-warp blocks per SM (87 KB of shared memory each for
// hd = 64); the backward kernels fit one block per SM (122 KB, 140 KB) and run 16 warps to hide
// more latency (S4 attention backward 78.5 -> 74.0 ms per step, docs/PERFORMANCE.md).
constexpr int kThreadsFwd = 256, kThreadsBwd = 512;

struct AttnDims {
  int T, H, hd, hdp;  // hdp: hd rounded up to 16
  int64_t ldv;        // token stride of v (a view into a wider buffer)
  float scale;
  bool xq, xk, xv, xo;  // q, k, v, dout stored as bf16: exact in TF32
  bool acc = false;     // backward: gradients accumulated (+=) or written (=)
  __device__ int64_t ld() const { return int64_t{H} * hd; }  // token stride of q, k, out, dout
};

// dst [n][ldt] <- rows [r0, r0 + n) of one head of a [B*T, *] tensor (token stride tok, head
// offset col), zero past T and in the padding columns hd .. hdp.
__device__ inline void load_head_rows(float* dst, int ldt, DPtr src, int64_t base, int64_t tok,
                                      int64_t col, int r0, int n, const AttnDims& A) {
  load_tile(dst, ldt, src, (base + r0) * tok + col, tok, max(0, min(n, A.T - r0)), n, A.hd, A.hdp);
}

// Shared memory bytes: `tiles` [BQ][hdp+4] tiles, `sq` [BQ][BQ+4] score tiles, `vecs` [BQ] rows.
size_t smem_bytes(int BQ, int hdp, int tiles, int sq, int vecs) {
  return sizeof(float) *
         static_cast<size_t>(tiles * BQ * (hdp + 4) + sq * BQ * (BQ + 4) + vecs * BQ);
}
constexpr int kFwd[3] = {4, 1, 2}, kDq[3] = {5, 2, 2}, kDkv[3] = {6, 2, 2};

// Grid (ceil(T / BQ), B*H). smem: Qs, Ks, Vs, Os [BQ][ld]; Ss [BQ][lds]; m, l [BQ].
template <int BQ>
__global__ void __launch_bounds__(kThreadsFwd)
    attention_forward_kernel(DPtr out, DPtr lse, DPtr q, DPtr k, DPtr v, AttnDims A) {
  extern __shared__ __align__(128) float sm[];
  const int ld = A.hdp + 4, lds = BQ + 4;
  float* Qs = sm;
  float* Ks = Qs + BQ * ld;
  float* Vs = Ks + BQ * ld;
  float* Os = Vs + BQ * ld;
  float* Ss = Os + BQ * ld;
  float* mrow = Ss + BQ * lds;
  float* lrow = mrow + BQ;
  const int bh = blockIdx.y, b = bh / A.H, h = bh % A.H;
  const int r0 = blockIdx.x * BQ, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int nw = blockDim.x / 32;
  const int64_t base = int64_t{b} * A.T, col = int64_t{h} * A.hd;
  load_head_rows(Qs, ld, q, base, A.ld(), col, r0, BQ, A);
  for (int i = threadIdx.x; i < BQ * ld; i += blockDim.x) Os[i] = 0.f;
  for (int i = threadIdx.x; i < BQ; i += blockDim.x) {
    mrow[i] = -INFINITY;
    lrow[i] = 0.f;
  }
  const int t_end = min(A.T, r0 + BQ);  // this block needs keys [0, t_end)
  for (int s0 = 0; s0 < t_end; s0 += BQ) {
    __syncthreads();  // the previous tile is consumed
    load_head_rows(Ks, ld, k, base, A.ld(), col, s0, BQ, A);
    load_head_rows(Vs, ld, v, base, A.ldv, col, s0, BQ, A);
    __syncthreads();
    mm<false, true>(Ss, lds, Qs, ld, Ks, ld, BQ, BQ, A.hdp, false, ex(A.xq, A.xk));
    __syncthreads();
    // Online softmax, a warp per row: P = exp(S - m_new) in place, O and l rescaled by
    // e^{m_old - m_new}. Rows past T see no key: m stays -inf, P = 0, nothing is rescaled.
    for (int row = warp; row < BQ; row += nw) {
      const int t = r0 + row;
      float sc[BQ / 32], mx = -INFINITY;
#pragma unroll
      for (int j = 0; j < BQ / 32; ++j) {
        const int s = lane + 32 * j;
        sc[j] = t < A.T && s0 + s <= t ? A.scale * Ss[row * lds + s] : -INFINITY;
        mx = fmaxf(mx, sc[j]);
      }
      mx = warp_max(mx);
      const float mold = mrow[row], mnew = fmaxf(mold, mx);
      const bool none = mnew == -INFINITY;
      const float corr = none ? 1.f : expf(mold - mnew);
      float psum = 0.f;
#pragma unroll
      for (int j = 0; j < BQ / 32; ++j) {
        const float p = none ? 0.f : expf(sc[j] - mnew);
        Ss[row * lds + lane + 32 * j] = p;
        psum += p;
      }
      psum = warp_sum(psum);
      if (lane == 0) {
        lrow[row] = lrow[row] * corr + psum;
        mrow[row] = mnew;
      }
      for (int c = lane; c < A.hdp; c += 32) Os[row * ld + c] *= corr;
    }
    __syncthreads();
    mm<false, false>(Os, ld, Ss, lds, Vs, ld, BQ, A.hdp, BQ, true, ex(false, A.xv));
  }
  __syncthreads();
  for (int i = threadIdx.x; i < BQ * A.hd; i += blockDim.x) {
    const int r = i / A.hd, c = i % A.hd, t = r0 + r;
    if (t < A.T) out.st((base + t) * A.ld() + col + c, Os[r * ld + c] / lrow[r]);
  }
  for (int r = threadIdx.x; r < BQ; r += blockDim.x)
    if (r0 + r < A.T) lse.st(int64_t{bh} * A.T + r0 + r, mrow[r] + logf(lrow[r]));
}

// D[b, h, t] = sum_c dO[b, t, h, c] O[b, t, h, c]; one warp per (b, t, h).
__global__ void attention_dot_kernel(float* D, DPtr dout, DPtr out, int64_t B, int64_t T, int64_t H,
                                     int64_t hd) {
  const int64_t row = blockIdx.x * int64_t{8} + threadIdx.x / 32;  // (b*T + t)*H + h
  const int lane = threadIdx.x % 32;
  if (row >= B * T * H) return;
  float acc = 0.f;
  for (int64_t c = lane; c < hd; c += 32) acc += dout.ld(row * hd + c) * out.ld(row * hd + c);
  acc = warp_sum(acc);
  const int64_t h = row % H, bt = row / H, b = bt / T, t = bt % T;
  if (lane == 0) D[(b * H + h) * T + t] = acc;
}

// Shared memory of a backward kernel: Qs, dOs, Ks, Vs and nacc accumulators [BQ][ld], then Ss,
// dPs [BQ][BQ+4], then lse_r, D_r [BQ] (smem_bytes with tiles = 4 + nacc, sq = 2, vecs = 2).
template <int BQ>
struct BwdTiles {
  float *Qs, *dOs, *Ks, *Vs, *acc[2], *Ss, *dPs, *lse_r, *D_r;
  __device__ BwdTiles(float* sm, int ld, int nacc) {
    const int tile = BQ * ld, sq = BQ * (BQ + 4);
    Qs = sm;
    dOs = Qs + tile;
    Ks = dOs + tile;
    Vs = Ks + tile;
    acc[0] = Vs + tile;
    acc[1] = nacc > 1 ? acc[0] + tile : nullptr;
    Ss = acc[0] + nacc * tile;
    dPs = Ss + sq;
    lse_r = dPs + sq;
    D_r = lse_r + BQ;
  }
};

// The shared step of both backward kernels, for query rows t0.. (tiles Qs, dOs) against keys
// s0.. (Ks, Vs): Ss <- P = exp(scale Q K^T - lse), dPs <- dS = P (dO V^T - D), both zero where
// s > t or t >= T. lse_r, D_r: the rows' lse and D. Inputs ready on entry; ends with a barrier.
template <int BQ>
__device__ inline void probs_and_grads(float* Ss, float* dPs, const float* Qs, const float* dOs,
                                       const float* Ks, const float* Vs, int ld, const float* lse_r,
                                       const float* D_r, int t0, int s0, const AttnDims& A) {
  constexpr int lds = BQ + 4;
  mm<false, true>(Ss, lds, Qs, ld, Ks, ld, BQ, BQ, A.hdp, false, ex(A.xq, A.xk));
  mm<false, true>(dPs, lds, dOs, ld, Vs, ld, BQ, BQ, A.hdp, false, ex(A.xo, A.xv));
  __syncthreads();
  for (int i = threadIdx.x; i < BQ * BQ; i += blockDim.x) {
    const int r = i / BQ, c = i % BQ, t = t0 + r, s = s0 + c;
    const float p = t < A.T && s <= t ? expf(A.scale * Ss[r * lds + c] - lse_r[r]) : 0.f;
    Ss[r * lds + c] = p;
    dPs[r * lds + c] = p * (dPs[r * lds + c] - D_r[r]);
  }
  __syncthreads();
}

// Loads the rows' lse and D (zero past T).
__device__ inline void load_rows_stats(float* lse_r, float* D_r, DPtr lse, const float* D, int bh,
                                       int t0, int n, int T) {
  for (int r = threadIdx.x; r < n; r += blockDim.x) {
    const int t = t0 + r;
    lse_r[r] = t < T ? lse.ld(int64_t{bh} * T + t) : 0.f;
    D_r[r] = t < T ? D[int64_t{bh} * T + t] : 0.f;
  }
}

// dQ: grid (ceil(T / BQ), B*H). smem: BwdTiles with one accumulator, dQs.
template <int BQ>
__global__ void __launch_bounds__(kThreadsBwd)
    attention_dq_kernel(DPtr dq, DPtr dout, DPtr q, DPtr k, DPtr v, DPtr lse, const float* D,
                        AttnDims A) {
  extern __shared__ __align__(128) float sm[];
  const int ld = A.hdp + 4, lds = BQ + 4;
  const BwdTiles<BQ> m(sm, ld, 1);
  float *Qs = m.Qs, *dOs = m.dOs, *Ks = m.Ks, *Vs = m.Vs, *Ss = m.Ss, *dPs = m.dPs;
  float *lse_r = m.lse_r, *D_r = m.D_r, *dQs = m.acc[0];
  const int bh = blockIdx.y, b = bh / A.H, h = bh % A.H, r0 = blockIdx.x * BQ;
  const int64_t base = int64_t{b} * A.T, col = int64_t{h} * A.hd;
  load_head_rows(Qs, ld, q, base, A.ld(), col, r0, BQ, A);
  load_head_rows(dOs, ld, dout, base, A.ld(), col, r0, BQ, A);
  load_rows_stats(lse_r, D_r, lse, D, bh, r0, BQ, A.T);
  for (int i = threadIdx.x; i < BQ * ld; i += blockDim.x) dQs[i] = 0.f;
  const int t_end = min(A.T, r0 + BQ);
  for (int s0 = 0; s0 < t_end; s0 += BQ) {
    __syncthreads();
    load_head_rows(Ks, ld, k, base, A.ld(), col, s0, BQ, A);
    load_head_rows(Vs, ld, v, base, A.ldv, col, s0, BQ, A);
    __syncthreads();
    probs_and_grads<BQ>(Ss, dPs, Qs, dOs, Ks, Vs, ld, lse_r, D_r, r0, s0, A);
    mm<false, false>(dQs, ld, dPs, lds, Ks, ld, BQ, A.hdp, BQ, true, ex(false, A.xk));
  }
  __syncthreads();
  for (int i = threadIdx.x; i < BQ * A.hd; i += blockDim.x) {
    const int r = i / A.hd, c = i % A.hd, t = r0 + r;
    if (t < A.T) dq.put((base + t) * A.ld() + col + c, A.scale * dQs[r * ld + c], A.acc);
  }
}

// dK, dV: grid (ceil(T / BQ), B*H), a block per BQ keys walking the query tiles t >= s.
// smem: BwdTiles with two accumulators, dKs and dVs.
template <int BQ>
__global__ void __launch_bounds__(kThreadsBwd)
    attention_dkv_kernel(DPtr dk, DPtr dv, DPtr dout, DPtr q, DPtr k, DPtr v, DPtr lse,
                         const float* D, AttnDims A) {
  extern __shared__ __align__(128) float sm[];
  const int ld = A.hdp + 4, lds = BQ + 4;
  const BwdTiles<BQ> m(sm, ld, 2);
  float *Qs = m.Qs, *dOs = m.dOs, *Ks = m.Ks, *Vs = m.Vs, *Ss = m.Ss, *dPs = m.dPs;
  float *lse_r = m.lse_r, *D_r = m.D_r, *dKs = m.acc[0], *dVs = m.acc[1];
  const int bh = blockIdx.y, b = bh / A.H, h = bh % A.H, s0 = blockIdx.x * BQ;
  const int64_t base = int64_t{b} * A.T, col = int64_t{h} * A.hd;
  load_head_rows(Ks, ld, k, base, A.ld(), col, s0, BQ, A);
  load_head_rows(Vs, ld, v, base, A.ldv, col, s0, BQ, A);
  for (int i = threadIdx.x; i < BQ * ld; i += blockDim.x) dKs[i] = dVs[i] = 0.f;
  for (int t0 = s0; t0 < A.T; t0 += BQ) {
    __syncthreads();
    load_head_rows(Qs, ld, q, base, A.ld(), col, t0, BQ, A);
    load_head_rows(dOs, ld, dout, base, A.ld(), col, t0, BQ, A);
    load_rows_stats(lse_r, D_r, lse, D, bh, t0, BQ, A.T);
    __syncthreads();
    probs_and_grads<BQ>(Ss, dPs, Qs, dOs, Ks, Vs, ld, lse_r, D_r, t0, s0, A);
    // Ss, dPs are [t][s]: stored transposed for dV = P^T dO and dK = dS^T Q.
    mm<true, false>(dVs, ld, Ss, lds, dOs, ld, BQ, A.hdp, BQ, true, ex(false, A.xo));
    mm<true, false>(dKs, ld, dPs, lds, Qs, ld, BQ, A.hdp, BQ, true, ex(false, A.xq));
  }
  __syncthreads();
  for (int i = threadIdx.x; i < BQ * A.hd; i += blockDim.x) {
    const int r = i / A.hd, c = i % A.hd, s = s0 + r;
    if (s >= A.T) continue;
    if (dk) dk.put((base + s) * A.ld() + col + c, A.scale * dKs[r * ld + c], A.acc);
    if (dv) dv.put((base + s) * A.ldv + col + c, dVs[r * ld + c], A.acc);
  }
}

AttnDims dims(int64_t T, int64_t H, int64_t hd, int64_t ldv, DPtr q, DPtr k, DPtr v, DPtr dout,
              const char* what) {
  if (hd < 1 || hd > 128)
    fail(std::string("cuda attention ") + what + ": head dim " + std::to_string(hd) +
         " not supported (1..128)");
  if (T > (int64_t{1} << 30) || H > 65535)
    fail(std::string("cuda attention ") + what + ": T or H too large");
  return {static_cast<int>(T),
          static_cast<int>(H),
          static_cast<int>(hd),
          static_cast<int>((hd + 15) / 16 * 16),
          ldv,
          1.f / sqrtf(static_cast<float>(hd)),
          q.bf,
          k.bf,
          v.bf,
          dout.bf};
}

// Launches kernel<64> if its shared memory fits, else kernel<32>.
template <class K64, class K32, class... Args>
void launch(Ctx& ctx, K64 k64, K32 k32, int threads, const int (&n)[3], const AttnDims& A,
            int64_t BH, const char* what, Args... args) {
  int BQ = 64;
  size_t smem = smem_bytes(64, A.hdp, n[0], n[1], n[2]);
  if (smem > ctx.smem_optin) {
    BQ = 32;
    smem = smem_bytes(32, A.hdp, n[0], n[1], n[2]);
  }
  if (smem > ctx.smem_optin)
    fail(std::string("cuda attention ") + what + ": head dim " + std::to_string(A.hd) + " needs " +
         std::to_string(smem) + " bytes of shared memory, the device allows " +
         std::to_string(ctx.smem_optin));
  const dim3 grid(static_cast<unsigned>((A.T + BQ - 1) / BQ), static_cast<unsigned>(BH));
  if (BQ == 64) {
    smem_opt_in(k64, smem);
    k64<<<grid, threads, smem, ctx.stream>>>(args..., A);
  } else {
    smem_opt_in(k32, smem);
    k32<<<grid, threads, smem, ctx.stream>>>(args..., A);
  }
  SL_CUDA_LAUNCHED();
}

// SL_CUDA_ATTENTION=exact sends bf16 calls to the fp32-exact kernels too (before/after
// comparisons in one binary, and a fallback if the bf16 kernels are ever in doubt).
bool flash_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("SL_CUDA_ATTENTION");
    return !(e && std::strcmp(e, "exact") == 0);
  }();
  return on;
}

}  // namespace

void attention_row_dots(Ctx& ctx, float* D, DPtr dout, DPtr out, int64_t B, int64_t T, int64_t H,
                        int64_t hd) {
  attention_dot_kernel<<<static_cast<unsigned>((B * T * H + 7) / 8), 256, 0, ctx.stream>>>(
      D, dout, out, B, T, H, hd);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernels, the flash path (attention_flash.cuh), common.cuh

void CudaBackend::attention_forward(Tensor out_t, Tensor lse_t, Tensor q_t, Tensor k_t, Tensor v_t,
                                    const AttnShape& shape) {
  const int64_t B = shape.B, T = shape.T, H = shape.H, hd = shape.hd, ldv = shape.ldv;
  const char* op = "attention_forward";
  const DPtr out = dptr(out_t, op, "out"), lse = dptr(lse_t, op, "lse"), q = dptr(q_t, op, "q"),
             k = dptr(k_t, op, "k"), v = dptr(v_t, op, "v");
  Ctx& ctx = cuda_ctx();
  if (B * T * H <= 0) return;
  if (flash_enabled() && flash_attention_forward(ctx, out, lse, q, k, v, shape)) return;
  const AttnDims A = dims(T, H, hd, ldv, q, k, v, {}, "forward");
  launch(ctx, attention_forward_kernel<64>, attention_forward_kernel<32>, kThreadsFwd, kFwd, A,
         B * H, "forward", out, lse, q, k, v);
}

void CudaBackend::attention_backward(Tensor dq_t, Tensor dk_t, Tensor dv_t, Tensor dout_t,
                                     Tensor q_t, Tensor k_t, Tensor v_t, Tensor out_t, Tensor lse_t,
                                     const AttnShape& shape, bool accumulate) {
  const int64_t B = shape.B, T = shape.T, H = shape.H, hd = shape.hd, ldv = shape.ldv;
  const char* op = "attention_backward";
  const DPtr dq = dptr(dq_t, op, "dq"), dk = dptr(dk_t, op, "dk"), dv = dptr(dv_t, op, "dv"),
             dout = dptr(dout_t, op, "dout"), q = dptr(q_t, op, "q"), k = dptr(k_t, op, "k"),
             v = dptr(v_t, op, "v"), out = dptr(out_t, op, "out"), lse = dptr(lse_t, op, "lse");
  Ctx& ctx = cuda_ctx();
  if (B * T * H <= 0 || (!dq && !dk && !dv)) return;
  if (flash_enabled() &&
      flash_attention_backward(ctx, dq, dk, dv, dout, q, k, v, out, lse, shape, accumulate))
    return;
  AttnDims A = dims(T, H, hd, ldv, q, k, v, dout, "backward");
  A.acc = accumulate;
  float* D = ctx.work->get_as<float>(static_cast<size_t>(B * H * T));
  attention_row_dots(ctx, D, dout, out, B, T, H, hd);
  const float* Dc = D;
  if (dq)
    launch(ctx, attention_dq_kernel<64>, attention_dq_kernel<32>, kThreadsBwd, kDq, A, B * H,
           "backward (dq)", dq, dout, q, k, v, lse, Dc);
  if (dk || dv)
    launch(ctx, attention_dkv_kernel<64>, attention_dkv_kernel<32>, kThreadsBwd, kDkv, A, B * H,
           "backward (dk, dv)", dk, dv, dout, q, k, v, lse, Dc);
}

}  // namespace sl
