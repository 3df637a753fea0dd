// Causal attention on Hopper's warpgroup MMA (wgmma, sm_90a), FlashAttention-3 style: the forward
// and the backward's dK/dV kernel that attention_flash.cu takes on a compute-capability 9.0
// device (its dQ kernel and row dots D stay as they are). Same math and the same outputs as the
// mma.sync kernels of attention_flash.cu (S = scale Q K^T, s <= t; online
// softmax in fp32 in the log2 domain; P rounded to bf16 for O += P V; lse saved).
//
// A block of NWG warpgroups owns BM = 64 NWG query rows of one (b, h); warpgroup w the 64 rows
// r0 + 64 w .. +63. Q, K and V tiles sit in shared memory in the 128-byte-swizzled layout the MMA
// reads directly (wgmma.cuh, make_desc): [panel][row][64] with panel = column / 64, so hd 128 is
// two panels. S = Q K^T takes both operands from shared memory (K-major: hd is contiguous in q and
// k); O += P V takes P from registers (the accumulator layout of S is the A layout of P, as with
// mma.sync) and V N-major (hd contiguous).
//
// The loop over key tiles j overlaps a warpgroup's softmax with its own P V product
// (FlashAttention-3's intra-warpgroup pipelining): iteration j issues S_j = Q K_j^T and then
// O += P_{j-1} V_{j-1}, waits for S_j only, runs the softmax of S_j while the tensor cores do the
// P V product, then waits for that, rescales O and packs P_j. K and V stream through two stages
// each with cp.async: at iteration j (after the barrier that says every warpgroup is done with
// iteration j-1) K_{j+1} replaces K_{j-1} and V_j replaces V_{j-2}, and they must land by
// iteration j+1. Only tiles that cross a warpgroup's diagonal run the masked softmax (its own
// instance of the code, so the other tiles carry no per-element compare and select).
#include <cuda_runtime.h>

#include <atomic>
#include <type_traits>

#include "backend/cuda/attention_flash.cuh"
#include "backend/cuda/mma_bf16.cuh"
#include "backend/cuda/wgmma.cuh"

