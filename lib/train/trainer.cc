#include "train/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/tokens.h"
#include "model/hf_io.h"
#include "model/model.h"
#include "runlog/checkpoint.h"
#include "runlog/runlog.h"
#include "train/dist.h"
#include "train/optimizer.h"
#include "train/step.h"
#include "train/schedule.h"

namespace sl {

namespace {
std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Mean loss over the held-out set (eval_batch layout: the last batch may hold fewer windows;
// the rest of its rows are ignored targets). Two batches stay in flight: the host lays out
// batch b + 2 while the device runs b + 1 and b's loss comes back; the sum is taken in batch
// order, so the result does not depend on the timing.
double evaluate(EvalStep& ev, const Model& model, const TokenSource& val, int64_t eval_tokens) {
  const int64_t B = model.batch(), T = model.seq_len();
  std::vector<int32_t> in(B * T), tgt(B * T);
  const int64_t nb = eval_batches(val, eval_tokens, B, T);
  constexpr int64_t kInFlight = 2;
  static_assert(kInFlight < Model::kResultSlots, "tickets in flight");
  std::vector<uint64_t> ticket(static_cast<size_t>(nb));
  std::vector<int64_t> rows(static_cast<size_t>(nb));
  double sum = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < nb + kInFlight; ++b) {
    if (b < nb) {
      rows[b] = eval_batch(val, eval_tokens, B, T, b, in.data(), tgt.data());
      for (int64_t i = rows[b] * T; i < B * T; ++i) {
        in[i] = 0;
        tgt[i] = -1;
      }
      ticket[b] = ev.enqueue(in.data(), tgt.data());
    }
    const int64_t done = b - kInFlight;
    if (done < 0 || done >= nb) continue;
    sum += ev.loss(ticket[done]) * static_cast<double>(rows[done] * T);
    count += rows[done] * T;
  }
  return sum / static_cast<double>(count);
}

// Test hook for the kill -9 window between the log and the checkpoint (tests/cli/
// test_reliability.cc): SL_TEST_CRASH=<point>:<step> SIGKILLs the process at <point> of the
// checkpoint taken after step <step>; points: "before_checkpoint" (log rows flushed, checkpoint
// not yet written) and "after_checkpoint" (checkpoint renamed into place, nothing after it).
// Unset (always, outside tests) it costs one getenv per checkpoint.
void crash_point(const char* point, int64_t step) {
  const char* v = std::getenv("SL_TEST_CRASH");
  if (!v) return;
  const std::string want = std::string(point) + ":" + std::to_string(step);
  if (want == v) ::kill(::getpid(), SIGKILL);
}

// The run directory's single-writer lock: RUN/lock, the file `sweep launch` locks for the train
// child it starts (which inherits the locked descriptor: see inherited_lock_fd). Held from before
// the checkpoint is read until the process exits, so two trainers never interleave rows in one
// log.h5 or race on the checkpoint's rename.
class RunLock {
 public:
  RunLock() = default;
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  ~RunLock() {
    if (fd_ >= 0) ::close(fd_);  // an inherited descriptor's lock stays with its other holder
  }
  bool held() const { return fd_ >= 0; }
  void acquire(const std::string& run) {
    const std::string path = run + "/lock";
    fd_ = inherited_lock_fd(path);
    if (fd_ >= 0) return;
    std::string holder;
    fd_ = try_lock_file(path, false, &holder);
    if (fd_ < 0)
      fail("train: run directory '" + run + "' is in use by another process (" +
           (holder.empty() ? std::string("pid unknown") : "pid " + holder) + ", lock " + path +
           ")");
  }

