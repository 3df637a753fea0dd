// `scalinglab report` on a synthetic collected sweep (two known Chinchilla laws, no run logs):
// every file is written, report.md states exactly the numbers of savings.json and fit_<arch>.json,
// and bad input is one sl::Error naming the directory.
#define BOOST_TEST_MODULE report
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "common/files.h"
#include "core/error.h"
#include "core/process.h"
#include "report/report.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using sl::test::slurp;

std::string g4(const json& v) {
  if (v.is_null()) return "inf";  // only ci95's upper end is null (unbounded)
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4g", v.get<double>());
  return buf;
}

// A collected sweep: 3 sizes x D/N = 5, 10, 20, 40 per arch from L = E + A/N^a + B/D^b, with a
// deterministic +-0.3% wiggle so the bootstrap has something to resample.
std::string make_sweep() {
  const std::string dir =
      fs::temp_directory_path().string() + "/sl_report_test_" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream csv(dir + "/sweep.csv");
  csv << "run_id,arch,size,n_params_nonembedding,tokens,loss,status\n";
  struct Law {
    const char* arch;
    double E, A, alpha, B, beta;
  };
  const Law laws[] = {{"dense", 1.8, 400, 0.34, 900, 0.30}, {"hybrid", 1.8, 400, 0.34, 600, 0.30}};
  const double ns[] = {2e6, 6e6, 2e7};
  const char* sizes[] = {"L0", "L1", "L2"};
  int k = 0;
  for (const Law& l : laws)
    for (int s = 0; s < 3; ++s)
      for (double r : {5.0, 10.0, 20.0, 40.0}) {
        const double n = ns[s], d = r * n;
        const double loss = (l.E + l.A / std::pow(n, l.alpha) + l.B / std::pow(d, l.beta)) *
                            (1 + 0.003 * std::sin(1.7 * ++k));
        char line[256];
        std::snprintf(line, sizeof line, "%s_%s,%s,%s,%.0f,%.0f,%.12g,completed\n", l.arch,
                      sizes[s], l.arch, sizes[s], n, d, loss);
        csv << line;
      }
  // A run that has not finished: the fitter drops it (status filter).
  csv << "hybrid_L3,hybrid,L3,6e7,3e8,nan,running\n";
  return dir;
}

bool have_gnuplot() { return std::system("gnuplot --version > /dev/null 2>&1") == 0; }

}  // namespace

