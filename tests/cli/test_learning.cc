// Training actually learns: tiny hybrid and dense models on the bundled English corpus reach a
// held-out loss at least 1 nat/byte below the corpus's unigram (byte) entropy, in 800k tokens
// (d=64, 4 layers; each architecture at its better learning rate of {4e-3, 6e-3, 1e-2}).
#define BOOST_TEST_MODULE learning
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "runlog/runlog.h"

namespace fs = std::filesystem;

namespace {

const std::string kCorpus = std::string(SL_SOURCE_DIR) + "/data/corpus/english";

double unigram_entropy_nats(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string s = ss.str();
  double counts[256] = {};
  for (unsigned char c : s) counts[c] += 1;
  double h = 0;
  for (double c : counts)
    if (c > 0) h -= c / s.size() * std::log(c / s.size());
  return h;
}

double train_and_eval(const std::string& arch, const std::string& lr) {
  BOOST_REQUIRE_MESSAGE(fs::exists(kCorpus + "/train.txt"),
                        "corpus missing: run data/make_english_corpus.sh (scripts/setup.sh does)");
  const fs::path out = fs::temp_directory_path() / ("sl_learn_" + arch + std::to_string(getpid()));
  fs::remove_all(out);
  const std::string cmd = std::string(SL_EXE) + " train --quiet --out " + out.string() +
                          " --set model.arch=" + arch +
                          " --set model.d_model=64 --set model.n_layers=4 --set model.n_heads=2"
                          " --set train.seq_len=128 --set train.batch_size=16"
                          " --set train.tokens=800000 --set train.lr=" +
                          lr +
                          " --set train.warmup_tokens=20000 --set train.eval_every=1000"
                          " --set train.eval_tokens=65536 --set data.train=" +
                          kCorpus + "/train.txt --set data.val=" + kCorpus + "/val.txt";
  BOOST_REQUIRE_EQUAL(std::system(cmd.c_str()), 0);
  sl::RunLog log = sl::read_runlog((out / "log.h5").string());
  fs::remove_all(out);
  BOOST_REQUIRE(!log.eval_loss.empty());
  return log.eval_loss.back();
}

}  // namespace

BOOST_AUTO_TEST_CASE(hybrid_learns_1_nat_below_unigram_entropy) {
  const double h = unigram_entropy_nats(kCorpus + "/val.txt");
  const double loss = train_and_eval("hybrid", "4e-3");
  BOOST_TEST_MESSAGE("hybrid: unigram entropy " << h << ", held-out loss " << loss);
  BOOST_TEST(loss < h - 1.0);
}

BOOST_AUTO_TEST_CASE(dense_learns_1_nat_below_unigram_entropy) {
  const double h = unigram_entropy_nats(kCorpus + "/val.txt");
  const double loss = train_and_eval("dense", "6e-3");
  BOOST_TEST_MESSAGE("dense: unigram entropy " << h << ", held-out loss " << loss);
  BOOST_TEST(loss < h - 1.0);
}
