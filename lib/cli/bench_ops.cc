// `scalinglab bench --op NAME[,NAME...]`: one backend op at a time, forward and backward timed
// separately by Backend::time_ms (CUDA events on a GPU) over several input sets used in turn, so
// repeated calls do not read inputs left in the L2 by the call before. Prints ms per call and the
// achieved TFLOP/s (ops whose work is matrix products) or GB/s (the fewest bytes the op must move,
// for the memory-bound ones).
//
// Shapes follow the model: tokens BT = batch x seq_len, heads H, head dim hd, width d = H hd;
// attention's v is a column block of a fused [BT, 3d] projection as in the model.
#include "cli/bench_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/tokens.h"

namespace sl::cli {
namespace {

constexpr int kSets = 3;  // input sets used in turn
constexpr const char* kOps[] = {"attention",
                                "gdn",
                                "matmul",
                                "rmsnorm",
                                "swiglu",
                                "rope",
                                "rmsnorm_rope",
                                "conv1d",
                                "l2norm",
                                "gated_rmsnorm",
                                "gated_rmsnorm_proj",
                                "embedding",
                                "cross_entropy",
                                "adamw"};

// One op's benchmark: forward and backward closures over input set i, with the work they do.
struct OpCase {
  std::function<void(int)> fwd, bwd;
  double fwd_flops = 0, bwd_flops = 0;  // 0: not a matrix-product op (report GB/s)
  double fwd_bytes = 0, bwd_bytes = 0;
  std::string shape;
};

// Device tensors of one benchmark, freed at the end; filled with uniform(lo, hi) from a fixed
// stream (never zeros: zeros run faster than real data on tensor cores).
class Pool {
 public:
  explicit Pool(Backend& be) : be_(be) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool() {
    for (Tensor& t : owned_) be_.free(t);
  }
  Tensor make(int64_t n, DType dt, float lo = -1.f, float hi = 1.f) {
    Tensor t = be_.alloc(n, dt);
    owned_.push_back(t);
    std::vector<float> h(static_cast<size_t>(n));
    for (auto& v : h) v = lo + (hi - lo) * static_cast<float>(rng_.uniform());
    be_.upload(t, h.data());
    return t;
  }
  // A tensor of n elements of dt holding `host`'s bytes (indices, f64 scalars).
  Tensor raw(int64_t n, DType dt, const void* host) {
    Tensor t = be_.alloc(n, dt);
    owned_.push_back(t);
    be_.copy_to_device(t, host);
    be_.synchronize();
    return t;
  }
  // kSets tensors of the same shape.
  std::vector<Tensor> sets(int64_t n, DType dt, float lo = -1.f, float hi = 1.f) {
    std::vector<Tensor> v;
    for (int i = 0; i < kSets; ++i) v.push_back(make(n, dt, lo, hi));
    return v;
  }

