// Parity with HuggingFace transformers: a reference fixture (tests/fixtures/hf_{dense,hybrid}.h5,
// made by tests/reference/make_hf_fixtures.py from Olmo3ForCausalLM / OlmoHybridForCausalLM) holds
// weights, input ids, logits, loss and every parameter gradient; check_hf_parity() loads the
// weights into our Model on any backend, runs forward + backward and measures the differences.
// Used by tests/model/test_hf_parity.cc and `scalinglab doctor`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/backend.h"
#include "model/hf_io.h"
#include "model/spec.h"

namespace sl {

struct HfFixture {
  std::string path;
  std::string model_type;  // "olmo3" | "olmo_hybrid"
  std::string transformers_version, torch_version;
  ModelSpec spec;  // from the fixture's HF config.json text (attr config_json)
  int64_t B = 0, T = 0;
  std::vector<int32_t> ids, targets;  // [B, T]; targets = next token, -1 = ignored (last column)
  HfTensors weights, grads;           // HF names and shapes
  std::vector<float> logits;          // [B, T, V]
  double loss = 0;                    // HF's mean cross-entropy over the non-ignored targets
};

// Reads and validates a fixture file (schema scalinglab.hf_fixture/1); throws sl::Error naming
// the file and the entry. Weights/grads are checked against the config's parameter table here:
// the first tensor whose name or shape does not match is named with both shapes.
HfFixture read_hf_fixture(const std::string& path);

// Normwise relative error of one tensor: rel = max_i |ours_i - ref_i| / max_i |ref_i|
// (abs = the numerator). Elementwise relative errors are meaningless where ref_i ~ 0.
// l2_abs = ||ours - ref||_2 and l2_ref = ||ref||_2 serve the looser norm-relative comparison of
// bf16 backends.
struct TensorError {
  std::string name;
  double rel = 0, abs = 0;
  double l2_abs = 0, l2_ref = 0;
};
TensorError tensor_error(const std::string& name, const float* ours, const float* ref, int64_t n);

struct ParityReport {
  TensorError logits, loss;
  TensorError worst_grad;          // the parameter gradient with the largest rel
  std::vector<TensorError> grads;  // one per parameter, table order
  double max_rel() const;          // max over logits, loss and every gradient
};

// Builds Model(f.spec) on `be` with batch f.B x f.T, loads f.weights, runs forward (targets
// f.targets, loss scale 1) and backward, and compares logits, loss and gradients with f.
ParityReport check_hf_parity(const HfFixture& f, Backend& be);

}  // namespace sl
