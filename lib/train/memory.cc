#include "train/memory.h"

#include <algorithm>
#include <vector>

#include "model/model.h"

namespace sl {

namespace {

constexpr int64_t kF32 = 4, kBf16 = 2;
// cuBLASLt/cuBLAS share one 32 MiB workspace (backend/cuda/matmul.cu, GemmPlans).
constexpr int64_t kCublasWorkspace = int64_t{32} << 20;
// The reduce workspace (colsum and RMSNorm dw partials: under 4 MiB at the ladder sizes), the
// RoPE cos/sin tables and the cached GEMM plans: a fixed allowance.
constexpr int64_t kSmallWorkspaces = int64_t{16} << 20;

// What one block's backward asks of the per-op workspace (cuda::Scratch `work`), in bytes, in
// the order it asks.
//
// Attention (backend/cuda/attention_flash.cu flash_attention_backward): D [B H T] fp32 (rounded
// up to 256 bytes), then the dS tiles [B H][ntri][64][64] bf16, ntri = nqb (nqb + 1) / 2 query x
// key tiles of the causal half, nqb = ceil(T / 64). Head dims the flash kernels do not take
// (not a multiple of 8, or above 128) run the exact kernels, which need D only (attention.cu).
std::vector<int64_t> attention_requests(const ModelSpec& s, int64_t B, int64_t T) {
  const int64_t H = s.n_heads, hd = s.head_dim();
  const int64_t d_bytes = B * H * T * kF32;
  if (hd < 8 || hd > 128 || hd % 8 != 0) return {d_bytes};
  const int64_t nqb = (T + 63) / 64, ntri = nqb * (nqb + 1) / 2;
  return {(d_bytes + 255) / 256 * 256 + B * H * ntri * 64 * 64 * kBf16};
}

// Gated DeltaNet (backend/cuda/gated_deltanet.cu): the prep kernel's chunk matrices, np = B H
// ceil(T / 64) 64 x 64 fp32 each, and its per-chunk WY factors, B H ceil(T / 64) 64 x dkp fp32
// (dkp = k_h rounded up to 16, padding stored): A and -W in gdn_forward followed by U, then
// Delta, [B, T, H, v_h] fp32 (the forward's only request); A, KKE and Tinv in gdn_backward
// followed by its phase (a) arrays, the state gradients [B, H, ceil(T / 64), k_h, v_h] and dX
// [B, T, H, v_h] (together rounded up to a multiple of 4 floats), then M, fp32. Then
// conv1d_silu_backward's dw partials [B ceil(T / 64), C K] fp32 (conv1d.cu), for the q|k
// channels (C = 2 H k_h) and then the v channels (C = H v_h): the block convolves them apart.
int64_t gdn_prep_bytes(const ModelSpec& s, int64_t B, int64_t T) {
  return B * s.n_heads * ((T + 63) / 64) * 64 * 64 * kF32;
}
int64_t gdn_wy_bytes(const ModelSpec& s, int64_t B, int64_t T) {
  return B * s.n_heads * ((T + 63) / 64) * 64 * ((s.gdn_key_dim + 15) / 16 * 16) * kF32;
}
int64_t gdn_forward_request(const ModelSpec& s, int64_t B, int64_t T) {
  return gdn_prep_bytes(s, B, T) + gdn_wy_bytes(s, B, T) +
         B * T * s.n_heads * s.gdn_value_dim * kF32;
}
std::vector<int64_t> gdn_requests(const ModelSpec& s, int64_t B, int64_t T) {
  const int64_t H = s.n_heads, dk = s.gdn_key_dim, dv = s.gdn_value_dim;
  const int64_t dstates = B * H * ((T + 63) / 64) * dk * dv, dx = B * T * H * dv;
  const int64_t per_channel = B * ((T + 63) / 64) * s.conv_kernel * kF32;
  return {3 * gdn_prep_bytes(s, B, T) + (dstates + dx + 3) / 4 * 4 * kF32 + gdn_wy_bytes(s, B, T),
          per_channel * 2 * H * dk, per_channel * H * dv};
}

// The workspace's final size. It grows when an op asks for more than it holds, to the larger of
// the request and 1.5 times its size (cuda::Scratch::get, backend/cuda/common.cuh), and is frozen
// once the step is captured as a graph; the requests come in the forward (GDN layers, first
// layer first) and then the backward, last layer first, the same in every step.
int64_t workspace_bytes(const ModelSpec& s, int64_t B, int64_t T) {
  int64_t cap = 0;
  for (int64_t l = 0; l < s.n_layers(); ++l) {
    const int64_t r = gdn_forward_request(s, B, T);
    if (s.kind(l) == BlockKind::gdn && r > cap) cap = std::max(r, cap + cap / 2);
  }
  for (int64_t l = s.n_layers() - 1; l >= 0; --l) {
    const bool attention = s.kind(l) == BlockKind::attention;
    for (int64_t r : attention ? attention_requests(s, B, T) : gdn_requests(s, B, T))
      if (r > cap) cap = std::max(r, cap + cap / 2);
  }
  // Last, the embedding backward's partial rows [ceil(B T / 64)][2][d] fp32
  // (backend/cuda/embedding.cu).
  const int64_t emb = (B * T + 63) / 64 * 2 * s.d_model * kF32;
  if (emb > cap) cap = std::max(emb, cap + cap / 2);
  return cap;
}

}  // namespace

DeviceMemory estimate_device_bytes(const TrainConfig& cfg) {
  ModelSpec spec = cfg.model;
  spec.finalize();
  const int64_t B = cfg.batch_size, T = cfg.seq_len;
  // The CUDA backend: bf16 activations, fp32 master parameters, gradients and moments.
  const ModelMemory mm = model_memory(spec, B, T, DType::bf16, DType::f32);
  const auto table = build_param_table(spec);
  const int64_t n = buffer_size(table);  // the flat buffers' elements
  DeviceMemory m;
  m.model = mm.total();
  // AdamW (train/optimizer.cc): m, v and 3 int32 per parameter tensor.
  m.optimizer = 2 * n * kF32 + 3 * static_cast<int64_t>(table.size()) * 4;
  // The trainer's StateSnapshot (train/trainer.cc), made when a WSD run has branches: parameters
  // and both moments, fp32.
  m.snapshot = cfg.budgets.size() > 1 ? 3 * n * kF32 : 0;
  m.workspace = workspace_bytes(spec, B, T);
  m.library = kCublasWorkspace + kSmallWorkspaces;
  m.process = kProcessOverheadBytes;
  return m;
}

}  // namespace sl
