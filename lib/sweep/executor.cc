#include "sweep/executor.h"

#include "core/fs.h"

namespace sl::sweep {

bool to_do(const std::string& status, bool retry_failed) {
  return status == "pending" || status == "preempted" || status == "extended" ||
         (retry_failed && status == "failed");
}

std::string executable(const std::string& exe) { return exe.empty() ? self_executable() : exe; }

pid_t start_train(const std::string& exe, const std::string& dir, const SweepRun& r,
                  const std::string& device, int threads, const std::vector<int>& close_fds,
                  int nproc, const std::vector<std::pair<std::string, std::string>>& env) {
  const std::string rd = run_dir(dir, r.run_id);
  std::vector<std::string> args = {
      exe, "train", "--config", rd + "/config.toml", "--out", rd, "--resume", "--device", device};
  if (threads > 0) args.insert(args.end(), {"--threads", std::to_string(threads)});
  if (nproc > 1) args.insert(args.end(), {"--nproc", std::to_string(nproc)});
  SpawnOptions so;
  so.out = Redirect::append(rd + "/train.log");
  so.err = Redirect::to_stdout();
  so.close_fds = close_fds;
  so.env = env;
  // Blocked across exec, so a stop sent before the trainer's main() has installed its handlers
  // (while the executable loads) stays pending instead of killing it; train unblocks them.
  so.block_stop_signals = true;
  return spawn(args, so).pid;
}

void record_exit(const std::string& rd, const ExitStatus& e) {
  // Killed by a signal (OOM killer, kill -9): not the run's fault; its log still says running
  // and nobody holds the lock, so status reads preempted and a re-launch resumes it from its
  // last checkpoint. An error exit is failed (rerun with --retry-failed).
  if (e.code != 0 && e.code != 3 && !e.signaled())
    atomic_write_file(rd + "/failed", "exit code " + std::to_string(e.code) + "\n");
}

}  // namespace sl::sweep
