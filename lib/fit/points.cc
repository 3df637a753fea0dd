#include "fit/points.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace sl::fit {

namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

std::string fmt(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

// The value of `col` at `row`, checked finite and > 0.
double positive(const Table& t, size_t row, const std::string& col, const char* what) {
  double v = t.number(row, col);
  if (std::isnan(v)) fail(t.where(row) + ": column '" + col + "' (" + what + ") is NaN or empty");
  if (!std::isfinite(v)) fail(t.where(row) + ": column '" + col + "' (" + what + ") is infinite");
  if (v <= 0)
    fail(t.where(row) + ": column '" + col + "' (" + what + ") must be > 0, got " + fmt(v));
  return v;
}

}  // namespace

std::vector<std::string> distinct_values(const Table& table, const std::string& col) {
  std::vector<std::string> out;
  for (const std::string& v : table.column(col).text) {
    std::string s = trim(v);
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

Points extract_points(const Table& t, const DataSpec& spec) {
  // Resolve every needed column first, so that a missing one is reported before any row.
  if (spec.n_col.empty()) fail(t.source() + ": no N column given");
  if (spec.loss_col.empty()) fail(t.source() + ": no loss column given");
  if (spec.flops_col.empty() && spec.d_col.empty())
    fail(t.source() + ": give a tokens column or a compute column");
  t.column(spec.n_col);
  t.column(spec.loss_col);
  t.column(spec.flops_col.empty() ? spec.d_col : spec.flops_col);
  if (!spec.weight_col.empty()) t.column(spec.weight_col);
  if (!spec.unique_col.empty()) t.column(spec.unique_col);
  for (const std::string& c : spec.size_cols) t.column(c);
  const Table::Column* group = nullptr;
  if (!spec.group_col.empty()) {
    group = &t.column(spec.group_col);
    if (spec.group.empty()) fail(t.source() + ": --group-col " + spec.group_col + " needs a group");
  }
  const Table::Column* status =
      !spec.status_col.empty() && t.has(spec.status_col) ? &t.column(spec.status_col) : nullptr;
  if (spec.drop_highest < 0) fail("drop_highest must be >= 0");

  Points p;
  p.n_rows_total = static_cast<int>(t.num_rows());
  bool any_in_group = false;
  for (size_t row = 0; row < t.num_rows(); ++row) {
    if (group && trim(group->text[row]) != spec.group) {
      // Numeric group columns (HDF5) compare by value: "1" matches 1.0.
      if (group->values.empty()) continue;
      char* end = nullptr;
      double want = std::strtod(spec.group.c_str(), &end);
      if (end == spec.group.c_str() || *end != '\0' || want != group->values[row]) continue;
    }
    any_in_group = true;
    if (status && trim(status->text[row]) != "completed") {
      ++p.n_dropped_status;
      continue;
    }
    double n = positive(t, row, spec.n_col, "N");
    double d;
    if (!spec.flops_col.empty())
      d = positive(t, row, spec.flops_col, "compute C") / (6.0 * n);
    else
      d = positive(t, row, spec.d_col, "D");
    double l = positive(t, row, spec.loss_col, "loss");
    double w = spec.weight_col.empty() ? 1.0 : positive(t, row, spec.weight_col, "weight");
    if (spec.flops_weighted) w *= 6.0 * n * d;
    p.n.push_back(n);
    p.d.push_back(d);
    p.loss.push_back(l);
    p.weight.push_back(w);
    if (!spec.unique_col.empty()) p.unique.push_back(positive(t, row, spec.unique_col, "U"));
    p.where.push_back(t.where(row));
    std::string key;
    for (const std::string& c : spec.size_cols) {
      if (!key.empty()) key += '/';
      key += trim(t.column(c).text[row]);
    }
    p.size_key.push_back(spec.size_cols.empty() ? fmt(n) : key);
  }
  if (group && !any_in_group) {
    std::string vals;
    for (const std::string& v : distinct_values(t, spec.group_col))
      vals += (vals.empty() ? "'" : ", '") + v + "'";
    fail(t.source() + ": no rows with " + spec.group_col + " = '" + spec.group +
         "' (values: " + vals + ")");
  }
  if (spec.drop_highest > 0 && !p.loss.empty()) {
    // Drop the K highest losses (ties: the earlier row is dropped first).
    std::vector<size_t> order(p.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return p.loss[a] > p.loss[b]; });
    size_t k = std::min<size_t>(spec.drop_highest, p.size());
    std::vector<bool> drop(p.size(), false);
    for (size_t i = 0; i < k; ++i) drop[order[i]] = true;
    Points q;
    q.n_rows_total = p.n_rows_total;
    q.n_dropped_status = p.n_dropped_status;
    q.n_dropped_highest = static_cast<int>(k);
    for (size_t i = 0; i < p.size(); ++i) {
      if (drop[i]) continue;
      q.n.push_back(p.n[i]);
      q.d.push_back(p.d[i]);
      q.loss.push_back(p.loss[i]);
      q.weight.push_back(p.weight[i]);
      if (!p.unique.empty()) q.unique.push_back(p.unique[i]);
      q.where.push_back(p.where[i]);
      q.size_key.push_back(p.size_key[i]);
    }
    p = std::move(q);
  }
  if (!p.weight.empty()) {
    double mean = std::accumulate(p.weight.begin(), p.weight.end(), 0.0) / p.weight.size();
    for (double& w : p.weight) w /= mean;
  }
  return p;
}

}  // namespace sl::fit
