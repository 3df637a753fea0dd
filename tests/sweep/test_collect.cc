// `sweep collect` records what each run's data was: unique_tokens = min(D, tokens per epoch) and
// epochs = D / tokens per epoch, tokens per epoch = W seq_len for the W training windows of the
// run's data.train (data/tokens.h); NaN with one warning where the source is gone.
#define BOOST_TEST_MODULE sweep_collect
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/files.h"
#include "sweep/sweep.h"

namespace fs = std::filesystem;

namespace {

// sweep.csv as rows of column -> cell.
std::vector<std::map<std::string, std::string>> read_csv(const fs::path& p) {
  std::istringstream in(sl::test::slurp(p));
  std::string line;
  std::getline(in, line);
  std::vector<std::string> head;
  std::stringstream hs(line);
  for (std::string c; std::getline(hs, c, ',');) head.push_back(c);
  std::vector<std::map<std::string, std::string>> rows;
  while (std::getline(in, line)) {
    std::stringstream ls(line);
    std::map<std::string, std::string> row;
    size_t k = 0;
    for (std::string c; std::getline(ls, c, ',') && k < head.size(); ++k) row[head[k]] = c;
    rows.push_back(row);
  }
  return rows;
}

}  // namespace

BOOST_AUTO_TEST_CASE(collect_writes_unique_tokens_and_epochs) {
  sl::test::TempDir tmp("sl_sweep_collect_");
  const fs::path dir = tmp.path;
  const std::string text = sl::test::licenses({"GPL-3"});
  std::ofstream(dir / "train.txt") << text;
  std::ofstream(dir / "val.txt") << sl::test::licenses({"GPL-2"});
  // Budgets of 30 and 600 steps of 4 x 32 tokens: the first under one epoch of the ~35k-token
  // source, the second about two epochs.
  std::ofstream(dir / "s.toml") << "[sweep]\nname = \"t\"\narchs = [\"dense\"]\n"
                                << "budgets = [3840, 76800]\n[[sweep.shape]]\nd_model = 32\n"
                                << "n_layers = 2\nn_heads = 2\n[train]\nseq_len = 32\n"
                                << "batch_size = 4\nwarmup_tokens = 512\n"
                                << "[data]\ntrain = \"train.txt\"\nval = \"val.txt\"\n";
  sl::sweep::Sweep s = sl::sweep::load_sweep((dir / "s.toml").string());
  const std::string sd = (dir / "sw").string();
  sl::sweep::prepare_dir(s, sd);
  BOOST_REQUIRE_EQUAL(sl::sweep::collect(s.runs, sd), 2);
  // Byte-level text: one token per byte; W = floor((size - 1) / seq_len) windows.
  const double per_epoch = static_cast<double>((text.size() - 1) / 32 * 32);
  BOOST_TEST_MESSAGE("tokens per epoch " << per_epoch);
  BOOST_REQUIRE(per_epoch > 3840 && per_epoch < 76800);
  auto rows = read_csv(fs::path(sd) / "sweep.csv");
  BOOST_REQUIRE_EQUAL(rows.size(), 2u);
  for (auto& row : rows) {
    const double d = std::stod(row.at("tokens"));
    BOOST_TEST(std::stod(row.at("unique_tokens")) == std::min(d, per_epoch));
    BOOST_TEST(std::abs(std::stod(row.at("epochs")) - d / per_epoch) < 1e-12);
  }
  BOOST_TEST(std::stod(rows[1].at("epochs")) > 2);

  // The training data moved away: the columns say nan, the rest is collected.
  fs::remove(dir / "train.txt");
  BOOST_REQUIRE_EQUAL(sl::sweep::collect(s.runs, sd), 2);
  rows = read_csv(fs::path(sd) / "sweep.csv");
  for (auto& row : rows) {
    BOOST_TEST(row.at("unique_tokens") == "nan");
    BOOST_TEST(row.at("epochs") == "nan");
    BOOST_TEST(row.at("status") == "pending");
  }
}
