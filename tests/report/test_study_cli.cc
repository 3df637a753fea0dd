// `scalinglab study` end to end through the executable on a 6-run micro sweep (two patterns x
// three shapes x three WSD budgets, a few seconds on 2 cores): every report file, resume (a rerun
// trains nothing; without gnuplot on PATH: one line, the rest of the report), progress lines as
// runs end (plain lines, done counts rising to all), one-line errors.
#define BOOST_TEST_MODULE study_cli
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "common/files.h"
#include "report/report.h"

namespace fs = std::filesystem;

namespace {

using sl::test::slurp;

// `env`: variable assignments for scalinglab's environment ("PATH=...").
int run(const std::string& args, const std::string& out, const std::string& env = "") {
  const std::string cmd =
      env + " OMP_WAIT_POLICY=PASSIVE " + std::string(SL_EXE) + " " + args + " > " + out + " 2>&1";
  const int rc = std::system(cmd.c_str());
  return sl::test::exit_code(rc);
}

const std::string kCorpus = SL_SOURCE_DIR "/data/corpus/english";

}  // namespace

BOOST_AUTO_TEST_CASE(micro_study_and_resume) {
  if (!fs::exists(kCorpus + "/train.txt")) {
    BOOST_TEST_MESSAGE("skipped: no bundled corpus (bash data/make_english_corpus.sh)");
    return;
  }
  const std::string dir =
      fs::temp_directory_path().string() + "/sl_study_test_" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir + "/study.toml")
      << "[sweep]\nname = \"micro\"\npatterns = [\"AA\", \"GA\"]\nbudgets = [2048, 4096, 8192]\n"
         "seeds = [0]\n"
         "[[sweep.shape]]\nd_model = 16\nn_layers = 2\nn_heads = 2\n"
         "[[sweep.shape]]\nd_model = 24\nn_layers = 2\nn_heads = 2\n"
         "[[sweep.shape]]\nd_model = 32\nn_layers = 2\nn_heads = 2\n"
         "[model]\nvocab_size = 256\n"
         "[train]\nschedule = \"wsd\"\nlr = 3e-3\nseq_len = 16\nbatch_size = 8\n"
         "warmup_tokens = 512\neval_every = 16\neval_tokens = 1024\ncheckpoint_every = 64\n"
         "[data]\ntrain = \""
      << kCorpus << "/train.txt\"\nval = \"" << kCorpus << "/val.txt\"\n";
  const std::string out = dir + "/study", args = "study " + dir + "/study.toml --out " + out +
                                                 " --jobs 2 --threads 1 --bootstrap 20";
  // Progress lines every 0.2 s besides those as runs end (the resume below keeps the default).
  const auto t0 = std::chrono::steady_clock::now();
  BOOST_TEST(run(args + " --progress-every 0.2", dir + "/out1.txt") == 0, slurp(dir + "/out1.txt"));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string out1 = slurp(dir + "/out1.txt");
  BOOST_TEST(out1.find("6 of 6 runs completed") != std::string::npos, out1);
  BOOST_TEST(out1.find('\r') == std::string::npos);  // plain lines, no redraw
  // A progress line each time runs ended (done counts rising to 6 of 6), and between them the
  // periodic ones (the same count again).
  std::istringstream in1(out1);
  int last_done = 0, progress_lines = 0, rises = 0, repeats = 0;
  for (std::string l; std::getline(in1, l);) {
    const size_t at = l.find("progress: ");
    if (at == std::string::npos) continue;
    ++progress_lines;
    const int done = std::atoi(l.c_str() + at + 10);
    BOOST_TEST(done >= last_done, l);
    (done > last_done ? rises : repeats) += 1;
    BOOST_TEST(l.find("/6 runs done, ") != std::string::npos, l);
    BOOST_TEST(l.find(" tokens/s, ") != std::string::npos, l);
    last_done = done;
  }
  BOOST_TEST(rises >= 1);
  // The launch polls the runs every 0.2 s here: a study of a second or more prints periodic lines.
  if (wall >= 1.5) BOOST_TEST(repeats >= 1, out1);
  BOOST_TEST(progress_lines >= 1);
  BOOST_TEST(last_done == 6, out1);
  for (const char* f :
       {"sweep/sweep.h5", "sweep/sweep.csv", "report/report.md", "report/savings.json",
        "report/fit_AA.json", "report/fit_GA.json", "report/params.tex"})
    BOOST_TEST(fs::exists(out + "/" + f), f);
  for (const std::string& f : sl::report::figure_names()) {
    BOOST_TEST(fs::exists(out + "/report/" + f + ".gp"), f);
    BOOST_TEST(fs::exists(out + "/report/" + f + ".dat"), f);
  }
  // Figure (a) drew the runs' held-out curves from their log.h5.
  BOOST_TEST(slurp(out + "/report/loss_vs_tokens.dat").find(" run ") != std::string::npos);
  // Resume: nothing left to train. PATH has no gnuplot this time (the study starts scalinglab by
  // its own path): one line says the figures were skipped and how to render them; exit 0, and the
  // rest of the report is written again.
  fs::remove_all(out + "/report");
  BOOST_TEST(run(args, dir + "/out2.txt", "PATH=" + dir + "/no-bin") == 0,
             slurp(dir + "/out2.txt"));
  BOOST_TEST(slurp(out + "/launch.log").find("nothing to do, all 6 runs are done") !=
             std::string::npos);
  const std::string out2 = slurp(dir + "/out2.txt");
  size_t skipped = 0;
  for (size_t at = 0; (at = out2.find("gnuplot", at)) != std::string::npos;
       at = out2.find('\n', at))
    ++skipped;
  BOOST_TEST(skipped == 1u, out2);
  BOOST_TEST(out2.find("gnuplot is not installed") != std::string::npos, out2);
  BOOST_TEST(out2.find("scalinglab report " + out + "/sweep --out DIR") != std::string::npos, out2);
  for (const char* f : {"report/report.md", "report/savings.json", "report/params.tex"})
    BOOST_TEST(fs::exists(out + "/" + f), f);
  for (const std::string& f : sl::report::figure_names())
    BOOST_TEST(fs::exists(out + "/report/" + f + ".gp"), f);
  // Bad input: one line naming the file.
  BOOST_TEST(run("study " + dir + "/missing.toml --out " + out, dir + "/out3.txt") != 0);
  const std::string err = slurp(dir + "/out3.txt");
  BOOST_TEST(err.find("missing.toml") != std::string::npos, err);
  fs::remove_all(dir);
}