 private:
  int fd_ = -1;
};

// A resolved config (to_toml's output) as ("section.key", value text) in the file's order.
std::vector<std::pair<std::string, std::string>> flat_config(const std::string& toml_text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::string section, line;
  for (size_t at = 0; at < toml_text.size();) {
    const size_t nl = toml_text.find('\n', at);
    line = toml_text.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    at = nl == std::string::npos ? toml_text.size() : nl + 1;
    if (line.empty() || line[0] == '#') continue;
    if (line[0] == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    const size_t eq = line.find(" = ");
    if (eq != std::string::npos)
      out.emplace_back(section + "." + line.substr(0, eq), line.substr(eq + 3));
  }
  return out;
}

// The keys a --resume may change. Every other key (the model, seq_len, batch_size, the optimizer
// and schedule, seed, data, eval_tokens) decides what the steps already taken computed or what
// the logged numbers mean, so a change would make the log describe a run that never happened.
// tokens and budgets may change only as long as no step already taken (nor a budget already
// reported) would have differed: check_resume_schedule below.
const std::set<std::string>& resume_may_change() {
  static const std::set<std::string> k = {"train.tokens", "train.budgets", "train.eval_every",
                                          "train.checkpoint_every", "train.inject_nan_step"};
  return k;
}

// The main line's schedule: a standalone run to cfg.tokens.
Schedule main_schedule(const TrainConfig& cfg) {
  const int64_t tps = cfg.tokens_per_step();
  return Schedule{cfg.schedule,     cfg.lr,
                  cfg.steps(),      (cfg.warmup_tokens + tps - 1) / tps,
                  cfg.min_lr_ratio, cfg.decay_fraction};
}

// The budgets of `c` as its /budgets rows record them (whole steps), ascending; without
// train.budgets the run's one budget, its tokens.
std::vector<int64_t> budget_rows_of(const TrainConfig& c) {
  std::vector<int64_t> out;
  for (int64_t d : c.budgets) out.push_back(c.steps_for(d) * c.tokens_per_step());
  if (out.empty()) out.push_back(c.steps() * c.tokens_per_step());
  return out;
}

// Budget rows as a checkpoint string ("[3840, 7680]": never empty, which HDF5 attributes dislike)
// and back. The list is kept by value, not as a count, because a WSD run's budgets may gain
// members below the ones already reported (a sweep adding D/N = 10 to a 20/40 ladder).
std::string budget_list_text(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}
std::vector<int64_t> parse_budget_list(const std::string& s, const std::string& where) {
  std::vector<int64_t> out;
  if (s.size() < 2 || s.front() != '[' || s.back() != ']')
    fail("checkpoint " + where + ": budgets_reported '" + s + "' is not a list");
  std::string item;
  for (std::istringstream in(s.substr(1, s.size() - 2)); std::getline(in, item, ',');) {
    try {
      out.push_back(std::stoll(item));
    } catch (const std::exception&) {
      fail("checkpoint " + where + ": budgets_reported '" + s + "' is not a list");
    }
  }
  return out;
}

// Compares the config of a checkpoint with the one a --resume asks for key by key; throws naming
// the key a resume may not change. Returns the allowed changes as one line ("" if none).
std::string changed_keys(const TrainConfig& old, const TrainConfig& cfg,
                         const std::string& ckpt_dir, bool force) {
  const auto fa = flat_config(to_toml(old)), fb = flat_config(to_toml(cfg));
  const std::map<std::string, std::string> a(fa.begin(), fa.end()), b(fb.begin(), fb.end());
  // In the file's order, so the key reported is the one set (model.d_model), not one derived
  // from it (model.d_mlp).
  std::vector<std::string> keys;
  for (const auto& [k, v] : fb) keys.push_back(k);
  for (const auto& [k, v] : fa)
    if (!b.count(k)) keys.push_back(k);
  std::string changes;
  for (const std::string& k : keys) {
    const auto ia = a.find(k), ib = b.find(k);
    const std::string va = ia == a.end() ? "(unset)" : ia->second;
    const std::string vb = ib == b.end() ? "(unset)" : ib->second;
    if (va == vb) continue;
    if (!resume_may_change().count(k) && (!force || k.rfind("model.", 0) == 0))
      fail("train --resume: key '" + k + "' is " + vb + ", the checkpoint in '" + ckpt_dir +
           "' was trained with " + va + " (a resumed run must keep it; start a new run directory" +
           (k.rfind("model.", 0) == 0 ? "" : ", or pass --force-config to change its trajectory") +
           ")");
    changes += (changes.empty() ? "" : ", ") + k + " " + va + " -> " + vb;
  }
  return changes;
}

// "" when every step before `step` has under `cfg` the learning rate it had under `old` (a cosine
// schedule decays over the whole run, so its tokens can never change; a WSD run's can for the
// steps before both decays; a constant one's always), else the error line naming the first
// step that differs.
std::string lr_mismatch(const TrainConfig& old, const TrainConfig& cfg, int64_t step,
                        const std::string& ckpt_dir) {
  const Schedule so = main_schedule(old), sn = main_schedule(cfg);
  for (int64_t s = 0; s < step; ++s)
    if (so.at(s) != sn.at(s))
      return "train --resume: key 'train.tokens' " + std::to_string(old.tokens) + " -> " +
             std::to_string(cfg.tokens) + " changes the learning rate of step " +
             std::to_string(s) + ", already taken by the checkpoint in '" + ckpt_dir +
             "' (schedule " + cfg.schedule + ")";
  return "";
}

// The run log as the training loop sees it: rank 0 of a data-parallel run writes RUN/log.h5, the
// other ranks (which hold the same numbers) write nothing.
struct LeadLog {
  std::optional<RunLogWriter> w;
  void append_train(const TrainRow& r) {
    if (w) w->append_train(r);
  }
  void append_eval(int64_t step, int64_t tokens, double loss) {
    if (w) w->append_eval(step, tokens, loss);
  }
  void append_budget(int64_t tokens, double loss) {
    if (w) w->append_budget(tokens, loss);
  }
  void flush() {
    if (w) w->flush();
  }
  void set_status(const std::string& st) {
    if (w) w->set_status(st);
  }
  void close() {
    if (w) w->close();
  }
  // An error ended the run: status failed with the error as its reason, best effort (on a full
  // disk even that may not be writable; the error itself is what the caller reports).
  void fail_with(const std::string& reason) {
    if (!w) return;
    try {
      w->set_status("failed", reason);
    } catch (const std::exception&) {
    }
    try {
      w->close();
    } catch (const std::exception&) {
    }
  }
};

// The host copy of the training state a checkpoint is made from: the master parameters and both
// AdamW moments, each a flat buffer in the parameter table's layout (Model::buffer_size floats).
struct HostState {
  std::vector<float> p, m, v;
  void fill(const Model& model, const AdamW& opt) {
    model.get_params(p);
    m.resize(p.size());
    v.resize(p.size());
    model.backend().download(m.data(), opt.m());
    model.backend().download(v.data(), opt.v());
  }
};

Checkpoint make_checkpoint(const std::vector<ParamInfo>& table, const HostState& h,
                           const TrainConfig& cfg, int64_t step,
                           const std::vector<int64_t>& reported, const std::string& init,
                           double time_s, int64_t train_tokens, int64_t val_tokens) {
  Checkpoint c;
  for (const ParamInfo& info : table) {
    auto slice = [&](const std::vector<float>& all) {
      return std::vector<float>(all.begin() + info.offset, all.begin() + info.offset + info.numel);
    };
    c.arrays["param:" + info.name] = slice(h.p);
    c.arrays["adam_m:" + info.name] = slice(h.m);
    c.arrays["adam_v:" + info.name] = slice(h.v);
  }
  c.ints["step"] = step;
  c.ints["tokens"] = step * cfg.tokens_per_step();
  c.ints["time_ms"] = static_cast<int64_t>(time_s * 1000.0);
  // The budget rows the log holds at this step: kept by value (budget_list_text); the count
  // stays for readers of the count.
  c.ints["budgets_done"] = static_cast<int64_t>(reported.size());
  c.strings["budgets_reported"] = budget_list_text(reported);
  // How step 0 was set up: "seed" or "hf <dir>" (--init-from). Only a seeded run can be
  // retrained from step 0 to reach a budget branch no checkpoint precedes.
  c.strings["init"] = init;
  // The sizes of the data sources: a resume on data that changed under the same path is refused.
  c.ints["data_train_tokens"] = train_tokens;
  c.ints["data_val_tokens"] = val_tokens;
  c.strings["config"] = to_toml(cfg);
  c.strings["pattern"] = cfg.model.pattern;
  return c;
}

// Restores parameters and AdamW moments; returns the step the checkpoint was taken after.
int64_t restore_checkpoint(const Checkpoint& c, Model& model, AdamW& opt, double& time_s) {
  const int64_t n = model.buffer_size();
  std::vector<float> p(n), m(n), v(n);
  for (const ParamInfo& info : model.params()) {
    auto put = [&](const std::string& key, std::vector<float>& dst) {
      const auto& a = c.array(key + info.name, static_cast<size_t>(info.numel));
      std::copy(a.begin(), a.end(), dst.begin() + info.offset);
    };
    put("param:", p);
    put("adam_m:", m);
    put("adam_v:", v);
  }
  model.set_params(p);
  model.backend().upload(opt.m(), m.data());
  model.backend().upload(opt.v(), v.data());
  time_s = static_cast<double>(c.int_value("time_ms")) / 1000.0;
  return c.int_value("step");
}

// One token budget of the run: a standalone WSD run to `steps` would follow `sched` and start its
// decay at `start`. Budgets other than the last are branched off the stable branch at `start`.
struct Budget {
  int64_t steps, start;
  Schedule sched;
};

// A copy of the training state (master parameters, AdamW moments) on the backend, taken on the
// stable branch before a cooldown branch and put back after it, so the branch costs no host
// round trip and the stable branch continues bitwise as if the branch never happened.
class StateSnapshot {
 public:
  StateSnapshot(Model& model, AdamW& opt) : model_(model), opt_(opt) {
    Backend& be = model_.backend();
    for (Tensor* t : {&p_, &m_, &v_}) *t = be.alloc(model_.buffer_size(), be.param_dtype());
  }
  ~StateSnapshot() {
    for (Tensor t : {p_, m_, v_}) model_.backend().free(t);
  }
  StateSnapshot(const StateSnapshot&) = delete;
  StateSnapshot& operator=(const StateSnapshot&) = delete;
  void save() {
    Backend& be = model_.backend();
    be.convert(p_, model_.param_buffer());
    be.convert(m_, opt_.m());
    be.convert(v_, opt_.v());
  }
  void restore() {
    Backend& be = model_.backend();
    be.convert(model_.param_buffer(), p_);
    be.convert(opt_.m(), m_);
    be.convert(opt_.v(), v_);
    model_.sync_compute_params();
  }
  // (Stream-ordered copies: they take effect between the steps enqueued before and after.)

 private:
  Model& model_;
  AdamW& opt_;
  Tensor p_, m_, v_;
};

}  // namespace

void install_stop_handlers() {
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGHUP, on_stop_signal);  // a closed terminal or ssh session: stop like SIGTERM
  // A file-size limit (RLIMIT_FSIZE) must fail the write with EFBIG, reported in one line like a
  // full disk, rather than kill the process with SIGXFSZ in the middle of a checkpoint.
  std::signal(SIGXFSZ, SIG_IGN);
}
bool stop_requested() { return g_stop_signal.load() != 0; }

namespace {

// ---- the training loop -------------------------------------------------------------------------
//
// Loop owns what every part of the loop reads: the step counter, the budgets reported so far (a
// checkpoint records them), the clock, and the main line's one-step-ahead pipeline. Around each
// optimizer step it runs a fixed list of hooks, each owning one responsibility and its state:
//
//   before step s (may use the state after s steps): StopWatcher, Brancher, EpochNotice,
//                                                    NanInjector
//   step s enqueued, step s-1's result read and logged (Pipeline)
//   after step s (the state after s + 1 steps):     Evaluator, Brancher, Checkpointer
//
// The order is part of the behaviour (a stop beats a branch at the same step, the NaN hook poisons
// the main line rather than a branch, the last budget's row needs that step's evaluation and comes
// before the checkpoint that counts it). A hook that needs the state itself first calls drain(),
// which completes the step in flight, so it sees exactly the steps counted; every rank runs the
// same hooks at the same points, so collectives (a stop decision, an allreduce in a step) match.
// docs/DESIGN.md "Training loop" draws it.

class Loop;

// What a hook tells the loop: carry on, start the step over from the first hook (a branch ran:
// the next branch may start at the same step, and a stop is checked first), or end the run with
// exit code `rc`.
struct Verdict {
  enum Kind { go, again, exit } kind = go;
  int rc = 0;
  static Verdict end(int rc) { return {exit, rc}; }
};

class Hook {
 public:
  virtual ~Hook() = default;
  virtual Verdict before_step(Loop&) { return {}; }
  virtual Verdict after_step(Loop&) { return {}; }
};

// Steps one ahead: push(s) enqueues step s and then reads step s-1's result (the host waits only
// for what the device has finished); drain() reads the step in flight. A non-finite loss or
// gradient norm ends the run as diverged (the diverged step changed nothing). The main line logs
// each step's /train row; a cooldown branch logs none (its step numbers repeat the main line's).
class Pipeline {
 public:
  Pipeline(Loop& loop, bool main_line, std::string where)
      : loop_(loop), main_line_(main_line), where_(std::move(where)) {}
  int push(int64_t s, double lr);  // 0, or 3 (diverged)
  int drain();                     // 0, or 3 (diverged)