namespace sl::cuda {
namespace {

template <int N, int TA, int TB>
__device__ inline void mma_ss(float (&d)[N / 8][4], uint64_t a, uint64_t b, int scale_d) {
  if constexpr (N == 64)
    wgmma_ss_n64<TA, TB>(d, a, b, scale_d);
  else
    wgmma_ss_n128<TA, TB>(d, a, b, scale_d);
}
template <int N, int TB>
__device__ inline void mma_rs(float (&d)[N / 8][4], const unsigned (&a)[4], uint64_t b) {
  if constexpr (N == 64)
    wgmma_rs_n64<TB>(d, a, b);
  else
    wgmma_rs_n128<TB>(d, a, b);
}

// Asynchronous load of a [ROWS][HD] bf16 tile, rows of global stride ld, into the swizzled panel
// layout at byte address dst (1024-aligned): element (r, c) at panel c / 64, row r, 16-byte chunk
// (c % 64) / 8 ^ (r % 8). Rows >= valid and columns >= hd are zero-filled; `any` is a valid
// global address for the lanes that copy nothing.
template <int ROWS, int HD, int NT>
__device__ inline void load_swizzled(unsigned char* dst, const bf16* src, int64_t ld, int valid,
                                     int hd, const bf16* any) {
  constexpr int CH = HD / 8, N = ROWS * CH;
#pragma unroll
  for (int it = 0; it < (N + NT - 1) / NT; ++it) {
    const int i = it * NT + static_cast<int>(threadIdx.x);
    if (N % NT != 0 && i >= N) break;
    const int r = i / CH, c = i % CH;  // c: 16-byte chunk of the row
    const bool ok = r < valid && c * 8 < hd;
    unsigned char* d = dst + (c >> 3) * (ROWS * 128) + r * 128 + (((c & 7) ^ (r & 7)) << 4);
    cp_async16(d, ok ? src + r * ld + c * 8 : any, ok);
  }
}

// Grid (ceil(T / BM), B*H), query blocks in reverse so the longest rows start first.
template <int HD, int BN, int NWG, int MINB>
__global__ void __launch_bounds__(NWG * 128, MINB)
    wgmma_fwd_kernel(DPtr out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                     FlashDims A) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BM = 64 * NWG, NT = NWG * 128, NS = BN / 8, NO = HD / 8;
  constexpr int QBYTES = BM * HD * 2, KBYTES = BN * HD * 2;
  extern __shared__ unsigned char smem_raw[];
  // The swizzle atoms must be 1024-byte aligned; the launch adds 1 KB of slack for this. (Offset
  // arithmetic on the shared array, not an integer round trip, so that the compiler still knows
  // the pointers below are shared: LDS, not generic loads.)
  unsigned char* smem = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
  unsigned char* Qs = smem;             // [HD/64][BM][64]
  unsigned char* Ks = Qs + QBYTES;      // [2][HD/64][BN][64]
  unsigned char* Vs = Ks + 2 * KBYTES;  // [2][HD/64][BN][64]
  const int qb = static_cast<int>(gridDim.x - 1 - blockIdx.x), bh = blockIdx.y;
  const int b = bh / A.H, h = bh % A.H, r0 = qb * BM;
  const int wg = threadIdx.x >> 7, wl = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  const int g = lane >> 2, qd = lane & 3;
  const int64_t tok0 = int64_t{b} * A.T;
  const bf16* qh = q + tok0 * A.ld + h * A.hd;
  const bf16* kh = k + tok0 * A.ld + h * A.hd;
  const bf16* vh = v + tok0 * A.ldv + h * A.hd;
  const int nkb = (min(A.T, r0 + BM) + BN - 1) / BN;  // the block's keys: [0, min(T, r0 + BM))
  const int w0 = r0 + 64 * wg;                        // this warpgroup's first row
  const int row0 = w0 + 16 * wl + g;                  // the thread's rows: row0, row0 + 8

  load_swizzled<BM, HD, NT>(Qs, qh + int64_t{r0} * A.ld, A.ld, A.T - r0, A.hd, q);
  load_swizzled<BN, HD, NT>(Ks, kh, A.ld, A.T, A.hd, k);
  cp_async_commit();

