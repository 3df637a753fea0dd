// JSON documents of the fits (fit.json, savings.json; shapes in docs/DESIGN.md "Fit outputs", with
// the extra fields documented in analysis/README.md). Non-finite numbers are written as null.
#pragma once
#include <nlohmann/json.hpp>

#include "fit/law.h"
#include "fit/savings.h"

namespace sl::fit {

// {"form": "chinchilla" | "data_law", "n_points", "params": {...}, "objective", "starts",
//  "starts_at_best", "converged", "bound_hit": [...], "bootstrap": {...} (if boot && boot->n > 0),
//  ...}; for Chinchilla also "compute_optimal": {"G", "a", "b", "gamma", "K"}.
nlohmann::ordered_json fit_json(const FitResult& fit, const BootstrapResult* boot,
                                double huber_delta);

// {"baseline", "candidate", "target_loss", "points": [{"n", "savings", "ci95", "status", ...}],
//  "compute_multiplier", "compute_optimal", "fits", "per_size", ...}.
nlohmann::ordered_json savings_json(const SavingsResult& r, double huber_delta);

// A number, or null if it is not finite.
nlohmann::ordered_json num(double v);

}  // namespace sl::fit
