// Every CUDA op against CpuBackend<float> on fresh random inputs, in two modes:
//   f32:   every tensor fp32 on the GPU too -> relative error under 1e-4 (same math, other order);
//   mixed: the Model's dtypes (activations and compute weights bf16; parameter gradients, stats
//          and optimizer state fp32) -> relative error under 1e-2.
// Both backends see identical inputs (values destined for a bf16 tensor are rounded to bf16 on the
// host first). Forward outputs are poisoned with NaN before the call (an unwritten element shows
// up as NaN, and no output may be NaN); gradient outputs are pre-filled and compared by their
// increment, which checks the accumulate (+=) convention, or, for the write (=) mode of the ops
// with `accumulate`, poisoned like forward outputs: NaN must remain exactly where the CPU left it
// (the padding of a strided output) and nowhere else. The error is max|gpu - cpu| / max|cpu|.
// Gated DeltaNet pitfalls get their own cases: T not a multiple of 64, T = 1, strong decay (also
// through the gates, A_log near log 16), beta up to 2 (the triangular solve), no decay.
#define BOOST_TEST_MODULE cuda_ops
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "cuda/gpu_test.h"

using sl::test::GpuOrSkip;
BOOST_TEST_GLOBAL_FIXTURE(GpuOrSkip);

namespace {

using sl::DType;
using sl::Tensor;

// acc: gradient output, compared by its increment; write: gradient output in the write mode.
enum class Kind { in, out, inout, acc, write };
enum class Cls { act, weight, pgrad, stat };
enum class Mode { f32, mixed };
const char* mode_name(Mode m) { return m == Mode::f32 ? "f32" : "mixed"; }
double tol_of(Mode m) { return m == Mode::f32 ? 1e-4 : 1e-2; }

using Fill = std::function<void(std::vector<float>&, std::mt19937_64&)>;
struct Spec {
  std::string name;
  int64_t n;
  Kind kind;
  Cls cls;
  float lo = -1.f, hi = 1.f;
  Fill fill = nullptr;  // custom initial values (replaces uniform(lo, hi))
  // Floor of the error's denominator: for outputs that are exactly zero in exact arithmetic
  // (dq, dk of attention over one key, dg with T = 1, the zero state entering the first chunk),
  // whose computed values are rounding noise; 0 = plain relative error, output must be nonzero.
  float floor = 0.f;
};
using Bufs = std::map<std::string, Tensor>;
// Runs the op on a backend; returns its scalar result (cross_entropy, sum_squares) or 0.
using OpFn = std::function<double(sl::Backend&, Bufs&)>;

sl::CpuBackend<float>& cpu() {
  static sl::CpuBackend<float> be;
  return be;
}
sl::CudaBackend& gpu(Mode m) {
  static sl::CudaBackend f32(0, DType::f32), bf16(0, DType::bf16);
  return m == Mode::f32 ? f32 : bf16;
}
DType gpu_dtype(Mode m, Cls c) {
  return m == Mode::mixed && (c == Cls::act || c == Cls::weight) ? DType::bf16 : DType::f32;
}

// Worst error per (op, mode), printed as a table at the end.
std::map<std::string, std::map<std::string, double>>& table() {
  static std::map<std::string, std::map<std::string, double>> t;
  return t;
}
struct PrintTable {
  ~PrintTable() {
    if (table().empty()) return;
    sl::test::report("| op | f32 rel err | mixed (bf16) rel err |");
    sl::test::report("|---|---|---|");
    for (const auto& [op, by_mode] : table()) {
      char line[256];
      auto get = [&](const char* m) {
        auto it = by_mode.find(m);
        return it == by_mode.end() ? std::string("-") : std::to_string(it->second);
      };
      std::snprintf(line, sizeof line, "| %s | %s | %s |", op.c_str(), get("f32").c_str(),
                    get("mixed").c_str());
      sl::test::report(line);
    }
  }
};
BOOST_TEST_GLOBAL_FIXTURE(PrintTable);

uint64_t seed_of(const std::string& s) { return std::hash<std::string>{}(s); }

// Runs `fn` on the CPU and on the GPU in `mode` and compares every out/inout/acc tensor.
void check_op(const std::string& op, const std::vector<Spec>& specs, const OpFn& fn, Mode mode,
              double tol = -1) {
  if (tol < 0) tol = tol_of(mode);
  sl::Backend& c = cpu();
  sl::CudaBackend& g = gpu(mode);
  Bufs bc, bg;
  std::map<std::string, std::vector<float>> init;
  for (const Spec& s : specs) {
    const DType dt = gpu_dtype(mode, s.cls);
    std::vector<float> h(static_cast<size_t>(s.n));
    std::mt19937_64 rng(seed_of(op + "/" + s.name));
    if (s.kind == Kind::out || s.kind == Kind::write) {
      std::fill(h.begin(), h.end(), std::numeric_limits<float>::quiet_NaN());
    } else if (s.kind == Kind::acc) {
      // Small prefill so the increment is measured accurately; zero for bf16 gradients, whose
      // single rounding of (prefill + increment) would swamp the increment.
      std::uniform_real_distribution<float> u(-0.01f, 0.01f);
      for (auto& v : h) v = dt == DType::bf16 ? 0.f : u(rng);
    } else if (s.fill) {
      s.fill(h, rng);
    } else {
      std::uniform_real_distribution<float> u(s.lo, s.hi);
      for (auto& v : h) v = u(rng);
    }
    if (dt == DType::bf16)
      for (auto& v : h) v = sl::test::round_bf16(v);
    bc[s.name] = c.alloc(s.n, DType::f32);
    bg[s.name] = g.alloc(s.n, dt);
    c.upload(bc[s.name], h.data());
    g.upload(bg[s.name], h.data());
    init[s.name] = std::move(h);
  }
  const double rc = fn(c, bc);
  const double rg = fn(g, bg);
  g.synchronize();
  double worst = 0;
  const std::string tag = op + " [" + mode_name(mode) + "]";
  if (rc != 0 || rg != 0) {
    const double e = std::abs(rg - rc) / std::max(std::abs(rc), 1e-30);
    sl::test::report(tag + " scalar: rel err " + std::to_string(e));
    BOOST_TEST(std::isfinite(rg), tag << " scalar is not finite");
    BOOST_TEST(e < tol, tag << " scalar rel err " << e);
    worst = std::max(worst, e);
  }
  for (const Spec& s : specs) {
    if (s.kind == Kind::in) continue;
    std::vector<float> hc(static_cast<size_t>(s.n)), hg(static_cast<size_t>(s.n));
    c.download(hc.data(), bc[s.name]);
    g.download(hg.data(), bg[s.name]);
    bool nan = sl::test::has_nan(hg);
    if (s.kind == Kind::write) {
      // Written inside [rows, cols] only: the CPU's untouched (NaN) elements must be NaN here.
      bool same = true;
      for (size_t i = 0; i < hc.size(); ++i) {
        if (std::isnan(hc[i]) != std::isnan(hg[i])) same = false;
        if (std::isnan(hc[i])) hc[i] = hg[i] = 0.f;
      }
      BOOST_TEST(same, tag << " " << s.name << ": written elements differ from the CPU's");
      nan = sl::test::has_nan(hg);
    }
    if (s.kind == Kind::acc) {
      const std::vector<float>& h0 = init[s.name];
      for (size_t i = 0; i < hc.size(); ++i) {
        hc[i] -= h0[i];
        hg[i] -= h0[i];
      }
    }
    const double e = sl::test::rel_err(hg, hc, s.floor);
    BOOST_TEST_MESSAGE(tag << " " << s.name << ": rel err " << e);
    BOOST_TEST(!nan, tag << " " << s.name << " has NaN/inf (unwritten or overflow)");
    BOOST_TEST(e < tol, tag << " " << s.name << ": rel err " << e << " >= " << tol);
    double mx = 0;
    for (float v : hc) mx = std::max(mx, double(std::abs(v)));
    if (s.floor == 0.f)
      BOOST_TEST(mx > 0, tag << " " << s.name << " is identically zero on the CPU");
    worst = std::max(worst, nan ? std::numeric_limits<double>::infinity() : e);
  }
  auto& cell = table()[op][mode_name(mode)];
  cell = std::max(cell, worst);
  for (auto& [n, t] : bc) c.free(t);
  for (auto& [n, t] : bg) g.free(t);
}

void check_both(const std::string& op, const std::vector<Spec>& specs, const OpFn& fn) {
  check_op(op, specs, fn, Mode::f32);
  check_op(op, specs, fn, Mode::mixed);
}

// Rows of `dim` with unit L2 norm (times `scale`), every `ld` elements (as the model's GDN q, k).
Fill unit_rows(int64_t dim, float scale = 1.f) {
  return [dim, scale](std::vector<float>& h, std::mt19937_64& rng) {
    std::normal_distribution<float> nd;
    for (size_t r = 0; r + dim <= h.size(); r += dim) {
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) ss += double(h[r + i] = nd(rng)) * h[r + i];
      for (int64_t i = 0; i < dim; ++i) h[r + i] *= scale / float(std::sqrt(ss));
    }
  };
}

