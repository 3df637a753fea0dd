// `scalinglab fit chinchilla|savings` end to end through the executable: JSON shapes, exit codes,
// one-line errors and warnings on stderr. Skips (with a message) when the executable has no `fit`
// command, e.g. before it is built: the fit tests do not depend on the scalinglab target.
#define BOOST_TEST_MODULE fit_cli
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "core/rng.h"
#include "synthetic_data.h"

namespace fs = std::filesystem;
namespace syn = sl::fit::testing;

namespace {

const std::string kChinchilla =
    std::string(SL_SOURCE_DIR) + "/../shared/data/chinchilla_epoch/svg_extracted_data.csv";

fs::path tmp_dir() {
  fs::path d = fs::temp_directory_path() / ("sl_fit_cli_" + std::to_string(getpid()));
  fs::create_directories(d);
  return d;
}

struct Run {
  int code = -1;
  std::string out;  // stdout and stderr
};

Run run(const std::string& args) {
  fs::path log = tmp_dir() / "out.txt";
  std::string cmd = std::string(SL_EXE) + " " + args + " > " + log.string() + " 2>&1";
  int st = std::system(cmd.c_str());
  Run r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream f(log);
  std::stringstream ss;
  ss << f.rdbuf();
  r.out = ss.str();
  return r;
}

bool have_fit() {
  if (!fs::exists(SL_EXE)) return false;
  return run("fit --help").code == 0;
}

nlohmann::json load(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

// A sweep-like CSV with both architectures (synthetic laws, 1% noise).
fs::path write_sweep() {
  fs::path p = tmp_dir() / "sweep.csv";
  std::ofstream f(p);
  f << "run_id,arch,n_params_nonembedding,tokens,loss,status\n";
  int id = 0;
  for (int a = 0; a < 2; ++a) {
    sl::fit::Points pts =
        syn::ladder(a == 0 ? syn::baseline_law() : syn::candidate_law(), 0.01, 5, a);
    for (size_t i = 0; i < pts.size(); ++i)
      f << "r" << id++ << "," << (a == 0 ? "dense" : "hybrid") << "," << pts.n[i] << "," << pts.d[i]
        << "," << pts.loss[i] << ",completed\n";
  }
  return p;
}

#define SKIP_WITHOUT_FIT()                                                       \
  if (!have_fit()) {                                                             \
    BOOST_TEST_MESSAGE("skipped: " SL_EXE " has no `fit` command (not built?)"); \
    return;                                                                      \
  }

}  // namespace

BOOST_AUTO_TEST_CASE(chinchilla_fit_json) {
  SKIP_WITHOUT_FIT();
  fs::path out = tmp_dir() / "fit.json";
  Run r = run("fit chinchilla --data " + kChinchilla +
              " --n-col 'Model Size' --flops-col 'Training FLOP' --loss-col loss"
              " --drop-highest 5 --bootstrap 200 --seed 1 --out " +
              out.string());
  BOOST_TEST_MESSAGE(r.out);
  BOOST_REQUIRE_EQUAL(r.code, 0);
  nlohmann::json j = load(out);
  BOOST_TEST(j["form"] == "chinchilla");
  BOOST_TEST(j["n_points"] == 240);
  BOOST_TEST(std::abs(j["params"]["E"].get<double>() / 1.8172 - 1) < 5e-3);
  BOOST_TEST(std::abs(j["params"]["alpha"].get<double>() / 0.3473 - 1) < 5e-3);
  BOOST_TEST(j["starts"] == 4500);
  BOOST_TEST(j["starts_at_best"].get<int>() > 0);
  BOOST_TEST(j["converged"] == true);
  BOOST_TEST(j["bound_hit"].empty());
  BOOST_TEST(j["bootstrap"]["n"] == 200);
  BOOST_TEST(j["bootstrap"]["ci95"]["beta"].size() == 2u);
  BOOST_TEST(j["bootstrap"]["se"]["B"].is_number());
}

BOOST_AUTO_TEST_CASE(savings_json) {
  SKIP_WITHOUT_FIT();
  fs::path data = write_sweep(), out = tmp_dir() / "savings.json";
  Run r = run("fit savings --data " + data.string() +
              " --group-col arch --baseline dense --candidate hybrid --target-loss 3.0"
              " --at-n 1e8,1e9,7e9 --bootstrap 100 --seed 2 --out " +
              out.string());
  BOOST_TEST_MESSAGE(r.out);
  BOOST_REQUIRE_EQUAL(r.code, 0);
  nlohmann::json j = load(out);
  BOOST_TEST(j["baseline"] == "dense");
  BOOST_TEST(j["candidate"] == "hybrid");
  BOOST_TEST(j["target_loss"] == 3.0);
  BOOST_REQUIRE(j["points"].size() == 3u);
  BOOST_TEST(j["points"][0]["n"] == 1e8);
  BOOST_TEST(j["points"][0]["status"] == "ok");
  BOOST_TEST(j["points"][0]["ci95"].size() == 2u);
  BOOST_TEST(j["compute_multiplier"]["value"].is_number());
  BOOST_TEST(j["fits"]["dense"]["n_points"] == 30);
  BOOST_TEST(j["per_size"]["dense"].size() == syn::kSizes.size());

  // The default sizes: the trained ones and 10x the largest; stdout gives each CI's replicates;
  // an N 70x outside warns with its factor.
  r = run("fit savings --data " + data.string() +
          " --group-col arch --target-loss 3.0 --bootstrap 50 --out " + out.string());
  BOOST_REQUIRE_EQUAL(r.code, 0);
  j = load(out);
  BOOST_TEST(j["points"].size() == syn::kSizes.size() + 1);
  BOOST_TEST(j["points"].back()["extrapolation"] == 10.0);
  BOOST_TEST(r.out.find("of 50 replicates)") != std::string::npos, r.out);
  r = run("fit savings --data " + data.string() +
          " --group-col arch --target-loss 3.0 --at-n 7e10 --bootstrap 0 --out " + out.string());
  BOOST_TEST(r.out.find("warning: S(N = 7e+10) is extrapolated 70x") != std::string::npos, r.out);

  // A target below the loss floors: the points say so, and stderr warns.
  r = run("fit savings --data " + data.string() +
          " --group-col arch --target-loss 2.0 --at-n 1e8 --bootstrap 0 --out " + out.string());
  BOOST_REQUIRE_EQUAL(r.code, 0);
  BOOST_TEST(r.out.find("warning: S(N = 1e+08): L* = 2 is unreachable") != std::string::npos,
             r.out);
  j = load(out);
  BOOST_TEST(j["points"][0]["savings"].is_null());
  BOOST_TEST(j["points"][0]["status"] == "unreachable_both");
}

BOOST_AUTO_TEST_CASE(data_constrained_fit_json) {
  // `fit data_constrained` on a sweep-like table with a unique_tokens column: 4 sizes x 3 budgets
  // x 1, 4 or 16 epochs of a law with R*_D = 15.4 (0.1% noise).
  SKIP_WITHOUT_FIT();
  const fs::path data = tmp_dir() / "repeated.csv", out = tmp_dir() / "dc.json";
  {
    std::ofstream f(data);
    f << "arch,n_params_nonembedding,tokens,unique_tokens,loss,status\n";
    sl::Rng rng(9, 0);
    for (double n : {2e7, 5e7, 1e8, 3e8})
      for (double ratio : {10.0, 20.0, 40.0})
        for (double epochs : {1.0, 4.0, 16.0}) {
          const double d = ratio * n, u = d / epochs, r_star = 15.4;
          const double eff = u + u * r_star * (1 - std::exp(-(epochs - 1) / r_star));
          const double loss = (1.87 + 521 / std::pow(n, 0.35) + 1488 / std::pow(eff, 0.353)) *
                              std::exp(0.001 * rng.normal());
          char line[160];
          std::snprintf(line, sizeof line, "dense,%.0f,%.0f,%.0f,%.9f,completed\n", n, d, u, loss);
          f << line;
        }
  }
  Run r =
      run("fit data_constrained --data " + data.string() + " --threads 2 --out " + out.string());
  BOOST_TEST_MESSAGE(r.out);
  BOOST_REQUIRE_EQUAL(r.code, 0);
  BOOST_TEST(r.out.find("data_constrained fit of 36 points: E ") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("  R_D_star ") != std::string::npos, r.out);
  nlohmann::json j = load(out);
  BOOST_TEST(j["form"] == "data_constrained");
  BOOST_TEST(j["data"]["unique_col"] == "unique_tokens");
  BOOST_TEST(j["converged"] == true);
  BOOST_TEST(j["flags"].empty());
  BOOST_TEST(std::abs(j["params"]["R_D_star"].get<double>() / 15.4 - 1) < 0.05);
  BOOST_TEST(j["repetition"]["max_effective_epochs"].get<double>() ==
             1 + j["params"]["R_D_star"].get<double>());
  // --bound takes the new parameter by name; a missing U column is one line naming it.
  r = run("fit data_constrained --data " + data.string() +
          " --bound R_D_star=1:5 --threads 2 --out " + out.string());
  BOOST_REQUIRE_EQUAL(r.code, 0);
  BOOST_TEST(
      r.out.find("warning: parameter R_D_star sits on its upper bound 5") != std::string::npos,
      r.out);
  r = run("fit data_constrained --data " + data.string() + " --unique-col epochs --out " +
          out.string());
  BOOST_TEST(r.code != 0);
  BOOST_TEST(r.out.find("no column 'epochs'") != std::string::npos, r.out);
  BOOST_TEST(r.out.find('\n') == r.out.size() - 1, r.out);
}

BOOST_AUTO_TEST_CASE(bad_input_exits_nonzero_with_one_line) {
  SKIP_WITHOUT_FIT();
  fs::path data = write_sweep(), out = tmp_dir() / "bad.json";
  auto one_line_error = [&](const std::string& args, const std::string& part) {
    Run r = run(args + " --out " + out.string());
    BOOST_TEST(r.code != 0, args);
    BOOST_TEST(r.out.find(part) != std::string::npos, r.out);
    BOOST_TEST(r.out.find('\n') == r.out.size() - 1, r.out);
  };
  one_line_error("fit chinchilla --data " + data.string() + " --loss-col val_loss",
                 "no column 'val_loss'");
  one_line_error("fit chinchilla --data " + data.string() + " --group-col arch --group moe",
                 "no rows with arch = 'moe'");
  // A NaN on line 4 of the file.
  fs::path nan = tmp_dir() / "nan.csv";
  {
    std::ifstream in(data);
    std::ofstream o(nan);
    std::string line;
    for (int i = 1; std::getline(in, line); ++i) {
      if (i == 4) line = line.substr(0, line.rfind(',', line.rfind(',') - 1)) + ",nan,completed";
      o << line << "\n";
    }
  }
  one_line_error("fit chinchilla --data " + nan.string(), "nan.csv: line 4: column 'loss'");
  one_line_error("fit chinchilla --data " + (tmp_dir() / "missing.csv").string(), "cannot open");
  one_line_error("fit chinchilla --data " + data.string() + " --group-col arch --group dense" +
                     " --fix alpha=abc",
                 "--fix alpha=abc: 'abc' is not a finite number");
  one_line_error("fit chinchilla --data " + data.string() + " --group-col arch --group dense" +
                     " --fix alpha=0.3 --bound alpha=0:1",
                 "parameter alpha is both fixed and bounded");
  one_line_error("fit savings --data " + data.string() + " --group-col arch --bootstrap 0" +
                     " --max-extrapolation 0.5",
                 "--max-extrapolation: the factor must be >= 1, got 0.5");

  // Not converged: the fit still writes its JSON, says so there and on stderr.
  Run r = run("fit chinchilla --data " + data.string() +
              " --group-col arch --group dense --max-iterations 2 --out " + out.string());
  BOOST_TEST(r.code == 0);
  BOOST_TEST(r.out.find("warning: fit did not converge") != std::string::npos, r.out);
  BOOST_TEST(load(out)["converged"] == false);
  // A bound that binds.
  r = run("fit chinchilla --data " + data.string() +
          " --group-col arch --group dense --bound alpha=0:0.3 --out " + out.string());
  BOOST_TEST(r.code == 0);
  BOOST_TEST(
      r.out.find("warning: parameter alpha sits on its upper bound 0.3") != std::string::npos,
      r.out);
  BOOST_TEST(load(out)["bound_hit"][0] == "alpha");
  fs::remove_all(tmp_dir());
}

namespace {

// a and b equal with numbers to a relative 1e-6 (the same fit on another CPU may round its last
// digits differently); keys `skip` lists (wall times, the data file's path) are not compared.
bool same_json(const nlohmann::json& a, const nlohmann::json& b, const std::string& at,
               std::string& where) {
  static const std::set<std::string> skip = {"seconds", "data", "reproduce"};
  if (a.is_number() && b.is_number()) {
    const double x = a.get<double>(), y = b.get<double>();
    if (x == y || std::abs(x - y) <= 1e-6 * std::max(std::abs(x), std::abs(y))) return true;
  } else if (a.is_object() && b.is_object()) {
    for (const auto& [k, v] : a.items()) {
      if (skip.count(k)) continue;
      if (!b.contains(k)) return where = at + "." + k + " not reproduced", false;
      if (!same_json(v, b[k], at + "." + k, where)) return false;
    }
    for (const auto& [k, v] : b.items())
      if (!skip.count(k) && !a.contains(k)) return where = at + "." + k + " not committed", false;
    return true;
  } else if (a.is_array() && b.is_array() && a.size() == b.size()) {
    for (size_t i = 0; i < a.size(); ++i)
      if (!same_json(a[i], b[i], at + "[" + std::to_string(i) + "]", where)) return false;
    return true;
  } else if (a == b) {
    return true;
  }
  if (where.empty()) where = at + ": " + a.dump() + " vs " + b.dump();
  return false;
}

}  // namespace

// The committed study results (docs/results/*/savings.json): `fit savings` with the arguments the
// file records (its "reproduce" field), run in a directory holding only the committed sweep.csv,
// gives the committed savings.json again.
BOOST_AUTO_TEST_CASE(committed_results_reproduce_from_their_sweep_csv) {
  SKIP_WITHOUT_FIT();
  const fs::path results = fs::path(SL_SOURCE_DIR) / "docs" / "results";
  int checked = 0;
  for (const auto& e : fs::directory_iterator(results)) {
    const fs::path committed = e.path() / "savings.json";
    if (!fs::exists(committed)) continue;
    BOOST_TEST_CONTEXT(committed.string()) {
      const nlohmann::json want = load(committed);
      const fs::path dir = tmp_dir() / ("repro_" + e.path().filename().string());
      fs::remove_all(dir);
      fs::create_directories(dir);
      fs::copy_file(e.path() / "sweep.csv", dir / "sweep.csv");
      std::string args;
      for (const auto& a : want.at("reproduce").at("args"))
        args += " '" + a.get<std::string>() + "'";
      const std::string cmd =
          "cd '" + dir.string() + "' && " + SL_EXE + args + " --quiet > fit.log 2>&1";
      const int st = std::system(cmd.c_str());
      BOOST_REQUIRE_MESSAGE(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fit savings failed: " + cmd);
      std::string where;
      BOOST_TEST(same_json(want, load(dir / "savings.json"), "savings.json", where), where);
      ++checked;
    }
  }
  BOOST_TEST_MESSAGE(checked << " committed savings.json reproduced");
}