  const uint32_t qa = smem_u32(Qs + wg * 64 * 128);
  float s[NS][4], o[NO][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, corr[2];
  unsigned p[BN / 16][4];

  // Every warpgroup runs every tile of the block, so that no MMA sits in a branch the compiler
  // cannot prove warpgroup-uniform (it would serialize them all); the masked work this adds is
  // small (none when BN = BM).
  // Tile j's K and tile j-1's V landed (this thread's copies, then everyone's, then visible to
  // the tensor cores' async proxy); every warpgroup is done with iteration j-1; then the loads
  // of K_{j+1} and V_j start.
  auto next_tiles = [&](int j) {
    cp_async_wait<0>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    if (j + 1 < nkb)
      load_swizzled<BN, HD, NT>(Ks + ((j + 1) & 1) * KBYTES, kh + int64_t{j + 1} * BN * A.ld, A.ld,
                                A.T - (j + 1) * BN, A.hd, k);
    if (j < nkb)
      load_swizzled<BN, HD, NT>(Vs + (j & 1) * KBYTES, vh + int64_t{j} * BN * A.ldv, A.ldv,
                                A.T - j * BN, A.hd, v);
    cp_async_commit();
  };
  auto issue_s = [&](int j) {
    const uint32_t kb = smem_u32(Ks + (j & 1) * KBYTES);
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const uint32_t coff = (kk & 3) * 32;  // k-step kk: panel kk / 4, bytes 32 (kk % 4) of a row
      mma_ss<BN, 0, 0>(s, make_desc(qa + (kk >> 2) * (BM * 128) + coff, 16, 1024),
                       make_desc(kb + (kk >> 2) * (BN * 128) + coff, 16, 1024), kk > 0);
    }
    wgmma_commit();
  };
  auto issue_pv = [&](int j) {  // O += P_j V_j
    const uint32_t vb = smem_u32(Vs + (j & 1) * KBYTES);
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk)
      mma_rs<HD, 1>(o, p[kk], make_desc(vb + kk * 2048, BN * 128, 1024));
    wgmma_commit();
  };
  // Online softmax of S_j in the log2 domain (attention_flash.cu's forward): x = S scale log2(e),
  // m the running row max of x, l the running lane-partial row sum, corr = 2^(m_old - m_new) by
  // which O is rescaled once the P V product in flight is done. Tile 0 holds key 0 <= t for
  // every row, so m is finite from the first tile on.
  // MASKED: the tile reaches past the warpgroup's first row (s > t possible); written as its own
  // instance because a run-time flag would leave the per-element compare and select in every
  // tile's instruction stream.
  auto softmax_tile = [&](int j, auto masked) {
    constexpr bool MASKED = decltype(masked)::value;
    const int s0 = j * BN;
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int t = row0 + 8 * hf;
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = s[n][2 * hf + e];
          if (MASKED && s0 + n * 8 + 2 * qd + e > t) x = -INFINITY;
          mx = fmaxf(mx, x);
        }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mn = fmaxf(m[hf], mx * A.scale_log2);
      corr[hf] = exp2_approx(m[hf] - mn);
      m[hf] = mn;
      float ls = 0.f;
#pragma unroll
      for (int n = 0; n < NS; ++n)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          float& x = s[n][2 * hf + e];
          x = exp2_approx(fmaf(x, A.scale_log2, -mn));
          ls += x;
        }
      l[hf] = l[hf] * corr[hf] + ls;
    }
  };
  auto softmax = [&](int j) {
    if (j * BN + BN - 1 > w0)
      softmax_tile(j, std::true_type{});
    else
      softmax_tile(j, std::false_type{});
  };
  // P_j as the A operand of the next P V: the C layout of 8-column slices 2i, 2i+1 is the A
  // layout of the 16-key step i.
  auto pack_p = [&] {
#pragma unroll
    for (int i = 0; i < BN / 16; ++i) c_to_a(p[i], s[2 * i], s[2 * i + 1]);
  };

  next_tiles(0);
  wgmma_fence();
  issue_s(0);
  wgmma_wait<0>();
  wgmma_fence_operands(s);
  softmax(0);
  pack_p();
  for (int j = 1; j < nkb; ++j) {
    next_tiles(j);
    wgmma_fence();
    issue_s(j);
    issue_pv(j - 1);
    wgmma_wait<1>();
    wgmma_fence_operands(s);
    softmax(j);
    wgmma_wait<0>();
    wgmma_fence_operands(o);
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      o[n][0] *= corr[0];
      o[n][1] *= corr[0];
      o[n][2] *= corr[1];
      o[n][3] *= corr[1];
    }
    pack_p();
  }
  next_tiles(nkb);
  wgmma_fence();
  issue_pv(nkb - 1);
  wgmma_wait<0>();
  wgmma_fence_operands(o);

#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    float ls = l[hf];
    ls += __shfl_xor_sync(0xffffffffu, ls, 1);
    ls += __shfl_xor_sync(0xffffffffu, ls, 2);
    const int t = row0 + 8 * hf;
    if (t >= A.T) continue;
    const float inv = 1.f / ls;
    const int64_t row = (tok0 + t) * A.ld + h * A.hd;