 private:
  Loop& loop_;
  const bool main_line_;
  const std::string where_;  // the divergence message's "at step N<where>"
  int64_t step_ = -1;        // 0-based index of the enqueued step; -1: none in flight
  double lr_ = 0;
  uint64_t ticket_ = 0;
};

class Loop {
 public:
  Loop(const TrainConfig& cfg, Model& model, AdamW& opt, Comm* comm, const TokenSource& train,
       const DistEnv& dist, LeadLog& log, const Schedule& sched, std::string ckpt_dir, bool say,
       int64_t step, std::vector<int64_t> reported, double time_base)
      : cfg(cfg),
        model(model),
        opt(opt),
        log(log),
        ckpt_dir(std::move(ckpt_dir)),
        lead(dist.rank == 0),
        say(say),
        tps(cfg.tokens_per_step()),
        total(cfg.steps()),
        step(step),
        reported(std::move(reported)),
        train_(train),
        dist_(dist),
        sched_(sched),
        in_(cfg.batch_size / dist.world * cfg.seq_len),
        tgt_(in_.size()),
        train_step_(model, opt, comm, /*graph=*/true),
        main_(*this, true, ""),
        time_base_(time_base) {}

  // Runs the main line to `total` steps. Returns the exit code of a hook that ended the run, or
  // nothing when the run completed.
  std::optional<int> run(const std::vector<Hook*>& before, const std::vector<Hook*>& after) {
    t0_ = last_done_ = Clock::now();
    while (step < total) {
      Verdict v;
      for (Hook* h : before)
        if ((v = h->before_step(*this)).kind != Verdict::go) break;
      if (v.kind == Verdict::exit) return v.rc;
      if (v.kind == Verdict::again) continue;
      if (const int rc = main_.push(step, sched_.at(step))) return rc;
      ++step;
      for (Hook* h : after)
        if ((v = h->after_step(*this)).kind == Verdict::exit) return v.rc;
    }
    return std::nullopt;
  }

  // Completes the main line's step in flight: 0, or 3 (diverged).
  int drain() { return main_.drain(); }
  // Host work outside a step (an evaluation, a checkpoint, a branch) is not counted in the next
  // step's tokens/s.
  void restart_clock() { last_done_ = Clock::now(); }
  double elapsed() const { return time_base_ + seconds_since(t0_); }

