// Data parallelism on the CPU side: which rank a process is (train/dist.h: `train --nproc`'s
// SL_* variables, srun's SLURM_* ones), where the ranks meet, the refusals that must come before
// anything is written, and the data split (each rank's rows are its stride of the global batch,
// so a checkpoint - replicated state, global step - resumes on any number of ranks and reads the
// same tokens). The NCCL runs themselves are tests/cuda/test_dist.cc.
#define BOOST_TEST_MODULE dist
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.h"
#include "core/error.h"
#include "data/tokens.h"
#include "train/dist.h"

namespace fs = std::filesystem;

namespace {

const char* kVars[] = {
    "SL_WORLD",     "SL_RANK",      "SL_LOCAL_RANK", "SL_DIST_KEY",  "SLURM_STEP_ID",
    "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_JOB_ID", "SLURM_RESTART_COUNT"};

struct CleanEnv {
  CleanEnv() { clear(); }
  ~CleanEnv() { clear(); }
  static void clear() {
    for (const char* v : kVars) unsetenv(v);
  }
};

using sl::test::slurp;

struct Dir {
  sl::test::TempDir tmp{"sl_dist_"};
  fs::path path = tmp.path;
  Dir() {
    std::ofstream(path / "train.txt") << sl::test::licenses({"GPL-3"});
    std::ofstream(path / "val.txt") << sl::test::licenses({"GPL-2"});
    std::ofstream(path / "tiny.toml")
        << "[model]\narch = \"hybrid\"\nd_model = 32\nn_layers = 2\nn_heads = 2\n"
        << "[train]\nseq_len = 32\nbatch_size = 4\ntokens = 2048\neval_tokens = 512\n"
        << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
  }
  // Runs the binary with `env` prefixed; returns the exit code, stderr in *err.
  int run(const std::string& env, const std::string& args, std::string* err) const {
    const fs::path e = path / "stderr.txt";
    const std::string cmd = env + " " + SL_EXE + " train --config " +
                            (path / "tiny.toml").string() + " " + args + " >/dev/null 2>" +
                            e.string();
    const int st = std::system(cmd.c_str());
    *err = slurp(e);
    return sl::test::exit_code(st);
  }
};

void expect_one_line(const std::string& err, const std::string& part) {
  BOOST_TEST_MESSAGE("stderr: " << err);
  BOOST_TEST(err.find(part) != std::string::npos, err);
  BOOST_TEST(std::count(err.begin(), err.end(), '\n') <= 1, err);
}

}  // namespace

BOOST_AUTO_TEST_CASE(plain_process_is_a_world_of_one) {
  CleanEnv env;
  const sl::DistEnv e = sl::dist_env();
  BOOST_TEST(e.world == 1);
  BOOST_TEST(e.rank == 0);
  BOOST_TEST(!e.launched);
  // An sbatch script (no job step) or a one-task step is not data parallel either.
  setenv("SLURM_NTASKS", "4", 1);
  BOOST_TEST(!sl::dist_env().launched);
  setenv("SLURM_STEP_ID", "0", 1);
  setenv("SLURM_NTASKS", "1", 1);
  BOOST_TEST(!sl::dist_env().launched);
}

BOOST_AUTO_TEST_CASE(ranks_from_the_launcher_and_from_srun) {
  CleanEnv env;
  setenv("SL_WORLD", "4", 1);
  setenv("SL_RANK", "3", 1);
  setenv("SL_LOCAL_RANK", "1", 1);
  setenv("SL_DIST_KEY", "123-456", 1);
  sl::DistEnv e = sl::dist_env();
  BOOST_TEST(e.launched);
  BOOST_TEST(e.world == 4);
  BOOST_TEST(e.rank == 3);
  BOOST_TEST(e.local_rank == 1);
  BOOST_TEST(e.key == "123-456");
  CleanEnv::clear();
  setenv("SLURM_STEP_ID", "2", 1);
  setenv("SLURM_NTASKS", "8", 1);
  setenv("SLURM_PROCID", "5", 1);
  setenv("SLURM_LOCALID", "1", 1);
  setenv("SLURM_JOB_ID", "777", 1);
  setenv("SLURM_RESTART_COUNT", "2", 1);
  e = sl::dist_env();
  BOOST_TEST(e.launched);
  BOOST_TEST(e.world == 8);
  BOOST_TEST(e.rank == 5);
  BOOST_TEST(e.local_rank == 1);
  // A requeued job meets at a new file, never at its previous incarnation's.
  BOOST_TEST(e.key == "777.2.2");
}