// Backend tensors holding host index arrays / f64 scalars, freed when the holder goes.
struct Raw {
  sl::Backend& be;
  std::vector<Tensor> ts;
  explicit Raw(sl::Backend& b) : be(b) {}
  ~Raw() {
    for (Tensor t : ts) be.free(t);
  }
  Tensor ints(const std::vector<int32_t>& h) {
    ts.push_back(be.alloc(static_cast<int64_t>(h.size()), DType::i32));
    be.copy_to_device(ts.back(), h.data());
    return ts.back();
  }
  Tensor f64(const std::vector<double>& h) {
    ts.push_back(be.alloc(static_cast<int64_t>(h.size()), DType::f64));
    be.copy_to_device(ts.back(), h.data());
    return ts.back();
  }
  double read(Tensor t, int64_t i = 0) {
    double v = 0;
    be.copy_to_host(&v, t.at(i, 1));
    be.synchronize();
    return v;
  }
};

std::vector<int32_t> random_ids(int64_t n, int64_t V, uint64_t seed, bool some_ignored = false) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& v : ids) v = static_cast<int32_t>(rng() % V);
  if (some_ignored)
    for (size_t i = 0; i < ids.size(); i += 7) ids[i] = -1;
  return ids;
}

}  // namespace

// ---- elementwise ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(elementwise_match_cpu) {
  // Odd sizes, strides and offsets: the one-element kernels; multiples of 8 with 16-byte aligned
  // bases: the 8-element ones.
  for (const int64_t n : {10007, 10008}) {
    const std::string tag = " n=" + std::to_string(n);
    check_both("axpy" + tag, {{"y", n, Kind::inout, Cls::act}, {"x", n, Kind::in, Cls::act}},
               [&](sl::Backend& be, Bufs& b) {
                 be.axpy(b["y"], b["x"], 0.7f, n);
                 return 0.0;
               });
    check_both("scale" + tag, {{"x", n, Kind::inout, Cls::act}}, [&](sl::Backend& be, Bufs& b) {
      be.scale(b["x"], -1.3f, n);
      return 0.0;
    });
  }
  struct Copy {
    int64_t rows, cols, ldd, lds, off_d, off_s;
  };
  for (const Copy& k : {Copy{37, 29, 41, 33, 3, 1}, Copy{37, 32, 40, 48, 8, 0}}) {
    for (bool acc : {false, true}) {
      check_both(std::string(acc ? "copy2d+=" : "copy2d") + " cols=" + std::to_string(k.cols),
                 {{"dst", k.rows * k.ldd + k.off_d, Kind::inout, Cls::act},
                  {"src", k.rows * k.lds + k.off_s, Kind::in, Cls::act}},
                 [&](sl::Backend& be, Bufs& b) {
                   be.copy2d(b["dst"].at(k.off_d), b["src"].at(k.off_s),
                             {.R = k.rows, .C = k.cols, .ld_dst = k.ldd, .ld_src = k.lds}, acc);
                   return 0.0;
                 });
    }
  }
  check_both("sum_squares", {{"x", 1 << 20, Kind::in, Cls::pgrad}}, [&](sl::Backend& be, Bufs& b) {
    Raw r(be);
    const Tensor out = r.f64({std::numeric_limits<double>::quiet_NaN()});  // written
    be.sum_squares(out, b["x"], 1 << 20);
    return r.read(out);
  });
}

BOOST_AUTO_TEST_CASE(convert_roundtrip_and_zero) {
  sl::CudaBackend& g = gpu(Mode::mixed);
  for (const int64_t n : {4099, 4096}) {  // the one-element and the 8-element kernels
    std::vector<float> h(n), back(n);
    std::mt19937_64 rng(5);
    std::normal_distribution<float> nd;
    for (auto& v : h) v = nd(rng);
    Tensor f = g.alloc(n, DType::f32), b = g.alloc(n, DType::bf16), f2 = g.alloc(n, DType::f32);
    g.upload(f, h.data());
    g.convert(b, f);
    g.convert(f2, b);
    g.download(back.data(), f2);
    for (int64_t i = 0; i < n; ++i) BOOST_TEST(back[i] == sl::test::round_bf16(h[i]));
    g.zero(f2);
    g.download(back.data(), f2);
    BOOST_TEST(*std::max_element(back.begin(), back.end()) == 0.f);
    g.free(f);
    g.free(b);
    g.free(f2);
  }
}

// ---- embedding, matmul, norms, rope, swiglu -----------------------------------------------------