  // One optimizer step of global batch `s` at learning rate `lr`, enqueued (train/step.h): the
  // host samples and stages this rank's rows while the device still runs the previous step; the
  // loss and gradient norm come back through result().
  uint64_t enqueue(int64_t s, double lr) {
    sample_batch_rank(train_, cfg.seed, s, cfg.batch_size / dist_.world, cfg.seq_len, dist_.rank,
                      dist_.world, in_.data(), tgt_.data());
    return train_step_.enqueue(in_.data(), tgt_.data(), lr, s + 1);
  }
  Model::StepResult result(uint64_t ticket) { return train_step_.result(ticket); }

  // A main-line step's result, read: its /train row.
  void record(int64_t s, double lr, const Model::StepResult& r) {
    const auto now = Clock::now();
    const double dt = std::chrono::duration<double>(now - last_done_).count();
    last_done_ = now;
    last_loss = r.loss;
    last_lr = lr;
    last_rate = static_cast<double>(tps) / dt;
    const int64_t done = s + 1;
    log.append_train({done, done * tps, r.loss, lr, r.grad_norm, last_rate, elapsed()});
  }

  // The run ends diverged: status diverged, exit 3; the last good checkpoint stays as it is.
  int diverged(int64_t at, double loss, double gnorm, const std::string& where) {
    log.set_status("diverged");
    log.close();
    if (lead)
      std::fprintf(stderr,
                   "scalinglab: train: diverged at step %lld%s (loss %g, grad norm %g); status "
                   "diverged, the last good checkpoint in '%s' is kept\n",
                   static_cast<long long>(at), where.c_str(), loss, gnorm, ckpt_dir.c_str());
    return 3;
  }

  // Read by the hooks (set up once per run).
  const TrainConfig& cfg;
  Model& model;
  AdamW& opt;
  LeadLog& log;
  const std::string ckpt_dir;
  const bool lead, say;  // rank 0; rank 0 and not --quiet (progress lines on stdout)
  const int64_t tps, total;
  // The run's progress: steps taken on the main line, and the budget rows the log holds (in the
  // order reported; a checkpoint records them).
  int64_t step;
  std::vector<int64_t> reported;
  // The last main-line step read: its loss, learning rate and tokens/s (the progress line).
  double last_loss = 0, last_lr = 0, last_rate = 0;

 private:
  const TokenSource& train_;
  const DistEnv& dist_;
  const Schedule& sched_;
  std::vector<int32_t> in_, tgt_;
  TrainStep train_step_;
  Pipeline main_;
  const double time_base_;  // seconds trained before this process (from the checkpoint)
  Clock::time_point t0_, last_done_;
};

int Pipeline::push(int64_t s, double lr) {
  const uint64_t ticket = loop_.enqueue(s, lr);
  if (const int rc = drain()) return rc;
  step_ = s;
  lr_ = lr;
  ticket_ = ticket;
  return 0;
}

int Pipeline::drain() {
  if (step_ < 0) return 0;
  const Model::StepResult r = loop_.result(ticket_);
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm))
    return loop_.diverged(step_, r.loss, r.grad_norm, where_);
  if (main_line_) loop_.record(step_, lr_, r);
  step_ = -1;
  return 0;
}

// Held-out evaluation every train.eval_every steps and after the last: an /eval row, flushed,
// and the progress line. Also evaluates the end of a cooldown branch for the Brancher.
class Evaluator final : public Hook {
 public:
  Evaluator(Loop& loop, const TokenSource& val) : loop_(loop), val_(val), ev_(loop.model, true) {}
  double evaluate() { return sl::evaluate(ev_, loop_.model, val_, loop_.cfg.eval_tokens); }
  // The main line's latest held-out loss (NaN before the first evaluation).
  double last() const { return last_; }

  Verdict after_step(Loop& l) override {
    if (l.step % l.cfg.eval_every != 0 && l.step != l.total) return {};
    if (const int rc = l.drain()) return Verdict::end(rc);
    last_ = evaluate();
    l.log.append_eval(l.step, l.step * l.tps, last_);
    l.log.flush();
    if (l.say)
      std::printf("step %6lld/%lld  loss %.4f  val %.4f  lr %.2e  %.0f tok/s\n",
                  static_cast<long long>(l.step), static_cast<long long>(l.total), l.last_loss,
                  last_, l.last_lr, l.last_rate);
    std::fflush(stdout);
    l.restart_clock();
    return {};
  }

 private:
  Loop& loop_;
  const TokenSource& val_;
  EvalStep ev_;
  double last_ = std::numeric_limits<double>::quiet_NaN();
};

// Checkpoints (rank 0 writes; every rank drains, as every rank ran the step): the rolling one in
// RUN/ckpt every train.checkpoint_every steps and after the last, and on request (a stop, a
// finished branch, the WSD trunk). The log's rows up to `step` are durable before the checkpoint
// of `step` exists: a kill at any instant then leaves a log that reaches at least the checkpoint,
// and a resume keeps the rows <= the checkpoint's step and retrains the rest (no gap, no step
// logged twice).
//
// The file is made and written on a thread of its own while the trainer goes on: on one H200 the
// hybrid L3 run (16.2M parameters, a 194 MB state.h5) lost ~0.8 s to each checkpoint, 500 steps
// of 28 ms apart (~6% of the run), most of it copies into fresh pages, the CRCs and the fsync.
// The trainer only copies the state to host buffers (kept across checkpoints, so their pages stay
// mapped) after the log's flush. One write is in flight at most: the next checkpoint, and
// whatever ends the run (finish()), waits for it first and rethrows its error, so a full disk
// still ends the run with its one line, and the orders above hold (the rows of `step` durable
// before its checkpoint exists; the previous checkpoint intact until the rename). Where HDF5 is
// not thread-safe the write stays on the trainer's thread.
class Checkpointer final : public Hook {
 public:
  Checkpointer(Loop& loop, std::string init, int64_t train_tokens, int64_t val_tokens)
      : loop_(loop),
        init_(std::move(init)),
        train_tokens_(train_tokens),
        val_tokens_(val_tokens),
        overlap_(checkpoint_write_may_overlap()) {}
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;
  // Unwinding from another error: the write in flight completes (or fails) unreported.
  ~Checkpointer() {
    if (worker_.joinable()) worker_.join();
  }