BOOST_AUTO_TEST_CASE(synthetic_sweep_report) {
  const std::string dir = make_sweep(), out = dir + "/report";
  sl::report::ReportOptions o;
  o.bootstrap = 30;
  o.threads = 2;
  o.render = have_gnuplot();
  if (!o.render) BOOST_TEST_MESSAGE("gnuplot not found: checking scripts and data only");
  const sl::report::ReportResult r = sl::report::write_report(dir, out, o);

  std::vector<std::string> expect = {"savings.json", "fit_dense.json", "fit_hybrid.json",
                                     "params.tex", "report.md"};
  for (const std::string& f : sl::report::figure_names()) {
    expect.push_back(f + ".gp");
    expect.push_back(f + ".dat");
    if (o.render) {
      expect.push_back(f + ".pdf");
      expect.push_back(f + ".png");
    }
  }
  for (const std::string& f : expect) {
    BOOST_TEST_CONTEXT(f) {
      BOOST_TEST(fs::exists(out + "/" + f));
      BOOST_TEST(fs::file_size(out + "/" + f) > 0u);
    }
  }
  for (const std::string& w : r.warnings) BOOST_TEST(w.find("gnuplot") == std::string::npos, w);

  const std::string md = slurp(out + "/report.md");
  const json sav = json::parse(slurp(out + "/savings.json"));
  BOOST_TEST(sav["baseline"] == "dense");
  BOOST_TEST(sav["candidate"] == "hybrid");
  BOOST_TEST(md.find("L* = " + g4(sav["target_loss"]) + " nats/token") != std::string::npos);
  // Every S(N) row: N, S, its CI and replicate count as in savings.json, and how far it is
  // extrapolated; the trained sizes and 10x the largest, nothing farther.
  int rows = 0;
  for (const json& p : sav["points"]) {
    const double x = p["extrapolation"].get<double>();
    char ext[32];
    std::snprintf(ext, sizeof ext, "%.3gx", x);
    const std::string row = "| " + g4(p["n"]) + " | " + g4(p["savings"]) + " | [" +
                            g4(p["ci95"][0]) + ", " + g4(p["ci95"][1]) + "] (" +
                            std::to_string(p["ci95_replicates"].get<int>()) + " of 30) | " +
                            p["status"].get<std::string>() + " | " +
                            (x > 1 ? std::string(ext) : std::string("trained range")) + " |";
    BOOST_TEST(md.find(row) != std::string::npos, "report.md lacks: " + row);
    ++rows;
  }
  BOOST_TEST(rows == 4);  // 2e6, 6e6, 2e7, 2e8
  BOOST_TEST(sav["points"][3]["extrapolation"].get<double>() == 10.0);
  // The sensitivity table: one row per model, S at the same N as the headline, each with its CI
  // and the replicates it rests on.
  BOOST_TEST(md.find("## Sensitivity of S(N) to the model") != std::string::npos);
  BOOST_TEST_REQUIRE(sav["sensitivity"].size() == 5u);
  for (const json& row : sav["sensitivity"]) {
    std::string line = "| " + row["model"].get<std::string>() + " | " +
                       std::to_string(row["n_params"].get<int>()) + " | " + g4(row["E"]["dense"]) +
                       " / " + g4(row["E"]["hybrid"]);
    BOOST_TEST(md.find(line) != std::string::npos, "report.md lacks: " + line);
    for (const json& p : row["points"]) {
      if (p["status"] != "ok") continue;
      const std::string cell = " " + g4(p["savings"]) + " [" + g4(p["ci95"][0]) + ", " +
                               g4(p["ci95"][1]) + "] (" +
                               std::to_string(p["ci95_replicates"].get<int>()) + ") |";
      BOOST_TEST(md.find(cell) != std::string::npos, "report.md lacks: " + cell);
    }
  }
  // Growth over the trained range: savings.json's G, CI and verdict in one sentence; the known
  // laws (equal A and alpha) give S flat in N.
  const json& gr = sav["growth"];
  BOOST_TEST(gr["n_lo"] == sav["points"][0]["n"]);
  BOOST_TEST(gr["n_hi"] == sav["points"][2]["n"]);
  const std::string growth = "S(" + g4(gr["n_hi"]) + ") / S(" + g4(gr["n_lo"]) +
                             ") = " + g4(gr["value"]) + ", 95% CI [" + g4(gr["ci95"][0]) + ", " +
                             g4(gr["ci95"][1]) + "] (" +
                             std::to_string(gr["ci95_replicates"].get<int>()) + " of 30 " +
                             "replicates): **" + gr["verdict"].get<std::string>() + "**";
  BOOST_TEST(md.find(growth) != std::string::npos, "report.md lacks: " + growth);
  // The per-size check: one row per size with both architectures' tokens at L* and their ratio.
  BOOST_TEST(md.find("## Per-size check") != std::string::npos);
  BOOST_TEST(sav["per_size"]["savings"].size() == 3u);
  for (const json& ps : sav["per_size"]["savings"]) {
    const std::string row = "| " + ps["size"].get<std::string>() + " | " + g4(ps["n_baseline"]) +
                            " / " + g4(ps["n_candidate"]) + " | " + g4(ps["tokens_baseline"]) +
                            " | " + g4(ps["tokens_candidate"]) + " | " + g4(ps["savings"]) + " |";
    BOOST_TEST(md.find(row) != std::string::npos, "report.md lacks: " + row);
  }
  // The known laws: B_dense / B_hybrid = 1.5 with equal beta gives S = 1.5^(1/0.3) = 3.86.
  BOOST_TEST(sav["points"][0]["savings"].get<double>() > 2.5);
  BOOST_TEST(sav["points"][0]["savings"].get<double>() < 6.0);
  for (const char* a : {"dense", "hybrid"}) {
    const json f = json::parse(slurp(out + "/fit_" + std::string(a) + ".json"));
    BOOST_TEST(f["n_points"] == 12);
    const std::string exps = std::string(a) + " alpha = " + g4(f["params"]["alpha"]) +
                             ", beta = " + g4(f["params"]["beta"]);
    BOOST_TEST(md.find(exps) != std::string::npos, "report.md lacks: " + exps);
    std::string table_row = "| " + std::string(a) + " | 12";
    for (const char* k : {"E", "A", "alpha", "B", "beta"})
      table_row += " | " + g4(f["params"][k]) + " [" + g4(f["bootstrap"]["ci95"][k][0]) + ", " +
                   g4(f["bootstrap"]["ci95"][k][1]) + "]";
    BOOST_TEST(md.find(table_row) != std::string::npos, "report.md lacks: " + table_row);
    // The same fit as savings.json's.
    BOOST_TEST(f["params"] == sav["fits"][a]["params"]);
  }
  BOOST_TEST(slurp(out + "/params.tex").find("\\begin{tabular}") != std::string::npos);
  // No run logs here: figure (a) draws only the budget points and says so.
  BOOST_TEST(slurp(out + "/loss_vs_tokens.dat").find("budgets reached") != std::string::npos);
  fs::remove_all(dir);
}

