// The shapes of the backend ops (core/backend_ops.inc): one aggregate per family of ops that
// share their sizes, so that a call names every size, stride and shared scalar:
//   be.gdn_forward(out, states, q, k, v, beta, g,
//                  {.B = B, .T = T, .H = H, .key_dim = dk, .value_dim = dv});
// Positional int64_t runs let a call site swap two sizes silently; with C++20 designated
// initializers a swap is visible, a designator out of the declared order does not compile, and a
// forgotten field is -Wmissing-field-initializers, an error under SL_WERROR in the C++ sources
// (none of these fields has a default; nvcc gets no -Wextra, so .cu files check the order only).
// Fields are declared sizes first (outer to inner), then strides, then the scalars both
// directions of the op read (RoPE's theta, the L2 norm's scale, the gates' beta_scale); a scalar
// only the forward reads (eps: the backward reads the saved rstd) stays an argument of the
// forward. Sizes and strides count elements; "[R, C] ld L" is core/backend.h's layout (element
// (r, c) at r*L + c).
//
// check(op) throws one line (sl::Error) naming the op and the sizes when they cannot describe the
// op's tensors (a negative size, a row stride below the row, a head dim RoPE cannot pair); the
// CPU ops call it first. It cannot see tensor lengths (a Tensor carries no shape), only the
// sizes' consistency. Plain C++17: the CUDA sources include this header (through core/backend.h)
// and compile as C++17; nvcc (13.0, host g++ 12) takes designated initializers there without a
// warning, so the few shapes built in .cu files are spelled the same way.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

#include "core/error.h"