// The backward sums sorted positions in chunks of 64 (backend/cuda/embedding.cu): segments of one
// id inside a chunk, across two, across many (a skewed id, as a space in byte-level text), from
// position 0, ending at the last position, and a single token; d a multiple of 8 (vector loads) or
// not.
BOOST_AUTO_TEST_CASE(embedding_matches_cpu) {
  struct Case {
    int64_t BT, d, V;
    int hot;  // percent of positions given id V / 2 (0: uniform ids)
  };
  for (const Case& k : {Case{300, 48, 17, 0}, Case{1000, 40, 50, 60}, Case{130, 20, 5, 0},
                        Case{64, 16, 1, 0}, Case{1, 24, 3, 0}, Case{777, 72, 300, 35}}) {
    const int64_t BT = k.BT, d = k.d, V = k.V;
    BOOST_TEST_CONTEXT("BT " << BT << " d " << d << " V " << V << " hot " << k.hot) {
      auto ids = random_ids(BT, V, 11 + static_cast<uint64_t>(BT));
      std::mt19937_64 rng(7);
      for (auto& v : ids)
        if (static_cast<int>(rng() % 100) < k.hot) v = static_cast<int32_t>(V / 2);
      std::vector<int32_t> index(static_cast<size_t>(sl::embedding_index_size(BT)));
      sl::embedding_index(ids.data(), BT, V, index.data());
      check_both("embedding_forward",
                 {{"wte", V * d, Kind::in, Cls::weight}, {"out", BT * d, Kind::out, Cls::act}},
                 [&](sl::Backend& be, Bufs& b) {
                   Raw r(be);
                   be.embedding_forward(b["out"], r.ints(index), b["wte"], {.R = BT, .C = d});
                   be.synchronize();
                   return 0.0;
                 });
      check_both("embedding_backward",
                 {{"dwte", V * d, Kind::acc, Cls::pgrad}, {"dout", BT * d, Kind::in, Cls::act}},
                 [&](sl::Backend& be, Bufs& b) {
                   Raw r(be);
                   be.embedding_backward(b["dwte"], r.ints(index), b["dout"], {.R = BT, .C = d});
                   be.synchronize();
                   return 0.0;
                 });
    }
  }
}

BOOST_AUTO_TEST_CASE(matmul_matches_cpu) {
  const int64_t M = 203, K = 96, N = 80, ldx = K + 5;
  for (bool acc : {false, true}) {
    check_both(acc ? "matmul_forward+=" : "matmul_forward",
               {{"x", M * ldx, Kind::in, Cls::act},
                {"w", N * K, Kind::in, Cls::weight},
                {"y", M * N, acc ? Kind::inout : Kind::out, Cls::act}},
               [&](sl::Backend& be, Bufs& b) {
                 be.matmul_forward(b["y"], b["x"], b["w"], {.M = M, .K = K, .N = N, .ldx = ldx},
                                   acc);
                 return 0.0;
               });
  }
  for (bool acc : {true, false}) {
    const std::vector<Spec> bw = {{"x", M * ldx, Kind::in, Cls::act},
                                  {"w", N * K, Kind::in, Cls::weight},
                                  {"dy", M * N, Kind::in, Cls::act},
                                  {"dx", M * ldx, acc ? Kind::acc : Kind::write, Cls::act},
                                  {"dw", N * K, Kind::acc, Cls::pgrad}};
    check_both(acc ? "matmul_backward" : "matmul_backward(dx=)", bw, [&](sl::Backend& be, Bufs& b) {
      be.matmul_backward(b["dx"], b["dw"], b["dy"], b["x"], b["w"],
                         {.M = M, .K = K, .N = N, .ldx = ldx}, acc);
      return 0.0;
    });
    if (!acc) continue;
    // A null gradient output is skipped (dw only).
    std::vector<Spec> only_dw = bw;
    only_dw.erase(only_dw.begin() + 3);
    check_both("matmul_backward(dx=null)", only_dw, [&](sl::Backend& be, Bufs& b) {
      be.matmul_backward(Tensor(), b["dw"], b["dy"], b["x"], b["w"],
                         {.M = M, .K = K, .N = N, .ldx = ldx}, true);
      return 0.0;
    });
  }
  // y and dy at a padded row stride (the GDN block's projection): only [M, N] of y written.
  const int64_t ldy = N + 8;
  check_both("matmul_forward(ldy)",
             {{"x", M * ldx, Kind::in, Cls::act},
              {"w", N * K, Kind::in, Cls::weight},
              {"y", M * ldy, Kind::write, Cls::act}},
             [&](sl::Backend& be, Bufs& b) {
               be.matmul_forward(b["y"], b["x"], b["w"],
                                 {.M = M, .K = K, .N = N, .ldx = ldx, .ldy = ldy}, false);
               return 0.0;
             });
  check_both("matmul_backward(ldy)",
             {{"x", M * ldx, Kind::in, Cls::act},
              {"w", N * K, Kind::in, Cls::weight},
              {"dy", M * ldy, Kind::in, Cls::act},
              {"dx", M * ldx, Kind::acc, Cls::act},
              {"dw", N * K, Kind::acc, Cls::pgrad}},
             [&](sl::Backend& be, Bufs& b) {
               be.matmul_backward(b["dx"], b["dw"], b["dy"], b["x"], b["w"],
                                  {.M = M, .K = K, .N = N, .ldx = ldx, .ldy = ldy}, true);
               return 0.0;
             });
}

BOOST_AUTO_TEST_CASE(rmsnorm_matches_cpu) {
  // C = 96, 768, 1024: the 8-wide vector kernels (the backward's one-pass kernel with 1, 3 and
  // 4 slabs of 256 columns); C = 90: the scalar ones; C = 1032: the vector forward, and the
  // two-pass backward (more than 4 slabs).
  for (const int64_t C : {96, 90, 768, 1024, 1032}) {
    const int64_t R = 211, ldx = 3 * C;  // q slice of a fused qkv row
    const std::string tag = " C=" + std::to_string(C);
    check_both("rmsnorm_forward" + tag,
               {{"x", R * ldx, Kind::in, Cls::act, -2.f, 2.f},
                {"w", C, Kind::in, Cls::weight, 0.5f, 1.5f},
                {"y", R * C, Kind::out, Cls::act},
                {"rstd", R, Kind::out, Cls::stat}},
               [&](sl::Backend& be, Bufs& b) {
                 be.rmsnorm_forward(b["y"], b["rstd"], b["x"], b["w"], {.R = R, .C = C, .ldx = ldx},
                                    1e-6f, Tensor(), Tensor());
                 return 0.0;
               });
    // The post-norm residual add: y = res + rms(x) in fp32 (the residual stream), y_copy its
    // compute-dtype copy.
    check_both("rmsnorm_forward(res, copy)" + tag,
               {{"x", R * ldx, Kind::in, Cls::act, -2.f, 2.f},
                {"w", C, Kind::in, Cls::weight, 0.5f, 1.5f},
                {"res", R * C, Kind::in, Cls::stat, -3.f, 3.f},
                {"y", R * C, Kind::out, Cls::stat},
                {"y_copy", R * C, Kind::out, Cls::act},
                {"rstd", R, Kind::out, Cls::stat}},
               [&](sl::Backend& be, Bufs& b) {
                 be.rmsnorm_forward(b["y"], b["rstd"], b["x"], b["w"], {.R = R, .C = C, .ldx = ldx},
                                    1e-6f, b["res"], b["y_copy"]);
                 return 0.0;
               });
    for (bool acc : {true, false}) {
      check_both(std::string(acc ? "rmsnorm_backward" : "rmsnorm_backward(dx=)") + tag,
                 {{"x", R * ldx, Kind::in, Cls::act, -2.f, 2.f},
                  {"w", C, Kind::in, Cls::weight, 0.5f, 1.5f},
                  {"rstd", R, Kind::in, Cls::stat, 0.5f, 2.f},
                  {"dy", R * C, Kind::in, Cls::act},
                  {"dx", R * ldx, acc ? Kind::acc : Kind::write, Cls::act},
                  {"dw", C, Kind::acc, Cls::pgrad}},
                 [&](sl::Backend& be, Bufs& b) {
                   be.rmsnorm_backward(b["dx"], b["dw"], b["dy"], b["x"], b["w"], b["rstd"],
                                       {.R = R, .C = C, .ldx = ldx}, acc);
                   return 0.0;
                 });
    }
  }
}