#pragma unroll
    for (int n = 0; n < NO; ++n) {
      const int c = n * 8 + 2 * qd;
      if (c >= A.hd) break;
      const float x = o[n][2 * hf] * inv, y = o[n][2 * hf + 1] * inv;
      if (out.bf)
        *reinterpret_cast<__nv_bfloat162*>(static_cast<bf16*>(out.p) + row + c) =
            __floats2bfloat162_rn(x, y);
      else
        *reinterpret_cast<float2*>(static_cast<float*>(out.p) + row + c) = make_float2(x, y);
    }
    if (qd == 0) lse[int64_t{bh} * A.T + t] = (m[hf] + log2f(ls)) / kLog2e;
  }
#else
  __trap();  // launched only on compute capability 9.0 (wgmma_attention_forward checks)
#endif
}

// The backward's dK/dV kernel. Grid (ceil(T / BK), B*H); a block of NWG warpgroups owns BK = 64
// NWG keys, warpgroup w the 64 keys s0 + 64 w .. +63 (its K and V tiles stay in shared memory),
// and walks the 64-query tiles i from the first that reaches its keys. Per tile, with the keys as
// the MMA's rows: S^T = K Q_i^T and dP^T = V dO_i^T (both operands from shared memory, K-major),
// then in registers P^T = 2^(S^T scale log2 e - lse_t log2 e) (zero where s > t or t >= T) and
// dS^T = P^T (dP^T - D_t), stored as the bf16 tile for the dQ kernel; then dV += P^T dO_i and
// dK += dS^T Q_i with P^T and dS^T as register A operands and dO_i, Q_i N-major (hd contiguous).
// As in the forward, tile i's two products are issued before tile i-1's two accumulations so the
// elementwise work of tile i overlaps them; Q, dO, lse and D stream through three stages (tile
// i+1 loads while i is computed and i-1's accumulations still read their stage).
template <int HD, int NWG, int MINB>
__global__ void __launch_bounds__(NWG * 128, MINB)
    wgmma_bwd_dkv_kernel(DPtr dk, DPtr dv, bf16* dS, const bf16* q, const bf16* k, const bf16* v,
                         const bf16* dout, const float* lse, const float* D, FlashDims A) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BK = 64 * NWG, NT = NWG * 128, NO = HD / 8, NST = 3;
  constexpr int TBYTES = 64 * HD * 2;  // one 64-row tile
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
  unsigned char* Ks = smem;                                 // [HD/64][BK][64]
  unsigned char* Vs = Ks + NWG * TBYTES;                    // [HD/64][BK][64]
  unsigned char* Qs = Vs + NWG * TBYTES;                    // [NST][HD/64][64][64]
  unsigned char* Os = Qs + NST * TBYTES;                    // [NST][HD/64][64][64] (dO)
  float* Ls = reinterpret_cast<float*>(Os + NST * TBYTES);  // [NST][64] lse log2(e)
  float* Ds = Ls + NST * 64;                                // [NST][64] D
  const int bh = blockIdx.y, b = bh / A.H, h = bh % A.H, s0 = blockIdx.x * BK;
  const int wg = threadIdx.x >> 7, wl = (threadIdx.x >> 5) & 3, lane = threadIdx.x & 31;
  const int g = lane >> 2, qd = lane & 3;
  const int64_t tok0 = int64_t{b} * A.T;
  const bf16* qh = q + tok0 * A.ld + h * A.hd;
  const bf16* kh = k + tok0 * A.ld + h * A.hd;
  const bf16* vh = v + tok0 * A.ldv + h * A.hd;
  const bf16* oh = dout + tok0 * A.ld + h * A.hd;
  const float* lh = lse + int64_t{bh} * A.T;
  const float* dh = D + int64_t{bh} * A.T;
  const int kt = s0 / 64 + wg;        // this warpgroup's key tile
  const int ws = s0 + 64 * wg;        // its first key
  const int key0 = ws + 16 * wl + g;  // the thread's keys: key0, key0 + 8
  const int i0 = s0 / 64;             // the block's first query tile
  const int nqb = A.nqb;
  bf16* tiles = dS + int64_t{bh} * A.ntri() * 64 * 64;

  auto load_queries = [&](int i) {
    const int t = i * 64, st = (i - i0) % NST;
    load_swizzled<64, HD, NT>(Qs + st * TBYTES, qh + int64_t{t} * A.ld, A.ld, A.T - t, A.hd, q);
    load_swizzled<64, HD, NT>(Os + st * TBYTES, oh + int64_t{t} * A.ld, A.ld, A.T - t, A.hd, dout);
    const int r = threadIdx.x & 63;
    const bool ok = t + r < A.T;
    if (threadIdx.x < 64)
      cp_async4(Ls + st * 64 + r, ok ? lh + t + r : lse, ok);
    else if (threadIdx.x < 128)
      cp_async4(Ds + st * 64 + r, ok ? dh + t + r : D, ok);
  };
  load_swizzled<BK, HD, NT>(Ks, kh + int64_t{s0} * A.ld, A.ld, A.T - s0, A.hd, k);
  load_swizzled<BK, HD, NT>(Vs, vh + int64_t{s0} * A.ldv, A.ldv, A.T - s0, A.hd, v);
  load_queries(i0);
  cp_async_commit();

  const uint32_t ka = smem_u32(Ks + wg * 64 * 128), va = smem_u32(Vs + wg * 64 * 128);
  float sT[8][4], dpT[8][4], dka[NO][4] = {}, dva[NO][4] = {};
  unsigned pa[4][4], da[4][4];

  // Tile i's inputs landed and are visible to the async proxy; every warpgroup is done with the
  // accumulations of tile i-2, whose stage tile i+1 now takes.
  auto next_tiles = [&](int i) {
    cp_async_wait<0>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    if (i + 1 < nqb) load_queries(i + 1);
    cp_async_commit();
  };
  // Base descriptors plus byte offsets / 16 (as in the forward).
  const uint64_t dka0 = make_desc(ka, 16, 1024), dva0 = make_desc(va, 16, 1024);
  const uint64_t dqk0 = make_desc(smem_u32(Qs), 16, 1024), dok0 = make_desc(smem_u32(Os), 16, 1024);
  const uint64_t dqn0 = make_desc(smem_u32(Qs), 64 * 128, 1024);
  const uint64_t don0 = make_desc(smem_u32(Os), 64 * 128, 1024);
  auto issue_products = [&](int i) {  // S^T = K Q_i^T, dP^T = V dO_i^T
    const int st16 = (i - i0) % NST * (TBYTES >> 4);
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const int off = (kk & 3) * 32;  // k-step kk: bytes 32 (kk % 4) of a row
      const int pk = ((kk >> 2) * (BK * 128) + off) >> 4, pq = ((kk >> 2) * (64 * 128) + off) >> 4;
      mma_ss<64, 0, 0>(sT, dka0 + pk, dqk0 + st16 + pq, kk > 0);
      mma_ss<64, 0, 0>(dpT, dva0 + pk, dok0 + st16 + pq, kk > 0);
    }
    wgmma_commit();
  };
  auto issue_accumulations = [&](int i) {  // dV += P^T dO_i, dK += dS^T Q_i
    const int st16 = (i - i0) % NST * (TBYTES >> 4);
#pragma unroll
    for (int kq = 0; kq < 4; ++kq) {
      mma_rs<HD, 1>(dva, pa[kq], don0 + st16 + (kq * 2048 >> 4));
      mma_rs<HD, 1>(dka, da[kq], dqn0 + st16 + (kq * 2048 >> 4));
    }
    wgmma_commit();
  };
  // P^T, dS^T in place of S^T, dP^T; dS^T stored to the tile when it is one of the triangle's.
  auto elementwise_tile = [&](int i, auto masked) {
    constexpr bool MASKED = decltype(masked)::value;  // as the forward's softmax_tile
    const int st = (i - i0) % NST, t0 = i * 64;
    const float* Li = Ls + st * 64;
    const float* Di = Ds + st * 64;
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int ql = n * 8 + 2 * qd + e, t = t0 + ql;
        const float lt = Li[ql] * kLog2e, dt = Di[ql];
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          float p = exp2_approx(sT[n][2 * hf + e] * A.scale_log2 - lt);
          if (MASKED && (key0 + 8 * hf > t || t >= A.T)) p = 0.f;
          sT[n][2 * hf + e] = p;
          dpT[n][2 * hf + e] = p * (dpT[n][2 * hf + e] - dt);
        }
      }
    if (i >= kt) {
      bf16* tile = tiles + (int64_t{i} * (i + 1) / 2 + kt) * 64 * 64;  // [key][query]
#pragma unroll
      for (int n = 0; n < 8; ++n)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf) {
          const int kl = 16 * wl + g + 8 * hf, ql = n * 8 + 2 * qd;
          *reinterpret_cast<unsigned*>(tile + kl * 64 + ql) =
              pack_bf16(dpT[n][2 * hf], dpT[n][2 * hf + 1]);
        }
    }
  };
  auto elementwise = [&](int i) {
    if (i * 64 < ws + 63 || i * 64 + 64 > A.T)
      elementwise_tile(i, std::true_type{});
    else
      elementwise_tile(i, std::false_type{});
  };
  auto pack = [&] {
#pragma unroll
    for (int kq = 0; kq < 4; ++kq) {
      c_to_a(pa[kq], sT[2 * kq], sT[2 * kq + 1]);
      c_to_a(da[kq], dpT[2 * kq], dpT[2 * kq + 1]);
    }
  };

  next_tiles(i0);
  wgmma_fence();
  issue_products(i0);
  wgmma_wait<0>();
  wgmma_fence_operands(sT);
  wgmma_fence_operands(dpT);
  elementwise(i0);
  pack();
  for (int i = i0 + 1; i < nqb; ++i) {
    next_tiles(i);
    wgmma_fence();
    issue_products(i);
    issue_accumulations(i - 1);
    wgmma_wait<1>();
    wgmma_fence_operands(sT);
    wgmma_fence_operands(dpT);
    elementwise(i);
    wgmma_wait<0>();
    wgmma_fence_operands(dka);
    wgmma_fence_operands(dva);
    pack();
  }
  wgmma_fence();
  issue_accumulations(nqb - 1);
  wgmma_wait<0>();
  wgmma_fence_operands(dka);
  wgmma_fence_operands(dva);

