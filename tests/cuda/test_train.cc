// 200 AdamW steps of a small hybrid model on the GPU (bf16 activations, fp32 master weights) and
// on the CPU (fp32) from the same initialisation and batches: the loss curves (10-step moving
// averages: single steps differ by batch noise once bf16 rounding has moved the weights apart)
// agree within 1% everywhere, single steps within 4%, and both learn. The data is a Markov chain
// (next = perm[cur] with probability 3/4, else uniform), so the loss falls well below log(V) within
// the run.
#define BOOST_TEST_MODULE cuda_train
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "core/rng.h"
#include "cuda/gpu_test.h"
#include "model/model.h"
#include "train/optimizer.h"
#include "train/step.h"

using sl::test::GpuOrSkip;
BOOST_TEST_GLOBAL_FIXTURE(GpuOrSkip);

namespace {

constexpr int64_t kSteps = 200, kB = 8, kT = 128, kV = 64;

// Batch of step `step`: inputs [B, T] and next-token targets, a pure function of the step.
void batch(int64_t step, const std::vector<int32_t>& perm, std::vector<int32_t>& in,
           std::vector<int32_t>& tgt) {
  sl::Rng rng(17, static_cast<uint64_t>(step));
  for (int64_t b = 0; b < kB; ++b) {
    int32_t cur = static_cast<int32_t>(rng.below(kV));
    for (int64_t t = 0; t <= kT; ++t) {
      if (t < kT) in[b * kT + t] = cur;
      if (t > 0) tgt[b * kT + t - 1] = cur;
      cur = rng.uniform() < 0.75 ? perm[cur] : static_cast<int32_t>(rng.below(kV));
    }
  }
}

// The trainer's step (train/step.h): staged batches, device-side norm/clip/AdamW, and on the GPU
// a captured graph from step 2 on (graph = false: every step eagerly).
std::vector<double> train(sl::Backend& be, const sl::ModelSpec& spec, bool graph = true) {
  sl::Model model(spec, be, kB, kT);
  model.init(1234);
  sl::AdamW opt(model, {});
  sl::TrainStep ts(model, opt, nullptr, graph);
  std::vector<int32_t> perm(kV), in(kB * kT), tgt(kB * kT);
  for (int64_t i = 0; i < kV; ++i) perm[i] = static_cast<int32_t>((i * 37 + 11) % kV);
  std::vector<double> losses;
  for (int64_t step = 1; step <= kSteps; ++step) {
    batch(step, perm, in, tgt);
    const double lr = 3e-3 * std::min(1.0, double(step) / 20.0);  // 20 warmup steps
    losses.push_back(ts.result(ts.enqueue(in.data(), tgt.data(), lr, step)).loss);
  }
  return losses;
}

sl::ModelSpec tiny_hybrid(const std::string& pattern) {
  sl::ModelSpec spec;
  spec.arch = "hybrid";
  spec.pattern = pattern;
  spec.d_model = 64;
  spec.n_heads = 2;
  spec.vocab_size = kV;
  spec.finalize();
  return spec;
}

}  // namespace