BOOST_AUTO_TEST_CASE(rope_matches_cpu) {
  struct Cfg {
    int64_t B, T, H, hd;
  };
  for (Cfg c : {Cfg{2, 100, 3, 32}, Cfg{1, 2048, 2, 64}, Cfg{1, 5, 1, 8}}) {
    const int64_t n = c.B * c.T * c.H * c.hd;
    const std::string tag = "T=" + std::to_string(c.T) + " hd=" + std::to_string(c.hd);
    check_both("rope_forward " + tag, {{"x", n, Kind::inout, Cls::act}},
               [&](sl::Backend& be, Bufs& b) {
                 be.rope_forward(b["x"], {.B = c.B, .T = c.T, .H = c.H, .hd = c.hd, .theta = 5e5f});
                 return 0.0;
               });
    check_both(
        "rope_backward " + tag, {{"x", n, Kind::inout, Cls::act}}, [&](sl::Backend& be, Bufs& b) {
          be.rope_backward(b["x"], {.B = c.B, .T = c.T, .H = c.H, .hd = c.hd, .theta = 5e5f});
          return 0.0;
        });
  }
}

BOOST_AUTO_TEST_CASE(rmsnorm_rope_matches_cpu) {
  struct Cfg {
    int64_t B, T, H, hd;
  };
  // hd 64 over 4 heads (256 columns: one slab), hd 128 over 3 (a partial last slab), hd 16
  // (partner lane ^ 1), and hd 20 / 8: the unfused fallback (not a power of two / under 16).
  // hd 128 over 9 heads (C = 1152): the fused forward, and the unfused backward (C > 1024).
  // hd 64 over 12 heads (C = 768, S4's: three slabs) and hd 128 over 8 (C = 1024: four).
  for (Cfg c : {Cfg{2, 100, 4, 64}, Cfg{1, 77, 3, 128}, Cfg{2, 33, 5, 16}, Cfg{1, 50, 3, 20},
                Cfg{1, 40, 4, 8}, Cfg{1, 30, 9, 128}, Cfg{1, 37, 12, 64}, Cfg{1, 21, 8, 128}}) {
    const int64_t R = c.B * c.T, C = c.H * c.hd, ldx = 3 * C;  // q slice of a fused qkv row
    const std::string tag =
        " T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) + " hd=" + std::to_string(c.hd);
    check_both("rmsnorm_rope_forward" + tag,
               {{"x", R * ldx, Kind::in, Cls::act, -2.f, 2.f},
                {"w", C, Kind::in, Cls::weight, 0.5f, 1.5f},
                {"y", R * C, Kind::out, Cls::act},
                {"rstd", R, Kind::out, Cls::stat}},
               [&](sl::Backend& be, Bufs& b) {
                 be.rmsnorm_rope_forward(
                     b["y"], b["rstd"], b["x"], b["w"],
                     {.B = c.B, .T = c.T, .H = c.H, .hd = c.hd, .ldx = ldx, .theta = 5e5f}, 1e-6f);
                 return 0.0;
               });
    for (bool acc : {true, false}) {
      check_both(std::string(acc ? "rmsnorm_rope_backward" : "rmsnorm_rope_backward(dx=)") + tag,
                 {{"x", R * ldx, Kind::in, Cls::act, -2.f, 2.f},
                  {"w", C, Kind::in, Cls::weight, 0.5f, 1.5f},
                  {"rstd", R, Kind::in, Cls::stat, 0.5f, 2.f},
                  {"dy", R * C, Kind::inout, Cls::act},  // must come back unchanged
                  {"dx", R * ldx, acc ? Kind::acc : Kind::write, Cls::act},
                  {"dw", C, Kind::acc, Cls::pgrad}},
                 [&](sl::Backend& be, Bufs& b) {
                   be.rmsnorm_rope_backward(
                       b["dx"], b["dw"], b["dy"], b["x"], b["w"], b["rstd"],
                       {.B = c.B, .T = c.T, .H = c.H, .hd = c.hd, .ldx = ldx, .theta = 5e5f}, acc);
                   return 0.0;
                 });
    }
  }
}

BOOST_AUTO_TEST_CASE(swiglu_matches_cpu) {
  // m = 136: the 8-wide vector kernels; m = 131: the scalar ones.
  for (const int64_t m : {136, 131}) {
    const int64_t R = 150;
    const std::string tag = " m=" + std::to_string(m);
    check_both(
        "swiglu_forward" + tag,
        {{"gu", R * 2 * m, Kind::in, Cls::act, -4.f, 4.f}, {"h", R * m, Kind::out, Cls::act}},
        [&](sl::Backend& be, Bufs& b) {
          be.swiglu_forward(b["h"], b["gu"], {.R = R, .C = m});
          return 0.0;
        });
    for (bool acc : {true, false}) {
      check_both(std::string(acc ? "swiglu_backward" : "swiglu_backward(=)") + tag,
                 {{"gu", R * 2 * m, Kind::in, Cls::act, -4.f, 4.f},
                  {"dh", R * m, Kind::in, Cls::act},
                  {"dgu", R * 2 * m, acc ? Kind::acc : Kind::write, Cls::act}},
                 [&](sl::Backend& be, Bufs& b) {
                   be.swiglu_backward(b["dgu"], b["dh"], b["gu"], {.R = R, .C = m}, acc);
                   return 0.0;
                 });
    }
  }
}