 private:
  Backend& be_;
  Rng rng_{7, 0};
  std::vector<Tensor> owned_;
};

std::string shape_str(const OpBenchArgs& a) {
  return "B=" + std::to_string(a.batch) + " T=" + std::to_string(a.seq_len) +
         " H=" + std::to_string(a.heads) + " hd=" + std::to_string(a.head_dim);
}

OpCase make_case(const std::string& op, const OpBenchArgs& a, Backend& be, Pool& P) {
  const DType act = be.act_dtype(), f32 = DType::f32;
  const int64_t B = a.batch, T = a.seq_len, H = a.heads, hd = a.head_dim, BT = B * T, d = H * hd;
  const double es = static_cast<double>(dtype_size(act));  // bytes per activation element
  OpCase c;
  c.shape = shape_str(a);
  if (op == "attention") {
    // Causal: half of the T x T scores. Forward: Q K^T and P V, 2 x 2 B H T^2 hd / 2 FLOPs;
    // backward: five such products (S, dP, dV, dK, dQ) = 2.5 x the forward.
    auto q = P.sets(BT * d, act), k = P.sets(BT * d, act), v = P.sets(BT * 3 * d, act);
    auto dout = P.sets(BT * d, act), out = P.sets(BT * d, act);
    auto lse = P.sets(B * H * T, f32), dq = P.sets(BT * d, act), dk = P.sets(BT * d, act),
         dv = P.sets(BT * 3 * d, act);
    c.fwd = [=, &be](int i) {
      be.attention_forward(out[i], lse[i], q[i], k[i], v[i].at(2 * d),
                           {.B = B, .T = T, .H = H, .hd = hd, .ldv = 3 * d});
    };
    c.bwd = [=, &be](int i) {
      be.attention_backward(dq[i], dk[i], dv[i].at(2 * d), dout[i], q[i], k[i], v[i].at(2 * d),
                            out[i], lse[i], {.B = B, .T = T, .H = H, .hd = hd, .ldv = 3 * d},
                            false);
    };
    // Outputs must be valid (lse finite) before timing the backward alone.
    for (int i = 0; i < kSets; ++i) c.fwd(i);
    c.fwd_flops = 2.0 * 2.0 * B * H * static_cast<double>(T) * T * hd / 2.0;
    c.bwd_flops = 2.5 * c.fwd_flops;
    c.fwd_bytes = es * 4.0 * BT * d;
    c.bwd_bytes = es * 8.0 * BT * d;
  } else if (op == "gdn") {
    // Gated DeltaNet, the model's shape: key_dim = hd, value_dim = 2 hd. Memory-bound reporting
    // (GB/s).
    const int64_t key_dim = hd, value_dim = 2 * hd, NC = (T + 63) / 64;
    auto q = P.sets(BT * H * key_dim, act, -0.2f, 0.2f),
         k = P.sets(BT * H * key_dim, act, -0.2f, 0.2f);
    auto v = P.sets(BT * H * value_dim, act), beta = P.sets(BT * H, act, 0.f, 1.f);
    auto g = P.sets(BT * H, f32, -0.2f, -0.01f), out = P.sets(BT * H * value_dim, act);
    auto st = P.sets(B * H * NC * key_dim * value_dim, f32), dout = P.sets(BT * H * value_dim, act);
    auto dq = P.sets(BT * H * key_dim, act), dk = P.sets(BT * H * key_dim, act),
         dv = P.sets(BT * H * value_dim, act), dbeta = P.sets(BT * H, f32),
         dg = P.sets(BT * H, f32);
    const GdnShape gs{.B = B, .T = T, .H = H, .key_dim = key_dim, .value_dim = value_dim};
    c.fwd = [=, &be](int i) { be.gdn_forward(out[i], st[i], q[i], k[i], v[i], beta[i], g[i], gs); };
    c.bwd = [=, &be](int i) {
      be.gdn_backward(dq[i], dk[i], dv[i], dbeta[i], dg[i], dout[i], st[i], q[i], k[i], v[i],
                      beta[i], g[i], gs, false);
    };
    for (int i = 0; i < kSets; ++i) c.fwd(i);
    c.shape += " key_dim=" + std::to_string(key_dim) + " value_dim=" + std::to_string(value_dim);
    c.fwd_bytes =
        es * BT * H * (2.0 * key_dim + 2.0 * value_dim) + 4.0 * B * H * NC * key_dim * value_dim;
    c.bwd_bytes =
        es * BT * H * (4.0 * key_dim + 3.0 * value_dim) + 4.0 * B * H * NC * key_dim * value_dim;
  } else if (op == "matmul") {
    // y [BT, N] = x [BT, K] w^T with K = N = d (an o_proj).
    auto x = P.sets(BT * d, act), w = P.sets(d * d, act), y = P.sets(BT * d, act);
    auto dy = P.sets(BT * d, act), dx = P.sets(BT * d, act), dw = P.sets(d * d, f32);
    c.fwd = [=, &be](int i) {
      be.matmul_forward(y[i], x[i], w[i], {.M = BT, .K = d, .N = d, .ldx = d}, false);
    };
    c.bwd = [=, &be](int i) {
      be.matmul_backward(dx[i], dw[i], dy[i], x[i], w[i], {.M = BT, .K = d, .N = d, .ldx = d},
                         false);
    };
    c.shape = "M=" + std::to_string(BT) + " K=" + std::to_string(d) + " N=" + std::to_string(d);
    c.fwd_flops = 2.0 * BT * d * d;
    c.bwd_flops = 2.0 * c.fwd_flops;
    c.fwd_bytes = es * 2.0 * BT * d;
    c.bwd_bytes = es * 3.0 * BT * d;
  } else if (op == "rmsnorm") {
    auto x = P.sets(BT * d, act), w = P.sets(d, f32), y = P.sets(BT * d, f32);
    auto rstd = P.sets(BT, f32), dy = P.sets(BT * d, act), dx = P.sets(BT * d, act),
         dw = P.sets(d, f32);
    // As the post-norm block runs it: y = res + rms(x) into the fp32 residual, with the
    // compute-dtype copy; the backward writes dx (=).
    auto res = P.sets(BT * d, f32), yc = P.sets(BT * d, act);
    c.fwd = [=, &be](int i) {
      be.rmsnorm_forward(y[i], rstd[i], x[i], w[i], {.R = BT, .C = d, .ldx = d}, 1e-6f, res[i],
                         yc[i]);
    };
    c.bwd = [=, &be](int i) {
      be.rmsnorm_backward(dx[i], dw[i], dy[i], x[i], w[i], rstd[i], {.R = BT, .C = d, .ldx = d},
                          false);
    };
    for (int i = 0; i < kSets; ++i) c.fwd(i);
    c.shape = "R=" + std::to_string(BT) + " C=" + std::to_string(d);
    c.fwd_bytes = (es * 2.0 + 8.0) * BT * d;  // read x, res (fp32); write y (fp32), y_copy
    c.bwd_bytes = es * 3.0 * BT * d;          // read dy, x; write dx (+ the dw pass re-reads)
  } else if (op == "swiglu") {
    const int64_t m = (8 * d / 3 + 127) / 128 * 128;  // the model's MLP width
    auto gu = P.sets(BT * 2 * m, act), h = P.sets(BT * m, act), dh = P.sets(BT * m, act);
    auto dgu = P.sets(BT * 2 * m, act);
    c.fwd = [=, &be](int i) { be.swiglu_forward(h[i], gu[i], {.R = BT, .C = m}); };
    c.bwd = [=, &be](int i) { be.swiglu_backward(dgu[i], dh[i], gu[i], {.R = BT, .C = m}, false); };
    c.shape = "R=" + std::to_string(BT) + " m=" + std::to_string(m);
    c.fwd_bytes = es * 3.0 * BT * m;
    c.bwd_bytes = es * 5.0 * BT * m;  // read gu, dh; write dgu
  } else if (op == "rope") {
    // In place on q [BT, H, hd]; the backward is the inverse rotation.
    auto x = P.sets(BT * d, act);
    c.fwd = [=, &be](int i) {
      be.rope_forward(x[i], {.B = B, .T = T, .H = H, .hd = hd, .theta = 5e5f});
    };
    c.bwd = [=, &be](int i) {
      be.rope_backward(x[i], {.B = B, .T = T, .H = H, .hd = hd, .theta = 5e5f});
    };
    c.fwd_bytes = c.bwd_bytes = es * 2.0 * BT * d;
  } else if (op == "rmsnorm_rope") {
    // The attention block's QK-norm + RoPE of q: from the fused qkv rows (stride 3d) into q;
    // the backward writes dq's slice of dqkv. The dw pass re-reads dy and x (not counted).
    auto x = P.sets(BT * 3 * d, act), w = P.sets(d, act), y = P.sets(BT * d, act);
    auto rstd = P.sets(BT, f32), dy = P.sets(BT * d, act), dx = P.sets(BT * 3 * d, act),
         dw = P.sets(d, f32);
    c.fwd = [=, &be](int i) {
      be.rmsnorm_rope_forward(y[i], rstd[i], x[i], w[i],
                              {.B = B, .T = T, .H = H, .hd = hd, .ldx = 3 * d, .theta = 5e5f},
                              1e-6f);
    };
    c.bwd = [=, &be](int i) {
      be.rmsnorm_rope_backward(dx[i], dw[i], dy[i], x[i], w[i], rstd[i],
                               {.B = B, .T = T, .H = H, .hd = hd, .ldx = 3 * d, .theta = 5e5f},
                               false);
    };
    for (int i = 0; i < kSets; ++i) c.fwd(i);
    c.fwd_bytes = es * 2.0 * BT * d;
    c.bwd_bytes = es * 3.0 * BT * d;
  } else if (op == "conv1d") {
    // The GDN block's causal depthwise conv + SiLU over q|k|v (C = H (2 hd + 2 hd)), K = 4, read
    // from the fused projection, whose row stride the model rounds up to 8 (Dims::ldp: C + the
    // gates' 3 H columns), so that the GPU kernels take its 16-byte path as in a training step.
    const int64_t C = H * 4 * hd, ld = (C + 3 * H + 7) / 8 * 8, K = 4;
    auto x = P.sets(BT * ld, act), w = P.sets(C * K, act, -0.5f, 0.5f), y = P.sets(BT * C, act);
    auto dy = P.sets(BT * C, act), dx = P.sets(BT * ld, act), dw = P.sets(C * K, f32);
    c.fwd = [=, &be](int i) {
      be.conv1d_silu_forward(y[i], x[i], w[i], {.B = B, .T = T, .C = C, .K = K, .ldx = ld});
    };
    c.bwd = [=, &be](int i) {
      be.conv1d_silu_backward(dx[i], dw[i], dy[i], x[i], w[i],
                              {.B = B, .T = T, .C = C, .K = K, .ldx = ld}, false);
    };
    c.shape += " C=" + std::to_string(C) + " K=4";
    c.fwd_bytes = es * 2.0 * BT * C;
    c.bwd_bytes = es * 3.0 * BT * C;  // read x, dy; write dx (the model's write mode)
  } else if (op == "l2norm") {
    auto x = P.sets(BT * d, act), y = P.sets(BT * d, act), rn = P.sets(BT * H, f32);
    auto dy = P.sets(BT * d, act), dx = P.sets(BT * d, act);
    c.fwd = [=, &be](int i) {
      be.l2norm_forward(y[i], rn[i], x[i], {.BT = BT, .H = H, .C = hd, .ldx = d, .scale = 1.f},
                        1e-6f);
    };
    c.bwd = [=, &be](int i) {
      be.l2norm_backward(dx[i], dy[i], x[i], rn[i],
                         {.BT = BT, .H = H, .C = hd, .ldx = d, .scale = 1.f}, false);
    };
    for (int i = 0; i < kSets; ++i) c.fwd(i);
    c.fwd_bytes = es * 2.0 * BT * d;
    c.bwd_bytes = es * 3.0 * BT * d;  // read x, dy; write dx
  } else if (op == "gated_rmsnorm" || op == "gated_rmsnorm_proj") {
    // The GDN output norm: rows of one head (value_dim = 2 hd), gate from a [BT, H value_dim]
    // block: contiguous, or (_proj) where the model has it, in the fused projection's rows
    // (key dim hd: q|k|v|b|a|gate, P = 2 H hd + 2 H value_dim + 2 H wide, row stride P rounded up
    // to 8), so only 4-byte aligned when H is not a multiple of 4 (the ladder's L0, L1, L3).
    const int64_t value_dim = 2 * hd, R = BT * H;
    const bool proj = op == "gated_rmsnorm_proj";
    const int64_t goff = proj ? 2 * H * hd + H * value_dim + 2 * H : 0;
    const int64_t ldg = proj ? (goff + H * value_dim + 7) / 8 * 8 : H * value_dim;
    auto x = P.sets(R * value_dim, act), gate = P.sets(BT * ldg, act),
         w = P.sets(value_dim, f32, 0.5f, 1.5f);
    auto y = P.sets(R * value_dim, act), rstd = P.sets(R, f32), dy = P.sets(R * value_dim, act);
    auto dx = P.sets(R * value_dim, act), dgate = P.sets(BT * ldg, act),
         dw = P.sets(value_dim, f32);
    c.fwd = [=, &be](int i) {
      be.gated_rmsnorm_forward(y[i], rstd[i], x[i], gate[i].at(goff), w[i],
                               {.R = R, .H = H, .C = value_dim, .ldg = ldg}, 1e-6f);
    };
    c.bwd = [=, &be](int i) {
      be.gated_rmsnorm_backward(dx[i], dgate[i].at(goff), dw[i], dy[i], x[i], gate[i].at(goff),
                                w[i], rstd[i], {.R = R, .H = H, .C = value_dim, .ldg = ldg}, false);
    };
    for (int i = 0; i < kSets; ++i) c.fwd(i);
    c.shape += " value_dim=" + std::to_string(value_dim);
    if (proj) c.shape += " ldg=" + std::to_string(ldg) + " gate+" + std::to_string(goff);
    c.fwd_bytes = es * 3.0 * R * value_dim;
    c.bwd_bytes = es * 5.0 * R * value_dim;  // read dy, x, gate; write dx, dgate
  } else if (op == "embedding") {
    // Token embedding of a vocab x d table; the backward scatters into its gradient.
    const int64_t V = a.vocab;
    auto wte = P.sets(V * d, act), out = P.sets(BT * d, act), dout = P.sets(BT * d, act);
    auto dwte = P.sets(V * d, f32);
    std::vector<int32_t> ids, tgt;  // with --data, ids repeat as in training
    bench_batch(a.data, a.batch, a.seq_len, V, 0, ids, tgt);
    if (!a.data.empty()) c.shape += " data";
    std::vector<int32_t> host(static_cast<size_t>(embedding_index_size(BT)));
    embedding_index(ids.data(), BT, V, host.data());
    const Tensor index = P.raw(embedding_index_size(BT), DType::i32, host.data());
    c.fwd = [=, &be](int i) { be.embedding_forward(out[i], index, wte[i], {.R = BT, .C = d}); };
    c.bwd = [=, &be](int i) { be.embedding_backward(dwte[i], index, dout[i], {.R = BT, .C = d}); };
    c.shape += " V=" + std::to_string(V);
    c.fwd_bytes = es * 2.0 * BT * d;
    c.bwd_bytes = es * BT * d + 8.0 * BT * d;
  } else if (op == "adamw") {
    // One multi-tensor AdamW update of 12 d x d fp32 parameter tensors (p, g, m, v) in one launch,
    // with the bf16 compute copy written (the optimizer's whole update at 12 layers' attention
    // weights).
    const int64_t n = 12 * d * d;
    auto p = P.sets(n, f32), g = P.sets(n, f32), m = P.sets(n, f32), v = P.sets(n, f32, 0.f, 1.f);
    auto pc = P.sets(n, act);
    std::vector<int32_t> items;
    for (int64_t k = 0; k < 12; ++k) {
      items.push_back(static_cast<int32_t>(k * d * d));
      items.push_back(static_cast<int32_t>(d * d));
      items.push_back(1);
    }
    const Tensor it = P.raw(36, DType::i32, items.data());
    const double scalars[kStepSlots] = {1.0, 1.0, 1e-4, 10.0};  // loss, grad sq, lr, t
    const Tensor step = P.raw(kStepSlots, DType::f64, scalars);
    c.fwd = [=, &be](int i) {
      be.adamw(p[i], g[i], m[i], v[i], pc[i], it, 12, step,
               {.b1 = 0.9f, .b2 = 0.95f, .eps = 1e-8f, .wd = 0.1f, .max_norm = 1.f});
    };
    c.bwd = c.fwd;  // no backward: the same update timed twice
    c.shape = "n=" + std::to_string(n);
    c.fwd_bytes = c.bwd_bytes = 4.0 * 7.0 * n + es * n;  // read p, g, m, v; write p, m, v, copy
  } else if (op == "cross_entropy") {
    // Forward: losses only; backward: losses and dlogits (one call, the loss sum on the device).
    const int64_t V = a.vocab;
    auto logits = P.sets(BT * V, act, -4.f, 4.f), dl = P.sets(BT * V, act);
    auto losses = P.sets(BT, f32);
    std::vector<int32_t> tg(static_cast<size_t>(BT));
    Rng r(3, 0);
    for (auto& t : tg) t = static_cast<int32_t>(r.below(static_cast<uint64_t>(V)));
    const Tensor tgt = P.raw(BT, DType::i32, tg.data());
    const double one = 1.0;
    const Tensor sum = P.raw(1, DType::f64, &one), dscale = P.raw(1, DType::f64, &one);
    c.fwd = [=, &be](int i) {
      be.cross_entropy(sum, losses[i], Tensor{}, logits[i], tgt, {.R = BT, .C = V}, dscale);
    };
    c.bwd = [=, &be](int i) {
      be.cross_entropy(sum, losses[i], dl[i], logits[i], tgt, {.R = BT, .C = V}, dscale);
    };
    c.shape = "BT=" + std::to_string(BT) + " V=" + std::to_string(V);
    c.fwd_bytes = es * BT * V;
    c.bwd_bytes = es * 2.0 * BT * V;  // read the logits, write dlogits
  } else {
    fail("bench --op: no benchmark for op '" + op + "'");  // names are checked first
  }
  return c;
}

}  // namespace

// The batch `bench` trains on (bench_ops.h).
void bench_batch(const std::string& data, int64_t batch, int64_t seq_len, int64_t vocab,
                 uint64_t stream, std::vector<int32_t>& in, std::vector<int32_t>& tgt) {
  const int64_t n = batch * seq_len;
  in.resize(n);
  tgt.resize(n);
  if (!data.empty()) {
    sample_batch(TokenSource::open(data, vocab), 0, static_cast<int64_t>(stream), batch, seq_len,
                 in.data(), tgt.data());
    return;
  }
  Rng rng(1, stream);
  for (int64_t i = 0; i < n; ++i) {
    in[i] = static_cast<int32_t>(rng.below(vocab));
    tgt[i] = static_cast<int32_t>(rng.below(vocab));
  }
}

void run_op_bench(const OpBenchArgs& a, const std::vector<std::string>& ops) {
  if (a.batch < 1 || a.seq_len < 1 || a.heads < 1 || a.head_dim < 1 || a.reps < 1)
    fail("bench --op: --batch, --seq-len, --heads, --head-dim and --reps must be >= 1");
  for (const std::string& op : ops)
    if (std::find(std::begin(kOps), std::end(kOps), op) == std::end(kOps))
      fail("bench --op: unknown op '" + op +
           "' (attention, gdn, matmul, rmsnorm, swiglu, rope, conv1d, l2norm, gated_rmsnorm, "
           "embedding, cross_entropy, adamw)");
  auto be = make_backend(a.device);
  nlohmann::json rows = nlohmann::json::array();
  std::printf("%-14s %-5s %-36s %10s %10s %10s\n", "op", "pass", "shape", "ms", "TFLOP/s", "GB/s");
  for (const std::string& op : ops) {
    Pool pool(*be);
    const OpCase c = make_case(op, a, *be, pool);
    for (int pass = 0; pass < 2; ++pass) {
      const auto& fn = pass == 0 ? c.fwd : c.bwd;
      int i = 0;
      auto call = [&]() { fn(i++ % kSets); };
      for (int w = 0; w < a.warmup; ++w) call();
      const double ms = be->time_ms(call, static_cast<int>(a.reps));
      const double flops = pass == 0 ? c.fwd_flops : c.bwd_flops;
      const double bytes = pass == 0 ? c.fwd_bytes : c.bwd_bytes;
      const double tflops = flops > 0 ? flops / (ms * 1e-3) / 1e12 : 0;
      const double gbs = bytes / (ms * 1e-3) / 1e9;
      char tf[32] = "-";
      if (tflops > 0) std::snprintf(tf, sizeof tf, "%.1f", tflops);
      std::printf("%-14s %-5s %-36s %10.4f %10s %10.1f\n", op.c_str(), pass == 0 ? "fwd" : "bwd",
                  c.shape.c_str(), ms, tf, gbs);
      std::fflush(stdout);
      rows.push_back({{"op", op},
                      {"pass", pass == 0 ? "fwd" : "bwd"},
                      {"shape", c.shape},
                      {"device", be->name()},
                      {"ms", ms},
                      {"flops", flops},
                      {"bytes", bytes},
                      {"tflops", tflops},
                      {"gbs", gbs}});
    }
  }
  if (!a.json.empty()) {
    std::ofstream f(a.json);
    if (!f) fail("bench --json '" + a.json + "': cannot write");
    f << rows.dump(2) << "\n";
  }
}

}  // namespace sl::cli
