// End-to-end tests of the HuggingFace interchange commands as processes: `scalinglab export
// --format hf` writes exactly the checkpoint's weights, `train --init-from` starts from exactly
// them, mismatches exit non-zero naming the tensor and both shapes before touching anything, and
// `doctor` passes on the CPU. (That transformers loads the export and agrees on the logits is
// checked on the GPU machine by tests/reference/check_export.py.)
#define BOOST_TEST_MODULE hf_cli
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.h"
#include "model/hf_io.h"
#include "runlog/checkpoint.h"

namespace fs = std::filesystem;

namespace {

using sl::test::slurp;

struct Result {
  int rc;
  std::string out, err;
};

// Runs SL_EXE with args; stdout and stderr captured.
Result run(const std::vector<std::string>& args) {
  static int counter = 0;
  const std::string base =
      "/tmp/sl_hf_cli_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
  sl::SpawnOptions so;
  so.out = sl::Redirect::truncate(base + ".out");
  so.err = sl::Redirect::truncate(base + ".err");
  const int rc = sl::run_process(sl::test::scalinglab_argv(args), so);
  Result r{rc, slurp(base + ".out"), slurp(base + ".err")};
  fs::remove(base + ".out");
  fs::remove(base + ".err");
  return r;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// A scratch directory with byte-level English (Debian's license texts) and a tiny hybrid config.
struct Scratch {
  fs::path dir;
  Scratch() {
    dir = fs::temp_directory_path() / ("sl_hf_cli_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream train(dir / "train.txt"), val(dir / "val.txt");
    train << sl::test::licenses({"GPL-3", "Apache-2.0"});
    val << sl::test::licenses({"GPL-2"});
    std::ofstream cfg(dir / "tiny.toml");
    cfg << "[model]\narch = \"hybrid\"\nd_model = 32\nn_layers = 4\nn_heads = 2\n"
        << "[train]\nseq_len = 80\nbatch_size = 2\ntokens = 1600\nlr = 3e-3\n"
        << "warmup_tokens = 160\neval_every = 100\neval_tokens = 1024\n"
        << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
  std::vector<std::string> train(const std::string& out, std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {"train", "--config", path("tiny.toml"), "--out",
                                  out,     "--quiet",  "--threads",       "1"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
};

// max |x - y| over all parameters of two runs' checkpoints (inf if the names differ).
double max_diff(const std::map<std::string, std::vector<float>>& x,
                const std::map<std::string, std::vector<float>>& y) {
  if (x.size() != y.size()) return INFINITY;
  double m = 0;
  for (const auto& [name, v] : x) {
    auto it = y.find(name);
    if (it == y.end() || it->second.size() != v.size()) return INFINITY;
    for (size_t i = 0; i < v.size(); ++i)
      m = std::max(m, static_cast<double>(std::abs(v[i] - it->second[i])));
  }
  return m;
}

// Parameters of a run's checkpoint, by HF name.
std::map<std::string, std::vector<float>> ckpt_params(const std::string& run) {
  std::map<std::string, std::vector<float>> out;
  for (const auto& [k, v] : sl::read_checkpoint(run + "/ckpt").arrays)
    if (k.rfind("param:", 0) == 0) out[k.substr(6)] = v;
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(export_then_init_from_roundtrips_the_weights_exactly) {
  Scratch s;
  const std::string a = s.path("a"), hf = s.path("hf"), b = s.path("b");
  Result r = run(s.train(a));
  BOOST_REQUIRE_MESSAGE(r.rc == 0, r.err);

  r = run({"export", a, "--format", "hf", "--out", hf, "--with-logits"});
  BOOST_REQUIRE_MESSAGE(r.rc == 0, r.err);
  BOOST_TEST(contains(slurp(hf + "/config.json"), "\"OlmoHybridForCausalLM\""));
  const auto want = ckpt_params(a);
  const sl::HfTensors got = sl::read_safetensors(hf + "/model.safetensors");
  BOOST_TEST(got.size() == want.size());
  for (const auto& [name, v] : want) {
    BOOST_REQUIRE_MESSAGE(got.count(name), name);
    BOOST_TEST(got.at(name).data == v, name);
  }
  const sl::HfTensors logits = sl::read_safetensors(hf + "/scalinglab_logits.safetensors");
  BOOST_TEST((logits.at("logits").shape == std::vector<int64_t>{2, 80, 256}));
  BOOST_TEST((logits.at("input_ids").shape == std::vector<int64_t>{2, 80}));

  // lr = 1e-12: AdamW moves each weight by ~1e-12, so b's checkpoint holds the exported weights
  // (a seeded init would differ by ~0.02).
  r = run(s.train(b, {"--init-from", hf, "--set", "train.lr=1e-12"}));
  BOOST_REQUIRE_MESSAGE(r.rc == 0, r.err);
  BOOST_TEST(max_diff(ckpt_params(b), want) < 1e-9);

  // The hub layout (released OLMo Hybrid names, split q/k/v convolutions) reads back the same.
  const std::string hub = s.path("hub"), c = s.path("c");
  BOOST_REQUIRE_EQUAL(run({"export", a, "--format", "hf", "--out", hub, "--names", "hub"}).rc, 0);
  BOOST_TEST(sl::read_safetensors(hub + "/model.safetensors")
                 .count("model.layers.0.linear_attn.v_conv1d.weight") == 1u);
  r = run(s.train(c, {"--init-from", hub, "--set", "train.lr=1e-12"}));
  BOOST_REQUIRE_MESSAGE(r.rc == 0, r.err);
  BOOST_TEST(max_diff(ckpt_params(c), want) < 1e-9);
}

BOOST_AUTO_TEST_CASE(mismatches_name_the_tensor_and_both_shapes) {
  Scratch s;
  const std::string a = s.path("a"), hf = s.path("hf");
  BOOST_REQUIRE_EQUAL(run(s.train(a)).rc, 0);
  BOOST_REQUIRE_EQUAL(run({"export", a, "--format", "hf", "--out", hf}).rc, 0);

  // init-from a checkpoint of another width: nothing of the new run is written.
  const std::string b = s.path("b");
  Result r = run(s.train(b, {"--init-from", hf, "--set", "model.d_mlp=256"}));
  BOOST_TEST(r.rc != 0);
  BOOST_TEST(contains(r.err,
                      "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [128, 32], "
                      "the config expects [256, 32]"),
             r.err);
  BOOST_TEST(!fs::exists(b));

  // A dense config against the hybrid checkpoint: the first missing tensor is named.
  r = run(s.train(b, {"--init-from", hf, "--set", "model.arch=dense"}));
  BOOST_TEST(r.rc != 0);
  BOOST_TEST(contains(r.err, "missing tensor 'model.layers.0.self_attn.q_proj.weight'"), r.err);

  // export of a run whose config.toml no longer matches its checkpoint.
  std::string cfg = slurp(a + "/config.toml");
  const size_t at = cfg.find("d_mlp = 128");
  BOOST_REQUIRE(at != std::string::npos);
  cfg.replace(at, 11, "d_mlp = 64");
  std::ofstream(a + "/config.toml") << cfg;
  r = run({"export", a, "--format", "hf", "--out", s.path("hf2")});
  BOOST_TEST(r.rc != 0);
  BOOST_TEST(contains(r.err,
                      "tensor 'model.layers.0.mlp.gate_proj.weight' has shape [4096] "
                      "(flat), the config expects [64, 32]"),
             r.err);

  r = run({"export", a, "--format", "onnx", "--out", s.path("hf3")});
  BOOST_TEST(r.rc != 0);
  BOOST_TEST(contains(r.err, "--format 'onnx'"), r.err);
}

BOOST_AUTO_TEST_CASE(doctor_passes_on_the_cpu) {
  Result r = run({"doctor", "--backend", "cpu"});
  BOOST_TEST(r.rc == 0, r.out << r.err);
  BOOST_TEST(contains(r.out, "hf_hybrid grads"), r.out);
  BOOST_TEST(contains(r.out, "all checks passed"), r.out);
  r = run({"doctor", "--fixtures", "/nonexistent"});
  BOOST_TEST(r.rc != 0);
  BOOST_TEST(contains(r.err, "/nonexistent/hf_dense.h5"), r.err);
#ifndef SL_HAVE_CUDA
  r = run({"doctor", "--backend", "cuda"});
  BOOST_TEST(r.rc != 0);
  BOOST_TEST(contains(r.out, "cuda: not available"), r.out);
  r = run({"doctor"});  // every backend present: an absent CUDA is reported, not failed
  BOOST_TEST(r.rc == 0, r.out << r.err);
  BOOST_TEST(contains(r.out, "cuda: not available"), r.out);
#endif
}
