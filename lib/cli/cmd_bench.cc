// `scalinglab bench [--arch dense,hybrid] [--sizes L0,L1] [--device cpu|cuda[:i]] [--seq-len T]
//                   [--batch B] [--vocab V] [--steps N] [--warmup W] [--json FILE]`
// Training throughput of full optimizer steps (forward + backward + AdamW) on random tokens, per
// ladder size and architecture: tokens/s, achieved FLOP/s by ModelSpec::flops_per_token, and MFU
// when --peak-tflops is given. --concurrent K: K copies of each run at once as threads of this
// process, each with its own backend (on CUDA its own stream, cuBLAS handle, workspaces and
// allocations), model, optimizer and captured graph; the row gives their aggregate tokens/s
// (several runs sharing one GPU without separate processes or MPS).
// `scalinglab bench --op attention[,gdn,...] [--batch B] [--seq-len T] [--heads H] [--head-dim hd]
//                   [--reps N] [--warmup W]`: one op at a time instead (bench_ops.cc).
#include <omp.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/bench_ops.h"
#include "cli/commands.h"
#include "core/profiled_backend.h"
#include "core/backend.h"
#include "core/error.h"
#include "model/block_kind.h"
#include "model/model.h"
#include "train/optimizer.h"
#include "train/step.h"

namespace sl::cli {
namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// As the trainer steps: each step enqueued while the previous one runs, its result read one step
// later (so the host's staging overlaps the device's work). Steps first .. first + count - 1.
void run_steps(TrainStep& ts, const std::vector<int32_t>& in, const std::vector<int32_t>& tgt,
               int64_t first, int64_t count) {
  uint64_t pend = 0;
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t t = ts.enqueue(in.data(), tgt.data(), 1e-4, first + i);
    if (i > 0) ts.result(pend);
    pend = t;
  }
  if (count > 0) ts.result(pend);
}

// K copies of a run, one host thread each (the --concurrent mode): each builds its own backend,
// model (seed = its index), optimizer and graphed step, warms up, waits for the others, then times
// `steps` steps. Returns each copy's seconds and peak bytes; the first error of any copy is
// rethrown here after every thread has ended.
struct CopyTiming {
  std::vector<double> seconds;
  std::vector<int64_t> peak_bytes;
  bool graphed = true;
  int64_t n_params = 0, n_params_nonembedding = 0;  // of one copy
  std::string device;
};
CopyTiming time_copies(const ModelSpec& s, const std::string& device, const std::string& data,
                       int K, int64_t batch, int64_t seq_len, int64_t logits_rows, int64_t warm,
                       int64_t steps) {
  CopyTiming out;
  out.seconds.assign(K, 0);
  out.peak_bytes.assign(K, 0);
  std::vector<std::string> errors(K);
  std::vector<char> graphed(K, 1);
  std::barrier sync(K);
  std::vector<std::thread> threads;
  for (int c = 0; c < K; ++c)
    threads.emplace_back([&, c] {
      bool arrived = false;
      try {
        auto be = make_backend(device);
        Model model(s, *be, batch, seq_len, logits_rows);
        model.init(static_cast<uint64_t>(c));
        AdamW opt(model, {});
        TrainStep ts(model, opt, nullptr, /*graph=*/true);
        std::vector<int32_t> in, tgt;
        bench_batch(data, batch, seq_len, s.vocab_size, static_cast<uint64_t>(c), in, tgt);
        run_steps(ts, in, tgt, 1, warm);
        be->synchronize();
        arrived = true;
        sync.arrive_and_wait();  // every copy warm: the timed steps start together
        const auto t0 = std::chrono::steady_clock::now();
        run_steps(ts, in, tgt, warm + 1, steps);
        be->synchronize();
        out.seconds[c] =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        out.peak_bytes[c] = be->peak_bytes();
        graphed[c] = ts.graphed();
        if (c == 0) {
          out.n_params = model.num_params();
          out.n_params_nonembedding = count_params(model.params(), false);
          out.device = be->name();
        }
      } catch (const std::exception& e) {
        errors[c] = e.what();
        if (!arrived) sync.arrive_and_drop();  // the others must not wait for this copy
      }
    });
  for (std::thread& t : threads) t.join();
  for (int c = 0; c < K; ++c)
    if (!errors[c].empty())
      fail("bench --concurrent: copy " + std::to_string(c) + ": " + errors[c]);
  out.graphed = std::all_of(graphed.begin(), graphed.end(), [](char g) { return g != 0; });
  return out;
}

}  // namespace

