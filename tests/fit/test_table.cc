// Reading tables: CSV quoting and line ends; sweep.h5 with numeric, variable- and fixed-length
// string columns; group and status filters; compute-derived D; weights.
#define BOOST_TEST_MODULE fit_table
#include <hdf5.h>

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "fit/points.h"
#include "fit/table.h"

using namespace sl::fit;
namespace fs = std::filesystem;

namespace {

fs::path tmp_dir() {
  fs::path dir = fs::path(SL_BINARY_DIR) / "fit_table_tmp";
  fs::create_directories(dir);
  return dir;
}

void write_doubles(hid_t file, const char* name, const std::vector<double>& v) {
  hsize_t n = v.size();
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t ds = H5Dcreate2(file, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  H5Dclose(ds);
  H5Sclose(space);
}

void write_int64(hid_t file, const char* name, const std::vector<int64_t>& v) {
  hsize_t n = v.size();
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t ds = H5Dcreate2(file, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  H5Dclose(ds);
  H5Sclose(space);
}

void write_vlen_strings(hid_t file, const char* name, const std::vector<std::string>& v) {
  hsize_t n = v.size();
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  std::vector<const char*> ptrs;
  for (const auto& s : v) ptrs.push_back(s.c_str());
  hid_t ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data());
  H5Dclose(ds);
  H5Tclose(type);
  H5Sclose(space);
}

void write_fixed_strings(hid_t file, const char* name, const std::vector<std::string>& v,
                         size_t width, H5T_str_t pad) {
  hsize_t n = v.size();
  hid_t space = H5Screate_simple(1, &n, nullptr);
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, width);
  H5Tset_strpad(type, pad);
  std::vector<char> buf(n * width, pad == H5T_STR_SPACEPAD ? ' ' : '\0');
  for (size_t i = 0; i < n; ++i) std::memcpy(&buf[i * width], v[i].data(), v[i].size());
  hid_t ds = H5Dcreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
  H5Dclose(ds);
  H5Tclose(type);
  H5Sclose(space);
}

}  // namespace

BOOST_AUTO_TEST_CASE(csv_quoting_and_line_ends) {
  fs::path p = tmp_dir() / "quoted.csv";
  std::ofstream(p) << "\"run id\",arch,\"Model Size\",loss\r\n"
                      "\"a,1\",dense,1e8,3.5\r\n"
                      "\"b \"\"x\"\"\",hybrid, 2e8 ,3.25\r\n"
                      "\r\n"
                      "c,dense,4e8,3.0";  // no final line end
  Table t = read_csv(p.string());
  BOOST_TEST(t.num_rows() == 3u);
  BOOST_TEST(t.column("run id").text[0] == "a,1");
  BOOST_TEST(t.column("run id").text[1] == "b \"x\"");
  BOOST_TEST(t.number(1, "Model Size") == 2e8);
  BOOST_TEST(t.number(2, "loss") == 3.0);
  BOOST_TEST(t.where(2) == p.string() + ": line 5");
  BOOST_TEST(distinct_values(t, "arch") == (std::vector<std::string>{"dense", "hybrid"}));
}

BOOST_AUTO_TEST_CASE(sweep_h5_columns) {
  fs::path p = tmp_dir() / "sweep.h5";
  hid_t f = H5Fcreate(p.string().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  write_vlen_strings(f, "run_id", {"r0", "r1", "r2", "r3", "r4"});
  write_vlen_strings(f, "arch", {"dense", "hybrid", "dense", "hybrid", "dense"});
  write_fixed_strings(f, "pattern", {"A", "GGGA", "A", "GGGA", "A"}, 8, H5T_STR_NULLPAD);
  write_fixed_strings(f, "status", {"completed", "completed", "failed", "completed", "completed"},
                      12, H5T_STR_SPACEPAD);
  write_int64(f, "n_params_nonembedding", {1000000, 1100000, 2000000, 2200000, 4000000});
  write_doubles(f, "tokens", {1e7, 1e7, 2e7, 2e7, 4e7});
  write_doubles(f, "loss", {3.5, 3.4, 3.2, 3.1, 2.9});
  H5Fclose(f);

  Table t = read_table(p.string());
  BOOST_TEST(t.num_rows() == 5u);
  BOOST_TEST(t.column("pattern").text[1] == "GGGA");
  BOOST_TEST(t.column("status").text[2] == "failed");
  BOOST_TEST(t.number(4, "n_params_nonembedding") == 4e6);
  BOOST_TEST(t.where(3) == p.string() + ": row 3 (0-based)");

  DataSpec s;  // sweep defaults: n_params_nonembedding, tokens, loss, status
  s.group_col = "arch";
  s.group = "dense";
  Points d = extract_points(t, s);
  BOOST_TEST(d.size() == 2u);  // r2 failed
  BOOST_TEST(d.n_dropped_status == 1);
  BOOST_TEST(d.n == (std::vector<double>{1e6, 4e6}));
  BOOST_TEST(d.d == (std::vector<double>{1e7, 4e7}));
  s.group = "hybrid";
  BOOST_TEST(extract_points(t, s).loss == (std::vector<double>{3.4, 3.1}));
  s.status_col.clear();
  s.group = "dense";
  BOOST_TEST(extract_points(t, s).size() == 3u);
  s.size_cols = {"arch", "pattern"};
  BOOST_TEST(extract_points(t, s).size_key[0] == "dense/A");
}

// N from column "N", D = C / (6 N) from column "C" (strings moved in: GCC 12's -Wrestrict
// misfires on assigning short literals here).
DataSpec flops_spec(std::string n = "N", std::string c = "C") {
  DataSpec s;
  s.n_col = std::move(n);
  s.flops_col = std::move(c);
  return s;
}

BOOST_AUTO_TEST_CASE(compute_column_and_weights) {
  fs::path p = tmp_dir() / "flops.csv";
  std::ofstream(p) << "N,C,loss,w\n1e8,6e17,3.0,1\n1e9,1.2e19,2.5,3\n";
  Table t = read_csv(p.string());
  DataSpec s = flops_spec();
  Points pts = extract_points(t, s);
  BOOST_TEST(std::abs(pts.d[0] / 1e9 - 1) < 1e-12);  // D = C / (6 N)
  BOOST_TEST(std::abs(pts.d[1] / 2e9 - 1) < 1e-12);
  BOOST_TEST(pts.weight == (std::vector<double>{1, 1}));
  s.weight_col = std::string(1, 'w');
  pts = extract_points(t, s);
  BOOST_TEST(pts.weight == (std::vector<double>{0.5, 1.5}));  // normalised to mean 1
  s = flops_spec();
  s.flops_weighted = true;
  pts = extract_points(t, s);
  BOOST_TEST(std::abs(pts.weight[1] / pts.weight[0] - 20) < 1e-9);
  s = flops_spec();
  s.drop_highest = 1;
  pts = extract_points(t, s);
  BOOST_TEST(pts.loss == std::vector<double>{2.5});
  std::string want = p.string();
  want += ": line 3";
  BOOST_TEST(pts.where[0] == want);
}