#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int s = key0 + 8 * hf;
    if (s >= A.T) continue;
    if (dk) store_row_pairs(dk, (tok0 + s) * A.ld + h * A.hd, qd, A.hd, dka, hf, A.scale, A.acc);
    if (dv) store_row_pairs(dv, (tok0 + s) * A.ldv + h * A.hd, qd, A.hd, dva, hf, 1.f, A.acc);
  }
#else
  __trap();  // launched only on compute capability 9.0 (wgmma_attention_dkv checks)
#endif
}

// dQ = scale sum_{j <= i} dS_ij K_j over the dK/dV kernel's dS^T tiles. Grid (nqb, B*H), query
// tiles in reverse (longest first); one warpgroup owns the 64 queries of tile i. Each key tile's
// dS^T [key][query] is the A operand read M-major (queries contiguous) and K_j [key][hd] the B
// operand read N-major, both through the swizzled layout, three stages of cp.async in flight: the
// kernel moves 8 KB of dS and 8-16 KB of K per 64 x 64 x hd product, so it lives on memory-level
// parallelism.
template <int HD>
__global__ void __launch_bounds__(128)
    wgmma_bwd_dq_kernel(DPtr dq, const bf16* dS, const bf16* k, FlashDims A) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int NST = 3, NO = HD / 8, PB = 64 * 64 * 2, KB = 64 * HD * 2, SB = PB + KB;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = smem_raw + ((1024u - (smem_u32(smem_raw) & 1023u)) & 1023u);
  const int i = static_cast<int>(gridDim.x - 1 - blockIdx.x), bh = blockIdx.y;
  const int b = bh / A.H, h = bh % A.H;
  const int wl = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, qd = lane & 3;
  const int64_t tok0 = int64_t{b} * A.T;
  const bf16* kh = k + tok0 * A.ld + h * A.hd;
  const bf16* row_tiles = dS + (int64_t{bh} * A.ntri() + int64_t{i} * (i + 1) / 2) * 64 * 64;
  // Key tile j's loads into stage j % NST (an empty group past the last keeps the wait uniform).
  auto load = [&](int j) {
    if (j <= i) {
      unsigned char* st = smem + (j % NST) * SB;
      load_swizzled<64, 64, 128>(st, row_tiles + int64_t{j} * 64 * 64, 64, 64, 64, dS);
      load_swizzled<64, HD, 128>(st + PB, kh + int64_t{j} * 64 * A.ld, A.ld, A.T - j * 64, A.hd, k);
    }
    cp_async_commit();
  };
