#include "train/dist.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/process.h"
#ifdef SL_HAVE_NCCL
#include "backend/cuda/nccl_comm.h"
#endif

namespace sl {
namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 0 || x > 1 << 20)
    fail(std::string("environment variable ") + name + "='" + v + "': expected an integer >= 0");
  return static_cast<int>(x);
}

std::string env_str(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

}  // namespace

DistEnv dist_env() {
  DistEnv e;
  if (!env_str("SL_WORLD").empty()) {
    e.world = env_int("SL_WORLD", 1);
    e.rank = env_int("SL_RANK", 0);
    e.local_rank = env_int("SL_LOCAL_RANK", e.rank);
    e.key = env_str("SL_DIST_KEY");
    e.launched = true;
  } else if (!env_str("SLURM_STEP_ID").empty() && env_int("SLURM_NTASKS", 1) > 1) {
    e.world = env_int("SLURM_NTASKS", 1);
    e.rank = env_int("SLURM_PROCID", 0);
    e.local_rank = env_int("SLURM_LOCALID", 0);
    e.key = env_str("SLURM_JOB_ID") + "." + env_str("SLURM_STEP_ID") + "." +
            std::to_string(env_int("SLURM_RESTART_COUNT", 0));
    e.launched = true;
  }
  if (e.world < 1 || e.rank >= e.world)
    fail("data parallel: rank " + std::to_string(e.rank) + " of world " + std::to_string(e.world) +
         " (from SL_RANK/SL_WORLD or SLURM_PROCID/SLURM_NTASKS)");
  if (e.launched && e.key.empty()) e.key = "default";
  return e;
}

std::string rendezvous_path(const std::string& run_dir, const std::string& key) {
  std::string r = run_dir;
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  const std::filesystem::path p(r);
  const std::filesystem::path dir = p.has_parent_path() ? p.parent_path() : ".";
  return (dir / ("." + p.filename().string() + ".nccl-" + key)).string();
}

std::unique_ptr<Comm> make_comm(Backend& be, const DistEnv& env, const std::string& run_dir) {
#ifdef SL_HAVE_NCCL
  return make_nccl_comm(be, env.rank, env.world, rendezvous_path(run_dir, env.key));
#else
  (void)be;
  (void)run_dir;
  fail("data parallel (" + std::to_string(env.world) +
       " ranks): this build has no NCCL (CUDA and nccl.h were not found at build time)");
#endif
}

int launch_ranks(int nproc) {
  if (nproc < 1) fail("train --nproc " + std::to_string(nproc) + ": expected >= 1");
  // The same command line again for every rank (the ranks see SL_WORLD and do not relaunch).
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string a; std::getline(in, a, '\0');) args.push_back(a);
  if (args.empty()) fail("train --nproc: cannot read /proc/self/cmdline");
  const std::string key =
      std::to_string(getpid()) + "-" +
      std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  // A stop for the launcher reaches every rank as itself: the ranks checkpoint together.
  SignalForwarder stops({SIGTERM, SIGUSR1, SIGINT});
  for (int r = 0; r < nproc; ++r) {
    SpawnOptions so;
    so.program = "/proc/self/exe";  // our own binary, however argv[0] names it
    so.env = {{"SL_WORLD", std::to_string(nproc)},
              {"SL_RANK", std::to_string(r)},
              {"SL_LOCAL_RANK", std::to_string(r)},
              {"SL_DIST_KEY", key}};
    stops.add(spawn(args, so).pid);
  }
  int rc = 0, alive = nproc;
  bool stopping = false;
  std::chrono::steady_clock::time_point failed_at{};
  while (alive > 0) {
    const ExitStatus e = wait_child(-1, false);
    if (e.pid > 0) {
      stops.remove(e.pid);
      --alive;
      if (e.code != 0 && rc == 0) {
        rc = e.code;
        stopping = true;
        failed_at = std::chrono::steady_clock::now();
        stops.signal_all(SIGTERM);
      }
      continue;
    }
    // A rank that failed leaves the others blocked in a collective: give them 10 s to notice.
    if (stopping && std::chrono::steady_clock::now() - failed_at > std::chrono::seconds(10))
      stops.signal_all(SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return rc;
}

}  // namespace sl