BOOST_AUTO_TEST_CASE(malformed_rank_variables_are_named) {
  CleanEnv env;
  setenv("SL_WORLD", "two", 1);
  try {
    sl::dist_env();
    BOOST_FAIL("expected an error");
  } catch (const sl::Error& e) {
    BOOST_TEST(std::string(e.what()).find("SL_WORLD='two'") != std::string::npos, e.what());
  }
  setenv("SL_WORLD", "2", 1);
  setenv("SL_RANK", "2", 1);
  BOOST_CHECK_THROW(sl::dist_env(), sl::Error);
}

BOOST_AUTO_TEST_CASE(rendezvous_file_sits_next_to_the_run) {
  BOOST_TEST(sl::rendezvous_path("runs/a", "k") == "runs/.a.nccl-k");
  BOOST_TEST(sl::rendezvous_path("runs/a/", "k") == "runs/.a.nccl-k");
  BOOST_TEST(sl::rendezvous_path("a", "k") == "./.a.nccl-k");
  BOOST_TEST(sl::rendezvous_path("/x/y/run", "1.0.0") == "/x/y/.run.nccl-1.0.0");
}

BOOST_AUTO_TEST_CASE(bad_data_parallel_requests_fail_before_writing) {
  CleanEnv env;
  Dir d;
  std::string err;
  const std::string out = " --out " + (d.path / "run").string() + " --quiet";
  BOOST_TEST(d.run("", "--nproc 2 --device cpu" + out, &err) != 0);
  expect_one_line(err, "needs --device cuda");
  BOOST_TEST(d.run("SL_WORLD=2 SL_RANK=0", "--device cpu" + out, &err) != 0);
  expect_one_line(err, "needs --device cuda");
  BOOST_TEST(d.run("SL_WORLD=3 SL_RANK=0", "--device cuda" + out, &err) != 0);
  expect_one_line(err, "not divisible by the 3 data-parallel ranks");
  BOOST_TEST(!fs::exists(d.path / "run"));
}

// Rank r's rows of step s are rows r*Bl..(r+1)*Bl-1 of the global batch: the ranks together
// read exactly the one-process batch, whatever their number, so a checkpoint (global step,
// replicated state) resumes on 1, 2 or 4 ranks and reads the tokens it would have read.
BOOST_AUTO_TEST_CASE(rank_strides_tile_the_global_batch_for_any_world) {
  const fs::path p = fs::temp_directory_path() / ("sl_dist_tokens_" + std::to_string(getpid()));
  std::ofstream(p) << sl::test::licenses({"GPL-3"});
  const sl::TokenSource src = sl::TokenSource::open(p.string(), 256);
  const int64_t B = 8, T = 16;
  for (int64_t step : {0, 1, 57, 1000}) {
    std::vector<int32_t> in(B * T), tgt(B * T);
    sl::sample_batch(src, 42, step, B, T, in.data(), tgt.data());
    for (int64_t world : {1, 2, 4, 8}) {
      const int64_t Bl = B / world;
      for (int64_t r = 0; r < world; ++r) {
        std::vector<int32_t> ri(Bl * T), rt(Bl * T);
        sl::sample_batch_rank(src, 42, step, Bl, T, r, world, ri.data(), rt.data());
        BOOST_TEST(std::equal(ri.begin(), ri.end(), in.begin() + r * Bl * T));
        BOOST_TEST(std::equal(rt.begin(), rt.end(), tgt.begin() + r * Bl * T));
      }
    }
  }
  fs::remove(p);
}