// ---- attention
// ------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(attention_matches_cpu) {
  struct Cfg {
    int64_t B, T, H, hd;
    float qscale;
  };
  // T not a multiple of the tiles, T = 1, tiny and model head dims, long T, peaky softmax, a head
  // dim that is not a multiple of the 16-wide tensor-core tile, and hd = 128 (whose dK/dV kernel
  // takes 32-row tiles to fit in shared memory). In mixed mode head dims that are multiples of 8
  // take the bf16 kernels (attention_flash.cu; 40 and 80 padded to 64 and 128), hd = 20 the
  // fp32-exact ones.
  for (Cfg c : {Cfg{2, 100, 2, 32, 1.f}, Cfg{1, 1, 2, 16, 1.f}, Cfg{2, 64, 4, 8, 1.f},
                Cfg{1, 300, 3, 64, 1.f}, Cfg{1, 2048, 2, 64, 1.f}, Cfg{1, 130, 2, 64, 6.f},
                Cfg{2, 90, 2, 40, 1.f}, Cfg{1, 200, 2, 128, 1.f}, Cfg{1, 1100, 1, 128, 1.f},
                Cfg{2, 77, 3, 80, 1.f}, Cfg{1, 129, 2, 20, 1.f}}) {
    const int64_t BT = c.B * c.T, D = c.H * c.hd, ldv = 3 * D;  // v inside a fused qkv row
    const std::string tag = "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) +
                            " H=" + std::to_string(c.H) + " hd=" + std::to_string(c.hd) +
                            (c.qscale != 1.f ? " peaky" : "");
    // Accumulating on the first shapes, writing (=) on the others (both on every kernel).
    const bool acc = c.hd != 64 && c.hd != 80;
    const Kind gk = acc ? Kind::acc : Kind::write;
    const std::vector<Spec> specs = {
        {"q", BT * D, Kind::in, Cls::act, -c.qscale, c.qscale},
        {"k", BT * D, Kind::in, Cls::act},
        {"v", BT * ldv, Kind::in, Cls::act},
        {"out", BT * D, Kind::out, Cls::act},
        {"lse", c.B * c.H * c.T, Kind::out, Cls::stat},
        {"dout", BT * D, Kind::in, Cls::act},
        // Over a single key the softmax is constant: dq = dk = 0 exactly when T = 1.
        {"dq", BT * D, gk, Cls::act, -1, 1, nullptr, c.T == 1 ? 1.f : 0.f},
        {"dk", BT * D, gk, Cls::act, -1, 1, nullptr, c.T == 1 ? 1.f : 0.f},
        {"dv", BT * ldv, gk, Cls::act}};
    check_both(std::string("attention") + (acc ? " " : "(=) ") + tag, specs,
               [&](sl::Backend& be, Bufs& b) {
                 be.attention_forward(b["out"], b["lse"], b["q"], b["k"], b["v"].at(2 * D),
                                      {.B = c.B, .T = c.T, .H = c.H, .hd = c.hd, .ldv = ldv});
                 be.attention_backward(b["dq"], b["dk"], b["dv"].at(2 * D), b["dout"], b["q"],
                                       b["k"], b["v"].at(2 * D), b["out"], b["lse"],
                                       {.B = c.B, .T = c.T, .H = c.H, .hd = c.hd, .ldv = ldv}, acc);
                 return 0.0;
               });
  }
}

// The backward has a fixed reduction order (no atomics): the same inputs give the same bits.
BOOST_AUTO_TEST_CASE(attention_backward_is_deterministic) {
  for (int64_t hd : {64, 128}) {
    sl::CudaBackend& g = gpu(Mode::mixed);
    const int64_t B = 2, T = 700, H = 3, D = H * hd, BT = B * T;
    std::mt19937_64 rng(42 + hd);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    auto make = [&](int64_t n, DType dt, bool fill) {
      Tensor t = g.alloc(n, dt);
      if (fill) {
        std::vector<float> h(static_cast<size_t>(n));
        for (auto& v : h) v = u(rng);
        g.upload(t, h.data());
      }
      return t;
    };
    Tensor q = make(BT * D, DType::bf16, true), k = make(BT * D, DType::bf16, true),
           v = make(BT * D, DType::bf16, true), dout = make(BT * D, DType::bf16, true),
           out = make(BT * D, DType::bf16, false), lse = make(B * H * T, DType::f32, false);
    g.attention_forward(out, lse, q, k, v, {.B = B, .T = T, .H = H, .hd = hd, .ldv = D});
    std::vector<std::vector<float>> runs;
    for (int r = 0; r < 2; ++r) {
      Tensor dq = make(BT * D, DType::bf16, false), dk = make(BT * D, DType::bf16, false),
             dv = make(BT * D, DType::bf16, false);
      g.attention_backward(dq, dk, dv, dout, q, k, v, out, lse,
                           {.B = B, .T = T, .H = H, .hd = hd, .ldv = D}, false);
      std::vector<float> all(static_cast<size_t>(3 * BT * D));
      g.download(all.data(), dq);
      g.download(all.data() + BT * D, dk);
      g.download(all.data() + 2 * BT * D, dv);
      runs.push_back(std::move(all));
      for (Tensor t : {dq, dk, dv}) g.free(t);
    }
    BOOST_TEST((runs[0] == runs[1]), "hd=" << hd << ": two backward runs differ");
    for (Tensor t : {q, k, v, dout, out, lse}) g.free(t);
  }
}

// ---- GDN pieces
// -----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(conv1d_matches_cpu) {
  // The model's K = 4; T = 1 (only the zero history); K = 3 and K = 8 (the largest the GPU
  // kernel takes), T shorter than a 128-step tile; ldx = C + 13: staged element by element; C and
  // ldx multiples of 8: by 16-byte pieces, with C not a multiple of the 64-channel tile (1048),
  // and T over several tiles with a tail, C two tiles and a part chunk (300, 140); T at a
  // backward tile's edges (64, 65) and a forward tile's (128).
  struct Cfg {
    int64_t B, T, C, K, ldx_extra = 13;
  };
  for (Cfg cfg :
       {Cfg{2, 77, 40, 4}, Cfg{2, 1, 40, 4}, Cfg{1, 20, 33, 3}, Cfg{1, 45, 16, 8},
        Cfg{2, 77, 40, 4, 8}, Cfg{2, 1, 16, 4, 0}, Cfg{1, 70, 1048, 4, 24}, Cfg{1, 20, 32, 3, 0},
        Cfg{1, 45, 16, 2, 8}, Cfg{1, 33, 8, 1, 0}, Cfg{2, 300, 136, 4, 8}, Cfg{1, 300, 140, 4, 4},
        Cfg{2, 64, 72, 4, 0}, Cfg{1, 65, 200, 4, 8}, Cfg{1, 128, 64, 3, 0}}) {
    const int64_t B = cfg.B, T = cfg.T, C = cfg.C, K = cfg.K, ldx = C + cfg.ldx_extra;
    const std::string tag = " (T=" + std::to_string(T) + " K=" + std::to_string(K) +
                            " C=" + std::to_string(C) + " ldx=" + std::to_string(ldx) + ")";
    check_both("conv1d_silu_forward" + tag,
               {{"x", B * T * ldx, Kind::in, Cls::act, -2.f, 2.f},
                {"w", C * K, Kind::in, Cls::weight},
                {"y", B * T * C, Kind::out, Cls::act}},
               [&](sl::Backend& be, Bufs& b) {
                 be.conv1d_silu_forward(b["y"], b["x"], b["w"],
                                        {.B = B, .T = T, .C = C, .K = K, .ldx = ldx});
                 return 0.0;
               });
    for (bool acc : {true, false})  // dx accumulated, or written inside its [BT, C] ld ldx
      check_both(std::string("conv1d_silu_backward") + (acc ? "" : "(dx=)") + tag,
                 {{"x", B * T * ldx, Kind::in, Cls::act, -2.f, 2.f},
                  {"w", C * K, Kind::in, Cls::weight},
                  {"dy", B * T * C, Kind::in, Cls::act},
                  {"dx", B * T * ldx, acc ? Kind::acc : Kind::write, Cls::act},
                  {"dw", C * K, Kind::acc, Cls::pgrad}},
                 [&](sl::Backend& be, Bufs& b) {
                   be.conv1d_silu_backward(b["dx"], b["dw"], b["dy"], b["x"], b["w"],
                                           {.B = B, .T = T, .C = C, .K = K, .ldx = ldx}, acc);
                   return 0.0;
                 });
  }
}