  // The state after loop.step steps (drained) into `dir`.
  void write(const std::string& dir) {
    finish();
    const double time_s = loop_.elapsed();
    if (!loop_.lead) return;
    loop_.log.flush();
    // The test hook's points are those of the rolling checkpoint (tests/cli/test_reliability.cc).
    const bool rolling = dir == loop_.ckpt_dir;
    const int64_t step = loop_.step;
    if (rolling) crash_point("before_checkpoint", step);
    host_.fill(loop_.model, loop_.opt);
    auto job = [this, dir, rolling, step, time_s, reported = loop_.reported] {
      write_checkpoint(dir, make_checkpoint(loop_.model.params(), host_, loop_.cfg, step, reported,
                                            init_, time_s, train_tokens_, val_tokens_));
      if (rolling) crash_point("after_checkpoint", step);
    };
    if (!overlap_) return job();
    worker_ = std::thread([this, job] {
      try {
        job();
      } catch (...) {
        error_ = std::current_exception();
      }
    });
  }
  void write_rolling() { write(loop_.ckpt_dir); }

  // Waits for the write in flight; rethrows its error.
  void finish() {
    if (worker_.joinable()) worker_.join();
    if (std::exception_ptr e = std::exchange(error_, nullptr)) std::rethrow_exception(e);
  }

  Verdict after_step(Loop& l) override {
    if (l.step % l.cfg.checkpoint_every != 0 && l.step != l.total) return {};
    if (const int rc = l.drain()) return Verdict::end(rc);
    write_rolling();
    l.restart_clock();
    return {};
  }

 private:
  Loop& loop_;
  const std::string init_;  // "seed" or "hf <dir>" (make_checkpoint)
  const int64_t train_tokens_, val_tokens_;
  const bool overlap_;        // write on worker_ (HDF5 is thread-safe)
  HostState host_;            // the state being written; refilled only after finish()
  std::thread worker_;        // the write in flight, if any
  std::exception_ptr error_;  // its failure, set before worker_ ends
};

// The stop signals (install_stop_handlers): at the top of a step the run checkpoints, ends with
// status preempted and exits 0. A stop is decided together: a rank that stopped alone would
// leave the others waiting in a collective (every rank asks at the same points).
class StopWatcher final : public Hook {
 public:
  StopWatcher(Checkpointer& ckpt, Comm* comm) : ckpt_(ckpt), comm_(comm) {}
  bool requested() {
    if (!comm_) return stop_requested();
    double s = stop_requested() ? 1.0 : 0.0;
    comm_->allreduce_sum(&s, 1);
    return s > 0;
  }

  Verdict before_step(Loop& l) override {
    if (!requested()) return {};
    if (const int rc = l.drain()) return Verdict::end(rc);
    ckpt_.write_rolling();
    ckpt_.finish();  // durable before the log says preempted and the process exits
    l.log.set_status("preempted");
    l.log.close();
    if (l.lead)
      std::fprintf(stderr, "train: signal %d: checkpoint at step %lld written, status preempted\n",
                   g_stop_signal.load(), static_cast<long long>(l.step));
    return Verdict::end(0);
  }

 private:
  Checkpointer& ckpt_;
  Comm* const comm_;
};

// The token budgets: WSD cooldown branches off the stable main line, the trunk checkpoint, and
// the last budget's row (the main line's own end). Owns which budgets have their /budgets row.
class Brancher final : public Hook {
 public:
  Brancher(Loop& loop, std::vector<Budget> budgets, std::vector<bool> done, int64_t decay_start,
           Evaluator& eval, Checkpointer& ckpt, StopWatcher& stop)
      : loop_(loop),
        budgets_(std::move(budgets)),
        done_(std::move(done)),
        decay_start_(decay_start),
        eval_(eval),
        ckpt_(ckpt),
        stop_(stop) {
    if (budgets_.size() > 1) snap_ = std::make_unique<StateSnapshot>(loop.model, loop.opt);
  }

  Verdict before_step(Loop& l) override {
    if (const int64_t i = branch_due(); i >= 0) {
      if (const int rc = l.drain()) return Verdict::end(rc);
      const int rc = branch(budgets_[i]);
      if (rc == 3) return Verdict::end(rc);
      if (rc == 0) {
        done_[i] = true;
        l.reported.push_back(budgets_[i].steps * l.tps);
        // The branch's work is kept even if the run is preempted before the next checkpoint.
        ckpt_.write_rolling();
      }
      l.restart_clock();
      return {Verdict::again};  // the next branch may start at the same step; a stop comes first
    }
    // The last stable state of a WSD run, kept apart from the rolling checkpoint: budgets added
    // later above the last one go on from here (the main line's decay steps after it would have
    // been stable steps of the longer run). Written once the branches due here are done.
    if (l.cfg.schedule == "wsd" && l.step == decay_start_ && !trunk_written_) {
      if (const int rc = l.drain()) return Verdict::end(rc);
      ckpt_.write(l.ckpt_dir + "/trunk");
      trunk_written_ = true;
      l.restart_clock();
    }
    return {};
  }

  // The main line ends with the last budget's cooldown: its row (the final evaluation's loss),
  // before the final checkpoint that counts it as done (a resume of the completed run adds
  // nothing). Already reported when the trunk was retrained for a budget added below it.
  Verdict after_step(Loop& l) override {
    if (l.step == l.total && !done_.back()) {
      l.log.append_budget(l.total * l.tps, eval_.last());
      done_.back() = true;
      l.reported.push_back(l.total * l.tps);
    }
    return {};
  }

 private:
  // The first budget still to branch off at this step (-1: none). Branch points do not decrease
  // with the budget, and none still to do lies before the step the run went on from.
  int64_t branch_due() const {
    for (size_t i = 0; i + 1 < budgets_.size(); ++i)
      if (!done_[i] && budgets_[i].start == loop_.step) return static_cast<int64_t>(i);
    return -1;
  }

  // The cooldown branch of budget `b`, run from the stable branch at step == b.start: exactly the
  // steps a standalone WSD run to b.steps would take from there (same lr, batches, AdamW step
  // count), so on the CPU its loss is bitwise the standalone run's. Branch steps are not logged
  // in /train (their step numbers repeat the stable branch's) and never checkpointed: a signal
  // during a branch abandons it and restores the stable state, and the resumed run replays the
  // whole cooldown from its start. Returns 0 done, 1 stopped (state restored), 3 diverged.
  int branch(const Budget& b) {
    const int64_t tps = loop_.tps;
    snap_->save();
    Pipeline pipe(loop_, false, " of the cooldown to budget " + std::to_string(b.steps * tps));
    for (int64_t s = loop_.step; s < b.steps; ++s) {
      if (stop_.requested()) {
        if (const int rc = pipe.drain()) return rc;
        snap_->restore();
        return 1;
      }
      if (const int rc = pipe.push(s, b.sched.at(s))) return rc;
    }
    if (const int rc = pipe.drain()) return rc;
    const double loss = eval_.evaluate();
    snap_->restore();
    loop_.log.append_budget(b.steps * tps, loss);
    if (loop_.say)
      std::printf("budget %lld tokens (cooldown from step %lld to %lld)  val %.4f\n",
                  static_cast<long long>(b.steps * tps), static_cast<long long>(b.start),
                  static_cast<long long>(b.steps), loss);
    std::fflush(stdout);
    return 0;
  }