// Wall times differ between two runs of the same fit, and the data file's path between a report
// and a fit run elsewhere; the reproduce field is the report's own. Everything else must match.
json strip_run_details(const json& x) {
  if (x.is_object()) {
    json r = json::object();
    for (const auto& [k, v] : x.items())
      if (k != "seconds" && k != "data" && k != "reproduce") r[k] = strip_run_details(v);
    return r;
  }
  if (x.is_array()) {
    json r = json::array();
    for (const json& v : x) r.push_back(strip_run_details(v));
    return r;
  }
  return x;
}

// savings.json names the `scalinglab fit savings` arguments that compute it from the collected
// table alone: run in a directory holding only sweep.csv, with another thread count, they write
// the same numbers (a committed result is checked this way: scripts/ladder_study.sh).
BOOST_AUTO_TEST_CASE(savings_json_reproduces_from_its_fit_command) {
  const std::string dir = make_sweep(), out = dir + "/report", again = dir + "/again";
  sl::report::ReportOptions o;
  o.bootstrap = 20;
  o.threads = 2;
  o.render = false;
  o.bounds["E"] = {0.0, std::nan("")};  // E=0:min: a bound goes into the arguments too
  sl::report::write_report(dir, out, o);
  const json sav = json::parse(slurp(out + "/savings.json"));
  BOOST_TEST_REQUIRE(sav["reproduce"]["args"].is_array());
  const std::string line = sav["reproduce"]["command"].get<std::string>();
  BOOST_TEST(line.find("scalinglab fit savings --data sweep.csv") == 0u, line);
  BOOST_TEST(line.find("--bound E=0:min") != std::string::npos, line);
  fs::create_directories(again);
  fs::copy_file(dir + "/sweep.csv", again + "/sweep.csv");
  std::string cmd = "cd " + sl::shell_quote(again) + " && " + sl::shell_quote(SL_EXE);
  for (const json& a : sav["reproduce"]["args"]) cmd += " " + sl::shell_quote(a.get<std::string>());
  cmd += " --threads 1 --quiet > fit.log 2>&1";
  BOOST_TEST_REQUIRE(std::system(cmd.c_str()) == 0, slurp(again + "/fit.log"));
  const json redo = json::parse(slurp(again + "/savings.json"));
  BOOST_TEST((strip_run_details(sav) == strip_run_details(redo)),
             "fit savings from sweep.csv differs from the report's savings.json");
  fs::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(bad_input_is_one_error) {
  const std::string dir =
      fs::temp_directory_path().string() + "/sl_report_empty_" + std::to_string(::getpid());
  fs::create_directories(dir);
  sl::report::ReportOptions o;
  o.render = false;
  try {
    sl::report::write_report(dir, dir + "/out", o);
    BOOST_FAIL("no error for a directory without sweep.csv");
  } catch (const sl::Error& e) {
    BOOST_TEST(std::string(e.what()).find(dir) != std::string::npos);
    BOOST_TEST(std::string(e.what()).find('\n') == std::string::npos);
  }
  BOOST_TEST(!fs::exists(dir + "/out"));
  // One architecture only.
  std::ofstream(dir + "/sweep.csv") << "arch,n_params_nonembedding,tokens,loss\ndense,1e6,1e7,3\n";
  BOOST_CHECK_THROW(sl::report::write_report(dir, dir + "/out", o), sl::Error);
  fs::remove_all(dir);
}

// Where gnuplot is not installed the report says so once (not once per figure) and still writes
// everything else: report.md, the JSON, params.tex and each figure's .gp script and .dat data.
BOOST_AUTO_TEST_CASE(without_gnuplot_figures_are_skipped_in_one_warning) {
  const std::string dir = make_sweep(), out = dir + "/report";
  sl::report::ReportOptions o;
  o.bootstrap = 20;
  o.threads = 2;
  o.gnuplot = "scalinglab-test-no-such-gnuplot";
  const sl::report::ReportResult r = sl::report::write_report(dir, out, o);
  int lines = 0;
  for (const std::string& w : r.warnings) {
    if (w.find("gnuplot") == std::string::npos) continue;
    ++lines;
    BOOST_TEST(w.find("gnuplot is not installed") != std::string::npos, w);
    BOOST_TEST(w.find("scalinglab report " + dir + " --out DIR") != std::string::npos, w);
    BOOST_TEST(w.find('\n') == std::string::npos, w);
  }
  BOOST_TEST(lines == 1);
  for (const char* f : {"report.md", "savings.json", "fit_dense.json", "params.tex"})
    BOOST_TEST(fs::exists(out + "/" + f), f);
  for (const std::string& f : sl::report::figure_names()) {
    BOOST_TEST(fs::exists(out + "/" + f + ".gp"), f);
    BOOST_TEST(fs::exists(out + "/" + f + ".dat"), f);
    BOOST_TEST(!fs::exists(out + "/" + f + ".png"), f);
    BOOST_TEST(!fs::exists(out + "/" + f + ".log"), f);
  }
  fs::remove_all(dir);
}
