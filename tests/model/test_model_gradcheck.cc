// Whole-model gradient checks in double: the analytic backward of Model against central finite
// differences of the mean cross-entropy, for dense, hybrid and an odd pattern, with both GDN
// algorithms. Every parameter tensor gets coordinates checked.
#define BOOST_TEST_MODULE model_gradcheck
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
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
Result check_model(const sl::ModelSpec& spec, sl::GdnAlgo algo, int64_t B, int64_t T,
                   int64_t chunk_rows = 0) {
  sl::CpuBackend<double> be(algo);
  sl::Model model(spec, be, B, T, chunk_rows);
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
  const int64_t n = model.buffer_size();
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

// The LM head in chunks of rows (5 chunks of 4, 4, 4, 4, 2 rows): the same gradient as one chunk,
// and the logits recomputed on the host are those of the whole batch.
BOOST_AUTO_TEST_CASE(model_gradcheck_chunked_lm_head_fp64) {
  auto r = check_model(tiny_spec("GA"), sl::GdnAlgo::chunk, 2, 9, 4);
  BOOST_TEST(r.rel_err < 1e-6);
  const sl::ModelSpec spec = tiny_spec("GA");
  const int64_t B = 2, T = 9;
  std::vector<int32_t> ids(B * T), tgt(B * T);
  sl::Rng rng(11, 0);
  for (int64_t i = 0; i < B * T; ++i) {
    ids[i] = static_cast<int32_t>(rng.below(spec.vocab_size));
    tgt[i] = static_cast<int32_t>(rng.below(spec.vocab_size));
  }
  tgt[5] = -1;
  struct Out {
    double loss;
    std::vector<double> grads;
    std::vector<float> logits;
  };
  auto run = [&](int64_t chunk_rows) {
    sl::CpuBackend<double> be(sl::GdnAlgo::chunk);
    sl::Model m(spec, be, B, T, chunk_rows);
    m.init(3);
    Out o;
    m.forward(ids.data(), tgt.data(), 0.f);
    o.logits = m.logits_host();
    m.zero_grad();
    o.loss = m.forward(ids.data(), tgt.data(), 1.f);
    m.backward();
    const double* G = m.grad_buffer().as<double>();
    o.grads.assign(G, G + m.buffer_size());
    return o;
  };
  const Out one = run(0), five = run(4);
  BOOST_TEST(std::abs(one.loss - five.loss) < 1e-13);
  BOOST_TEST(one.logits == five.logits, boost::test_tools::per_element());
  BOOST_REQUIRE_EQUAL(one.grads.size(), five.grads.size());
  double worst = 0;
  for (size_t i = 0; i < one.grads.size(); ++i)
    worst = std::max(worst, std::abs(one.grads[i] - five.grads[i]));
  BOOST_TEST(worst < 1e-13);
}

BOOST_AUTO_TEST_CASE(logits_chunk_rows_bound_the_logits_buffer) {
  BOOST_TEST(sl::logits_chunk_rows(32 * 1024, 256) == 32 * 1024);  // the ladder: one chunk
  const int64_t s4 = sl::logits_chunk_rows(16 * 1024, 50304);
  BOOST_TEST(s4 == 4096);  // four equal chunks
  BOOST_TEST(s4 * 50304 <= sl::kLogitsChunkElems);
  // 10,000 rows of vocab 50304 need 2 chunks: 5000 rows, rounded up to 5056 (64 rows).
  BOOST_TEST(sl::logits_chunk_rows(10000, 50304) == 5056);
  BOOST_TEST(sl::logits_chunk_rows(1000, 1 << 30) == 64);  // at least 64 rows
  BOOST_TEST(sl::logits_chunk_rows(16, 1 << 30) == 16);    // at most the batch's
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

// GEMMs read weights in place from the flat buffer: every row but the later members of a fused
// projection starts on 8 elements, those follow their group's first row with no gap, and the
// gaps (here after GDN's A_log/dt_bias, [H] = 2 elements each) stay zero through a step.
BOOST_AUTO_TEST_CASE(param_rows_are_aligned_and_fused_projections_contiguous) {
  sl::ModelSpec s;
  s.pattern = "GA";
  s.d_model = 64;
  s.n_heads = 2;
  s.vocab_size = 64;
  s.finalize();
  const auto t = sl::build_param_table(s);
  const std::set<std::string> fused = {"self_attn.k_proj.weight",   "self_attn.v_proj.weight",
                                       "linear_attn.k_proj.weight", "linear_attn.v_proj.weight",
                                       "linear_attn.b_proj.weight", "linear_attn.a_proj.weight",
                                       "linear_attn.g_proj.weight", "mlp.up_proj.weight"};
  int64_t gaps = 0;
  for (size_t i = 1; i < t.size(); ++i) {
    const std::string& name = t[i].name;
    const std::string suffix = name.substr(name.find('.', 13) + 1);  // after model.layers.{i}.
    const int64_t end = t[i - 1].offset + t[i - 1].numel;
    BOOST_TEST_CONTEXT(name) {
      if (name.rfind("model.layers.", 0) == 0 && fused.count(suffix)) {
        BOOST_TEST(t[i].offset == end);
      } else {
        BOOST_TEST(t[i].offset % sl::ParamRows::kParamAlign == 0);
        BOOST_TEST(t[i].offset - end < sl::ParamRows::kParamAlign);
      }
    }
    gaps += t[i].offset - end;
  }
  BOOST_TEST(gaps > 0);
  BOOST_TEST(sl::buffer_size(t) == sl::count_params(t, true) + gaps);

  sl::CpuBackend<double> be;
  sl::Model m(s, be, 1, 8);
  m.init(1);
  std::vector<int32_t> ids(8), tgt(8);
  for (int i = 0; i < 8; ++i) ids[i] = tgt[(i + 7) % 8] = (5 * i + 3) % 64;
  m.zero_grad();
  m.forward(ids.data(), tgt.data(), 1.f);
  m.backward();
  const std::vector<float> p = m.get_params();
  const double* g = m.grad_buffer().as<double>();
  BOOST_TEST(static_cast<int64_t>(p.size()) == m.buffer_size());
  std::vector<bool> owned(p.size(), false);
  for (const auto& info : t) std::fill_n(owned.begin() + info.offset, info.numel, true);
  for (size_t j = 0; j < p.size(); ++j)
    if (!owned[j]) BOOST_TEST((p[j] == 0.f && g[j] == 0.0), "gap element " << j);
}
