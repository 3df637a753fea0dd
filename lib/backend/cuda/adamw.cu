// Multi-tensor AdamW with decoupled weight decay: one launch for the whole flat parameter buffer
// (it was one launch per parameter tensor, ~150 at S4), fp32 math on fp32 master weights and
// moments, the bf16 compute copy written in the same pass (no separate convert):
//   g' = clip g;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
//   p -= lr * ( (m / bc1) / (sqrt(v / bc2) + eps) + wd_i p ),   bc = 1 - b^t (in double)
// clip, lr, t and the skip decision come from the step tensor in device memory (core/backend.h
// StepSlot), so no host round trip sits between the backward and the update and a captured step
// replays with each step's values.
//
// Bytes per parameter: read p, g, m, v (16), write p, m, v (12) and the bf16 copy (2): 30 B, so
// S4's 162M parameters take ~1.2 ms at 4 TB/s.
#include "backend/cuda/common.cuh"
#include "backend/cuda/cuda_backend.h"

namespace sl::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kChunk = 8192;  // elements per block

// Block b updates the elements [b kChunk, (b+1) kChunk) that lie in some item; items =
// (begin, length, decay) triples sorted by begin and disjoint.
template <bool VEC>
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(DPtr p, DPtr g, DPtr m, DPtr v, DPtr pc, const int32_t* items, int64_t n_items,
                 int64_t n_total, const double* step, float b1, float b2, float eps, float wd,
                 float max_norm) {
  __shared__ float s_lr, s_clip, s_bc1, s_bc2;
  __shared__ int s_skip;
  if (threadIdx.x == 0) {
    const double loss = step[0], gsq = step[1];  // kStepLossSum, kStepGradSq
    s_skip = !isfinite(loss) || !isfinite(gsq);
    const double gnorm = sqrt(gsq);
    s_clip = static_cast<float>(max_norm > 0 && gnorm > max_norm ? max_norm / gnorm : 1.0);
    s_lr = static_cast<float>(step[2]);  // kStepLr
    const double t = step[3];            // kStepT
    s_bc1 = static_cast<float>(1.0 - pow(static_cast<double>(b1), t));
    s_bc2 = static_cast<float>(1.0 - pow(static_cast<double>(b2), t));
  }
  __syncthreads();
  if (s_skip) return;
  const float lr = s_lr, gs = s_clip, bc1 = s_bc1, bc2 = s_bc2;
  const int64_t c0 = blockIdx.x * kChunk, c1 = min(n_total, c0 + kChunk);
  // The last item that begins at or before c0 (items[0].begin <= c0 for the first block).
  int64_t lo = 0, hi = n_items - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (items[3 * mid] <= c0)
      lo = mid;
    else
      hi = mid - 1;
  }
  // One element: g' = clip g, the moments, then the parameter (the same expressions on both paths).
  auto update = [&](float& pi, float gi, float& mi, float& vi, float w) {
    gi *= gs;
    mi = b1 * mi + (1.f - b1) * gi;
    vi = b2 * vi + (1.f - b2) * gi * gi;
    pi = pi - lr * ((mi / bc1) / (sqrtf(vi / bc2) + eps) + w * pi);
  };
  for (int64_t it = lo; it < n_items && items[3 * it] < c1; ++it) {
    const int64_t ib = items[3 * it], ie = ib + items[3 * it + 1];
    const int64_t b = c0 > ib ? c0 : ib, e = c1 < ie ? c1 : ie;
    const float w = items[3 * it + 2] ? wd : 0.f;
    // VEC: [vb, ve), the 4-aligned middle of the segment, four elements a thread with 16-byte
    // accesses (four loads in flight where one was); the ends element by element.
    const int64_t vb = VEC ? (b + 3) / 4 * 4 : e;
    auto scalar = [&](int64_t from, int64_t to) {
      for (int64_t i = from + threadIdx.x; i < to; i += kThreads) {
        float pi = p.ld(i), mi = m.ld(i), vi = v.ld(i);
        update(pi, g.ld(i), mi, vi, w);
        m.st(i, mi);
        v.st(i, vi);
        p.st(i, pi);
        if (pc) pc.st(i, pi);
      }
    };
    scalar(b, vb < e ? vb : e);
    if (VEC && vb < e) {
      const int64_t ve = e / 4 * 4 > vb ? e / 4 * 4 : vb;
      float *pf = static_cast<float*>(p.p), *mf = static_cast<float*>(m.p),
            *vf = static_cast<float*>(v.p);
      const float* gf = static_cast<const float*>(g.p);
      for (int64_t i = vb + 4 * threadIdx.x; i < ve; i += 4 * kThreads) {
        float4 pp = *reinterpret_cast<const float4*>(pf + i),
               mm = *reinterpret_cast<const float4*>(mf + i),
               vv = *reinterpret_cast<const float4*>(vf + i);
        const float4 gg = *reinterpret_cast<const float4*>(gf + i);
        update(pp.x, gg.x, mm.x, vv.x, w);
        update(pp.y, gg.y, mm.y, vv.y, w);
        update(pp.z, gg.z, mm.z, vv.z, w);
        update(pp.w, gg.w, mm.w, vv.w, w);
        *reinterpret_cast<float4*>(mf + i) = mm;
        *reinterpret_cast<float4*>(vf + i) = vv;
        *reinterpret_cast<float4*>(pf + i) = pp;
        if (pc) {
          if (pc.bf) {
            const __nv_bfloat162 lo2 = __floats2bfloat162_rn(pp.x, pp.y),
                                 hi2 = __floats2bfloat162_rn(pp.z, pp.w);
            uint2 u;
            u.x = *reinterpret_cast<const unsigned*>(&lo2);
            u.y = *reinterpret_cast<const unsigned*>(&hi2);
            *reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(pc.p) + i) = u;
          } else {
            *reinterpret_cast<float4*>(static_cast<float*>(pc.p) + i) = pp;
          }
        }
      }
      scalar(ve, e);
    }
  }
}

}  // namespace

}  // namespace sl::cuda

