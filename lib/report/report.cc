#include "report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/process.h"
#include "fit/chinchilla.h"
#include "fit/law.h"
#include "fit/points.h"
#include "fit/report.h"
#include "fit/savings.h"
#include "fit/table.h"
#include "runlog/runlog.h"

namespace sl::report {
namespace {

using json = nlohmann::ordered_json;
constexpr double kInf = std::numeric_limits<double>::infinity();

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}
// The one number format of report.md: the test compares it with the JSON values.
std::string g4(double v) { return std::isfinite(v) ? fmt("%.4g", v) : (v > 0 ? "inf" : "n/a"); }

// Log-spaced grid of n points from lo to hi.
std::vector<double> log_grid(double lo, double hi, int n) {
  std::vector<double> g;
  for (int i = 0; i < n; ++i)
    g.push_back(std::exp(std::log(lo) + (std::log(hi) - std::log(lo)) * i / (n - 1)));
  return g;
}

// A LaTeX number: plain for moderate magnitudes, m \times 10^{e} otherwise.
std::string tex(double v) {
  if (!std::isfinite(v)) return v > 0 ? "\\infty" : "\\text{--}";
  double a = std::fabs(v);
  if (a == 0 || (a >= 1e-2 && a < 1e4)) return fmt("%.3g", v);
  int e = static_cast<int>(std::floor(std::log10(a)));
  return fmt("%.3g", v / std::pow(10.0, e)) + " \\times 10^{" + std::to_string(e) + "}";
}

// gnuplot strings are single-quoted; a quote inside is doubled.
std::string q(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("''") : std::string(1, c);
  return r + "'";
}

// A short label for a tic: 30k, 1.5M, 2.5 (numbers below 1000 as they are).
std::string tic_label(double v) {
  if (v >= 1e9) return fmt("%gG", v / 1e9);
  if (v >= 1e6) return fmt("%gM", v / 1e6);
  if (v >= 1e3) return fmt("%gk", v / 1e3);
  return fmt("%g", v);
}

// Labelled tics for a log axis over [lo, hi]: gnuplot labels only powers of ten, which leaves an
// axis spanning less than a decade (losses, the sizes of a small sweep) without numbers.
std::string log_tics(const char* axis, double lo, double hi) {
  std::vector<double> best;
  for (const std::vector<double>& mant :
       {std::vector<double>{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8}, std::vector<double>{1, 2, 3, 5},
        std::vector<double>{1, 3}, std::vector<double>{1}}) {
    std::vector<double> t;
    for (int e = static_cast<int>(std::floor(std::log10(lo))); e <= std::log10(hi) + 1; ++e)
      for (double m : mant) {
        const double v = m * std::pow(10.0, e);
        if (v >= lo && v <= hi) t.push_back(v);
      }
    best = t;
    if (t.size() <= 8) break;
  }
  std::string r = std::string("set ") + axis + "tics (";
  for (size_t i = 0; i < best.size(); ++i)
    r += (i ? ", " : "") + q(tic_label(best[i])) + " " + fmt("%.6g", best[i]);
  return r + ")\n";
}

// One gnuplot figure: data blocks (addressed by `index i`) and the plot script.
struct Figure {
  std::string name;
  std::ostringstream dat;
  int blocks = 0;
  // Starts a data block with a comment line; returns its index.
  int block(const std::string& comment) {
    if (blocks > 0) dat << "\n\n";
    dat << "# " << comment << "\n";
    return blocks++;
  }
};

const char* kPdfTerm = "set terminal pdfcairo size 5in,3.4in font 'Sans,10'";
const char* kPngTerm = "set terminal pngcairo size 1100,750 font 'Sans,13'";

// Writes NAME.dat and NAME.gp; renders NAME.pdf and NAME.png with gnuplot when asked.
void emit(const Figure& f, const std::string& script, const std::string& out,
          const ReportOptions& o, ReportResult& res) {
  atomic_write_file(out + "/" + f.name + ".dat", f.dat.str());
  std::ostringstream gp;
  gp << "# " << f.name << ".gp: plots " << f.name << ".dat. Rendered by scalinglab report with\n"
     << "#   gnuplot -e \"" << kPdfTerm << "; set output '" << f.name << ".pdf'\" " << f.name
     << ".gp\n#   gnuplot -e \"" << kPngTerm << "; set output '" << f.name << ".png'\" " << f.name
     << ".gp\n# (run in this directory); restyle here and rerun.\n"
     << "set encoding utf8\nset grid xtics ytics mxtics mytics lc rgb '#dddddd'\n"
     << "set key outside right top spacing 1.1 box lc rgb '#bbbbbb'\n"
     << "set format x '10^{%L}'\n"
     << script;
  atomic_write_file(out + "/" + f.name + ".gp", gp.str());
  res.files.push_back(f.name + ".dat");
  res.files.push_back(f.name + ".gp");
  if (!o.render) return;
  for (const auto& [term, ext] : {std::pair{kPdfTerm, "pdf"}, std::pair{kPngTerm, "png"}}) {
    const std::string file = f.name + "." + ext;
    // In OUT, so the script's relative data file name resolves; its output kept in NAME.log.
    SpawnOptions so;
    so.cwd = out;
    so.out = Redirect::truncate(out + "/" + f.name + ".log");
    so.err = Redirect::to_stdout();
    const int rc = run_process(
        {o.gnuplot, "-e", std::string(term) + "; set output '" + file + "'", f.name + ".gp"}, so);
    if (rc != 0 || !path_exists(out + "/" + file)) {
      res.warnings.push_back("gnuplot could not render " + file + " (see " + out + "/" + f.name +
                             ".log)");
      continue;
    }
    res.files.push_back(file);
  }
  std::remove((out + "/" + f.name + ".log").c_str());
}

// One observed point of the table with its architecture.
struct Row {
  std::string arch, size, run_id;
  double n = 0, d = 0, loss = 0;
};

std::string budget_label(double v, bool ratio) {
  return ratio ? "D/N = " + fmt("%.3g", v) : "D = " + fmt("%.3g", v);
}

}  // namespace