#pragma unroll
  for (int j = 0; j < NST - 1; ++j) load(j);
  float o[NO][4] = {};
  for (int j = 0; j <= i; ++j) {
    load(j + NST - 1);  // into the stage that iteration j - 1 consumed (its MMAs are done)
    cp_async_wait<NST - 1>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    const uint32_t st = smem_u32(smem + (j % NST) * SB);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)  // 16 keys a step: 2 8-row groups of both tiles
      mma_ss<HD, 1, 1>(o, make_desc(st + kk * 2048, 64 * 128, 1024),
                       make_desc(st + PB + kk * 2048, 64 * 128, 1024), 1);
    wgmma_commit();
    wgmma_wait<0>();
    wgmma_fence_operands(o);
    __syncthreads();  // every warp's MMAs read this stage before iteration j + 1 refills it
  }
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int t = i * 64 + 16 * wl + g + 8 * hf;
    if (t < A.T) store_row_pairs(dq, (tok0 + t) * A.ld + h * A.hd, qd, A.hd, o, hf, A.scale, A.acc);
  }
#else
  __trap();  // launched only on compute capability 9.0 (wgmma_attention_dq checks)
#endif
}

template <int HD, int BN, int NWG, int MINB = 1>
void launch(Ctx& ctx, DPtr out, float* lse, const bf16* q, const bf16* k, const bf16* v,
            const FlashDims& A, int64_t BH) {
  constexpr int BM = 64 * NWG;
  const size_t smem = 1024 + static_cast<size_t>(BM + 4 * BN) * HD * 2;
  auto kern = wgmma_fwd_kernel<HD, BN, NWG, MINB>;
  if (smem > ctx.smem_optin)
    fail("cuda attention (wgmma forward): shared memory beyond the device");
  smem_opt_in(kern, smem);
  const dim3 grid(static_cast<unsigned>((A.T + BM - 1) / BM), static_cast<unsigned>(BH));
  kern<<<grid, NWG * 128, smem, ctx.stream>>>(out, lse, q, k, v, A);
  SL_CUDA_LAUNCHED();
}