BOOST_AUTO_TEST_CASE(l2norm_matches_cpu_without_drift) {
  // ldx % 8 != 0: one warp a row; the rest the row-group kernels (k_h 48: G 8, four rows a warp;
  // 16: G 2), one of them at an offset as the model's k (after H k_h columns of q).
  struct Case {
    int64_t C, ldx_extra, x_off;
  };
  for (const Case& k : {Case{48, 20, 0}, Case{48, 24, 0}, Case{48, 24, 3 * 48}, Case{16, 0, 0}}) {
    const int64_t BT = 190, H = 3, C = k.C, ldx = 2 * H * C + k.ldx_extra, off = k.x_off,
                  nx = BT * ldx + off;
    const float scale = 1.f / std::sqrt(float(C));
    const std::string tag = " (C " + std::to_string(C) + ", ldx " + std::to_string(ldx) + ", x +" +
                            std::to_string(off) + ")";
    check_both("l2norm_forward" + tag,
               {{"x", nx, Kind::in, Cls::act, -3.f, 3.f},
                {"y", BT * H * C, Kind::out, Cls::act},
                {"rnorm", BT * H, Kind::out, Cls::stat}},
               [&](sl::Backend& be, Bufs& b) {
                 be.l2norm_forward(b["y"], b["rnorm"], b["x"].at(off),
                                   {.BT = BT, .H = H, .C = C, .ldx = ldx, .scale = scale}, 1e-6f);
                 return 0.0;
               });
    for (bool acc : {true, false})  // dx accumulated, or written inside its rows' H C columns
      check_both(std::string("l2norm_backward") + (acc ? "" : "(dx=)") + tag,
                 {{"x", nx, Kind::in, Cls::act, -3.f, 3.f},
                  {"dy", BT * H * C, Kind::in, Cls::act},
                  {"rnorm", BT * H, Kind::in, Cls::stat, 0.1f, 0.3f},
                  {"dx", nx, acc ? Kind::acc : Kind::write, Cls::act}},
                 [&](sl::Backend& be, Bufs& b) {
                   be.l2norm_backward(b["dx"].at(off), b["dy"], b["x"].at(off), b["rnorm"],
                                      {.BT = BT, .H = H, .C = C, .ldx = ldx, .scale = scale}, acc);
                   return 0.0;
                 });
    if (C != 48 || off != 0) continue;
    // bf16 L2-norm drift: the norm is taken in fp32, so every bf16 output row has norm `scale`
    // up to bf16 rounding of its entries (|rel| < 2^-8 per entry), however large the input.
    sl::CudaBackend& g = gpu(Mode::mixed);
    std::vector<float> hx(BT * ldx);
    std::mt19937_64 rng(3);
    std::uniform_real_distribution<float> u(-300.f, 300.f);
    for (auto& v : hx) v = sl::test::round_bf16(u(rng));
    Tensor x = g.alloc(BT * ldx, DType::bf16), y = g.alloc(BT * H * C, DType::bf16),
           rn = g.alloc(BT * H, DType::f32);
    g.upload(x, hx.data());
    g.l2norm_forward(y, rn, x, {.BT = BT, .H = H, .C = C, .ldx = ldx, .scale = scale}, 1e-6f);
    std::vector<float> hy(BT * H * C);
    g.download(hy.data(), y);
    double worst = 0;
    for (int64_t r = 0; r < BT * H; ++r) {
      double ss = 0;
      for (int64_t c = 0; c < C; ++c) ss += double(hy[r * C + c]) * hy[r * C + c];
      worst = std::max(worst, std::abs(std::sqrt(ss) / scale - 1.0));
    }
    sl::test::report("l2norm bf16 row-norm drift" + tag +
                     ": max |norm/scale - 1| = " + std::to_string(worst));
    BOOST_TEST(worst < 4e-3);
    g.free(x);
    g.free(y);
    g.free(rn);
  }
}

BOOST_AUTO_TEST_CASE(gdn_gates_match_cpu_including_strong_decay) {
  const int64_t BT = 260, H = 4, ld = 3 * H;
  for (bool strong : {false, true}) {
    const std::string tag = strong ? " strong decay" : "";
    // Strong decay: A_log near log 16 and large a + dt_bias, so g reaches ~ -100.
    const float alo = strong ? std::log(15.f) : -2.f, ahi = strong ? std::log(16.f) : 2.7f;
    const float plo = strong ? 0.f : -3.f, phi = strong ? 6.f : 3.f;
    const std::vector<Spec> fw = {{"ba", BT * ld, Kind::in, Cls::act, plo, phi},
                                  {"A_log", H, Kind::in, Cls::weight, alo, ahi},
                                  {"dt_bias", H, Kind::in, Cls::weight, -4.f, 1.f},
                                  {"beta", BT * H, Kind::out, Cls::stat},
                                  {"g", BT * H, Kind::out, Cls::stat}};
    check_both("gdn_gates_forward" + tag, fw, [&](sl::Backend& be, Bufs& b) {
      be.gdn_gates_forward(b["beta"], b["g"], b["ba"], b["ba"].at(H), b["A_log"], b["dt_bias"],
                           {.BT = BT, .H = H, .ld = ld, .beta_scale = 2.f});
      return 0.0;
    });
    for (bool acc : {true, false})  // db|da accumulated, or written (columns [0, 2H) of each row)
      check_both(std::string("gdn_gates_backward") + (acc ? "" : "(db,da=)") + tag,
                 {{"ba", BT * ld, Kind::in, Cls::act, plo, phi},
                  {"A_log", H, Kind::in, Cls::weight, alo, ahi},
                  {"dt_bias", H, Kind::in, Cls::weight, -4.f, 1.f},
                  {"dbeta", BT * H, Kind::in, Cls::stat},
                  {"dg", BT * H, Kind::in, Cls::stat},
                  {"dba", BT * ld, acc ? Kind::acc : Kind::write, Cls::act},
                  {"dA_log", H, Kind::acc, Cls::pgrad},
                  {"ddt_bias", H, Kind::acc, Cls::pgrad}},
                 [&](sl::Backend& be, Bufs& b) {
                   be.gdn_gates_backward(b["dba"], b["dba"].at(H), b["dA_log"], b["ddt_bias"],
                                         b["dbeta"], b["dg"], b["ba"], b["ba"].at(H), b["A_log"],
                                         b["dt_bias"],
                                         {.BT = BT, .H = H, .ld = ld, .beta_scale = 2.f}, acc);
                   return 0.0;
                 });
  }
}

