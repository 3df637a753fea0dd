// `scalinglab report SWEEP --out DIR`: fits, figures (gnuplot), params.tex and report.md of a
// collected sweep (lib/report/report.h lists the files).
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "report/report.h"

namespace sl::cli {

void register_report(CLI::App& app) {
  struct Args {
    std::string sweep, out;
    report::ReportOptions o;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "report", "Figures, LaTeX table and report.md of a collected sweep (sweep.h5/sweep.csv)");
  cmd->add_option("SWEEP", a->sweep, "Sweep directory (after `sweep collect`)")->required();
  cmd->add_option("--out", a->out, "Output directory (created)")->required();
  cmd->add_option("--baseline", a->o.baseline, "Baseline arch (default dense, else the first)");
  cmd->add_option("--candidate", a->o.candidate,
                  "Candidate arch (default hybrid, else the second)");
  cmd->add_option("--bootstrap", a->o.bootstrap, "Paired bootstrap replicates")
      ->capture_default_str();
  cmd->add_option("--seed", a->o.seed, "Bootstrap seed")->capture_default_str();
  cmd->add_option("--threads", a->o.threads, "Fit threads (default: all cores)");
  cmd->add_flag("--no-render", [a](int64_t) { a->o.render = false; },
                "Write the gnuplot scripts and data only");
  cmd->callback([a]() {
    report::ReportResult r = report::write_report(a->sweep, a->out, a->o);
    for (const std::string& w : r.warnings)
      std::fprintf(stderr, "scalinglab report: warning: %s\n", w.c_str());
    std::printf("report: %zu files -> %s/report.md\n", r.files.size(), a->out.c_str());
  });
}

}  // namespace sl::cli