// Compute capability 9.0 (the sm_90a code is in the binary; other devices run the PTX, which has
// no wgmma), cached per device.
bool is_sm90() {
  // 0 unknown, 1 yes, 2 no; atomic because backends on several host threads may ask at once.
  static std::atomic<int> cached[64] = {};
  int dev = 0;
  SL_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64) return false;
  if (cached[dev].load(std::memory_order_relaxed) == 0) {
    int major = 0, minor = 0;
    SL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    SL_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev));
    cached[dev].store(major == 9 && minor == 0 ? 1 : 2, std::memory_order_relaxed);
  }
  return cached[dev].load(std::memory_order_relaxed) == 1;
}

}  // namespace

bool wgmma_attention_forward(Ctx& ctx, DPtr out, float* L, const bf16* Q, const bf16* K,
                             const bf16* V, const FlashDims& A, int64_t BH, int variant) {
  if (!is_sm90()) return false;
  // Tile shapes measured on an H200 (docs/PERFORMANCE.md, bench --op attention): hd 64 best
  // with 64-key tiles and two warpgroups capped at 128 registers (two blocks per SM); hd 128 with
  // 128-key tiles (one block per SM). The variants are the runners-up, kept for tuning.
  if (A.hd <= 64) {
    switch (variant) {
      case 1:
        launch<64, 64, 3>(ctx, out, L, Q, K, V, A, BH);
        break;
      case 2:
        launch<64, 128, 2>(ctx, out, L, Q, K, V, A, BH);
        break;
      default:
        launch<64, 64, 2, 2>(ctx, out, L, Q, K, V, A, BH);
    }
  } else {
    switch (variant) {
      case 1:
        launch<128, 64, 2>(ctx, out, L, Q, K, V, A, BH);
        break;
      default:
        launch<128, 128, 2>(ctx, out, L, Q, K, V, A, BH);
    }
  }
  return true;
}