  Loop& loop_;
  const std::vector<Budget> budgets_;  // ascending; the last is the main line's own
  std::vector<bool> done_;             // which budgets have their /budgets row
  const int64_t decay_start_;          // the main line's
  Evaluator& eval_;
  Checkpointer& ckpt_;
  StopWatcher& stop_;
  std::unique_ptr<StateSnapshot> snap_;  // the stable state during a branch (with branches)
  bool trunk_written_ = false;
};

// The sampler draws every training window once per epoch (data/tokens.h); say when a new pass
// over the data begins, since repeated tokens change what a loss curve means.
class EpochNotice final : public Hook {
 public:
  explicit EpochNotice(const TokenSource& train) : train_(train) {}
  Verdict before_step(Loop& l) override {
    const int64_t ep = epoch_of(train_, l.step, l.cfg.batch_size, l.cfg.seq_len);
    if (ep == epoch_) return {};
    if (l.say && (epoch_ >= 0 || ep > 0))
      std::printf("epoch %lld begins at step %lld (%lld windows of %lld tokens per epoch)\n",
                  static_cast<long long>(ep), static_cast<long long>(l.step),
                  static_cast<long long>(train_windows(train_, l.cfg.seq_len)),
                  static_cast<long long>(l.cfg.seq_len));
    epoch_ = ep;
    return {};
  }

 private:
  const TokenSource& train_;
  int64_t epoch_ = -1;
};

// train.inject_nan_step (a test hook for the divergence path): a NaN in the parameters before
// that step, so the step's loss is NaN.
class NanInjector final : public Hook {
 public:
  Verdict before_step(Loop& l) override {
    if (l.step != l.cfg.inject_nan_step) return {};
    if (const int rc = l.drain()) return Verdict::end(rc);
    std::vector<float> p = l.model.get_params();
    p[l.model.params()[1].offset] = std::numeric_limits<float>::quiet_NaN();
    l.model.set_params(p);
    return {};
  }
};

// Where the run starts, and what its log already holds. Fresh: step 0 from the seed (or
// --init-from, set up by the caller). Resumed from `ckpt` (RUN/ckpt's latest checkpoint): the
// resume rules of trainer.h decide, and the state of the step it goes on from (the checkpoint's,
// the trunk checkpoint's, or the seed's, already in `model`) is restored into model and opt.
// Throws, before anything in RUN/ is touched, for a resume the rules refuse.
struct StartPoint {
  int64_t step;
  std::vector<bool> done;         // which budgets have their /budgets row (a resume keeps them)
  std::vector<int64_t> reported;  // those rows' tokens, in the order reported
  std::string init;               // how step 0 was set up (make_checkpoint)
  double time_base;               // seconds trained before this process
  std::string config_change;      // the log's config_changes line ("": none)
};
StartPoint start_point(const TrainConfig& cfg, const TrainOptions& opts, const Checkpoint* ckpt,
                       const std::string& ckpt_dir, const std::vector<Budget>& budgets, bool lead,
                       Model& model, AdamW& opt) {
  const int64_t tps = cfg.tokens_per_step();
  const int64_t n_budgets = static_cast<int64_t>(budgets.size());
  int64_t step = 0;
  // Which budgets have their /budgets row (a resume keeps those rows; the loop skips them).
  std::vector<bool> done(n_budgets, false);
  std::vector<int64_t> reported;
  std::string init = opts.init_from.empty() ? "seed" : "hf " + opts.init_from;
  double time_base = 0;
  std::string config_change;
  if (ckpt) {
    step = ckpt->int_value("step");
    const TrainConfig old =
        parse_config(ckpt->string_value("config"), ckpt_dir + "/state.h5", "", {});
    // Checkpoints from before init was recorded come from sweeps or plain runs: seeded, unless
    // the caller says otherwise by passing --init-from again.
    if (ckpt->strings.count("init")) init = ckpt->string_value("init");
    // The reported budgets: by value where the checkpoint lists them; else the first
    // budgets_done of its own list; else (checkpoints from before budget branches) every branch
    // that starts before `step`.
    if (ckpt->strings.count("budgets_reported")) {
      reported = parse_budget_list(ckpt->string_value("budgets_reported"), ckpt->source);
    } else if (ckpt->ints.count("budgets_done")) {
      const std::vector<int64_t> ob = budget_rows_of(old);
      const int64_t k = std::min<int64_t>(ckpt->int_value("budgets_done"), ob.size());
      reported.assign(ob.begin(), ob.begin() + k);
    } else {
      for (int64_t i = 0; i + 1 < n_budgets && budgets[i].start < step; ++i)
        reported.push_back(budgets[i].steps * tps);
    }
    const std::string changes = changed_keys(old, cfg, ckpt_dir, opts.force_config);
    if (!changes.empty() && cfg.steps() < step)
      fail("train --resume: key 'train.tokens' is " + std::to_string(cfg.tokens) +
           ", fewer than the " + std::to_string(step * cfg.tokens_per_step()) +
           " tokens the checkpoint in '" + ckpt_dir + "' has trained (step " +
           std::to_string(step) + ")");
    // Budgets already reported keep their rows, so they must still be budgets of the run.
    for (int64_t t : reported) {
      bool kept = false;
      for (int64_t i = 0; i < n_budgets; ++i)
        if (budgets[i].steps * tps == t) kept = done[i] = true;
      if (!kept)
        fail("train --resume: key 'train.budgets' drops or changes the budget of " +
             std::to_string(t) + " tokens, already reported by the checkpoint in '" + ckpt_dir +
             "'");
    }
    // Where the run goes on from. The latest checkpoint serves when every step it has taken keeps
    // its learning rate and no budget still to branch starts before it. Otherwise a WSD run goes
    // back along its stable trunk: to the trunk checkpoint (the state where the main line's
    // decay began, ckpt/trunk) if that serves, else to step 0, retrained from the seed (the
    // trainer is deterministic: on the CPU the retrained steps are the logged ones bit for bit).
    // Either way the log keeps its rows up to that step and every reported budget's row, and the
    // steps after it are trained and logged again: each step once. This is how budgets added to
    // a finished WSD run (larger ones, and smaller ones whose branch point the trunk has passed)
    // get their branches; docs/DESIGN.md "Schedules and token budgets".
    auto unusable = [&](const TrainConfig& from, int64_t at, const std::string& dir) {
      if (opts.force_config) return std::string();
      std::string why = lr_mismatch(from, cfg, at, dir);
      for (int64_t i = 0; why.empty() && i + 1 < n_budgets; ++i)
        if (!done[i] && budgets[i].start < at)
          why = "train --resume: budget " + std::to_string(budgets[i].steps * tps) +
                " tokens branches at step " + std::to_string(budgets[i].start) +
                ", before the checkpoint's step " + std::to_string(at) + " in '" + dir + "'";
      return why;
    };
    std::unique_ptr<Checkpoint> trunk;  // read only when the latest checkpoint does not serve
    const Checkpoint* from = ckpt;
    std::string from_text;  // how the log's config_changes line says where the run went on
    if (const std::string why = unusable(old, step, ckpt_dir); !why.empty()) {
      if (cfg.schedule != "wsd") fail(why);
      const std::string trunk_dir = ckpt_dir + "/trunk";
      std::string trunk_why = "no trunk checkpoint";
      if (checkpoint_exists(trunk_dir)) {
        trunk = std::make_unique<Checkpoint>(read_checkpoint(trunk_dir));
        const int64_t at = trunk->int_value("step");
        const TrainConfig tc =
            parse_config(trunk->string_value("config"), trunk_dir + "/state.h5", "", {});
        (void)changed_keys(tc, cfg, trunk_dir, false);  // the same run: only allowed keys differ
        trunk_why =
            at > step ? "the trunk checkpoint is past the latest one" : unusable(tc, at, trunk_dir);
        if (trunk_why.empty()) {
          from = trunk.get();
          from_text = " (from the trunk checkpoint)";
        }
      }
      // Said without the prefix inside the one line that says where the run goes on from.
      auto bare = [](const std::string& s) {
        const std::string p = "train --resume: ";
        return s.rfind(p, 0) == 0 ? s.substr(p.size()) : s;
      };
      if (from == ckpt) {
        if (init != "seed")
          fail(why + "; no stable checkpoint precedes it (" + bare(trunk_why) +
               ") and the run was initialised from '" + init.substr(3) +
               "', so it cannot be retrained from step 0 (start a new run directory)");
        from = nullptr;
        from_text = " (retrained from the seed)";
      }
      step = from ? from->int_value("step") : 0;
      if (lead)
        std::fprintf(stderr, "scalinglab: train --resume: %s; the run goes on from %s\n",
                     bare(why).c_str(),
                     from ? ("the trunk checkpoint at step " + std::to_string(step)).c_str()
                          : ("step 0, retrained from the seed (" + bare(trunk_why) + ")").c_str());
    }
    if (!changes.empty())
      config_change = "step " + std::to_string(step) + (opts.force_config ? " (forced)" : "") +
                      from_text + ": " + changes;
    // Only now the tensors: a changed model is named by its key above, not by a tensor's shape.
    if (from) restore_checkpoint(*from, model, opt, time_base);
  }
  return {step,      std::move(done),         std::move(reported), std::move(init),
          time_base, std::move(config_change)};
}