namespace {

std::string join(const std::vector<std::string>& v, const std::string& sep,
                 const std::string& empty) {
  if (v.empty()) return empty;
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

}  // namespace

namespace {

// One report: the collected table and everything drawn from it, made by the constructor (the
// architectures compared, the points the fitter sees, the savings analysis), then one function
// per file or figure, each adding what it wrote (and any warning) to the result. write_report
// calls them in the order report.md lists them; the Chinchilla fits come first because every
// figure and table after them draws the fitted laws.
class Report {
 public:
  // Reads SWEEP/sweep.h5 (or .csv), checks it and the options, and runs the savings analysis;
  // nothing is written yet, so bad input leaves OUT as it was.
  Report(const std::string& sweep_dir, const std::string& out_dir, const ReportOptions& o,
         ReportResult& res);

  void savings_json(ReportResult& res) const;
  std::vector<std::string> fit_savings_args() const;
  void fit_laws(ReportResult& res);  // fit_<arch>.json, and law/fits/boots for every arch
  void loss_vs_tokens(ReportResult& res) const;
  void loss_vs_n(ReportResult& res) const;
  void savings_figure(ReportResult& res) const;
  void isoflop(ReportResult& res) const;
  void residuals(ReportResult& res) const;
  void params_tex(ReportResult& res) const;
  void report_md(ReportResult& res) const;

