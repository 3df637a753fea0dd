// ProfiledBackend (core/profiled_backend.h, `scalinglab bench --profile`) only observes: a model
// run through it computes bit for bit what it computes on the wrapped backend, and every op the
// step used shows up in the table with its call count.
#define BOOST_TEST_MODULE profiled_backend
#include <boost/test/unit_test.hpp>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/profiled_backend.h"
#include "core/rng.h"
#include "model/model.h"

namespace {

struct Result {
  double loss;
  std::vector<float> grads;
};

Result step(sl::Backend& be) {
  sl::ModelSpec s;
  s.arch = "custom";
  s.pattern = "GA";
  s.d_model = 32;
  s.n_heads = 2;
  s.vocab_size = 40;
  s.finalize();
  const int64_t B = 2, T = 20;
  sl::Model m(s, be, B, T);
  m.init(3);
  std::vector<int32_t> in(B * T), tgt(B * T);
  sl::Rng rng(9, 0);
  for (int64_t i = 0; i < B * T; ++i) {
    in[i] = static_cast<int32_t>(rng.below(40));
    tgt[i] = static_cast<int32_t>(rng.below(40));
  }
  m.zero_grad();
  Result r{m.forward(in.data(), tgt.data(), 1.f), {}};
  m.backward();
  r.grads.resize(static_cast<size_t>(m.buffer_size()));
  be.download(r.grads.data(), m.grad_buffer());
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(profiling_changes_nothing_and_counts_every_op) {
  sl::CpuBackend<float> plain, inner;
  sl::ProfiledBackend prof(inner);
  const Result a = step(plain), b = step(prof);
  BOOST_TEST(a.loss == b.loss);
  BOOST_TEST(a.grads == b.grads, boost::test_tools::per_element());
  const auto& st = prof.stats();
  for (const char* op : {"matmul_forward", "matmul_backward", "attention_forward",
                         "attention_backward", "gdn_forward", "gdn_backward", "cross_entropy",
                         "rmsnorm_forward", "gated_rmsnorm_backward", "conv1d_silu_forward"}) {
    BOOST_TEST_CONTEXT(op) {
      BOOST_REQUIRE(st.count(op) == 1u);
      BOOST_TEST(st.at(op).calls >= 1);
      BOOST_TEST(st.at(op).seconds >= 0.0);
    }
  }
  BOOST_TEST(st.at("attention_forward").calls == 1);  // one A block
  BOOST_TEST(st.at("gdn_forward").calls == 1);        // one G block
  prof.reset();
  BOOST_TEST(prof.stats().empty());
}