namespace sl {

namespace shape_detail {
// "op: bad sizes B=2 T=-1 (need B, T >= 0)", thrown by the structs' check().
[[noreturn]] inline void bad_sizes(const char* op,
                                   std::initializer_list<std::pair<const char*, int64_t>> sizes,
                                   const char* need) {
  std::string msg = std::string(op) + ": bad sizes";
  for (const auto& kv : sizes) msg += std::string(" ") + kv.first + "=" + std::to_string(kv.second);
  fail(msg + " (need " + need + ")");
}
}  // namespace shape_detail

// copy2d: dst [R, C] ld ld_dst (=|+=) src [R, C] ld ld_src (a column block of a wider row on
// either side).
struct Copy2dShape {
  int64_t R;       // rows
  int64_t C;       // columns copied per row
  int64_t ld_dst;  // row stride of dst, >= C
  int64_t ld_src;  // row stride of src, >= C
  void check(const char* op) const {
    if (R < 0 || C < 0 || ld_dst < C || ld_src < C)
      shape_detail::bad_sizes(op, {{"R", R}, {"C", C}, {"ld_dst", ld_dst}, {"ld_src", ld_src}},
                              "R, C >= 0, ld_dst, ld_src >= C");
  }
};

// A contiguous [R, C] matrix the op reads row by row: embedding (R = BT tokens, C = d: out, dout
// [BT, d], wte [V, d]), swiglu (R rows, C = m: gu [R, 2m], h [R, m]) and cross_entropy (R = BT
// tokens, C = V: logits [BT, V]).
struct RowsShape {
  int64_t R;  // rows (tokens)
  int64_t C;  // columns of a row: the embedding width d, the SwiGLU width m, the vocabulary V
  void check(const char* op) const {
    if (R < 0 || C < 1) shape_detail::bad_sizes(op, {{"R", R}, {"C", C}}, "R >= 0, C >= 1");
  }
};

// matmul: y [M, N] (=|+=) x [M, K] ld ldx . w [N, K]^T (HF Linear: weight [out, in]).
struct MatmulShape {
  int64_t M;        // rows of x and y (tokens)
  int64_t K;        // in features: columns of x, w
  int64_t N;        // out features: columns of y, rows of w
  int64_t ldx;      // row stride of x and dx, >= K (a column block of a fused projection)
  int64_t ldy = 0;  // row stride of y and dy, >= N; 0: N (rows padded for aligned column blocks)
  int64_t y_stride() const { return ldy ? ldy : N; }
  void check(const char* op) const {
    if (M < 0 || K < 0 || N < 0 || ldx < K || (ldy != 0 && ldy < N))
      shape_detail::bad_sizes(op, {{"M", M}, {"K", K}, {"N", N}, {"ldx", ldx}, {"ldy", ldy}},
                              "M, K, N >= 0, ldx >= K, ldy 0 or >= N");
  }
};

// rmsnorm: x [R, C] ld ldx (and dx); y, dy, res, y_copy [R, C] contiguous; w [C]; rstd [R].
struct RmsNormShape {
  int64_t R;    // rows (tokens)
  int64_t C;    // normalised width
  int64_t ldx;  // row stride of x and dx, >= C
  void check(const char* op) const {
    if (R < 0 || C < 1 || ldx < C)
      shape_detail::bad_sizes(op, {{"R", R}, {"C", C}, {"ldx", ldx}}, "R >= 0, C >= 1, ldx >= C");
  }
};

// rope: x [B, T, H, hd] contiguous, rotated in place; pairs (i, i + hd/2),
// inv_freq_i = theta^(-2i/hd).
struct RopeShape {
  int64_t B;    // batch
  int64_t T;    // sequence length (positions 0..T-1)
  int64_t H;    // heads
  int64_t hd;   // head dim, even
  float theta;  // the RoPE base
  void check(const char* op) const {
    if (B < 0 || T < 0 || H < 0 || hd < 2 || hd % 2 != 0)
      shape_detail::bad_sizes(op, {{"B", B}, {"T", T}, {"H", H}, {"hd", hd}},
                              "B, T, H >= 0, hd even >= 2");
  }
};

// rmsnorm_rope (OLMo 3's QK-norm then RoPE): x [B*T, H*hd] ld ldx (and dx), the norm over a
// whole row of H heads; y, dy [B, T, H, hd] contiguous; w [H*hd]; rstd [B*T].
struct RmsNormRopeShape {
  int64_t B;    // batch
  int64_t T;    // sequence length
  int64_t H;    // heads
  int64_t hd;   // head dim, even
  int64_t ldx;  // token stride of x and dx, >= H*hd (q or k in the fused q|k|v projection)
  float theta;  // the RoPE base
  void check(const char* op) const {
    if (B < 0 || T < 0 || H < 0 || hd < 2 || hd % 2 != 0 || ldx < H * hd)
      shape_detail::bad_sizes(op, {{"B", B}, {"T", T}, {"H", H}, {"hd", hd}, {"ldx", ldx}},
                              "B, T, H >= 0, hd even >= 2, ldx >= H*hd");
  }
};

// attention: q, k, out, dq, dk [B, T, H, hd] contiguous; v, dv [B, T, H, hd] token stride ldv;
// lse [B, H, T].
struct AttnShape {
  int64_t B;    // batch
  int64_t T;    // sequence length
  int64_t H;    // heads
  int64_t hd;   // head dim
  int64_t ldv;  // token stride of v and dv, >= H*hd (v in the fused q|k|v projection)
  void check(const char* op) const {
    if (B < 0 || T < 0 || H < 0 || hd < 1 || ldv < H * hd)
      shape_detail::bad_sizes(op, {{"B", B}, {"T", T}, {"H", H}, {"hd", hd}, {"ldv", ldv}},
                              "B, T, H >= 0, hd >= 1, ldv >= H*hd");
  }
};

// conv1d_silu: x [B, T, C] token stride ldx (and dx); w [C, K]; y, dy [B, T, C] contiguous.
struct ConvShape {
  int64_t B;    // batch
  int64_t T;    // sequence length
  int64_t C;    // channels (depthwise)
  int64_t K;    // kernel width (taps over time)
  int64_t ldx;  // token stride of x and dx, >= C
  void check(const char* op) const {
    if (B < 0 || T < 0 || C < 0 || K < 1 || ldx < C)
      shape_detail::bad_sizes(op, {{"B", B}, {"T", T}, {"C", C}, {"K", K}, {"ldx", ldx}},
                              "B, T, C >= 0, K >= 1, ldx >= C");
  }
};

// l2norm (per head, GDN q and k): x [BT, H, C] token stride ldx (and dx); y, dy [BT, H, C]
// contiguous; rnorm [BT, H].
struct L2NormShape {
  int64_t BT;   // tokens
  int64_t H;    // heads
  int64_t C;    // head dim
  int64_t ldx;  // token stride of x and dx, >= H*C
  float scale;  // y = scale * x / |x| (1/sqrt(key_dim) for q, 1 for k)
  void check(const char* op) const {
    if (BT < 0 || H < 0 || C < 0 || ldx < H * C)
      shape_detail::bad_sizes(op, {{"BT", BT}, {"H", H}, {"C", C}, {"ldx", ldx}},
                              "BT, H, C >= 0, ldx >= H*C");
  }
};

// gdn_gates: b, a, db, da [BT, H] token stride ld (columns of the fused projection); beta, g,
// dbeta, dg [BT, H] contiguous; A_log, dt_bias [H].
struct GatesShape {
  int64_t BT;        // tokens
  int64_t H;         // heads
  int64_t ld;        // token stride of b, a, db, da, >= H
  float beta_scale;  // beta = beta_scale * sigmoid(b) (2 with allow_neg_eigval, else 1)
  void check(const char* op) const {
    if (BT < 0 || H < 0 || ld < H)
      shape_detail::bad_sizes(op, {{"BT", BT}, {"H", H}, {"ld", ld}}, "BT, H >= 0, ld >= H");
  }
};

// gdn (the gated delta rule): q, k [B, T, H, key_dim]; v, out [B, T, H, value_dim]; beta, g
// [B, T, H], all contiguous; states [B, H, gdn_num_chunks(T), key_dim, value_dim].
struct GdnShape {
  int64_t B;          // batch
  int64_t T;          // sequence length
  int64_t H;          // heads
  int64_t key_dim;    // head dim of q and k (rows of the state)
  int64_t value_dim;  // head dim of v and out (columns of the state)
  void check(const char* op) const {
    if (B < 0 || T < 0 || H < 0 || key_dim < 1 || value_dim < 1)
      shape_detail::bad_sizes(
          op, {{"B", B}, {"T", T}, {"H", H}, {"key_dim", key_dim}, {"value_dim", value_dim}},
          "B, T, H >= 0, key_dim, value_dim >= 1");
  }
};

// gated_rmsnorm (GDN output): x, y, dx, dy [R, C] contiguous, row r = t*H + h one head of token
// t; gate, dgate [BT, H*C] token stride ldg (row r reads gate[t, h*C : (h+1)*C]); w [C]; rstd [R].
struct GatedNormShape {
  int64_t R;    // rows: BT*H (token, head) pairs
  int64_t H;    // heads (rows per token)
  int64_t C;    // head dim (value_dim)
  int64_t ldg;  // token stride of gate and dgate, >= H*C
  void check(const char* op) const {
    if (R < 0 || H < 1 || R % H != 0 || C < 1 || ldg < H * C)
      shape_detail::bad_sizes(op, {{"R", R}, {"H", H}, {"C", C}, {"ldg", ldg}},
                              "R >= 0 a multiple of H >= 1, C >= 1, ldg >= H*C");
  }
};

// adamw's hyperparameters that stay fixed over a run (what varies per step, lr and t, is read
// from the step tensor): five floats in a row, the easiest run to swap.
struct AdamWHyper {
  float b1;        // first-moment decay, in [0, 1)
  float b2;        // second-moment decay, in [0, 1)
  float eps;       // added to sqrt(v hat), > 0
  float wd;        // decoupled weight decay of the items marked decay, >= 0
  float max_norm;  // global gradient-norm clip (<= 0: no clipping)
  void check(const char* op) const {
    if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1 && eps > 0 && wd >= 0))
      fail(std::string(op) + ": bad hyperparameters b1=" + std::to_string(b1) +
           " b2=" + std::to_string(b2) + " eps=" + std::to_string(eps) +
           " wd=" + std::to_string(wd) + " (need b1, b2 in [0, 1), eps > 0, wd >= 0)");
  }
};

}  // namespace sl
