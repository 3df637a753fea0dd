#include "fit/savings.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>

#include "core/error.h"
#include "fit/chinchilla.h"
#include "fit/joint.h"

namespace sl::fit {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Value of a replicate's ratio: b/c, +inf (baseline unreachable), 0 (candidate unreachable) or
// NaN (neither reachable, or a failed refit).
double replicate_ratio(double b, double c, Ratio* r) {
  if (std::isnan(b) || std::isnan(c)) return std::nan("");
  bool rb = std::isfinite(b), rc = std::isfinite(c);
  if (rb && rc) {
    ++r->boot_ok;
    return b / c;
  }
  if (!rb && !rc) {
    ++r->boot_unreachable_both;
    return std::nan("");
  }
  if (!rb) {
    ++r->boot_unreachable_baseline;
    return kInf;
  }
  ++r->boot_unreachable_candidate;
  return 0.0;
}

// The CI of a ratio from its replicates' values; none (NaN) where the full-data ratio is itself
// undefined: percentiles of a ratio that the data do not define would look like a measurement.
void set_ci(Ratio* r, const std::vector<double>& values) {
  for (double v : values) r->boot_n += !std::isnan(v);
  if (r->status != "ok") return;
  r->ci_lo = percentile(values, 0.025);
  r->ci_hi = percentile(values, 0.975);
}

double median(std::vector<double> v) {
  SL_ASSERT(!v.empty());
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

std::string fmt(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// Per-size data laws of one architecture at target loss `target`.
std::vector<PerSizeFit> fit_sizes(const Points& p, double target, const FitOptions& opt) {
  std::vector<std::string> keys;
  std::map<std::string, std::vector<size_t>> rows;
  for (size_t i = 0; i < p.size(); ++i) {
    if (!rows.count(p.size_key[i])) keys.push_back(p.size_key[i]);
    rows[p.size_key[i]].push_back(i);
  }
  std::vector<PerSizeFit> out;
  for (const std::string& key : keys) {
    PerSizeFit s;
    s.key = key;
    std::vector<double> n, d, l, w;
    for (size_t i : rows[key]) {
      n.push_back(p.n[i]);
      d.push_back(p.d[i]);
      l.push_back(p.loss[i]);
      w.push_back(p.weight[i]);
    }
    s.n = median(n);
    s.n_points = static_cast<int>(d.size());
    std::vector<double> dd = d;
    std::sort(dd.begin(), dd.end());
    if (std::unique(dd.begin(), dd.end()) - dd.begin() < 3) {
      s.skipped = "fewer than 3 distinct token budgets";
    } else {
      s.fit = fit_law(data_law_data(d, l, w), opt);
      s.exact = s.fit.dof <= 0;
      s.tokens_at_target = DataLaw::from_values(s.fit.values).tokens_for_loss(target);
    }
    out.push_back(std::move(s));
  }
  // Sizes in increasing N.
  std::stable_sort(out.begin(), out.end(),
                   [](const PerSizeFit& a, const PerSizeFit& b) { return a.n < b.n; });
  return out;
}

// The trained sizes and 10x the largest: per size name present in both architectures the
// geometric mean of their median N (the same size has a different N per architecture), each
// architecture's own N for the others.
std::vector<double> default_at_n(const Points& pb, const Points& pc) {
  auto sizes = [](const Points& p) {
    std::map<std::string, std::vector<double>> by;
    for (size_t i = 0; i < p.size(); ++i) by[p.size_key[i]].push_back(p.n[i]);
    std::map<std::string, double> out;
    for (auto& [k, v] : by) out[k] = median(v);
    return out;
  };
  const auto sb = sizes(pb), sc = sizes(pc);
  std::vector<double> at;
  for (const auto& [k, n] : sb) at.push_back(sc.count(k) ? std::sqrt(n * sc.at(k)) : n);
  for (const auto& [k, n] : sc)
    if (!sb.count(k)) at.push_back(n);
  double hi = 0;
  for (double n : pb.n) hi = std::max(hi, n);
  for (double n : pc.n) hi = std::max(hi, n);
  at.push_back(10 * hi);
  std::sort(at.begin(), at.end());
  at.erase(std::unique(at.begin(), at.end()), at.end());
  return at;
}

// The CIs of a sensitivity row from replicate k's two laws (natural values; NaN where the
// replicate is left out): S at each N as for the headline (replicate_ratio, set_ci).
void row_cis(SensitivityRow* row, const std::vector<std::vector<double>>& vb,
             const std::vector<std::vector<double>>& vc, const std::vector<SavingsPoint>& points,
             double target) {
  SL_ASSERT(vb.size() == vc.size());
  for (size_t q = 0; q < points.size(); ++q) {
    std::vector<double> v;
    for (size_t k = 0; k < vb.size(); ++k) {
      if (std::isnan(vb[k][0]) || std::isnan(vc[k][0])) continue;
      const Chinchilla b = Chinchilla::from_values(vb[k]), c = Chinchilla::from_values(vc[k]);
      v.push_back(replicate_ratio(b.tokens_for_loss(points[q].n, target),
                                  c.tokens_for_loss(points[q].n, target), &row->savings[q]));
    }
    set_ci(&row->savings[q], v);
  }
  for (size_t k = 0; k < vb.size(); ++k)
    row->boot_used += !std::isnan(vb[k][0]) && !std::isnan(vc[k][0]);
}

// A separate-fits row's replicates left out: either architecture's resample underdetermined, or
// either refit failed.
void count_left_out(SensitivityRow* row, const BootstrapResult& bb, const BootstrapResult& bc) {
  for (int k = 0; k < bb.n; ++k) {
    const std::string &b = bb.status[k], &c = bc.status[k];
    if (b == "underdetermined" || c == "underdetermined")
      ++row->boot_underdetermined;
    else if (b == "failed" || c == "failed")
      ++row->boot_failed;
  }
}

// The bootstrap refit of a joint model: from the full-data joint optimum, and where E ends
// collapsed (E < 1e-6 min L) also from E = 0.3, 0.6, 0.9 min L, as law.h's bootstrap_refit (from a
// collapsed E no local step climbs the log-E plateau). The lowest objective wins.
JointResult refit_joint(const LawData& rb, const LawData& rc, const JointResult& full,
                        JointOptions o) {
  o.given_starts_only = true;
  o.starts = {{full.baseline.theta, full.candidate.theta}};
  JointResult r = fit_joint(rb, rc, full.baseline, full.candidate, o);
  double min_loss = kInf;
  for (const LawData* d : {&rb, &rc})
    for (double l : d->log_loss) min_loss = std::min(min_loss, std::exp(l));
  if (r.baseline.values[0] >= 1e-6 * min_loss && r.candidate.values[0] >= 1e-6 * min_loss) return r;
  o.starts.clear();
  for (double c : {0.3, 0.6, 0.9}) {
    std::vector<double> tb = full.baseline.theta, tc = full.candidate.theta;
    tb[0] = tc[0] = std::log(c * min_loss);
    o.starts.push_back({tb, tc});
  }
  JointResult q = fit_joint(rb, rc, full.baseline, full.candidate, o);
  return q.objective < r.objective ? q : r;
}

// Paired-bootstrap CIs of a joint model's row: replicate k resamples each architecture as the
// headline does (bootstrap_replicate, streams 0 and 1 of the seed) and refits the joint model.
// Replicates where either resample cannot identify the law are left out (as the headline's), as
// are refits that fail.
void joint_cis(SensitivityRow* row, const LawData& db, const LawData& dc, const JointResult& full,
               const JointOptions& jo, const SavingsOptions& o,
               const std::vector<SavingsPoint>& points, double target) {
  const int K = o.bootstrap;
  std::vector<std::vector<double>> vb(K, std::vector<double>(5, std::nan(""))), vc = vb;
  std::vector<char> status(K, 0);  // 0 used, 1 underdetermined, 2 failed
  parallel_for(K, o.fit.num_threads, [&](int k, int) {
    const LawData rb = bootstrap_replicate(db, o.seed, 0, k);
    const LawData rc = bootstrap_replicate(dc, o.seed, 1, k);
    if (!underdetermined(rb).empty() || !underdetermined(rc).empty()) {
      status[k] = 1;
      return;
    }
    try {
      const JointResult r = refit_joint(rb, rc, full, jo);
      vb[k] = r.baseline.values;
      vc[k] = r.candidate.values;
    } catch (const Error&) {
      status[k] = 2;
    }
  });
  for (char s : status) {
    row->boot_underdetermined += s == 1;
    row->boot_failed += s == 2;
  }
  row_cis(row, vb, vc, points, target);
}

}  // namespace

Ratio make_ratio(double baseline, double candidate) {
  Ratio r;
  r.baseline = baseline;
  r.candidate = candidate;
  bool rb = std::isfinite(baseline), rc = std::isfinite(candidate);
  if (rb && rc) {
    r.status = "ok";
    r.value = baseline / candidate;
  } else if (!rb && !rc) {
    r.status = "unreachable_both";
  } else if (!rb) {
    r.status = "unreachable_baseline";
  } else {
    r.status = "unreachable_candidate";
  }
  return r;
}

SavingsResult savings_from_points(const Points& pb, const Points& pc, const SavingsOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  SavingsResult res;
  res.baseline.name = o.baseline;
  res.candidate.name = o.candidate;
  res.baseline.points = pb;
  res.candidate.points = pc;
  res.bootstrap = o.bootstrap;
  res.seed = o.seed;
  res.at_c = o.at_c;

  // Target loss L*.
  std::vector<double> all = pb.loss;
  all.insert(all.end(), pc.loss.begin(), pc.loss.end());
  if (o.target == "median" || o.target.empty()) {
    res.target_rule = "median";
    res.target_loss = median(all);
  } else if (o.target == "min") {
    res.target_rule = "min";
    res.target_loss = *std::min_element(all.begin(), all.end());
  } else {
    char* end = nullptr;
    double v = std::strtod(o.target.c_str(), &end);
    if (end == o.target.c_str() || *end != '\0' || !std::isfinite(v) || v <= 0)
      fail("--target-loss: '" + o.target + "' is not median, min or a positive number");
    res.target_rule = "value";
    res.target_loss = v;
  }
  for (double n : o.at_n)
    if (!(n > 0) || !std::isfinite(n)) fail("--at-n: sizes must be positive, got " + fmt(n));
  if (!(o.max_extrapolation >= 1))
    fail("--max-extrapolation: the factor must be >= 1, got " + fmt(o.max_extrapolation));
  res.n_trained_min = std::min(*std::min_element(pb.n.begin(), pb.n.end()),
                               *std::min_element(pc.n.begin(), pc.n.end()));
  res.n_trained_max = std::max(*std::max_element(pb.n.begin(), pb.n.end()),
                               *std::max_element(pc.n.begin(), pc.n.end()));
  const std::vector<double> at_n = o.at_n.empty() ? default_at_n(pb, pc) : o.at_n;
  for (double c : o.at_c)
    if (!(c > 0) || !std::isfinite(c))
      fail("--at-c: compute values must be positive, got " + fmt(c));

  auto data_of = [](const Points& p, const std::string& name) {
    try {
      return chinchilla_data(p);
    } catch (const Error& e) {
      fail(name + ": " + e.what());
    }
  };
  const LawData db = data_of(pb, o.baseline), dc = data_of(pc, o.candidate);
  res.baseline.fit = fit_law(db, o.fit);
  res.candidate.fit = fit_law(dc, o.fit);
  for (ArchFit* a : {&res.baseline, &res.candidate})
    for (const std::string& w : a->fit.warnings) res.warnings.push_back(a->name + " fit: " + w);
  const Chinchilla lb = Chinchilla::from(res.baseline.fit),
                   lc = Chinchilla::from(res.candidate.fit);
  const double L = res.target_loss;

  for (double n : at_n) {
    SavingsPoint sp;
    sp.n = n;
    sp.extrapolation = std::max({n / res.n_trained_max, res.n_trained_min / n, 1.0});
    if (sp.extrapolation > o.max_extrapolation * (1 + 1e-9))
      res.warnings.push_back("S(N = " + fmt(n) + ") is extrapolated " + fmt(sp.extrapolation) +
                             "x outside the trained sizes (N = " + fmt(res.n_trained_min) + " to " +
                             fmt(res.n_trained_max) + "): a guess, not a measurement");
    sp.floor_baseline = lb.floor(n);
    sp.floor_candidate = lc.floor(n);
    sp.savings = make_ratio(lb.tokens_for_loss(n, L), lc.tokens_for_loss(n, L));
    if (sp.savings.status != "ok")
      res.warnings.push_back(
          "S(N = " + fmt(n) + "): L* = " + fmt(L) + " is unreachable for " +
          (sp.savings.status == "unreachable_both"       ? std::string("both architectures")
           : sp.savings.status == "unreachable_baseline" ? o.baseline
                                                         : o.candidate) +
          " (loss floor E + A/N^alpha: " + o.baseline + " " + fmt(sp.floor_baseline) + ", " +
          o.candidate + " " + fmt(sp.floor_candidate) + ")");
    res.points.push_back(sp);
  }
  res.compute_multiplier = make_ratio(lb.compute_for_loss(L), lc.compute_for_loss(L));
  if (res.compute_multiplier.status != "ok")
    res.warnings.push_back("compute multiplier: L* = " + fmt(L) + " is at or below E for " +
                           res.compute_multiplier.status.substr(12));

  // The trained sizes G compares: the smallest and largest N of the range with S defined.
  size_t q_lo = res.points.size(), q_hi = res.points.size();
  for (size_t q = 0; q < res.points.size(); ++q) {
    const SavingsPoint& sp = res.points[q];
    if (sp.extrapolation > 1 || sp.savings.status != "ok") continue;
    if (q_lo == res.points.size() || sp.n < res.points[q_lo].n) q_lo = q;
    if (q_hi == res.points.size() || sp.n > res.points[q_hi].n) q_hi = q;
  }
  const bool has_growth = q_lo < res.points.size() && res.points[q_hi].n > res.points[q_lo].n;
  if (has_growth) {
    res.growth.n_lo = res.points[q_lo].n;
    res.growth.n_hi = res.points[q_hi].n;
    res.growth.value = res.points[q_hi].savings.value / res.points[q_lo].savings.value;
    res.growth.verdict = "no CI";
  }

  // Paired bootstrap: replicate k resamples each architecture's points (streams 2k and 2k + 1 of
  // one seed, stratified by architecture) and combines the two refits of the same k.
  if (o.bootstrap > 0) {
    res.baseline.boot = bootstrap_law(db, res.baseline.fit, o.fit, o.bootstrap, o.seed, 0);
    res.candidate.boot = bootstrap_law(dc, res.candidate.fit, o.fit, o.bootstrap, o.seed, 1);
    const auto& sb = res.baseline.boot.samples;
    const auto& sc = res.candidate.boot.samples;
    // reps[q][j]: S of the j-th replicate with both refits at point q (the same replicates, in
    // the same order, at every q).
    std::vector<std::vector<double>> reps(res.points.size());
    for (size_t q = 0; q < res.points.size(); ++q) {
      SavingsPoint& sp = res.points[q];
      for (int k = 0; k < o.bootstrap; ++k) {
        if (std::isnan(sb[k][0]) || std::isnan(sc[k][0])) continue;
        Chinchilla b = Chinchilla::from_values(sb[k]), c = Chinchilla::from_values(sc[k]);
        reps[q].push_back(
            replicate_ratio(b.tokens_for_loss(sp.n, L), c.tokens_for_loss(sp.n, L), &sp.savings));
      }
      set_ci(&sp.savings, reps[q]);
    }
    if (has_growth) {
      std::vector<double> g;
      for (size_t j = 0; j < reps[q_lo].size(); ++j) g.push_back(reps[q_hi][j] / reps[q_lo][j]);
      SavingsGrowth& G = res.growth;
      for (double v : g) G.boot_n += !std::isnan(v);
      G.ci_lo = percentile(g, 0.025);
      G.ci_hi = percentile(g, 0.975);
      // No replicate defines G (every refit failed or left out, or inf / inf): no CI, no verdict.
      G.verdict = G.boot_n == 0 ? "no CI"
                  : G.ci_lo > 1 ? "grows"
                  : G.ci_hi < 1 ? "falls"
                                : "not resolved";
    }
    std::vector<double> v;
    for (int k = 0; k < o.bootstrap; ++k) {
      if (std::isnan(sb[k][0]) || std::isnan(sc[k][0])) continue;
      Chinchilla b = Chinchilla::from_values(sb[k]), c = Chinchilla::from_values(sc[k]);
      v.push_back(
          replicate_ratio(b.compute_for_loss(L), c.compute_for_loss(L), &res.compute_multiplier));
    }
    set_ci(&res.compute_multiplier, v);
    for (ArchFit* a : {&res.baseline, &res.candidate})
      for (const std::string& w : bootstrap_warnings(a->boot))
        res.warnings.push_back(a->name + " bootstrap: " + w);
  }

  if (o.sensitivity) {
    // S under other modelling choices, at the same N: how much of the answer the 10 free
    // parameters of two separate fits decide on a small ladder.
    auto row_from = [&](const std::string& model, int n_params, double objective, bool converged,
                        const FitResult& fb, const FitResult& fc) {
      SensitivityRow row;
      row.model = model;
      row.n_params = n_params;
      row.objective = objective;
      row.converged = converged;
      row.baseline = fb;
      row.candidate = fc;
      const Chinchilla b = Chinchilla::from(fb), c = Chinchilla::from(fc);
      for (const SavingsPoint& sp : res.points)
        row.savings.push_back(make_ratio(b.tokens_for_loss(sp.n, L), c.tokens_for_loss(sp.n, L)));
      res.sensitivity.push_back(std::move(row));
      return &res.sensitivity.back();
    };
    res.sensitivity.reserve(5);  // row_from's pointers stay valid
    const FitResult& sb = res.baseline.fit;
    const FitResult& sc = res.candidate.fit;
    SensitivityRow* sep =
        row_from("separate", 10, sb.objective + sc.objective, sb.converged && sc.converged, sb, sc);
    if (o.bootstrap > 0) {
      row_cis(sep, res.baseline.boot.samples, res.candidate.boot.samples, res.points, L);
      count_left_out(sep, res.baseline.boot, res.candidate.boot);
    }
    FitOptions ls = o.fit;
    ls.huber_delta = 0.1;
    const FitResult lb = fit_law(db, ls), lc = fit_law(dc, ls);
    SensitivityRow* huber = row_from("separate, delta 0.1", 10, lb.objective + lc.objective,
                                     lb.converged && lc.converged, lb, lc);
    if (o.bootstrap > 0) {
      // The same draws as the headline's (seed, streams 0 and 1), refitted with delta 0.1.
      const BootstrapResult bb = bootstrap_law(db, lb, ls, o.bootstrap, o.seed, 0);
      const BootstrapResult bc = bootstrap_law(dc, lc, ls, o.bootstrap, o.seed, 1);
      row_cis(huber, bb.samples, bc.samples, res.points, L);
      count_left_out(huber, bb, bc);
    }
    // Most constrained first: each optimum starts the next, looser model, so the objectives
    // nest (shared E <= shared E and alpha <= fixed alpha) as the models do.
    JointOptions jo;
    jo.fit = o.fit;
    jo.fit.fixed.erase("alpha");
    std::vector<JointResult> joint(3);
    std::vector<JointOptions> joint_opt(3);
    for (int variant = 2; variant >= 0; --variant) {
      jo.share_e = true;
      jo.share_alpha = variant == 1;
      jo.fixed_alpha = variant == 2 ? o.sensitivity_alpha : std::nan("");
      joint[variant] = fit_joint(db, dc, sb, sc, jo);
      joint_opt[variant] = jo;
      jo.starts.push_back({joint[variant].baseline.theta, joint[variant].candidate.theta});
    }
    for (int variant = 0; variant < 3; ++variant) {
      const JointResult& j = joint[variant];
      SensitivityRow* row =
          row_from(j.model, j.n_params, j.objective, j.converged, j.baseline, j.candidate);
      if (o.bootstrap > 0) joint_cis(row, db, dc, j, joint_opt[variant], o, res.points, L);
    }
  }

  if (o.per_size) {
    FitOptions small = o.fit;
    small.starts.clear();  // the data law's grid (Hoffmann's for one term, 150 starts)
    // The bounds are the Chinchilla law's (by name: E, A, alpha, B, beta); a per-size law's E_N,
    // B_N, beta_N are other quantities, so none of them applies.
    small.bounds.clear();
    small.fixed.clear();
    res.baseline.sizes = fit_sizes(pb, L, small);
    res.candidate.sizes = fit_sizes(pc, L, small);
    int exact = 0, fitted = 0;
    for (const ArchFit* a : {&res.baseline, &res.candidate})
      for (const PerSizeFit& s : a->sizes) {
        if (!s.skipped.empty()) continue;
        ++fitted;
        exact += s.exact;
        for (size_t k = 0; k < s.fit.warnings.size(); ++k) {
          // "exact" is said once for all sizes below.
          if (s.fit.warnings[k].rfind("exact fit", 0) == 0) continue;
          res.warnings.push_back(a->name + " size " + s.key + " data law: " + s.fit.warnings[k]);
        }
      }
    if (exact > 0)
      res.warnings.push_back("per-size data laws: " + std::to_string(exact) + " of " +
                             std::to_string(fitted) +
                             " are exact (as many distinct budgets as their 3 parameters): "
                             "solutions through the points, no error measured");
    for (const PerSizeFit& b : res.baseline.sizes) {
      if (!b.skipped.empty()) continue;
      for (const PerSizeFit& c : res.candidate.sizes) {
        if (c.key != b.key || !c.skipped.empty()) continue;
        PerSizeSavings ps;
        ps.key = b.key;
        ps.n_baseline = b.n;
        ps.n_candidate = c.n;
        ps.savings = make_ratio(b.tokens_at_target, c.tokens_at_target);
        res.per_size.push_back(ps);
      }
    }
    if (res.per_size.empty() && !res.baseline.sizes.empty() && !res.candidate.sizes.empty()) {
      auto keys = [](const ArchFit& a) {
        std::string k;
        for (const PerSizeFit& s : a.sizes) k += (k.empty() ? "" : ", ") + s.key;
        return k;
      };
      res.warnings.push_back("per-size savings: no size of " + o.baseline + " (" +
                             keys(res.baseline) + ") pairs with one of " + o.candidate + " (" +
                             keys(res.candidate) +
                             ") with 3 budgets in both; name sizes with --size-col");
    }
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

SavingsResult savings_analysis(const Table& table, const DataSpec& spec, const SavingsOptions& o) {
  if (spec.group_col.empty()) fail("fit savings: give --group-col (e.g. arch)");
  if (o.baseline == o.candidate) fail("fit savings: baseline and candidate are the same group");
  DataSpec sb = spec, sc = spec;
  // Sizes pair by the sweep's size name by default: N differs between architectures.
  if (spec.size_cols.empty() && table.has("size")) sb.size_cols = sc.size_cols = {"size"};
  sb.group = o.baseline;
  sc.group = o.candidate;
  Points pb = extract_points(table, sb);
  Points pc = extract_points(table, sc);
  return savings_from_points(pb, pc, o);
}

}  // namespace sl::fit