BOOST_AUTO_TEST_CASE(hybrid_200_steps_gpu_matches_cpu_within_1_percent) {
  const sl::ModelSpec spec = tiny_hybrid("GGGA");
  sl::CpuBackend<float> cpu;
  sl::CudaBackend gpu(0, sl::DType::bf16);
  const std::vector<double> lc = train(cpu, spec);
  const std::vector<double> lg = train(gpu, spec);
  double worst = 0, worst_avg = 0;
  int64_t worst_step = 0, worst_avg_step = 0;
  constexpr int64_t kWin = 10;
  for (int64_t i = 0; i < kSteps; ++i) {
    BOOST_TEST(std::isfinite(lg[i]), "gpu loss at step " << i + 1 << " is " << lg[i]);
    const double e = std::abs(lg[i] - lc[i]) / lc[i];
    if (e > worst) {
      worst = e;
      worst_step = i + 1;
    }
    if (i + 1 >= kWin) {
      double ac = 0, ag = 0;
      for (int64_t j = i + 1 - kWin; j <= i; ++j) {
        ac += lc[j];
        ag += lg[j];
      }
      const double ea = std::abs(ag - ac) / ac;
      if (ea > worst_avg) {
        worst_avg = ea;
        worst_avg_step = i + 1;
      }
    }
  }
  for (int64_t s : {1, 50, 100, 150, 200}) {
    char line[160];
    std::snprintf(line, sizeof line, "train step %3lld: loss cpu %.4f gpu %.4f",
                  static_cast<long long>(s), lc[s - 1], lg[s - 1]);
    sl::test::report(line);
  }
  sl::test::report("train 200 steps: worst |gpu - cpu| / cpu: 10-step average " +
                   std::to_string(worst_avg) + " (step " + std::to_string(worst_avg_step) +
                   "), single step " + std::to_string(worst) + " (step " +
                   std::to_string(worst_step) + ")");
  // The bounds against the spread of builds that differ only in rounding (an fma's operand
  // order in AdamW, a reduction's order in l2norm, the attention kernel), measured on the H200
  // (2026-12-02, the builds of eight commits, two also with SL_CUDA_ATTENTION=exact): 10-step
  // average 0.0020-0.0039, single step 0.0081-0.0225 (the
  // worst single step falls at the loss spike near step 100, where the runs' weights have drifted
  // furthest apart). The single-step bound sits above that spread; a precision bug moves the
  // averages.
  BOOST_TEST(worst_avg < 0.01);
  BOOST_TEST(worst < 0.04);
  BOOST_TEST(lc.back() < lc.front() - 1.0, "the CPU run did not learn");
  BOOST_TEST(lg.back() < lg.front() - 1.0, "the GPU run did not learn");
}

// A captured step replays exactly what the eager ops compute: the same losses, bit for bit, over
// a run (and so the same seed gives the same run twice).
BOOST_AUTO_TEST_CASE(graph_replay_matches_eager_steps_bitwise) {
  const sl::ModelSpec spec = tiny_hybrid("GAGA");
  sl::CudaBackend gpu(0, sl::DType::bf16);
  const std::vector<double> eager = train(gpu, spec, false);
  const std::vector<double> graphed = train(gpu, spec, true);
  const std::vector<double> again = train(gpu, spec, true);
  for (int64_t i = 0; i < kSteps; ++i) {
    BOOST_TEST(graphed[i] == eager[i],
               "step " << i + 1 << ": graph " << graphed[i] << " eager " << eager[i]);
    BOOST_TEST(again[i] == graphed[i], "step " << i + 1 << " differs between two graphed runs");
  }
}

// The held-out forward (train/step.h EvalStep): graphed from the second batch on, several batches
// in flight, the same losses bit for bit as the eager forward; interleaved with graphed training
// steps (two graphs over one model), and with ignored targets in a batch.
BOOST_AUTO_TEST_CASE(eval_graph_matches_eager_forward_bitwise) {
  const sl::ModelSpec spec = tiny_hybrid("GAGA");
  sl::CudaBackend gpu(0, sl::DType::bf16);
  std::vector<int32_t> perm(kV), in(kB * kT), tgt(kB * kT);
  for (int64_t i = 0; i < kV; ++i) perm[i] = static_cast<int32_t>((i * 37 + 11) % kV);
  auto run = [&](bool graph) {
    sl::Model model(spec, gpu, kB, kT);
    model.init(99);
    sl::AdamW opt(model, {});
    sl::TrainStep ts(model, opt, nullptr, graph);
    sl::EvalStep ev(model, graph);
    std::vector<double> out;
    for (int64_t round = 0; round < 3; ++round) {
      for (int64_t s = 1; s <= 3; ++s) {
        batch(100 * round + s, perm, in, tgt);
        out.push_back(ts.result(ts.enqueue(in.data(), tgt.data(), 1e-3, 3 * round + s)).loss);
      }
      std::vector<uint64_t> tickets;
      for (int64_t b = 0; b < 3; ++b) {
        batch(1000 + b, perm, in, tgt);
        if (b == 2) std::fill(tgt.begin() + kT * (kB / 2), tgt.end(), -1);  // a short last batch
        tickets.push_back(ev.enqueue(in.data(), tgt.data()));
      }
      for (uint64_t t : tickets) out.push_back(ev.loss(t));
    }
    BOOST_TEST(ev.graphed() == graph);
    return out;
  };
  const std::vector<double> eager = run(false), graphed = run(true);
  BOOST_REQUIRE_EQUAL(eager.size(), graphed.size());
  for (size_t i = 0; i < eager.size(); ++i)
    BOOST_TEST(graphed[i] == eager[i],
               "value " << i << ": graph " << graphed[i] << " eager " << eager[i]);
}