namespace sl {

using namespace cuda;  // this file's kernel, common.cuh

void CudaBackend::adamw(Tensor p_t, Tensor g_t, Tensor m_t, Tensor v_t, Tensor p_compute_t,
                        Tensor items_t, int64_t n_items, Tensor step_t, const AdamWHyper& hyper) {
  const float b1 = hyper.b1, b2 = hyper.b2, eps = hyper.eps, wd = hyper.wd,
              max_norm = hyper.max_norm;
  const char* op = "adamw";
  if (step_t.n < kStepSlots) fail("cuda adamw: step must hold the 4 step scalars");
  // A compute copy of the same dtype is the master itself (fp32 activations): nothing to write.
  const bool copy = p_compute_t && p_compute_t.data != p_t.data;
  const DPtr p = dptr(p_t, op, "p"), g = dptr(g_t, op, "g"), m = dptr(m_t, op, "m"),
             v = dptr(v_t, op, "v"), p_compute = copy ? dptr(p_compute_t, op, "p_compute") : DPtr{};
  const int32_t* items = i32_ptr(items_t, 3 * n_items, op, "items");
  const double* step = f64_ptr(step_t, op, "step");
  const int64_t n_total = p_t.n;
  if (n_items <= 0 || n_total <= 0) return;
  const int64_t blocks = (n_total + kChunk - 1) / kChunk;
  // The vector path: fp32 master, gradient and moments 16-byte aligned, a bf16 copy 8-byte aligned
  // (an fp32 one 16-byte); kChunk is a multiple of 4, so a block's chunk starts 4-aligned.
  const auto aligned = [](const DPtr& t, uintptr_t a) {
    return !t || reinterpret_cast<uintptr_t>(t.p) % a == 0;
  };
  const bool vec = !p.bf && !g.bf && !m.bf && !v.bf && aligned(p, 16) && aligned(g, 16) &&
                   aligned(m, 16) && aligned(v, 16) && aligned(p_compute, p_compute.bf ? 8 : 16);
  const unsigned nb = static_cast<unsigned>(blocks);
  const cudaStream_t st = cuda_ctx().stream;
  if (vec)
    adamw_kernel<true><<<nb, kThreads, 0, st>>>(p, g, m, v, p_compute, items, n_items, n_total,
                                                step, b1, b2, eps, wd, max_norm);
  else
    adamw_kernel<false><<<nb, kThreads, 0, st>>>(p, g, m, v, p_compute, items, n_items, n_total,
                                                 step, b1, b2, eps, wd, max_norm);
  SL_CUDA_LAUNCHED();
}

}  // namespace sl
