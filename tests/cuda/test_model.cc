// A whole Model forward + backward on the GPU against the CPU (CpuBackend<float>) from the same
// parameters and tokens: the loss and every parameter gradient, for a tiny dense and a tiny hybrid
// model, with T not a multiple of 64 and an ignored target. Two GPU configurations:
//   CudaBackend(act = f32): the same kernels on fp32 activations -> loss and gradients to ~1e-4;
//   CudaBackend(act = bf16): the training configuration (bf16 activations and compute weights,
//     fp32 master weights and gradients) -> loss within 1e-2, gradients normwise within 3e-2.
// Plus the backend factory ("cuda", "cuda:N") and its errors.
#define BOOST_TEST_MODULE cuda_model
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "cuda/gpu_test.h"
#include "model/model.h"

using sl::test::GpuOrSkip;
BOOST_TEST_GLOBAL_FIXTURE(GpuOrSkip);

namespace {

sl::ModelSpec tiny(const std::string& pattern) {
  sl::ModelSpec s;
  s.arch = "custom";
  s.pattern = pattern;
  s.d_model = 64;
  s.n_heads = 2;  // head dim 32; GDN k_h = 32, v_h = 64 (ladder defaults)
  s.vocab_size = 97;
  s.finalize();
  return s;
}

struct Step {
  double loss = 0;
  std::vector<float> grads;
};

Step run_step(sl::Backend& be, const sl::ModelSpec& spec, int64_t B, int64_t T,
              const std::vector<float>& params, const std::vector<int32_t>& ids,
              const std::vector<int32_t>& tgt) {
  sl::Model m(spec, be, B, T);
  m.set_params(params);
  m.zero_grad();
  Step s;
  s.loss = m.forward(ids.data(), tgt.data(), 1.f);
  m.backward();
  s.grads.resize(static_cast<size_t>(m.num_params()));
  be.download(s.grads.data(), m.grad_buffer());
  return s;
}

// ||a - b|| / ||b|| over a slice.
double norm_err(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-60));
}
double max_err(const float* a, const float* b, int64_t n) {
  return sl::test::rel_err(std::vector<float>(a, a + n), std::vector<float>(b, b + n));
}

// One GPU step against the CPU step: the loss, and each parameter's gradient by max-relative
// (max|a-b|/max|b|) or, when `normwise`, norm-relative error (||a-b||/||b||).
void compare(const std::string& what, sl::DType act, const sl::ModelSpec& spec, int64_t B,
             int64_t T, double loss_tol, double grad_tol, bool normwise) {
  sl::CpuBackend<float> cpu;
  std::vector<float> params;
  {
    sl::Model m(spec, cpu, B, T);
    m.init(7);
    params = m.get_params();
  }
  // Move norms, gates and biases off their init so every gradient is generic.
  sl::Rng rng(3, 0);
  for (auto& v : params) v += static_cast<float>(0.02 * rng.normal());
  std::vector<int32_t> ids(B * T), tgt(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    ids[i] = static_cast<int32_t>(rng.below(spec.vocab_size));
    tgt[i] = static_cast<int32_t>(rng.below(spec.vocab_size));
  }
  tgt[1] = -1;  // an ignored target
  const Step c = run_step(cpu, spec, B, T, params, ids, tgt);
  sl::CudaBackend gpu(0, act);
  const Step g = run_step(gpu, spec, B, T, params, ids, tgt);

  const double le = std::abs(g.loss - c.loss) / std::abs(c.loss);
  const std::string tag = what + " [" + sl::dtype_name(act) + "]";
  BOOST_TEST(std::isfinite(g.loss));
  BOOST_TEST(le < loss_tol, tag << " loss " << g.loss << " vs cpu " << c.loss);
  BOOST_TEST(!sl::test::has_nan(g.grads), tag << " gradient has NaN/inf");
  const std::vector<sl::ParamInfo> table = sl::build_param_table(spec);
  double worst_max = 0, worst_norm = 0;
  std::string worst_name;
  for (const sl::ParamInfo& p : table) {
    const float* a = g.grads.data() + p.offset;
    const float* b = c.grads.data() + p.offset;
    const double em = max_err(a, b, p.numel), en = norm_err(a, b, p.numel);
    const double e = normwise ? en : em;
    BOOST_TEST_MESSAGE(tag << " " << p.name << ": max-rel " << em << " norm-rel " << en);
    BOOST_TEST(e < grad_tol, tag << " d" << p.name << ": rel err " << e);
    if (e > (normwise ? worst_norm : worst_max)) worst_name = p.name;
    worst_max = std::max(worst_max, em);
    worst_norm = std::max(worst_norm, en);
  }
  char line[512];
  std::snprintf(line, sizeof line,
                "model %s: loss cpu %.6f gpu %.6f (rel %.2e); grads over %zu tensors: worst "
                "max-rel %.2e, worst norm-rel %.2e (%s)",
                tag.c_str(), c.loss, g.loss, le, table.size(), worst_max, worst_norm,
                worst_name.c_str());
  sl::test::report(line);
}

}  // namespace

BOOST_AUTO_TEST_CASE(dense_step_matches_cpu) {
  compare("dense AA B=2 T=100", sl::DType::f32, tiny("AA"), 2, 100, 1e-5, 1e-4, false);
  compare("dense AA B=2 T=100", sl::DType::bf16, tiny("AA"), 2, 100, 1e-2, 3e-2, true);
}

BOOST_AUTO_TEST_CASE(hybrid_step_matches_cpu) {
  compare("hybrid GGGA B=2 T=100", sl::DType::f32, tiny("GGGA"), 2, 100, 1e-5, 1e-4, false);
  compare("hybrid GGGA B=2 T=100", sl::DType::bf16, tiny("GGGA"), 2, 100, 1e-2, 3e-2, true);
  compare("hybrid GA B=2 T=130", sl::DType::bf16, tiny("GA"), 2, 130, 1e-2, 3e-2, true);
}

BOOST_AUTO_TEST_CASE(hybrid_step_t1_matches_cpu) {
  compare("hybrid GGA B=3 T=1", sl::DType::f32, tiny("GGA"), 3, 1, 1e-5, 1e-4, false);
}

BOOST_AUTO_TEST_CASE(factory_makes_cuda_backends) {
  auto be = sl::make_backend("cuda");
  BOOST_TEST(be->name() == "cuda:0");
  BOOST_TEST((be->act_dtype() == sl::DType::bf16));
  BOOST_TEST((be->param_dtype() == sl::DType::f32));
  BOOST_TEST(sl::make_backend("cuda:0")->name() == "cuda:0");
  BOOST_CHECK_THROW(sl::make_backend("cuda:99"), sl::Error);
  BOOST_CHECK_THROW(sl::make_backend("cuda:x"), sl::Error);
  BOOST_CHECK_THROW(sl::make_backend("cudax"), sl::Error);
  try {
    sl::make_backend("cuda:99");
  } catch (const sl::Error& e) {
    BOOST_TEST_MESSAGE(e.what());
    BOOST_TEST(std::string(e.what()).find("no such device") != std::string::npos);
  }
}