namespace {

struct GdnCase {
  int64_t B, T, H, key_dim, value_dim;  // (dq, dk, dv are the gradients)
  float glo, ghi;                       // log decay range per step
  float blo, bhi;                       // beta range
  const char* what;
  // Floor of dg's error denominator. Under strong decay dg (max ~1e-3) is a sum of O(1) terms
  // that cancel: CpuBackend<float>'s own dg differs from CpuBackend<double>'s by 1.1e-4 of max|dg|
  // on this test's inputs (0.4e-4 on the accumulate case's), so the plain relative error measures
  // the reference's rounding; against a floor of 1e-2 the bound is 1e-6 absolute, still ~1e-6 of
  // the terms summed.
  float dg_floor = 0.f;
};

void check_gdn(const GdnCase& c) {
  const int64_t BT = c.B * c.T, NC = (c.T + 63) / 64;
  const std::string tag = std::string("gdn ") + c.what + " (B=" + std::to_string(c.B) +
                          " T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) +
                          " key_dim=" + std::to_string(c.key_dim) +
                          " value_dim=" + std::to_string(c.value_dim) + ")";
  // The gradients accumulated, or written (accumulate false: poisoned first, every element
  // written).
  for (bool acc : {true, false}) {
    const Kind gk = acc ? Kind::acc : Kind::write;
    const std::vector<Spec> specs = {
        {"q", BT * c.H * c.key_dim, Kind::in, Cls::act, 0, 0,
         unit_rows(c.key_dim, 1.f / std::sqrt(float(c.key_dim)))},
        {"k", BT * c.H * c.key_dim, Kind::in, Cls::act, 0, 0, unit_rows(c.key_dim)},
        {"v", BT * c.H * c.value_dim, Kind::in, Cls::act},
        {"beta", BT * c.H, Kind::in, Cls::stat, c.blo, c.bhi},
        {"g", BT * c.H, Kind::in, Cls::stat, c.glo, c.ghi},
        {"out", BT * c.H * c.value_dim, Kind::out, Cls::act},
        // With one chunk the only saved state is the zero initial state.
        {"states", c.B * c.H * NC * c.key_dim * c.value_dim, Kind::out, Cls::stat, -1, 1, nullptr,
         NC == 1 ? 1.f : 0.f},
        {"dout", BT * c.H * c.value_dim, Kind::in, Cls::act},
        {"dq", BT * c.H * c.key_dim, gk, Cls::act},
        {"dk", BT * c.H * c.key_dim, gk, Cls::act},
        {"dv", BT * c.H * c.value_dim, gk, Cls::act},
        {"dbeta", BT * c.H, gk, Cls::stat},
        // With T = 1 the output does not depend on g (the decay acts on S_0 = 0): dg = 0.
        {"dg", BT * c.H, gk, Cls::stat, -1, 1, nullptr, c.T == 1 ? 1.f : c.dg_floor}};
    check_both(acc ? tag : tag + " (d=)", specs, [&](sl::Backend& be, Bufs& b) {
      const sl::GdnShape shape{
          .B = c.B, .T = c.T, .H = c.H, .key_dim = c.key_dim, .value_dim = c.value_dim};
      be.gdn_forward(b["out"], b["states"], b["q"], b["k"], b["v"], b["beta"], b["g"], shape);
      be.gdn_backward(b["dq"], b["dk"], b["dv"], b["dbeta"], b["dg"], b["dout"], b["states"],
                      b["q"], b["k"], b["v"], b["beta"], b["g"], shape, acc);
      return 0.0;
    });
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(gdn_chunk_matches_cpu) {
  check_gdn({2, 100, 2, 16, 24, -0.3f, 0.f, 0.f, 2.f, "T%64!=0"});
  check_gdn({1, 64, 2, 8, 12, -0.3f, 0.f, 0.f, 2.f, "one full chunk"});
  check_gdn({1, 1, 2, 8, 12, -0.3f, 0.f, 0.f, 2.f, "T=1"});
  check_gdn({2, 200, 3, 48, 96, -0.2f, 0.f, 0.f, 2.f, "model dims"});
  check_gdn({1, 129, 2, 32, 64, -1e-3f, 0.f, 1.5f, 2.f, "no decay, beta near 2"});
  check_gdn({1, 2048, 2, 48, 96, -0.1f, 0.f, 0.f, 2.f, "T=2048"});
  // key_dim = 128: four key-side tiles a warp in the backward's chunk kernel; d_v 80 leaves a
  // partial 32-column value tile (it caught a race in the state-gradient pass).
  check_gdn({1, 130, 2, 128, 80, -0.2f, 0.f, 0.f, 2.f, "key_dim=128"});
}

BOOST_AUTO_TEST_CASE(gdn_strong_decay_no_nan) {
  // g down to -100 per step (A_log ~ log 16 with large softplus): e^g underflows to 0 inside a
  // chunk; every exponent must stay <= 0 and the solve finite.
  check_gdn({2, 150, 2, 16, 32, -100.f, -5.f, 0.f, 2.f, "strong decay", 1e-2f});
  check_gdn({1, 70, 2, 16, 32, -30.f, 0.f, 0.f, 2.f, "mixed decay"});
}

BOOST_AUTO_TEST_CASE(gated_rmsnorm_matches_cpu) {
  // ldg not a multiple of 8: the scalar kernels; the rest the vector kernels at every group
  // width G = C/8 rounded up to a power of two (C 40 and 96: lanes past C idle; C 8: G 1, 32
  // rows a warp), with R not a multiple of a block's rows. gate_off: the gate block starts that
  // many elements into its buffer, as the model's starts after the projection's 2H b|a columns:
  // 2 (bf16 4-byte aligned, f32 8-byte: the 4- and 8-byte paths) and 12 (bf16 8-byte, f32
  // 16-byte aligned).
  struct Case {
    int64_t BT, H, C, ldg_extra, gate_off;
  };
  for (const Case& k : {Case{150, 3, 40, 17, 0}, Case{150, 3, 40, 8, 0}, Case{77, 3, 96, 0, 0},
                        Case{130, 2, 128, 64, 0}, Case{61, 1, 256, 8, 0}, Case{45, 5, 8, 0, 0},
                        Case{77, 3, 96, 8, 2}, Case{130, 2, 128, 0, 12}}) {
    const int64_t BT = k.BT, H = k.H, C = k.C, R = BT * H, ldg = H * C + k.ldg_extra,
                  go = k.gate_off, ng = BT * ldg + go;
    const std::string tag = " (C " + std::to_string(C) + ", ldg " + std::to_string(ldg) +
                            ", gate +" + std::to_string(go) + ")";
    check_both("gated_rmsnorm_forward" + tag,
               {{"x", R * C, Kind::in, Cls::act, -2.f, 2.f},
                {"gate", ng, Kind::in, Cls::act, -4.f, 4.f},
                {"w", C, Kind::in, Cls::weight, 0.5f, 1.5f},
                {"y", R * C, Kind::out, Cls::act},
                {"rstd", R, Kind::out, Cls::stat}},
               [&](sl::Backend& be, Bufs& b) {
                 be.gated_rmsnorm_forward(b["y"], b["rstd"], b["x"], b["gate"].at(go), b["w"],
                                          {.R = R, .H = H, .C = C, .ldg = ldg}, 1e-5f);
                 return 0.0;
               });
    for (bool acc : {true, false})  // dx, dgate accumulated, or written (dgate inside its block)
      check_both(std::string("gated_rmsnorm_backward") + (acc ? "" : "(dx,dgate=)") + tag,
                 {{"x", R * C, Kind::in, Cls::act, -2.f, 2.f},
                  {"gate", ng, Kind::in, Cls::act, -4.f, 4.f},
                  {"w", C, Kind::in, Cls::weight, 0.5f, 1.5f},
                  {"rstd", R, Kind::in, Cls::stat, 0.5f, 2.f},
                  {"dy", R * C, Kind::in, Cls::act},
                  {"dx", R * C, acc ? Kind::acc : Kind::write, Cls::act},
                  {"dgate", ng, acc ? Kind::acc : Kind::write, Cls::act},
                  {"dw", C, Kind::acc, Cls::pgrad}},
                 [&](sl::Backend& be, Bufs& b) {
                   be.gated_rmsnorm_backward(b["dx"], b["dgate"].at(go), b["dw"], b["dy"], b["x"],
                                             b["gate"].at(go), b["w"], b["rstd"],
                                             {.R = R, .H = H, .C = C, .ldg = ldg}, acc);
                   return 0.0;
                 });
  }
}

// ---- loss and optimizer
// -----------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(cross_entropy_matches_cpu) {
  // Each kernel: the warp per row (V 256, 512, 1000, 2048: one, two, four (the last lanes short)
  // and eight 16-byte chunks a lane), the block per row with the row in shared memory (50304),
  // the general one (4100, not a multiple of 8); 97 rows, not a multiple of the warp kernel's 8
  // rows a block.
  for (const int64_t V :
       {int64_t{50304}, int64_t{256}, int64_t{512}, int64_t{1000}, int64_t{2048}, int64_t{4100}}) {
    const int64_t BT = 97;
    const auto tgt = random_ids(BT, V, 21, true);
    const std::string tag = " V " + std::to_string(V);
    // The loss sum accumulates into a device scalar (prefilled 0.5); dlogits is written
    // (poisoned with NaN first), also in place over the logits as the LM head uses it.
    auto run = [&](sl::Backend& be, Tensor dlogits, Tensor logits, Tensor losses) {
      Raw r(be);
      const Tensor sum = r.f64({0.5}), dscale = r.f64({0.37});
      be.cross_entropy(sum, losses, dlogits, logits, r.ints(tgt), {.R = BT, .C = V}, dscale);
      return r.read(sum);
    };
    check_both(
        "cross_entropy" + tag,
        {{"logits", BT * V, Kind::in, Cls::act, -8.f, 8.f},
         {"losses", BT, Kind::out, Cls::stat},
         {"dlogits", BT * V, Kind::out, Cls::act}},
        [&](sl::Backend& be, Bufs& b) { return run(be, b["dlogits"], b["logits"], b["losses"]); });
    check_both(
        "cross_entropy(no grad)" + tag,
        {{"logits", BT * V, Kind::in, Cls::act, -8.f, 8.f}, {"losses", BT, Kind::out, Cls::stat}},
        [&](sl::Backend& be, Bufs& b) { return run(be, Tensor(), b["logits"], b["losses"]); });
    check_both(
        "cross_entropy(in place)" + tag,
        {{"logits", BT * V, Kind::inout, Cls::act, -8.f, 8.f},
         {"losses", BT, Kind::out, Cls::stat}},
        [&](sl::Backend& be, Bufs& b) { return run(be, b["logits"], b["logits"], b["losses"]); });
  }
}

// Three parameter tensors, the middle one not decayed, with boundaries inside the kernel's
// 8192-element chunks; the step's scalars clip the gradient (norm 4 -> 1) at step t = 3.
const std::vector<int32_t> kAdamItems = {0, 7000, 1, 7000, 3, 0, 7003, 13008, 1};
constexpr int64_t kAdamN = 20011;

BOOST_AUTO_TEST_CASE(adamw_matches_cpu) {
  // Aligned buffers: the 4-wide path with its element-wise ends (segments starting and ending off
  // a multiple of 4, one of 3 elements); every buffer one element in: the element-wise path.
  for (const int64_t off : {0, 1}) {
    const int64_t n = kAdamN;
    std::vector<int32_t> items = kAdamItems;
    items[7] -= static_cast<int32_t>(off);  // the last item ends at n - off
    check_both(off ? "adamw (offset 1)" : "adamw",
               {{"p", n, Kind::inout, Cls::pgrad},
                {"g", n, Kind::in, Cls::pgrad},
                {"m", n, Kind::inout, Cls::pgrad, -0.1f, 0.1f},
                {"v", n, Kind::inout, Cls::pgrad, 0.f, 0.01f},
                {"pc", n, Kind::write, Cls::act}},
               [&](sl::Backend& be, Bufs& b) {
                 Raw r(be);
                 const Tensor step = r.f64({2.5, 16.0, 3e-3, 3.0});
                 be.adamw(b["p"].at(off, n - off), b["g"].at(off, n - off), b["m"].at(off, n - off),
                          b["v"].at(off, n - off), b["pc"].at(off, n - off), r.ints(items), 3, step,
                          {.b1 = 0.9f, .b2 = 0.95f, .eps = 1e-8f, .wd = 0.1f, .max_norm = 1.f});
                 be.synchronize();
                 return 0.0;
               });
  }
}

// A step whose loss or gradient norm is not finite changes nothing (the trainer then reports the
// divergence with the last good state intact).
BOOST_AUTO_TEST_CASE(adamw_skips_a_non_finite_step) {
  sl::CudaBackend& g = gpu(Mode::mixed);
  const int64_t n = kAdamN;
  std::vector<float> h(n);
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  for (auto& x : h) x = u(rng);
  for (double bad :
       {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()}) {
    for (int slot : {0, 1}) {
      Tensor p = g.alloc(n, DType::f32), gr = g.alloc(n, DType::f32), m = g.alloc(n, DType::f32),
             v = g.alloc(n, DType::f32);
      for (Tensor t : {p, gr, m, v}) g.upload(t, h.data());
      Raw r(g);
      std::vector<double> st = {2.5, 16.0, 3e-3, 3.0};
      st[static_cast<size_t>(slot)] = bad;
      g.adamw(p, gr, m, v, Tensor(), r.ints(kAdamItems), 3, r.f64(st),
              {.b1 = 0.9f, .b2 = 0.95f, .eps = 1e-8f, .wd = 0.1f, .max_norm = 1.f});
      for (Tensor t : {p, m, v}) {
        std::vector<float> back(n);
        g.download(back.data(), t);
        BOOST_TEST((back == h), "adamw changed state on a step with slot " << slot << " = " << bad);
      }
      for (Tensor t : {p, gr, m, v}) g.free(t);
    }
  }
}
