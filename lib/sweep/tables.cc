#include "sweep/tables.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "sweep/slurm.h"
#include "train/memory.h"

namespace sl::sweep {

std::string human(double x) {
  char buf[32];
  if (x >= 1e12)
    std::snprintf(buf, sizeof buf, "%.2fT", x / 1e12);
  else if (x >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2fG", x / 1e9);
  else if (x >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", x / 1e6);
  else if (x >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", x / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", x);
  return buf;
}

std::string budgets_text(const SweepRun& r) {
  std::string s;
  for (size_t i = 0; i < r.budgets.size(); ++i) s += (i ? "," : "") + human(r.budgets[i]);
  return s;
}

Rates read_bench_rates(const std::string& path) {
  Rates rates;
  if (path.empty()) return rates;
  std::ifstream in(path);
  if (!in) fail("--bench '" + path + "': cannot open");
  try {
    const nlohmann::json rows = nlohmann::json::parse(in);
    for (const auto& r : rows) {
      const double f = r.at("flops_per_s").get<double>();
      if (!(f > 0)) continue;
      rates[{r.at("arch").get<std::string>(), r.at("size").get<std::string>()}] = f;
      rates[{r.at("pattern").get<std::string>(), r.at("size").get<std::string>()}] = f;
    }
  } catch (const std::exception& e) {
    fail("--bench '" + path + "': not a bench --json file (" + e.what() + ")");
  }
  return rates;
}

double rate_for(const SweepRun& r, const Rates& rates) {
  for (const std::string& a : {r.arch, r.config.model.pattern}) {
    const auto it = rates.find({a, r.size});
    if (it != rates.end()) return it->second;
  }
  return 0;
}

void order_longest_first(std::vector<const SweepRun*>& queue, const Rates& rates) {
  double sum = 0;
  int n = 0;
  for (const SweepRun* r : queue)
    if (const double f = rate_for(*r, rates); f > 0) sum += f, ++n;
  const double fallback = n > 0 ? sum / n : 1.0;  // 1: FLOPs themselves when none is measured
  auto cost = [&](const SweepRun* r) {
    const double f = rate_for(*r, rates);
    return r->flops / (f > 0 ? f : fallback);
  };
  std::stable_sort(queue.begin(), queue.end(), [&](const SweepRun* x, const SweepRun* y) {
    const double cx = cost(x), cy = cost(y);
    return cx != cy ? cx > cy : x->index < y->index;
  });
}

void print_plan(const std::vector<SweepRun>& runs, double flops_per_s, const std::string& dir,
                const Rates& rates) {
  // gpu_GiB: the run's estimated device memory on one GPU (train/memory.h), what the local
  // executor packs GPUs by.
  std::printf("%-5s %-12s %-8s %-7s %10s %-28s %10s %8s %7s%s\n", "index", "run_id", "arch", "size",
              "N", "tokens", "FLOPs", "est_h", "gpu_GiB", dir.empty() ? "" : "  status");
  double total_flops = 0, total_s = 0;
  int measured = 0;
  for (const SweepRun& r : runs) {
    total_flops += r.flops;
    double rate = rate_for(r, rates);
    if (rate > 0)
      ++measured;
    else
      rate = flops_per_s;
    total_s += estimate_seconds(r, rate);
    std::string st;
    if (!dir.empty()) st = "  " + run_status(run_dir(dir, r.run_id)).status;
    const double gib =
        static_cast<double>(estimate_device_bytes(r.config).total()) / (1024.0 * 1024 * 1024);
    std::printf("%-5lld %-12s %-8s %-7s %10s %-28s %10.3g %8.3f %7.2f%s\n",
                static_cast<long long>(r.index), r.run_id.c_str(), r.arch.c_str(), r.size.c_str(),
                human(static_cast<double>(r.n_params_nonembedding)).c_str(),
                budgets_text(r).c_str(), r.flops, estimate_seconds(r, rate) / 3600.0, gib,
                st.c_str());
  }
  std::printf(
      "%zu runs, %.3g FLOPs, about %.2f device-hours (%d runs at their benchmarked "
      "FLOP/s, %zu at %.3g FLOP/s)\n",
      runs.size(), total_flops, total_s / 3600.0, measured, runs.size() - measured, flops_per_s);
}

std::string fmt_duration(double s) {
  if (!(s >= 0) || !std::isfinite(s)) return "-";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char b[32];
  if (t >= 3600)
    std::snprintf(b, sizeof b, "%lldh%02lldm", static_cast<long long>(t / 3600),
                  static_cast<long long>(t / 60 % 60));
  else if (t >= 60)
    std::snprintf(b, sizeof b, "%lldm%02llds", static_cast<long long>(t / 60),
                  static_cast<long long>(t % 60));
  else
    std::snprintf(b, sizeof b, "%llds", static_cast<long long>(t));
  return b;
}

StatusTable status_table(const std::string& dir, const std::vector<SweepRun>& runs) {
  const std::map<int64_t, std::string> queued = slurm_states(dir);
  std::map<std::string, int> counts;
  StatusTable t;
  std::string& o = t.text;
  char line[512];
  std::snprintf(line, sizeof line, "%-5s %-12s %-8s %-7s %-28s %13s %7s %9s %8s %8s %7s  %s\n",
                "index", "run_id", "arch", "size", "tokens", "step", "budgets", "tok/s", "train",
                "val", "ETA", "status");
  o += line;
  int64_t done_tokens = 0, left_tokens = 0;
  double rate = 0;  // summed tokens/s of the running runs
  for (const SweepRun& r : runs) {
    RunStatus st = run_status(run_dir(dir, r.run_id));
    // A run not training (no lock held) whose array task Slurm holds is queued, not idle.
    const auto q = queued.find(r.index);
    const bool in_slurm = q != queued.end() && st.status != "running" && st.status != "completed";
    if (in_slurm)
      st.status =
          (q->second.find("PENDING") != std::string::npos ? "queued (slurm " : "starting (slurm ") +
          q->second + ")";
    ++counts[st.status.substr(0, st.status.find(' '))];
    const bool running = st.status == "running";
    t.ended += st.ended();
    t.active += running || in_slurm;
    // An extended run's log still plans its old last budget; config.toml has the new one.
    const int64_t planned =
        st.tokens_planned > 0 && st.status != "extended" ? st.tokens_planned : r.config.tokens;
    done_tokens += st.tokens;
    if (!st.ended()) left_tokens += std::max<int64_t>(0, planned - st.tokens);
    if (running) rate += st.tokens_per_s;
    const double eta = running && st.tokens_per_s > 0
                           ? static_cast<double>(planned - st.tokens) / st.tokens_per_s
                           : -1;
    std::snprintf(line, sizeof line,
                  "%-5lld %-12s %-8s %-7s %-28s %6lld/%-6lld %3lld/%-3zu %9.0f %8.4f %8.4f %7s  "
                  "%s\n",
                  static_cast<long long>(r.index), r.run_id.c_str(), r.arch.c_str(), r.size.c_str(),
                  budgets_text(r).c_str(), static_cast<long long>(st.step),
                  static_cast<long long>(r.config.steps()), static_cast<long long>(st.budgets_done),
                  r.budgets.size(), st.tokens_per_s, st.train_loss, st.last_loss,
                  fmt_duration(eta).c_str(), st.status.c_str());
    o += line;
  }
  std::snprintf(line, sizeof line, "%zu runs:", runs.size());
  o += line;
  for (const auto& [k, n] : counts) {
    std::snprintf(line, sizeof line, " %d %s", n, k.c_str());
    o += line;
  }
  std::snprintf(line, sizeof line, "; %.3g of %.3g tokens, %.0f tok/s running, ETA %s\n",
                static_cast<double>(done_tokens), static_cast<double>(done_tokens + left_tokens),
                rate,
                rate > 0 ? fmt_duration(static_cast<double>(left_tokens) / rate).c_str() : "-");
  o += line;
  return t;
}

void watch_status(const std::string& dir, const std::vector<SweepRun>& runs, double secs) {
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  int idle = 0;
  for (;;) {
    const StatusTable t = status_table(dir, runs);
    char stamp[512];
    const std::time_t now = std::time(nullptr);
    char clock[16];
    std::strftime(clock, sizeof clock, "%H:%M:%S", std::localtime(&now));
    std::snprintf(stamp, sizeof stamp, "sweep %s  (%s, every %gs)\n", dir.c_str(), clock, secs);
    if (tty)
      std::fputs(("\033[H\033[2J" + std::string(stamp) + t.text).c_str(), stdout);
    else
      std::fputs((std::string(stamp) + t.text + "\n").c_str(), stdout);
    std::fflush(stdout);
    if (t.ended == static_cast<int64_t>(runs.size())) {
      std::printf("sweep status: every run has ended\n");
      return;
    }
    idle = t.active > 0 ? 0 : idle + 1;
    if (idle >= 3) {
      std::printf(
          "sweep status: nothing running or queued; %lld of %zu runs have not ended "
          "(start them with sweep launch)\n",
          static_cast<long long>(runs.size() - t.ended), runs.size());
      return;
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(secs));
  }
}

ProgressMeter::ProgressMeter(const std::string& dir, const std::vector<SweepRun>& runs)
    : dir_(dir), runs_(runs), t0_(std::chrono::steady_clock::now()) {
  for (const SweepRun& r : runs_) tokens0_.push_back(run_status(run_dir(dir_, r.run_id)).tokens);
}

ProgressMeter::Line ProgressMeter::line() const {
  Line l;
  int64_t failed = 0, trained = 0, left = 0;
  for (size_t i = 0; i < runs_.size(); ++i) {
    const RunStatus st = run_status(run_dir(dir_, runs_[i].run_id));
    l.ended += st.ended();
    failed += st.status == "failed";
    trained += std::max<int64_t>(0, st.tokens - tokens0_[i]);
    // As status_table: an extended run's log still plans its old last budget.
    const int64_t planned = st.tokens_planned > 0 && st.status != "extended"
                                ? st.tokens_planned
                                : runs_[i].config.tokens;
    if (!st.ended()) left += std::max<int64_t>(0, planned - st.tokens);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  const double rate = secs > 0 ? static_cast<double>(trained) / secs : 0;
  const std::string fails = failed ? " (" + std::to_string(failed) + " failed)" : "";
  const std::string eta = left == 0  ? "0s"
                          : rate > 0 ? fmt_duration(static_cast<double>(left) / rate)
                                     : "-";
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "progress: %lld/%zu runs done%s, %s tokens/s, %s tokens to go, ETA %s",
                static_cast<long long>(l.ended), runs_.size(), fails.c_str(), human(rate).c_str(),
                human(static_cast<double>(left)).c_str(), eta.c_str());
  l.text = buf;
  return l;
}

}  // namespace sl::sweep
