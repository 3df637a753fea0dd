// Bad input ends with one sl::Error line naming the file and line/row or column; a fit that did
// not converge or sits on a bound says so.
#define BOOST_TEST_MODULE fit_errors
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/error.h"
#include "fit/law.h"
#include "fit/points.h"
#include "fit/report.h"
#include "fit/table.h"

using namespace sl::fit;
namespace fs = std::filesystem;

namespace {

std::string write_file(const std::string& name, const std::string& text) {
  fs::path dir = fs::path(SL_BINARY_DIR) / "fit_errors_tmp";
  fs::create_directories(dir);
  fs::path p = dir / name;
  std::ofstream(p) << text;
  return p.string();
}

// The message of the sl::Error `fn` throws ("" if none).
template <typename F>
std::string error_of(F fn) {
  try {
    fn();
  } catch (const sl::Error& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

const char* kHeader = "arch,N,D,loss\n";
std::string good_rows() {
  std::string s;
  for (double n : {1e7, 1e8, 1e9})
    for (double r : {10.0, 20.0, 40.0}) {
      char line[128];
      std::snprintf(line, sizeof line, "dense,%g,%g,%.6f\n", n, r * n,
                    1.8 + 400 / std::pow(n, 0.34) + 400 / std::pow(r * n, 0.28));
      s += line;
    }
  return s;
}

DataSpec spec() {
  DataSpec s;
  s.n_col = "N";
  s.d_col = "D";
  s.loss_col = "loss";
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(bad_values_name_the_line_and_column) {
  // Line 1 is the header; the bad value sits on line 3.
  auto check = [](const std::string& row, const std::string& col, const std::string& what) {
    std::string path =
        write_file("bad.csv", std::string(kHeader) + "dense,1e8,2e9,3.1\n" + row + good_rows());
    std::string msg = error_of([&] { extract_points(read_csv(path), spec()); });
    BOOST_TEST_MESSAGE(msg);
    BOOST_TEST(contains(msg, "bad.csv: line 3"), msg);
    BOOST_TEST(contains(msg, "'" + col + "'"), msg);
    BOOST_TEST(contains(msg, what), msg);
    BOOST_TEST(msg.find('\n') == std::string::npos);
  };
  check("dense,0,2e9,3.1\n", "N", "must be > 0");
  check("dense,-1e8,2e9,3.1\n", "N", "must be > 0");
  check("dense,1e8,0,3.1\n", "D", "must be > 0");
  check("dense,1e8,2e9,-3\n", "loss", "must be > 0");
  check("dense,1e8,2e9,nan\n", "loss", "NaN");
  check("dense,1e8,2e9,\n", "loss", "NaN or empty");
  check("dense,1e8,2e9,inf\n", "loss", "infinite");
  check("dense,1e8,abc,3.1\n", "D", "not a number");
}

BOOST_AUTO_TEST_CASE(missing_columns_and_groups) {
  std::string path = write_file("ok.csv", std::string(kHeader) + good_rows());
  Table t = read_csv(path);
  DataSpec s = spec();
  s.loss_col = "val_loss";
  std::string msg = error_of([&] { extract_points(t, s); });
  BOOST_TEST(contains(msg, "ok.csv: no column 'val_loss'"), msg);
  BOOST_TEST(contains(msg, "'arch', 'N', 'D', 'loss'"), msg);
  s = spec();
  s.flops_col = "flops";
  msg = error_of([&] { extract_points(t, s); });
  BOOST_TEST(contains(msg, "no column 'flops'"), msg);
  s = spec();
  s.group_col = "arch";
  s.group = "hybrid";
  msg = error_of([&] { extract_points(t, s); });
  BOOST_TEST(contains(msg, "no rows with arch = 'hybrid'"), msg);
  BOOST_TEST(contains(msg, "'dense'"), msg);
  s.group = "dense";
  BOOST_TEST(extract_points(t, s).size() == 9u);
  msg = error_of([&] { read_csv(write_file("ragged.csv", "a,b\n1,2\n3\n")); });
  BOOST_TEST(contains(msg, "ragged.csv: line 3: 1 cells, the header has 2"), msg);
  msg = error_of([&] { read_csv((fs::path(SL_BINARY_DIR) / "no_such_file.csv").string()); });
  BOOST_TEST(contains(msg, "no_such_file.csv: cannot open"), msg);
  msg = error_of([&] { read_table(write_file("fake.h5", "not hdf5")); });
  BOOST_TEST(contains(msg, "fake.h5: not an HDF5 file"), msg);
}

BOOST_AUTO_TEST_CASE(too_few_points) {
  std::string path =
      write_file("few.csv", std::string(kHeader) + "dense,1e7,1e8,4\n" +
                                "dense,1e8,1e9,3\ndense,1e9,1e10,2.5\n" + "dense,1e9,2e10,2.4\n");
  Points p = extract_points(read_csv(path), spec());
  std::string msg = error_of([&] { chinchilla_data(p); });
  BOOST_TEST(contains(msg, "4 points, fewer than its 5 parameters"), msg);
  // Enough points but one size only: alpha and A are not identifiable.
  Points q = p;
  q.n.assign(q.size(), 1e8);
  q.n.push_back(1e8);
  q.d.push_back(3e9);
  q.loss.push_back(2.9);
  q.weight.push_back(1);
  msg = error_of([&] { chinchilla_data(q); });
  BOOST_TEST(contains(msg, "same N"), msg);
  msg = error_of([&] { data_law_data({1e8, 2e8}, {3, 2.9}, {1, 1}); });
  BOOST_TEST(contains(msg, "fewer than its 3 parameters"), msg);
}

BOOST_AUTO_TEST_CASE(not_converged_and_bound_hit_are_reported) {
  Points p =
      extract_points(read_csv(write_file("ok.csv", std::string(kHeader) + good_rows())), spec());
  LawData data = chinchilla_data(p);
  FitOptions o;
  o.starts = {{0, 5, 0.5, 5, 0.5}};
  o.max_iterations = 2;
  FitResult r = fit_law(data, o);
  BOOST_TEST(!r.converged);
  BOOST_TEST(!r.warnings.empty());
  BOOST_TEST(contains(r.warnings[0], "did not converge"), r.warnings[0]);
  auto j = fit_json(r, nullptr, o.huber_delta);
  BOOST_TEST(j["converged"] == false);
  BOOST_TEST(j["warnings"].size() >= 1u);

  // The data come from alpha = 0.34: an upper bound of 0.3 binds. (A 450-start slice of the grid
  // keeps this quick.)
  FitOptions b;
  std::vector<std::vector<double>> grid = hoffmann_grid(2);
  for (size_t i = 0; i < grid.size(); i += 10) b.starts.push_back(grid[i]);
  b.bounds["alpha"] = Bound{0.0, 0.3};
  b.bounds["E"] = Bound{1.0, 3.0};
  FitResult rb = fit_law(data, b);
  BOOST_TEST(rb.bound_hit == std::vector<std::string>{"alpha"});
  BOOST_TEST(std::abs(rb.value("alpha") - 0.3) < 1e-9);
  BOOST_TEST(rb.value("E") >= 1.0);
  BOOST_TEST(contains(rb.warnings.back(), "alpha sits on its upper bound 0.3"), rb.warnings.back());
  auto jb = fit_json(rb, nullptr, b.huber_delta);
  BOOST_TEST(jb["bound_hit"][0] == "alpha");
  // Unbounded, the same data give alpha = 0.34.
  FitOptions u;
  u.starts = b.starts;
  FitResult ru = fit_law(data, u);
  BOOST_TEST(ru.bound_hit.empty());
  BOOST_TEST(std::abs(ru.value("alpha") - 0.34) < 1e-3);

  FitOptions bad;
  bad.bounds["gamma"] = Bound{0, 1};
  std::string msg = error_of([&] { fit_law(data, bad); });
  BOOST_TEST(contains(msg, "unknown parameter 'gamma'"), msg);
}