bool wgmma_attention_dkv(Ctx& ctx, DPtr dk, DPtr dv, bf16* dS, const bf16* q, const bf16* k,
                         const bf16* v, const bf16* dout, const float* lse, const float* D,
                         const FlashDims& A, int64_t BH, int variant) {
  if (!is_sm90()) return false;
  auto run = [&](auto kern, int nwg) {
    const size_t tile = 64 * static_cast<size_t>(A.hd <= 64 ? 64 : 128) * 2;
    const size_t smem = 1024 + (2 * nwg + 6) * tile + 6 * 64 * sizeof(float);
    if (smem > ctx.smem_optin)
      fail("cuda attention (wgmma backward): shared memory beyond the device");
    smem_opt_in(kern, smem);
    SL_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout,
                                       cudaSharedmemCarveoutMaxShared));
    const dim3 grid(static_cast<unsigned>((A.T + 64 * nwg - 1) / (64 * nwg)),
                    static_cast<unsigned>(BH));
    kern<<<grid, nwg * 128, smem, ctx.stream>>>(dk, dv, dS, q, k, v, dout, lse, D, A);
    SL_CUDA_LAUNCHED();
  };
  // One warpgroup of 64 keys a block, two blocks per SM, for hd 64; two warpgroups (128 keys
  // sharing the Q and dO tiles) for hd 128 (measured best; the variants are the runners-up).
  if (A.hd <= 64) {
    switch (variant) {
      case 1:
        run(wgmma_bwd_dkv_kernel<64, 2, 1>, 2);
        break;
      default:
        run(wgmma_bwd_dkv_kernel<64, 1, 2>, 1);
    }
  } else {
    switch (variant) {
      case 1:
        run(wgmma_bwd_dkv_kernel<128, 1, 1>, 1);
        break;
      default:
        run(wgmma_bwd_dkv_kernel<128, 2, 1>, 2);
    }
  }
  return true;
}

bool wgmma_attention_dq(Ctx& ctx, DPtr dq, const bf16* dS, const bf16* k, const FlashDims& A,
                        int64_t BH) {
  if (!is_sm90()) return false;
  auto run = [&](auto kern, int HD) {
    const size_t smem = 1024 + 3 * (64 * 64 * 2 + 64 * static_cast<size_t>(HD) * 2);
    if (smem > ctx.smem_optin) fail("cuda attention (wgmma dq): shared memory beyond the device");
    smem_opt_in(kern, smem);
    const dim3 grid(static_cast<unsigned>(A.nqb), static_cast<unsigned>(BH));
    kern<<<grid, 128, smem, ctx.stream>>>(dq, dS, k, A);
    SL_CUDA_LAUNCHED();
  };
  if (A.hd <= 64)
    run(wgmma_bwd_dq_kernel<64>, 64);
  else
    run(wgmma_bwd_dq_kernel<128>, 128);
  return true;
}

}  // namespace sl::cuda
