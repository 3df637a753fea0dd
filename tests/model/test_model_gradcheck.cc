// Whole-model gradient checks in double: the analytic backward of Model against central finite
// differences of the mean cross-entropy, for dense, hybrid and an odd pattern, with both GDN
// algorithms. Every parameter tensor gets coordinates checked.
#define BOOST_TEST_MODULE model_gradcheck
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "common/gradcheck.h"
#include "core/rng.h"
#include "model/model.h"

namespace {

sl::ModelSpec tiny_spec(const std::string& pattern) {
  sl::ModelSpec s;
  s.arch = "custom";
  s.pattern = pattern;
  s.d_model = 16;
  s.n_heads = 2;
  s.vocab_size = 11;
  s.d_mlp = 24;
  s.gdn_key_dim = 8;
  s.gdn_value_dim = 12;
  return s;
}

struct Result {
  double rel_err;
  int64_t checked;
};

// Checks a sample of coordinates of every parameter tensor (all of the small ones).
Result check_model(const sl::ModelSpec& spec, sl::GdnAlgo algo, int64_t B, int64_t T) {
  sl::CpuBackend<double> be(algo);
  sl::Model model(spec, be, B, T);
  model.init(7);
  // Perturb norm weights and gates away from their init so their gradients are generic.
  std::vector<float> p0 = model.get_params();
  sl::Rng rng(3, 0);
  for (auto& v : p0) v += static_cast<float>(0.05 * rng.normal());
  model.set_params(p0);
  std::vector<int32_t> ids(B * T), tgt(B * T);
  for (int64_t i = 0; i < B * T; ++i) {
    ids[i] = static_cast<int32_t>(rng.below(spec.vocab_size));
    tgt[i] = static_cast<int32_t>(rng.below(spec.vocab_size));
  }
  tgt[1] = -1;  // an ignored target
  double* P = model.param_buffer().as<double>();
  const int64_t n = model.num_params();
  std::vector<double> x(P, P + n);
  model.zero_grad();
  model.forward(ids.data(), tgt.data(), 1.f);
  model.backward();
  const double* G = model.grad_buffer().as<double>();
  std::vector<double> g(G, G + n);
  auto f = [&](const std::vector<double>& xs) {
    std::copy(xs.begin(), xs.end(), P);
    return model.forward(ids.data(), tgt.data(), 0.f);
  };
  std::vector<int64_t> idx;
  for (const auto& p : model.params()) {
    const int64_t take = std::min<int64_t>(p.numel, 12);
    for (int64_t j = 0; j < take; ++j) idx.push_back(p.offset + rng.below(p.numel));
  }
  auto r = sl::test::gradcheck_detail(f, x, g, 1e-6, idx);
  BOOST_TEST_MESSAGE(spec.pattern << " T=" << T << " rel_err=" << r.rel_err << " over " << r.checked
                                  << " coords");
  return {r.rel_err, r.checked};
}

}  // namespace

BOOST_AUTO_TEST_CASE(model_gradcheck_dense_fp64) {
  auto r = check_model(tiny_spec("AA"), sl::GdnAlgo::chunk, 2, 9);
  BOOST_TEST(r.rel_err < 1e-6);
}

BOOST_AUTO_TEST_CASE(model_gradcheck_hybrid_fp64) {
  auto r = check_model(tiny_spec("GGGA"), sl::GdnAlgo::chunk, 2, 9);
  BOOST_TEST(r.rel_err < 1e-6);
}

BOOST_AUTO_TEST_CASE(model_gradcheck_odd_pattern_gagg_fp64) {
  auto r = check_model(tiny_spec("GAGG"), sl::GdnAlgo::recurrent, 1, 7);
  BOOST_TEST(r.rel_err < 1e-6);
}

// Sequences longer than one GDN chunk (64) exercise the cross-chunk state path of the model.
BOOST_AUTO_TEST_CASE(model_gradcheck_hybrid_multichunk_fp64) {
  auto r = check_model(tiny_spec("GA"), sl::GdnAlgo::chunk, 1, 70);
  BOOST_TEST(r.rel_err < 1e-6);
}

BOOST_AUTO_TEST_CASE(model_param_count_matches_table) {
  sl::ModelSpec s;
  s.pattern = sl::hybrid_pattern(4);
  s.d_model = 128;
  s.n_heads = 2;
  s.finalize();
  BOOST_TEST(s.pattern == "GGGA");
  BOOST_TEST(s.d_mlp == 384);       // ceil(8*128/3 / 128) * 128
  BOOST_TEST(s.gdn_key_dim == 48);  // round_up(0.75*128/2 = 48, 16)
  BOOST_TEST(s.gdn_value_dim == 96);
  auto t = sl::build_param_table(s);
  const int64_t d = 128, m = 384, H = 2, dk = 48, dv = 96, V = 256;
  const int64_t mlp = 3 * d * m;
  const int64_t attn = 4 * d * d + 2 * d + d + mlp + d;
  const int64_t gdn = d + (2 * H * dk + 2 * H * dv + 2 * H) * d + (2 * H * dk + H * dv) * 4 +
                      2 * H + dv + d * H * dv + d + mlp;
  BOOST_TEST(sl::count_params(t, false) == 3 * gdn + attn + d);
  BOOST_TEST(sl::count_params(t, true) == 3 * gdn + attn + d + 2 * V * d);
}
