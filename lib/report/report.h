// `scalinglab report`: figures, a LaTeX parameter table and a Markdown summary of a collected sweep
// (SWEEP/sweep.h5 or sweep.csv) and its fits (lib/fit).
//
// OUT/ after write_report():
//   fit_<arch>.json         Chinchilla fit per architecture (fit.json shape, with bootstrap)
//   savings.json            candidate over baseline (savings.json shape, analysis/README.md)
//   params.tex              LaTeX table of the fitted parameters with 95% CIs
//   report.md               headline numbers (S(N) with CIs, exponents), identifiability flags,
//                           the sensitivity of S to the model, and the data behind them
//   <figure>.{gp,dat,pdf,png} for loss_vs_tokens, loss_vs_n, savings, isoflop, residuals: the
//                           gnuplot script and its data are kept beside the rendered files so an
//                           author can restyle (each .gp names the command that renders it)
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sl::report {

struct ReportOptions {
  // Architectures compared (values of the `arch` column). Empty: "dense" and "hybrid" if both are
  // present, else the first and second architecture in table order.
  std::string baseline, candidate;
  int bootstrap = 200;  // paired bootstrap replicates for the CIs (>= 10)
  uint64_t seed = 0;
  int threads = 0;                  // fit threads; 0: all cores
  bool render = true;               // run gnuplot (false: scripts and data only)
  double huber_delta = 1e-3;        // Huber threshold of every fit (on log residuals)
  double sensitivity_alpha = 0.34;  // alpha of the fixed-alpha row of the sensitivity table
  // Bounds of the Chinchilla fits, by natural name ("E", "A", "alpha", "B", "beta"): lo, hi
  // (hi NaN: the lowest loss of each architecture's data, OLMo-core's E <= min L).
  std::map<std::string, std::pair<double, double>> bounds;
  std::string gnuplot =
      "gnuplot";  // the program that renders (searched in PATH, run without a shell)
};

struct ReportResult {
  std::vector<std::string> files;     // every file written, relative to OUT
  std::vector<std::string> warnings;  // fit warnings, figures not rendered, runs without logs
};

// The figures in OUT (without extension).
const std::vector<std::string>& figure_names();

// Reads SWEEP/sweep.h5 (or sweep.csv where there is no .h5), fits and writes OUT/ (created).
// Throws sl::Error naming the file on bad input (no collected table, fewer than 2 architectures,
// an unknown --baseline/--candidate, too few points to fit).
ReportResult write_report(const std::string& sweep_dir, const std::string& out_dir,
                          const ReportOptions& options);

}  // namespace sl::report