 private:
  std::string sweep_dir, out, table_path;
  ReportOptions o;
  fit::Table table;
  std::vector<std::string> archs;  // in table order
  std::string base, cand;          // baseline and candidate architecture
  fit::DataSpec spec;
  std::map<std::string, std::vector<Row>> rows;  // per architecture, as the fitter sees them
  double n_lo = 0, n_hi = 0;                     // trained N
  double c_lo = kInf, c_hi = 0;                  // trained 6ND
  double l_lo = kInf, l_hi = 0;                  // observed losses
  // Axis ranges from the data: fitted curves far outside it would otherwise squash the points.
  std::string n_range;
  std::string loss_range(double lo, double hi) const {
    return "set yrange [" + fmt("%.6g", lo) + ":" + fmt("%.6g", hi) + "]\n" + log_tics("y", lo, hi);
  }
  fit::SavingsOptions so;
  fit::SavingsResult sav;
  // Chinchilla fit per architecture: the savings fits for the two compared, own fits for others.
  std::map<std::string, fit::Chinchilla> law;
  std::map<std::string, fit::FitResult> fits;
  std::map<std::string, fit::BootstrapResult> boots;
};

// SWEEP/sweep.h5, else SWEEP/sweep.csv; the options are checked before the table is read.
std::string collected_table(const std::string& sweep_dir, const ReportOptions& o) {
  std::string table_path = sweep_dir + "/sweep.h5";
  if (!path_exists(table_path)) table_path = sweep_dir + "/sweep.csv";
  if (!path_exists(table_path))
    fail(sweep_dir + ": no sweep.h5 or sweep.csv (run `scalinglab sweep collect` first)");
  if (o.bootstrap < 10) fail("report: --bootstrap must be >= 10 (the CIs need replicates)");
  return table_path;
}

Report::Report(const std::string& sweep_dir_, const std::string& out_dir, const ReportOptions& o_,
               ReportResult& res)
    : sweep_dir(sweep_dir_),
      out(out_dir),
      table_path(collected_table(sweep_dir_, o_)),
      o(o_),
      table(fit::read_table(table_path)) {
  if (!table.has("arch")) fail(table_path + ": no column 'arch'");
  archs = fit::distinct_values(table, "arch");
  if (archs.size() < 2)
    fail(table_path + ": report needs 2 architectures in column 'arch', found " +
         std::to_string(archs.size()));
  auto has = [&](const std::string& a) {
    return std::find(archs.begin(), archs.end(), a) != archs.end();
  };
  base = o.baseline;
  cand = o.candidate;
  if (base.empty() && cand.empty() && has("dense") && has("hybrid")) {
    base = "dense";
    cand = "hybrid";
  }
  if (base.empty()) base = archs[0] == cand ? archs[1] : archs[0];
  if (cand.empty()) cand = archs[0] == base ? archs[1] : archs[0];
  for (const std::string& a : {base, cand})
    if (!has(a)) fail(table_path + ": architecture '" + a + "' is not in column 'arch'");
  if (base == cand) fail("report: baseline and candidate are both '" + base + "'");

  spec.group_col = "arch";
  if (table.has("size")) spec.size_cols = {"size"};

  std::vector<double> all_n;
  for (const std::string& a : archs) {
    rows[a];  // every architecture has an entry, if an empty one
    fit::DataSpec s = spec;
    s.group = a;
    const fit::Points p = fit::extract_points(table, s);
    for (size_t i = 0; i < p.size(); ++i) {
      Row r{a, p.size_key[i], "", p.n[i], p.d[i], p.loss[i]};
      rows[a].push_back(r);
      all_n.push_back(p.n[i]);
      c_lo = std::min(c_lo, 6 * p.n[i] * p.d[i]);
      c_hi = std::max(c_hi, 6 * p.n[i] * p.d[i]);
    }
  }
  for (const auto& [a, rs] : rows)
    for (const Row& r : rs) {
      l_lo = std::min(l_lo, r.loss);
      l_hi = std::max(l_hi, r.loss);
    }
  std::sort(all_n.begin(), all_n.end());
  all_n.erase(std::unique(all_n.begin(), all_n.end()), all_n.end());
  n_lo = all_n.front();
  n_hi = all_n.back();
  n_range = "set xrange [" + fmt("%.6g", n_lo / 1.5) + ":" + fmt("%.6g", n_hi * 1.5) + "]\n" +
            log_tics("x", n_lo / 1.5, n_hi * 1.5);
  // Savings: S at the trained sizes and 10x the largest (SavingsOptions' default), with
  // paired-bootstrap CIs; farther out is a guess that the report does not print.
  so.baseline = base;
  so.candidate = cand;
  so.bootstrap = o.bootstrap;
  so.seed = o.seed;
  so.fit.num_threads = o.threads;
  so.fit.huber_delta = o.huber_delta;
  for (const auto& [name, b] : o.bounds) {
    fit::Bound fb;
    fb.lo = b.first;
    fb.hi = b.second;
    fb.hi_is_min_loss = std::isnan(b.second);  // "E=0:min"
    so.fit.bounds[name] = fb;
  }
  so.sensitivity = true;
  so.sensitivity_alpha = o.sensitivity_alpha;
  so.at_c = log_grid(c_lo, c_hi * 1e6, 4);
  sav = fit::savings_analysis(table, spec, so);
  for (const std::string& w : sav.warnings) res.warnings.push_back(w);
}

// The shortest %g form that reads back as v exactly.
std::string exact(double v) {
  for (int digits = 6; digits < 17; ++digits) {
    const std::string s = fmt(("%." + std::to_string(digits) + "g").c_str(), v);
    if (std::strtod(s.c_str(), nullptr) == v) return s;
  }
  return fmt("%.17g", v);
}

// The `scalinglab fit savings` arguments that compute this savings.json from the collected
// table alone (`sweep.csv` beside it): the same options, the same compute grid, the same size
// column, every number in the shortest form that reads back exactly. A committed result is
// checked by running them again (scripts/ladder_study.sh; tests/report).
std::vector<std::string> Report::fit_savings_args() const {
  std::vector<std::string> a = {"fit",
                                "savings",
                                "--data",
                                "sweep.csv",
                                "--out",
                                "savings.json",
                                "--group-col",
                                "arch",
                                "--baseline",
                                base,
                                "--candidate",
                                cand,
                                "--bootstrap",
                                std::to_string(so.bootstrap),
                                "--seed",
                                std::to_string(so.seed),
                                "--huber-delta",
                                exact(so.fit.huber_delta),
                                "--sensitivity",
                                "--sensitivity-alpha",
                                exact(so.sensitivity_alpha)};
  for (const auto& [name, b] : o.bounds) {
    const std::string lo = std::isinf(b.first) ? "" : exact(b.first);
    const std::string hi =
        std::isnan(b.second) ? "min" : (std::isinf(b.second) ? "" : exact(b.second));
    a.insert(a.end(), {"--bound", name + "=" + lo + ":" + hi});
  }
  std::string cs;
  for (double c : so.at_c) cs += (cs.empty() ? "" : ",") + exact(c);
  a.insert(a.end(), {"--at-c", cs});
  for (const std::string& c : spec.size_cols) a.insert(a.end(), {"--size-col", c});
  return a;
}

void Report::savings_json(ReportResult& res) const {
  json j = fit::savings_json(sav, so.fit.huber_delta);
  j["data"] = {{"file", table_path}, {"group_col", "arch"}};
  const std::vector<std::string> args = fit_savings_args();
  std::string line = "scalinglab";
  for (const std::string& x : args) {
    const bool plain = !x.empty() && x.find_first_not_of(
                                         "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
                                         "OPQRSTUVWXYZ0123456789_.,:=/+-") == std::string::npos;
    line += " " + (plain ? x : shell_quote(x));
  }
  j["reproduce"] = {{"args", args}, {"command", line}};
  atomic_write_file(out + "/savings.json", j.dump(2) + "\n");
  res.files.push_back("savings.json");
}

void Report::fit_laws(ReportResult& res) {
  fits[base] = sav.baseline.fit;
  boots[base] = sav.baseline.boot;
  fits[cand] = sav.candidate.fit;
  boots[cand] = sav.candidate.boot;
  for (const std::string& a : archs) {
    if (!fits.count(a)) {
      fit::DataSpec s = spec;
      s.group = a;
      const fit::LawData data = fit::chinchilla_data(fit::extract_points(table, s));
      fits[a] = fit::fit_law(data, so.fit);
      boots[a] = fit::bootstrap_law(data, fits[a], so.fit, o.bootstrap, o.seed);
      for (const std::string& w : fits[a].warnings) res.warnings.push_back(a + ": " + w);
    }
    law[a] = fit::Chinchilla::from(fits[a]);
    json j = fit::fit_json(fits[a], &boots[a], so.fit.huber_delta);
    j["data"] = {{"file", table_path}, {"group_col", "arch"}, {"group", a}};
    atomic_write_file(out + "/fit_" + a + ".json", j.dump(2) + "\n");
    res.files.push_back("fit_" + a + ".json");
  }
}

// (a) held-out loss vs tokens from each run's log.h5, budgets marked.
void Report::loss_vs_tokens(ReportResult& res) const {
  Figure f;
  f.name = "loss_vs_tokens";
  std::ostringstream plot;
  plot << "set logscale xy\nset xlabel 'training tokens D'\n"
       << "set ylabel 'held-out loss (nats/token)'\nset title 'Held-out loss during training'\n"
       << "set format y '%g'\nplot ";
  bool first = true;
  int missing = 0;
  double t_lo = kInf, t_hi = 0, x_lo = kInf, x_hi = 0;
  std::vector<std::string> sizes;
  for (const std::string& a : archs)
    for (const Row& r : rows.at(a))
      if (std::find(sizes.begin(), sizes.end(), r.size) == sizes.end()) sizes.push_back(r.size);
  // Each run of the table (run_id column) once, in table order.
  std::set<std::string> seen;
  const bool has_runs = table.has("run_id");
  for (size_t ai = 0; ai < archs.size(); ++ai) {
    const std::string& a = archs[ai];
    for (size_t i = 0; has_runs && i < table.num_rows(); ++i) {
      if (table.column("arch").text[i] != a) continue;
      const std::string id = table.column("run_id").text[i];
      if (!seen.insert(id).second) continue;
      const std::string log = sweep_dir + "/runs/" + id + "/log.h5";
      if (!path_exists(log)) {
        ++missing;
        continue;
      }
      RunLog rl;
      try {
        rl = read_runlog(log);
      } catch (const Error& e) {
        res.warnings.push_back(std::string("skipped in loss_vs_tokens: ") + e.what());
        continue;
      }
      if (rl.eval_loss.empty()) continue;
      const std::string size = table.has("size") ? table.column("size").text[i] : id;
      const size_t si = std::find(sizes.begin(), sizes.end(), size) - sizes.begin();
      const int b = f.block(a + " " + size + " run " + id + ": tokens loss");
      for (size_t k = 0; k < rl.eval_loss.size(); ++k) {
        t_lo = std::min(t_lo, rl.eval_loss[k]);
        t_hi = std::max(t_hi, rl.eval_loss[k]);
        x_lo = std::min(x_lo, static_cast<double>(rl.eval_tokens[k]));
        x_hi = std::max(x_hi, static_cast<double>(rl.eval_tokens[k]));
      }
      for (size_t k = 0; k < rl.eval_loss.size(); ++k)
        f.dat << rl.eval_tokens[k] << " " << fmt("%.9g", rl.eval_loss[k]) << "\n";
      plot << (first ? "" : ", \\\n     ") << "'loss_vs_tokens.dat' index " << b
           << " with lines lc " << si + 1 << " dt " << ai + 1 << " lw 2 title "
           << q(a + " " + size);
      first = false;
    }
    const int b = f.block(a + " budgets reached: tokens loss");
    for (const Row& r : rows.at(a)) {
      f.dat << fmt("%.9g", r.d) << " " << fmt("%.9g", r.loss) << "\n";
      x_lo = std::min(x_lo, r.d);
      x_hi = std::max(x_hi, r.d);
    }
    plot << (first ? "" : ", \\\n     ") << "'loss_vs_tokens.dat' index " << b << " with points pt "
         << (ai == 0 ? 7 : 5) << " ps 1.2 lc rgb 'black' title " << q(a + " budgets");
    first = false;
  }
  if (missing > 0)
    res.warnings.push_back("loss_vs_tokens: " + std::to_string(missing) +
                           " runs have no log.h5 (only their budget points are drawn)");
  plot << "\n";
  emit(f,
       loss_range(std::min(l_lo, t_lo) * 0.95, std::max(l_hi, t_hi) * 1.05) + "set xrange [" +
           fmt("%.6g", x_lo / 1.2) + ":" + fmt("%.6g", x_hi * 1.2) + "]\n" +
           log_tics("x", x_lo / 1.2, x_hi * 1.2) + plot.str(),
       out, o, res);
}

// (b) final loss vs N per budget, with the fitted laws.
void Report::loss_vs_n(ReportResult& res) const {
  // Budgets: D/N ratios when the sweep used them (fewer distinct ratios than token counts).
  std::set<double> ratios, tokens;
  for (const std::string& a : archs)
    for (const Row& r : rows.at(a)) {
      ratios.insert(std::stod(fmt("%.2g", r.d / r.n)));
      tokens.insert(r.d);
    }
  const bool by_ratio = ratios.size() < tokens.size();
  const std::set<double>& budgets = by_ratio ? ratios : tokens;
  auto budget_of = [&](const Row& r) { return by_ratio ? std::stod(fmt("%.2g", r.d / r.n)) : r.d; };
  Figure f;
  f.name = "loss_vs_n";
  std::ostringstream plot;
  plot << "set logscale xy\nset xlabel 'non-embedding parameters N'\n"
       << "set ylabel 'final held-out loss (nats/token)'\nset format y '%g'\n"
       << "set title 'Final loss vs N (points: runs; lines: fitted laws, " << archs[0] << " solid, "
       << archs[1] << " dashed)'\n"
       << n_range << loss_range(l_lo * 0.93, l_hi * 1.07) << "plot ";
  bool first = true;
  for (size_t ai = 0; ai < archs.size(); ++ai) {
    const std::string& a = archs[ai];
    int bi = 0;
    for (double bud : budgets) {
      ++bi;
      const int pb = f.block(a + " " + budget_label(bud, by_ratio) + " observed: N loss");
      for (const Row& r : rows.at(a))
        if (budget_of(r) == bud) f.dat << fmt("%.9g", r.n) << " " << fmt("%.9g", r.loss) << "\n";
      const int lb = f.block(a + " " + budget_label(bud, by_ratio) + " fitted law: N loss");
      for (double n : log_grid(n_lo / 1.5, n_hi * 1.5, 60)) {
        const double d = by_ratio ? bud * n : bud;
        f.dat << fmt("%.9g", n) << " " << fmt("%.9g", law.at(a).loss(n, d)) << "\n";
      }
      plot << (first ? "" : ", \\\n     ") << "'loss_vs_n.dat' index " << pb << " with points pt "
           << (ai == 0 ? 7 : 5) << " ps 1.2 lc " << bi << " title "
           << q(a + ", " + budget_label(bud, by_ratio)) << ", \\\n     'loss_vs_n.dat' index " << lb
           << " with lines lc " << bi << " dt " << ai + 1 << " notitle";
      first = false;
    }
  }
  plot << "\n";
  emit(f, plot.str(), out, o, res);
}

// (c) S(N) with a 95% band from the paired bootstrap, trained range marked.
void Report::savings_figure(ReportResult& res) const {
  double s_max = 1;
  Figure f;
  f.name = "savings";
  const int b = f.block("N S lo95 hi95 (paired bootstrap; +inf drawn at the top)");
  std::vector<std::vector<double>> band;
  const fit::BootstrapResult &bb = sav.baseline.boot, &bc = sav.candidate.boot;
  const double lstar = sav.target_loss;
  double hi_max = 1;
  for (double n : log_grid(n_lo, 7e10 * 1.5, 80)) {
    const double s =
        law.at(base).tokens_for_loss(n, lstar) / law.at(cand).tokens_for_loss(n, lstar);
    std::vector<double> reps;
    for (size_t k = 0; k < bb.samples.size() && k < bc.samples.size(); ++k) {
      if (std::isnan(bb.samples[k][0]) || std::isnan(bc.samples[k][0])) continue;
      const double db = fit::Chinchilla::from_values(bb.samples[k]).tokens_for_loss(n, lstar);
      const double dc = fit::Chinchilla::from_values(bc.samples[k]).tokens_for_loss(n, lstar);
      if (std::isinf(db) && std::isinf(dc)) continue;  // neither reaches L*: left out
      reps.push_back(std::isinf(db) ? kInf : std::isinf(dc) ? 0.0 : db / dc);
    }
    const double lo = reps.empty() ? NAN : fit::percentile(reps, 0.025);
    const double hi = reps.empty() ? NAN : fit::percentile(reps, 0.975);
    band.push_back({n, s, lo, hi});
    if (std::isfinite(s)) s_max = std::max(s_max, s);
    if (std::isfinite(hi)) hi_max = std::max(hi_max, hi);
  }
  // An unbounded or very wide CI is clipped at the top rather than flattening S(N).
  const double top = std::max(1.5, std::min(hi_max, 3 * s_max) * 1.1);
  for (const auto& r : band) {
    auto clip = [&](double v) { return std::isfinite(v) ? std::min(v, top) : top; };
    f.dat << fmt("%.9g", r[0]) << " " << (std::isfinite(r[1]) ? fmt("%.9g", r[1]) : "NaN") << " "
          << (std::isnan(r[2]) ? "NaN" : fmt("%.9g", clip(r[2]))) << " "
          << (std::isnan(r[3]) ? "NaN" : fmt("%.9g", clip(r[3]))) << "\n";
  }
  const int pb = f.block("headline points: N S lo95 hi95 (savings.json)");
  for (const fit::SavingsPoint& p : sav.points)
    if (p.savings.status == "ok")
      f.dat << fmt("%.9g", p.n) << " " << fmt("%.9g", p.savings.value) << " "
            << fmt("%.9g", std::min(p.savings.ci_lo, top)) << " "
            << fmt("%.9g", std::isfinite(p.savings.ci_hi) ? std::min(p.savings.ci_hi, top) : top)
            << "\n";
  std::ostringstream plot;
  plot << "set logscale x\nset xrange [" << n_lo / 1.5 << ":" << 7e10 * 1.5 << "]\n"
       << "set yrange [0:" << top << "]\n"
       << "set xlabel 'non-embedding parameters N'\n"
       << "set ylabel 'token savings S(N) = D_{" << base << "} / D_{" << cand << "}'\n"
       << "set title " << q("Token savings at L* = " + fmt("%.4g", lstar) + " nats/token")
       << "\nset object 1 rect from " << n_lo << ", graph 0 to " << n_hi
       << ", graph 1 fc rgb '#eeeeee' fs solid 1.0 noborder behind\n"
       << "set label 1 'trained' at " << std::sqrt(n_lo * n_hi)
       << ", graph 0.95 center tc rgb '#555555'\n"
       << "set arrow 1 from " << 7e9 << ", graph 0 to " << 7e9
       << ", graph 1 nohead dt 3 lc rgb '#999999'\n"
       << "set arrow 2 from " << 7e10 << ", graph 0 to " << 7e10
       << ", graph 1 nohead dt 3 lc rgb '#999999'\n"
       << "set label 2 'N = 7e9' at " << 7e9 << ", graph 0.95 right offset -0.5,0\n"
       << "set label 3 'N = 7e10' at " << 7e10 << ", graph 0.88 right offset -0.5,0\n"
       << "plot 'savings.dat' index " << b
       << " using 1:3:4 with filledcurves fc rgb '#9ecae1' fs transparent solid 0.5 "
          "title '95% CI (bootstrap)', \\\n"
       << "     '' index " << b << " using 1:2 with lines lw 2 lc rgb '#08519c' title 'S(N)', \\\n"
       << "     '' index " << pb
       << " using 1:2:3:4 with yerrorbars pt 7 lc rgb 'black' title 'reported N', \\\n"
       << "     1 with lines dt 2 lc rgb '#666666' title 'S = 1'\n";
  emit(f, plot.str(), out, o, res);
}

// (d) isoFLOP curves and the compute-optimal frontier per architecture.
void Report::isoflop(ReportResult& res) const {
  Figure f;
  f.name = "isoflop";
  std::ostringstream plot;
  plot << "set logscale xy\nset xlabel 'non-embedding parameters N'\n"
       << "set ylabel 'predicted loss (nats/token)'\nset format y '%g'\n"
       << "set title 'isoFLOP curves (C = 6ND) and compute-optimal frontier'\n"
       << n_range << loss_range(l_lo * 0.85, l_hi * 1.3) << "plot ";
  const std::vector<double> cs = log_grid(c_lo, c_hi, 4);
  bool first = true;
  for (size_t ai = 0; ai < archs.size(); ++ai) {
    const std::string& a = archs[ai];
    int ci = 0;
    for (double c : cs) {
      ++ci;
      const int b = f.block(a + " C = " + fmt("%.3g", c) + " FLOPs: N loss");
      for (double n : log_grid(n_lo / 1.5, n_hi * 1.5, 60))
        f.dat << fmt("%.9g", n) << " " << fmt("%.9g", law.at(a).loss(n, c / (6 * n))) << "\n";
      plot << (first ? "" : ", \\\n     ") << "'isoflop.dat' index " << b << " with lines lc " << ci
           << " dt " << ai + 1 << " lw 1.5 title " << q(a + ", C = " + fmt("%.2g", c) + " FLOPs");
      first = false;
    }
    const int b = f.block(a + " compute-optimal frontier: N_opt loss_opt C");
    for (double c : log_grid(c_lo, c_hi, 30)) {
      const double n = law.at(a).n_opt(c);
      if (std::isfinite(n) && n > n_lo / 1.5 && n < n_hi * 1.5)
        f.dat << fmt("%.9g", n) << " " << fmt("%.9g", law.at(a).loss_opt(c)) << " "
              << fmt("%.9g", c) << "\n";
    }
    plot << ", \\\n     'isoflop.dat' index " << b << " with linespoints pt " << (ai == 0 ? 7 : 5)
         << " ps 0.6 lw 2.5 lc rgb 'black' dt " << ai + 1 << " title " << q(a + " frontier");
  }
  plot << "\n";
  emit(f, plot.str(), out, o, res);
}

// (e) residuals per architecture: relative error of the fitted law at each point.
void Report::residuals(ReportResult& res) const {
  Figure f;
  f.name = "residuals";
  std::ostringstream plot;
  double d_lo = kInf, d_hi = 0;
  for (const auto& [a, rs] : rows)
    for (const Row& r : rs) {
      d_lo = std::min(d_lo, r.d);
      d_hi = std::max(d_hi, r.d);
    }
  plot << "set logscale x\nset xlabel 'training tokens D'\nset xrange [" << fmt("%.6g", d_lo / 1.3)
       << ":" << fmt("%.6g", d_hi * 1.3) << "]\n"
       << log_tics("x", d_lo / 1.3, d_hi * 1.3)
       << "set ylabel 'residual (L_{obs} - L_{fit}) / L_{fit} (%)'\nset format y '%g'\n"
       << "set title 'Fit residuals per architecture'\nplot 0 with lines lc rgb '#666666' "
          "notitle";
  for (size_t ai = 0; ai < archs.size(); ++ai) {
    const std::string& a = archs[ai];
    const int b = f.block(a + ": D N loss fitted residual_percent");
    for (const Row& r : rows.at(a)) {
      const double lf = law.at(a).loss(r.n, r.d);
      f.dat << fmt("%.9g", r.d) << " " << fmt("%.9g", r.n) << " " << fmt("%.9g", r.loss) << " "
            << fmt("%.9g", lf) << " " << fmt("%.6g", 100 * (r.loss - lf) / lf) << "\n";
    }
    plot << ", \\\n     'residuals.dat' index " << b << " using 1:5 with points pt "
         << (ai == 0 ? 7 : 5) << " ps 1.3 lc " << ai + 1 << " title " << q(a);
  }
  plot << "\n";
  emit(f, plot.str(), out, o, res);
}

// params.tex: the fitted parameters with their 95% CIs.
void Report::params_tex(ReportResult& res) const {
  std::ostringstream t;
  t << "% Fitted L(N, D) = E + A / N^alpha + B / D^beta per architecture, 95% CIs from "
    << o.bootstrap << " bootstrap replicates (scalinglab report; source " << table_path
    << ").\n\\begin{tabular}{lrrrrrr}\n\\hline\narch & points & $E$ & $A$ & $\\alpha$ & $B$ & "
       "$\\beta$ \\\\\n\\hline\n";
  for (const std::string& a : archs) {
    t << a << " & " << fits.at(a).n_points;
    for (size_t k = 0; k < fits.at(a).names.size(); ++k) {
      t << " & $" << tex(fits.at(a).values[k]) << "$";
      if (k < boots.at(a).ci_lo.size())
        t << " {\\scriptsize $[" << tex(boots.at(a).ci_lo[k]) << ", " << tex(boots.at(a).ci_hi[k])
          << "]$}";
    }
    t << " \\\\\n";
  }
  t << "\\hline\n\\end{tabular}\n";
  atomic_write_file(out + "/params.tex", t.str());
  res.files.push_back("params.tex");
}

// report.md: the headline numbers, the fits, the sensitivity of S, warnings and the data.
void Report::report_md(ReportResult& res) const {
  std::ostringstream m;
  m << "# Scaling report: " << cand << " vs " << base << "\n\n"
    << "Source: `" << table_path << "`. Fits: `fit_<arch>.json`, `savings.json` (this "
    << "directory); " << o.bootstrap << " paired bootstrap replicates, seed " << o.seed
    << ".\n\n## Headline\n\nToken savings S(N) = D_" << base << " / D_" << cand
    << " at the target loss L* = " << g4(sav.target_loss) << " nats/token (" << sav.target_rule
    << " of the observed losses). Trained range: N = " << g4(n_lo) << " to " << g4(n_hi)
    << " (non-embedding parameters); larger N are extrapolations.\n\n"
    << "| N | S(N) | 95% CI (replicates) | status | extrapolation |\n|---|---|---|---|---|\n";
  for (const fit::SavingsPoint& p : sav.points) {
    m << "| " << g4(p.n) << " | " << g4(p.savings.value) << " | ";
    if (p.savings.status == "ok")
      m << "[" << g4(p.savings.ci_lo) << ", " << g4(p.savings.ci_hi) << "] (" << p.savings.boot_n
        << " of " << o.bootstrap << ")";
    else
      m << "none (S undefined)";
    m << " | " << p.savings.status << " | "
      << (p.extrapolation > 1 ? fmt("%.3gx", p.extrapolation) : std::string("trained range"))
      << " |\n";
  }
  // Does S grow with N? The ratio of S at the largest and smallest trained sizes, with its CI.
  const fit::SavingsGrowth& G = sav.growth;
  m << "\nGrowth over the trained range: ";
  if (G.verdict == "undefined") {
    m << "undefined (fewer than two trained sizes with S defined).\n";
  } else {
    m << "S(" << g4(G.n_hi) << ") / S(" << g4(G.n_lo) << ") = " << g4(G.value);
    if (G.verdict != "no CI")
      m << ", 95% CI [" << g4(G.ci_lo) << ", " << g4(G.ci_hi) << "] (" << G.boot_n << " of "
        << o.bootstrap << " replicates)";
    m << ": **" << G.verdict << "** ("
      << (G.verdict == "grows"   ? "S grows with N: the CI lies above 1"
          : G.verdict == "falls" ? "S falls with N: the CI lies below 1"
          : G.verdict == "no CI"
              ? "no bootstrap, no CI"
              : "the data do not tell whether S grows or falls with N: the CI holds 1")
      << ").\n";
  }
  m << "\nCompute multiplier at equal loss (compute-optimal frontiers): "
    << g4(sav.compute_multiplier.value) << " (" << sav.compute_multiplier.status << ", 95% CI ["
    << g4(sav.compute_multiplier.ci_lo) << ", " << g4(sav.compute_multiplier.ci_hi) << "]).\n\n"
    << "## Fitted laws L(N, D) = E + A / N^alpha + B / D^beta\n\n"
    << "| arch | points | E | A | alpha | B | beta | objective | converged | flags |\n"
    << "|---|---|---|---|---|---|---|---|---|---|\n";
  for (const std::string& a : archs) {
    m << "| " << a << " | " << fits.at(a).n_points;
    for (size_t k = 0; k < fits.at(a).values.size(); ++k) {
      m << " | " << g4(fits.at(a).values[k]);
      if (k < boots.at(a).ci_lo.size())
        m << " [" << g4(boots.at(a).ci_lo[k]) << ", " << g4(boots.at(a).ci_hi[k]) << "]";
    }
    m << " | " << g4(fits.at(a).objective) << " | " << (fits.at(a).converged ? "yes" : "no")
      << " | " << join(fits.at(a).flags, ", ", "none") << " |\n";
  }
  m << "\nFitted exponents: ";
  for (size_t i = 0; i < archs.size(); ++i)
    m << (i ? "; " : "") << archs[i] << " alpha = " << g4(fits.at(archs[i]).value("alpha"))
      << ", beta = " << g4(fits.at(archs[i]).value("beta"));
  m << ". Brackets: 95% bootstrap CIs";
  for (const std::string& a : {base, cand}) {
    const fit::BootstrapResult& b = boots.at(a);
    m << "; " << a << ": " << b.n_used << " of " << b.n << " replicates used ("
      << b.n_underdetermined << " underdetermined left out; " << b.n_collapsed
      << " with E collapsed, " << b.n_runaway << " runaway, " << b.n_not_converged
      << " not converged, kept)";
  }
  m << ".\n";
  // Sensitivity of S to the model: on a small ladder the separate 5-parameter fits may be
  // pinned by a handful of points; the same S under fewer free parameters shows how much.
  m << "\n## Sensitivity of S(N) to the model\n\n"
    << "S(N) at L* = " << g4(sav.target_loss) << " fitted to the same points, each with its "
    << "95% CI from the headline's paired bootstrap resamples refitted under the row's model "
    << "(the replicates it rests on in parentheses). "
    << "\"shared E\": one irreducible loss for both architectures; \"delta 0.1\": the Huber "
    << "threshold at 0.1 (least squares for log residuals under 10%).\n\n| model | params | E ("
    << base << " / " << cand << ") | alpha (" << base << " / " << cand << ") | objective |";
  for (const fit::SavingsPoint& p : sav.points)
    m << " S(" << g4(p.n) << ")" << (p.extrapolation > 1 ? fmt(" %.3gx", p.extrapolation) : "")
      << " |";
  m << " flags |\n|---|---|---|---|---|";
  for (size_t k = 0; k < sav.points.size(); ++k) m << "---|";
  m << "---|\n";
  for (const fit::SensitivityRow& row : sav.sensitivity) {
    m << "| " << row.model << " | " << row.n_params << " | " << g4(row.baseline.value("E")) << " / "
      << g4(row.candidate.value("E")) << " | " << g4(row.baseline.value("alpha")) << " / "
      << g4(row.candidate.value("alpha")) << " | " << g4(row.objective) << " |";
    for (const fit::Ratio& r : row.savings) {
      m << " " << (r.status == "ok" ? g4(r.value) : r.status);
      if (r.status == "ok")
        m << " [" << g4(r.ci_lo) << ", " << g4(r.ci_hi) << "] (" << r.boot_n << ")";
      m << " |";
    }
    std::vector<std::string> flags;
    for (const std::string& f : row.baseline.flags) flags.push_back(base + ":" + f);
    for (const std::string& f : row.candidate.flags) flags.push_back(cand + ":" + f);
    m << " " << join(flags, ", ", "none") << " |\n";
  }
  // The model-free check: each size's own data law per architecture (no N term, no CIs).
  if (!sav.per_size.empty()) {
    m << "\n## Per-size check\n\nEach size's own data law L(D) = E_N + B_N / D^beta_N per "
      << "architecture, fitted to that size's budgets alone, and the tokens it needs to reach L* = "
      << g4(sav.target_loss) << " (no CIs; outside the size's trained budgets it extrapolates in "
      << "D).\n\n| size | N " << base << " / " << cand << " | D_" << base << "(L*) | D_" << cand
      << "(L*) | S | within trained budgets |\n|---|---|---|---|---|---|\n";
    // Whether D lies within the budgets trained at this size by this architecture.
    auto within = [&](const std::string& a, const std::string& size, double d) {
      double lo = INFINITY, hi = 0;
      for (const Row& r : rows.at(a))
        if (r.size == size) lo = std::min(lo, r.d), hi = std::max(hi, r.d);
      return !std::isfinite(d) || hi == 0 ? std::string("-")  // unreachable, or no rows
             : d < lo                     ? std::string("below")
             : d > hi                     ? std::string("above")
                                          : std::string("yes");
    };
    for (const fit::PerSizeSavings& ps : sav.per_size) {
      const double db = ps.savings.baseline, dc = ps.savings.candidate;
      m << "| " << ps.key << " | " << g4(ps.n_baseline) << " / " << g4(ps.n_candidate) << " | "
        << g4(db) << " | " << g4(dc) << " | "
        << (ps.savings.status == "ok" ? g4(ps.savings.value) : ps.savings.status) << " | " << base
        << " " << within(base, ps.key, db) << ", " << cand << " " << within(cand, ps.key, dc)
        << " |\n";
    }
  }
  if (!res.warnings.empty()) {
    m << "\n## Warnings\n\n";
    for (const std::string& w : res.warnings) m << "- " << w << "\n";
  }
  m << "\n## Data\n\nThe points fitted (rows of the collected sweep with status completed):\n\n"
    << "| arch | size | N | tokens D | D/N | loss |\n|---|---|---|---|---|---|\n";
  for (const std::string& a : archs)
    for (const Row& r : rows.at(a))
      m << "| " << a << " | " << r.size << " | " << fmt("%.0f", r.n) << " | " << fmt("%.0f", r.d)
        << " | " << fmt("%.3g", r.d / r.n) << " | " << fmt("%.6f", r.loss) << " |\n";
  m << "\n## Figures\n\n";
  for (const std::string& n : figure_names())
    m << "- `" << n << ".pdf` / `" << n << ".png` (script `" << n << ".gp`, data `" << n
      << ".dat`)\n";
  m << "- `params.tex`: the table above in LaTeX\n";
  atomic_write_file(out + "/report.md", m.str());
  res.files.push_back("report.md");
}

}  // namespace

const std::vector<std::string>& figure_names() {
  static const std::vector<std::string> names = {"loss_vs_tokens", "loss_vs_n", "savings",
                                                 "isoflop", "residuals"};
  return names;
}

ReportResult write_report(const std::string& sweep_dir, const std::string& out_dir,
                          const ReportOptions& o) {
  ReportResult res;
  // Without gnuplot every figure would fail the same way, twice: said once, and the scripts and
  // data are still written so the figures can be rendered where gnuplot is.
  ReportOptions opts = o;
  if (opts.render && find_program(opts.gnuplot).empty()) {
    res.warnings.push_back("figures not rendered: gnuplot is not installed ('" + opts.gnuplot +
                           "' not found); their .gp scripts and .dat data are written, `scalinglab "
                           "report " +
                           sweep_dir + " --out DIR` renders them where gnuplot is");
    opts.render = false;
  }
  Report r(sweep_dir, out_dir, opts, res);
  make_dirs(out_dir);
  r.savings_json(res);
  r.fit_laws(res);
  r.loss_vs_tokens(res);
  r.loss_vs_n(res);
  r.savings_figure(res);
  r.isoflop(res);
  r.residuals(res);
  r.params_tex(res);
  r.report_md(res);
  return res;
}

}  // namespace sl::report
