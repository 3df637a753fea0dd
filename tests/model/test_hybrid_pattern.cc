// The layer pattern of arch = "hybrid" follows OLMo-core's hybrid ladder (every fourth layer and
// the last layer attention) at every layer count, and an HF config.json without layer_types still
// gets transformers' own default (every fourth layer, no forced last attention layer).
#define BOOST_TEST_MODULE hybrid_pattern
#include <boost/test/unit_test.hpp>
#include <string>

#include "model/hf_io.h"
#include "model/spec.h"

BOOST_AUTO_TEST_CASE(olmo_core_rule_at_layer_counts_not_a_multiple_of_four) {
  // The cases of issue 17: L1 (6 layers) and a 5-layer shape.
  BOOST_TEST(sl::hybrid_pattern(6) == "GGGAGA");
  BOOST_TEST(sl::hybrid_pattern(5) == "GGGAA");
  // Multiples of 4 are unchanged ("GGGA" repeated), so the 4-layer parity fixtures still apply.
  BOOST_TEST(sl::hybrid_pattern(4) == "GGGA");
  BOOST_TEST(sl::hybrid_pattern(8) == "GGGAGGGA");
  BOOST_TEST(sl::hybrid_pattern(12) == "GGGAGGGAGGGA");
  BOOST_TEST(sl::hybrid_pattern(3) == "GGA");
  BOOST_TEST(sl::hybrid_pattern(1) == "A");
  // The rule itself, checked layer by layer: A iff (i + 1) % 4 == 0 or i == L - 1.
  for (int64_t L = 1; L <= 40; ++L) {
    const std::string p = sl::hybrid_pattern(L);
    BOOST_TEST(static_cast<int64_t>(p.size()) == L);
    for (int64_t i = 0; i < L; ++i)
      BOOST_TEST(p[i] == ((i + 1) % 4 == 0 || i == L - 1 ? 'A' : 'G'), "L " << L << " i " << i);
  }
}

BOOST_AUTO_TEST_CASE(ladder_presets_end_on_attention) {
  for (const sl::LadderSize& s : sl::ladder()) {
    const std::string p = sl::hybrid_pattern(s.n_layers);
    BOOST_TEST(p.back() == 'A', s.name << ": " << p);
  }
}

BOOST_AUTO_TEST_CASE(hf_config_default_is_transformers_rule_and_arch_follows_ours) {
  // No layer_types: transformers' default for 6 layers is GGGAGG, which is not our hybrid rule,
  // so it reads back as a custom pattern.
  const std::string base =
      R"({"model_type": "olmo_hybrid", "hidden_size": 64, "num_attention_heads": 2,
          "vocab_size": 256, "intermediate_size": 192, "num_hidden_layers": 6,
          "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0})";
  sl::ModelSpec d = sl::spec_from_hf_config(base + "}", "config.json");
  BOOST_TEST(d.pattern == "GGGAGG");
  BOOST_TEST(d.arch == "custom");
  BOOST_TEST(sl::hf_default_hybrid_pattern(2) == "GA");
  BOOST_TEST(sl::hf_default_hybrid_pattern(8) == "GGGAGGGA");

  // Our 6-layer hybrid exports its layer_types and reads back as arch "hybrid".
  sl::ModelSpec s;
  s.pattern = sl::hybrid_pattern(6);
  s.d_model = 64;
  s.n_heads = 2;
  s.rope_theta = 1e4;
  s.finalize();
  const sl::ModelSpec r = sl::spec_from_hf_config(sl::hf_config_json(s, 256), "config.json");
  BOOST_TEST(r.pattern == "GGGAGA");
  BOOST_TEST(r.arch == "hybrid");
}
