// Observations (N, D, L, weight) for a scaling-law fit, taken from a Table by column names, with
// every value checked (positive, finite) and bad input reported by file and line or row.
#pragma once
#include <string>
#include <vector>

#include "fit/table.h"

namespace sl::fit {

// Which columns hold what, and which rows to use. Defaults fit a collected sweep (sweep.csv/.h5).
struct DataSpec {
  std::string n_col = "n_params_nonembedding";  // N: parameters (non-embedding by convention)
  std::string d_col = "tokens";   // D: training tokens (ignored when flops_col is set)
  std::string flops_col;          // C: training compute; if set, D = C / (6 N)
  std::string loss_col = "loss";  // L: final loss (nats/token)
  std::string group_col;          // e.g. "arch": keep rows whose value equals `group`
  std::string group;              // the value to keep (required when group_col is set)
  std::string weight_col;         // per-point weights (> 0), optional
  // U: unique training tokens each point's run saw (a collected sweep's "unique_tokens"), for
  // the data-constrained law; empty: not read.
  std::string unique_col;
  bool flops_weighted = false;  // weight each point by its compute 6 N D (times weight_col)
  // Rows whose status is not "completed" are dropped when the table has this column (a collected
  // sweep has one; a plain CSV usually not). Empty: no status filter.
  std::string status_col = "status";
  int drop_highest = 0;  // drop the K highest-loss points after filtering (Epoch AI drops 5)
  // Columns whose values together name a model size (e.g. {"d_model", "n_layers"}), for the
  // per-size data laws; empty: the size is N itself.
  std::vector<std::string> size_cols;
};

// Points to fit. Weights are normalised to mean 1 (the optimum does not depend on their scale;
// the objective then stays comparable with an unweighted fit).
struct Points {
  std::vector<double> n, d, loss, weight;
  std::vector<double> unique;         // U per point when DataSpec::unique_col is set, else empty
  std::vector<std::string> where;     // "file.csv: line 18" for each point, for messages
  std::vector<std::string> size_key;  // model size of each point (DataSpec::size_cols)
  int n_rows_total = 0;               // rows in the table
  int n_dropped_status = 0;           // rows dropped by the status filter
  int n_dropped_highest = 0;          // points dropped by drop_highest
  size_t size() const { return loss.size(); }
};

// Extracts and checks the points of `spec` from `table`. Throws sl::Error (one line naming the
// file and line/row, or the column) on: a missing column, a cell that is not a number, NaN or
// infinite values, N, D, L or U <= 0, weights <= 0, no rows in the group.
Points extract_points(const Table& table, const DataSpec& spec);

// Distinct values of column `col` in row order (text as stored), e.g. the architectures.
std::vector<std::string> distinct_values(const Table& table, const std::string& col);

}  // namespace sl::fit