int run(const TrainConfig& cfg, const TrainOptions& opts, RunLock& lock, LeadLog& log) {
  // A stop signal that arrives while the data and model are set up is kept and honoured at the
  // top of the loop (checkpoint, status preempted, exit 0), not lost to the default action.
  install_stop_handlers();
  // ---- validate everything before touching RUN/ ----------------------------------------------
  if (opts.out_dir.empty()) fail("train: --out RUN is required");
  // Data parallelism (train/dist.h): rank r of `world` trains on rows r*Bl..(r+1)*Bl-1 of every
  // global batch of B = train.batch_size rows (Bl = B / world) on GPU cuda:<local rank>.
  const DistEnv dist = dist_env();
  const bool lead = dist.rank == 0;
  std::string device = opts.device;
  if (dist.launched) {
    if (cfg.batch_size % dist.world != 0)
      fail("train: train.batch_size = " + std::to_string(cfg.batch_size) +
           " is not divisible by the " + std::to_string(dist.world) + " data-parallel ranks");
    if (device.rfind("cuda", 0) != 0)
      fail("train: data parallelism (" + std::to_string(dist.world) +
           " ranks) needs --device cuda, not " + device);
    if (device == "cuda") device = "cuda:" + std::to_string(dist.local_rank);
  }
  const int64_t local_batch = cfg.batch_size / dist.world;
  const int64_t V = cfg.model.vocab_size;
  TokenSource train = TokenSource::open(cfg.train_data, V);
  TokenSource val = TokenSource::open(cfg.val_data, V);
  // Every token id against vocab_size now, not when a bad one happens to be sampled (which would
  // be after RUN/ exists, or never, training on bad data).
  train.validate();
  val.validate();
  if (train.size() < cfg.seq_len + 1)
    fail("data.train '" + cfg.train_data + "': holds " + std::to_string(train.size()) +
         " tokens, fewer than seq_len + 1 = " + std::to_string(cfg.seq_len + 1));
  if (val.size() < cfg.seq_len + 1)
    fail("data.val '" + cfg.val_data + "': holds " + std::to_string(val.size()) +
         " tokens, fewer than seq_len + 1 = " + std::to_string(cfg.seq_len + 1));
  const std::string run = opts.out_dir;
  const std::string log_path = run + "/log.h5", ckpt_dir = run + "/ckpt";
  // One writer per run directory: an existing one is locked before anything in it is read, so a
  // second trainer is refused at once; a new one when it is created (below).
  if (lead && path_exists(run)) lock.acquire(run);
  const bool have_ckpt = opts.resume && checkpoint_exists(ckpt_dir);
  if (!opts.resume && (path_exists(log_path) || path_exists(ckpt_dir)))
    fail("run directory '" + run + "' already holds a run (use --resume to continue it)");
  std::unique_ptr<Checkpoint> ckpt;  // the latest checkpoint
  if (have_ckpt) {
    ckpt = std::make_unique<Checkpoint>(read_checkpoint(ckpt_dir));
    for (const auto& [key, src] :
         {std::pair<const char*, const TokenSource*>{"train", &train}, {"val", &val}}) {
      const std::string k = std::string("data_") + key + "_tokens";
      if (!opts.force_config && ckpt->ints.count(k) && ckpt->ints.at(k) != src->size())
        fail("train --resume: data." + std::string(key) + " '" + src->spec() + "' holds " +
             std::to_string(src->size()) + " tokens, the checkpoint in '" + ckpt_dir +
             "' was trained on " + std::to_string(ckpt->ints.at(k)) + " (the data changed)");
    }
  }
  std::unique_ptr<Backend> be = make_backend(device);
  // Joining is collective: past it every rank has validated, so rank 0 may touch RUN/.
  std::unique_ptr<Comm> comm = dist.launched ? make_comm(*be, dist, opts.out_dir) : nullptr;

  // ---- model, optimizer, schedule -------------------------------------------------------------
  Model model(cfg.model, *be, local_batch, cfg.seq_len);
  if (comm) model.set_grads_ready([&comm](Tensor g) { comm->allreduce_mean_async(g); });
  model.init(cfg.seed);
  // Before RUN/ is touched: a mismatching HF directory fails here, naming the tensor.
  if (!opts.init_from.empty() && !ckpt)
    model.set_params(load_hf_params(opts.init_from, model.spec()));
  AdamW opt(model, {cfg.beta1, cfg.beta2, cfg.adam_eps, cfg.weight_decay, cfg.grad_clip});
  const int64_t tps = cfg.tokens_per_step(), total = cfg.steps();
  // The main line is a standalone run to the last budget (with budgets, D_n = cfg.tokens).
  const Schedule sched = main_schedule(cfg);
  std::vector<Budget> budgets;
  for (int64_t d : cfg.budgets) {
    Schedule s = sched;
    s.total_steps = cfg.steps_for(d);
    budgets.push_back({s.total_steps, s.decay_start(), s});
  }
  if (budgets.empty()) budgets.push_back({total, total, sched});
  auto [step, done, reported, init, time_base, config_change] =
      start_point(cfg, opts, ckpt.get(), ckpt_dir, budgets, lead, model, opt);

  // ---- run directory (rank 0) -------------------------------------------------------------------
  const std::string cfg_text = to_toml(cfg);
  if (lead) {
    make_dirs(run);
    if (!lock.held()) {
      lock.acquire(run);
      // Another trainer may have started a run here while this one set up.
      if ((!opts.resume || !ckpt) && checkpoint_exists(ckpt_dir))
        fail("run directory '" + run + "' gained a checkpoint while this run set up (another " +
             "trainer?); use --resume to continue it");
    }
    atomic_write_file(run + "/config.toml", cfg_text);
    // Legal but almost always a mistake (a default warmup kept for a short run): said once, after
    // every check passed, so that a refused input still gets its one error line alone.
    if (cfg.warmup_tokens >= cfg.tokens)
      std::fprintf(stderr,
                   "scalinglab: train: warning: train.warmup_tokens (%lld) >= train.tokens (%lld): "
                   "the learning rate never reaches train.lr\n",
                   static_cast<long long>(cfg.warmup_tokens), static_cast<long long>(cfg.tokens));
  }
  RunAttrs attrs;
  attrs.run_id = run_id_of(cfg);
  attrs.arch = cfg.model.arch;
  attrs.pattern = cfg.model.pattern;
  attrs.config = cfg_text;
  attrs.version = "scalinglab 0.1.0";
  attrs.device = be->name();
  attrs.n_params = model.num_params();
  attrs.n_params_nonembedding = count_params(model.params(), false);
  attrs.flops_per_token = cfg.model.flops_per_token(cfg.seq_len);
  attrs.seq_len = cfg.seq_len;
  attrs.batch_tokens = tps;
  attrs.tokens_planned = total * tps;
  // Budget rows are kept exactly for the budgets the checkpoint counts as done.
  if (lead) {
    if (ckpt) {
      // config.toml and log.h5 carry the same config: the one this run trains with now.
      const RunLogWriter::Update up{cfg_text, config_change, attrs.tokens_planned};
      log.w.emplace(RunLogWriter::resume(log_path, step, reported, &up));
    } else {
      if (path_exists(log_path)) std::remove(log_path.c_str());
      log.w.emplace(RunLogWriter::create(log_path, attrs));
    }
  }
  const bool say = lead && !opts.quiet;
  if (say)
    std::printf(
        "train: %s %s d%lld, %lld params (%lld non-embedding), %lld steps x %lld tokens, "
        "device %s%s\n",
        cfg.model.arch.c_str(), cfg.model.pattern.c_str(),
        static_cast<long long>(cfg.model.d_model), static_cast<long long>(attrs.n_params),
        static_cast<long long>(attrs.n_params_nonembedding), static_cast<long long>(total),
        static_cast<long long>(tps),
        (be->name() + (dist.world > 1 ? " x " + std::to_string(dist.world) + " ranks" : ""))
            .c_str(),
        ckpt                      ? (", resumed at step " + std::to_string(step)).c_str()
        : !opts.init_from.empty() ? (", initialised from " + opts.init_from).c_str()
                                  : "");

  // ---- loop ------------------------------------------------------------------------------------
  Loop loop(cfg, model, opt, comm.get(), train, dist, log, sched, ckpt_dir, say, step,
            std::move(reported), time_base);
  Evaluator evaluator(loop, val);
  Checkpointer checkpointer(loop, init, train.size(), val.size());
  StopWatcher stop(checkpointer, comm.get());
  Brancher brancher(loop, std::move(budgets), std::move(done), sched.decay_start(), evaluator,
                    checkpointer, stop);
  EpochNotice epochs(train);
  NanInjector nan;
  const std::optional<int> rc =
      loop.run({&stop, &brancher, &epochs, &nan}, {&evaluator, &brancher, &checkpointer});
  checkpointer.finish();  // the last checkpoint durable (or its error thrown) before the status
  if (rc) return *rc;
  log.set_status("completed");
  log.close();
  if (say)
    std::printf("train: completed %lld steps, held-out loss %.4f nats/token; log %s\n",
                static_cast<long long>(loop.step), evaluator.last(), log_path.c_str());
  return 0;
}

}  // namespace

int run_training(const TrainConfig& cfg, const TrainOptions& opts) {
  // The lock and the log outlive the run's other state, so an error that ends the run (a full
  // disk, a failed write) is recorded as status failed with its reason while the lock is still
  // held, never leaving a log that says running.
  RunLock lock;
  LeadLog log;
  try {
    return run(cfg, opts, lock, log);
  } catch (const std::exception& e) {
    log.fail_with(e.what());
    throw;
  }
}

}  // namespace sl
