// The HDF5 run log RUN/log.h5, schema "scalinglab.run/1" (docs/DESIGN.md "Run log: log.h5").
//
// Layout:
//   /                 attributes: schema, run_id, arch, pattern, config, version, device, status
//                     (variable-length UTF-8 strings); n_params, n_params_nonembedding, seq_len,
//                     batch_tokens, tokens_planned (int64); flops_per_token (float64)
//   /train/{step,tokens}                              int64   [n_train]  chunked, extendible
//   /train/{loss,lr,grad_norm,tokens_per_s,time_s}    float64 [n_train]
//   /eval/{step,tokens} int64, /eval/loss float64     [n_eval]
//   /budgets/tokens int64, /budgets/loss float64      [n_budget]
//
// Concurrency and crashes. The writer holds the file in SWMR-write mode (libver latest), so any
// number of readers may open it with H5F_ACC_SWMR_READ while training runs, and a writer killed
// with SIGKILL leaves a file that SWMR readers still open. Rows are buffered in memory and written
// in flush() (called explicitly, e.g. at every checkpoint, and automatically when the oldest
// unwritten row is older than autoflush_seconds). flush() writes each column of a group and then
// the group's key column (step, or tokens for /budgets) last, so a reader that trims every group
// to its shortest column and drops rows whose key still holds the fill value -1 sees an exact
// prefix of the appended rows, whenever the writer died.
//
// Status. Attributes cannot be changed safely under SWMR, so set_status() flushes, closes the
// SWMR writer, reopens the file read-write without SWMR, rewrites the `status` attribute,
// flushes and fsyncs, and reopens SWMR-write. During those few milliseconds a reader's open may
// fail; read_runlog() retries HDF5-level failures for up to 1 s.
//
// Resume. A killed writer leaves the superblock marked "open for SWMR write", which HDF5 refuses
// to open for writing. resume() therefore reads the old log through the SWMR reader, keeps the
// rows the checkpoint covers, writes them to a fresh log.h5.tmp, fsyncs it and renames it over
// log.h5, then continues appending there. No step is ever logged twice. A writer killed inside
// set_status()'s non-SWMR window leaves a file SWMR readers refuse ("already open for write");
// resume() then clears that mark on a copy (as h5clear does) and reads the copy.
//
// File locking is disabled on every file this module opens (H5Pset_file_locking, 1.10.7+):
// HDF5's flock-based locks fail on some network file systems, and SWMR needs no lock.
// Outside tools: a closed log opens anywhere (h5dump, h5py). A live or killed one must be opened
// as a SWMR reader (h5py: File(p, "r", swmr=True) with HDF5_USE_FILE_LOCKING=FALSE); h5dump
// refuses it until `h5clear -s log.h5` clears the "open for SWMR write" mark (only do that on a
// killed run's file; resume() produces a clean file anyway).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace sl {

inline constexpr const char* kRunLogSchema = "scalinglab.run/1";

// Root attributes of log.h5. status is one of running|completed|diverged|failed|preempted.
// status_reason: why the run failed (the error line), "" otherwise. config_changes: one line per
// resume that changed a config key the resume rules allow (train/trainer.h), e.g.
// "step 20: train.tokens 12800 -> 25600"; config then holds the current config. Both are
// optional attributes (logs written before them have neither and read as "").
struct RunAttrs {
  std::string run_id, arch, pattern, config, version, device, status = "running";
  std::string status_reason, config_changes;
  int64_t n_params = 0, n_params_nonembedding = 0, seq_len = 0, batch_tokens = 0,
          tokens_planned = 0;
  double flops_per_token = 0;
};

// One optimizer step. loss in nats/token, tokens = tokens seen after this step, time_s = wall
// seconds since the run (first) started.
struct TrainRow {
  int64_t step, tokens;
  double loss, lr, grad_norm, tokens_per_s, time_s;
};

class RunLogWriter {  // move-only, closes in destructor
 public:
  // Creates a new log; throws if `path` exists.
  static RunLogWriter create(const std::string& path, const RunAttrs& attrs);
  // Reopens an existing log (live-killed or cleanly closed) for appending, keeping only rows with
  // step <= keep_step (/train, /eval) and tokens <= keep_budget_tokens (/budgets). The status
  // attribute is set back to "running".
  // `update` (optional): the config the resumed run trains with (allowed changes only, see the
  // trainer), its tokens_planned, and a line for config_changes (appended when non-empty).
  struct Update {
    std::string config, change;
    int64_t tokens_planned = 0;
  };
  static RunLogWriter resume(const std::string& path, int64_t keep_step, int64_t keep_budget_tokens,
                             const Update* update = nullptr);
  // The same, keeping exactly the /budgets rows whose tokens are in `keep_budgets` (each once):
  // a WSD run's reported budgets need not be the smallest ones once budgets were added below
  // them.
  static RunLogWriter resume(const std::string& path, int64_t keep_step,
                             const std::vector<int64_t>& keep_budgets,
                             const Update* update = nullptr);

  RunLogWriter(RunLogWriter&&) noexcept;
  RunLogWriter& operator=(RunLogWriter&&) noexcept;
  RunLogWriter(const RunLogWriter&) = delete;
  RunLogWriter& operator=(const RunLogWriter&) = delete;
  ~RunLogWriter();

  void append_train(const TrainRow& r);
  void append_eval(int64_t step, int64_t tokens, double loss);
  void append_budget(int64_t tokens, double loss);
  void flush();  // data on disk (fsynced), visible to SWMR readers
  // Root attributes status and status_reason, durable on return.
  void set_status(const std::string& status, const std::string& reason = "");
  // Flushes and closes; idempotent. If the flush fails (a full disk) the handles are still
  // closed before the error is rethrown, so HDF5 holds no half-written file at exit.
  void close();

  // Buffered rows older than this are written on the next append (default 2 s; 0 = every append,
  // < 0 = only on flush()). Auto-flushes do not fsync.
  void set_autoflush_seconds(double s);
  const std::string& path() const;

 private:
  struct Impl;
  explicit RunLogWriter(std::unique_ptr<Impl> impl);
  static RunLogWriter resume_keeping(const std::string& path, int64_t keep_step,
                                     const Update* update,
                                     const std::function<bool(int64_t)>& keep_budget);
  std::unique_ptr<Impl> impl_;
};

struct RunLog {
  RunAttrs attrs;
  std::vector<TrainRow> train;
  std::vector<int64_t> eval_step, eval_tokens;
  std::vector<double> eval_loss;
  std::vector<int64_t> budget_tokens;
  std::vector<double> budget_loss;
};

// Reads a log whether its writer is live, killed, or closed (opens with SWMR read). Throws
// sl::Error naming the file and the dataset/attribute at fault, including a wrong schema.
RunLog read_runlog(const std::string& path);

}  // namespace sl