void register_bench(CLI::App& app) {
  struct Args {
    std::string archs = "dense,hybrid", sizes = "L0,L1", device = "cpu", json, data;
    int64_t seq_len = 256, batch = 16, vocab = 256, steps = 5, warmup = 1;
    int threads = 0, concurrent = 1;
    double peak_tflops = 0;
    bool profile = false;
    std::string ops;
    int64_t heads = 12, head_dim = 64, reps = 20;
    int64_t logits_rows = 0;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("bench", "Training tokens/s and MFU per ladder size");
  cmd->add_option("--arch", a->archs, "Comma-separated: dense, hybrid, or A/G patterns");
  cmd->add_option("--sizes", a->sizes, "Comma-separated ladder presets (L0..L5, S1, S3, S4)");
  cmd->add_option("--device", a->device, "cpu | cuda[:i]");
  cmd->add_option("--seq-len", a->seq_len, "Tokens per sequence");
  cmd->add_option("--batch", a->batch, "Sequences per step");
  cmd->add_option("--vocab", a->vocab, "Vocabulary size");
  cmd->add_option("--data", a->data,
                  "Token ids from this dataset (a text file or token shards, as train_data), not "
                  "random: the embedding gradient's cost depends on how often ids repeat");
  cmd->add_option("--steps", a->steps, "Timed steps");
  cmd->add_option("--warmup", a->warmup, "Untimed steps first");
  cmd->add_option("--logits-rows", a->logits_rows,
                  "Rows of the LM head's logits at a time (0: the model's default, "
                  "logits_chunk_rows); to weigh the chunked head's time against its memory")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--peak-tflops", a->peak_tflops, "Device peak (for MFU), e.g. 989 for H100 bf16");
  cmd->add_option("--threads", a->threads, "CPU threads (default: all cores)");
  cmd->add_option("--concurrent", a->concurrent,
                  "Copies of each run at once, as threads of this process with a backend, model "
                  "and graph each; the row gives their aggregate tokens/s")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--json", a->json, "Also write the results as JSON");
  cmd->add_flag("--profile", a->profile,
                "After the timed steps, run them again op by op with each op timed on the device "
                "clock, and print where a step's time goes");
  cmd->add_option(
      "--op", a->ops,
      "Time single ops instead of training steps (comma-separated): attention, gdn, "
      "matmul, rmsnorm, swiglu, rope, conv1d, l2norm, gated_rmsnorm, gated_rmsnorm_proj (the "
      "gate in the model's projection rows), embedding, cross_entropy, adamw; forward and "
      "backward separately");
  cmd->add_option("--heads", a->heads, "--op: heads H (width d = H x head dim)");
  cmd->add_option("--head-dim", a->head_dim, "--op: head dim");
  cmd->add_option("--reps", a->reps, "--op: timed calls per pass");
  cmd->callback([a]() {
    if (a->threads > 0) omp_set_num_threads(a->threads);
    if (!a->ops.empty()) {
      OpBenchArgs o;
      o.device = a->device;
      o.json = a->json;
      o.batch = a->batch;
      o.seq_len = a->seq_len;
      o.heads = a->heads;
      o.head_dim = a->head_dim;
      o.vocab = a->vocab;
      o.data = a->data;
      o.reps = a->reps;
      o.warmup = a->warmup;
      run_op_bench(o, split(a->ops));
      return;
    }
    if (a->concurrent > 1 && a->profile)
      fail("bench: --profile times the ops of one run; leave it out with --concurrent");
    nlohmann::json rows = nlohmann::json::array();
    std::printf("%-8s %-4s %5s %3s %11s %11s %12s %10s %6s %8s %s\n", "arch", "size", "d", "L",
                "params", "non-emb", "tokens/s", "GFLOP/s", "MFU", "peakGiB", "step");
    // One result row, printed and kept for --json; `each` (--concurrent): every copy's tokens/s,
    // `tps` their aggregate.
    auto emit = [&](const std::string& arch, const std::string& size, const ModelSpec& s,
                    double tps, int64_t np, int64_t nne, const std::string& device,
                    int64_t peak_bytes, bool graphed, const std::vector<double>& each) {
      const double flops = tps * s.flops_per_token(a->seq_len);
      const double mfu = a->peak_tflops > 0 ? flops / (a->peak_tflops * 1e12) : 0;
      // Everything the run(s) allocated through the backend (weights, moments, activations,
      // workspaces), at the peak: comparable with torch.cuda.max_memory_allocated.
      const double peak_gib = static_cast<double>(peak_bytes) / (1024.0 * 1024 * 1024);
      const std::string copies = each.empty() ? "" : " x" + std::to_string(each.size());
      std::printf("%-8s %-4s %5lld %3lld %11lld %11lld %12.0f %10.2f %6s %8.2f %s%s\n",
                  arch.c_str(), size.c_str(), static_cast<long long>(s.d_model),
                  static_cast<long long>(s.n_layers()), static_cast<long long>(np),
                  static_cast<long long>(nne), tps, flops / 1e9,
                  mfu > 0 ? (std::to_string(mfu * 100).substr(0, 4) + "%").c_str() : "-", peak_gib,
                  graphed ? "graph" : "eager", copies.c_str());
      nlohmann::json row = {{"arch", arch},
                            {"size", size},
                            {"pattern", s.pattern},
                            {"d_model", s.d_model},
                            {"n_layers", s.n_layers()},
                            {"n_params", np},
                            {"n_params_nonembedding", nne},
                            {"device", device},
                            {"seq_len", a->seq_len},
                            {"batch", a->batch},
                            {"vocab", a->vocab},
                            {"tokens_per_s", tps},
                            {"flops_per_token", s.flops_per_token(a->seq_len)},
                            {"flops_per_s", flops},
                            {"mfu", mfu},
                            {"peak_gib", peak_gib},
                            {"graph", graphed}};
      if (!each.empty()) {
        row["concurrent"] = each.size();
        row["tokens_per_s_each"] = each;
        std::printf("  %zu copies, tokens/s each:", each.size());
        for (double e : each) std::printf(" %.0f", e);
        std::printf("\n");
      }
      std::fflush(stdout);
      rows.push_back(row);
    };
    for (const std::string& arch : split(a->archs)) {
      for (const std::string& size : split(a->sizes)) {
        const LadderSize* ls = find_ladder(size);
        if (!ls) fail("bench --sizes: unknown ladder preset '" + size + "'");
        ModelSpec s;
        s.arch = arch;
        s.d_model = ls->d_model;
        s.n_heads = ls->n_heads;
        s.vocab_size = a->vocab;
        if (arch == "dense")
          s.pattern = std::string(ls->n_layers, block_letter(BlockKind::attention));
        else if (arch == "hybrid")
          s.pattern = hybrid_pattern(ls->n_layers);
        else
          s.pattern = arch;
        s.finalize();
        const int64_t warm = std::max<int64_t>(a->warmup, 2);  // the graph is captured at step 2
        if (a->concurrent > 1) {
          const int K = a->concurrent;
          const CopyTiming ct = time_copies(s, a->device, a->data, K, a->batch, a->seq_len,
                                            a->logits_rows, warm, a->steps);
          // The copies' tokens over the slowest copy's time: what K runs sharing the device do.
          const double slowest = *std::max_element(ct.seconds.begin(), ct.seconds.end());
          const double tokens = static_cast<double>(a->batch * a->seq_len * a->steps);
          const double tps = K * tokens / slowest;
          int64_t peak = 0;
          std::vector<double> each;
          for (int c = 0; c < K; ++c) {
            peak += ct.peak_bytes[c];
            each.push_back(tokens / ct.seconds[c]);
          }
          emit(arch, size, s, tps, ct.n_params, ct.n_params_nonembedding, ct.device, peak,
               ct.graphed, each);
          continue;
        }
        auto dev = make_backend(a->device);
        ProfiledBackend prof(*dev);
        prof.enable(false);
        Backend* be = &prof;
        Model model(s, *be, a->batch, a->seq_len, a->logits_rows);
        model.init(0);
        AdamW opt(model, {});
        TrainStep train_step(model, opt, nullptr, /*graph=*/true);
        const int64_t n = a->batch * a->seq_len;
        std::vector<int32_t> in, tgt;
        bench_batch(a->data, a->batch, a->seq_len, a->vocab, 0, in, tgt);
        auto run = [&](TrainStep& ts, int64_t first, int64_t count) {
          run_steps(ts, in, tgt, first, count);
        };
        run(train_step, 1, warm);
        be->synchronize();
        const int64_t first = warm + 1;
        const auto t0 = std::chrono::steady_clock::now();
        run(train_step, first, a->steps);
        be->synchronize();
        const double dt =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double tps = static_cast<double>(n * a->steps) / dt;
        emit(arch, size, s, tps, model.num_params(), count_params(model.params(), false),
             be->name(), be->peak_bytes(), train_step.graphed(), {});
        if (a->profile) {
          // The same steps again with every op timed on the device clock; shares of the summed
          // op time. Op by op (eagerly: a graph would hide the ops from the profiler), so the
          // profiled wall time is also the eager step's: its excess over the op time is the
          // host's launch gaps that the graph removes.
          TrainStep eager(model, opt, nullptr, /*graph=*/false);
          prof.enable(true);
          // An untimed pass first, so that every stamp's event exists before the timed one
          // (creating one is a host call inside the interval of the op it stamps).
          run(eager, first + a->steps, a->steps);
          prof.reset();
          const auto p0 = std::chrono::steady_clock::now();
          run(eager, first + 2 * a->steps, a->steps);
          const double pt =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
          prof.enable(false);
          std::vector<std::pair<std::string, ProfiledBackend::Stat>> ops(prof.stats().begin(),
                                                                         prof.stats().end());
          std::sort(ops.begin(), ops.end(), [](const auto& x, const auto& y) {
            return x.second.seconds > y.second.seconds;
          });
          double sum = 0;
          for (const auto& o : ops) sum += o.second.seconds;
          const double per = 1e3 / static_cast<double>(a->steps);
          std::printf(
              "  profile %s %s: %.2f ms/step unprofiled, %.2f ms/step profiled "
              "(%.2f in ops)\n",
              arch.c_str(), size.c_str(), dt * per, pt * per, sum * per);
          std::printf("  %-24s %10s %12s %7s\n", "op", "calls/step", "ms/step", "share");
          double outside = 0;  // the step issue's measure: all but the products and recurrences
          for (const auto& [name, st] : ops) {
            std::printf("  %-24s %10.0f %12.3f %6.1f%%\n", name.c_str(),
                        static_cast<double>(st.calls) / static_cast<double>(a->steps),
                        st.seconds * per, 100.0 * st.seconds / sum);
            if (name != "matmul_forward" && name != "matmul_backward" &&
                name != "attention_forward" && name != "attention_backward" &&
                name != "gdn_forward" && name != "gdn_backward")
              outside += st.seconds;
          }
          std::printf("  outside matmul, attention and gdn: %.3f ms/step (%.1f%%)\n", outside * per,
                      100.0 * outside / sum);
          std::fflush(stdout);
        }
      }
    }
    if (!a->json.empty()) {
      std::ofstream f(a->json);
      if (!f) fail("bench --json '" + a->json + "': cannot write");
      f << rows.dump(2) << "\n";
    }
  });
}

}  // namespace sl::cli
