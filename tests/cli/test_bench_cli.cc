// `scalinglab bench --op` through the real binary on the CPU backend: every op is timed forward
// and backward (positive, finite times), matrix-product ops report TFLOP/s and memory-bound ones
// GB/s, the JSON has one row per (op, pass); an unknown op or a bad count is one error line.
// The --profile table and its summary line. (Speeds themselves are never asserted: they belong to
// `bench`, not to tests.)
#define BOOST_TEST_MODULE bench_cli
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

#include "common/files.h"

namespace {

using sl::test::exit_code;
using sl::test::slurp;
using sl::test::TempDir;

struct Result {
  int code;
  std::string out, err;
};

Result bench(const TempDir& d, const std::string& args) {
  const std::string out = (d.path / "stdout").string(), err = (d.path / "stderr").string();
  const int st = std::system(
      (std::string(SL_EXE) + " bench --device cpu --threads 1 " + args + " >" + out + " 2>" + err)
          .c_str());
  return {exit_code(st), slurp(out), slurp(err)};
}

// bench that must succeed: its output logged, its exit code required to be 0.
Result bench_ok(const TempDir& d, const std::string& args) {
  Result r = bench(d, args);
  BOOST_TEST_MESSAGE(r.out << r.err);
  BOOST_REQUIRE_EQUAL(r.code, 0);
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_op_timed_forward_and_backward) {
  TempDir d("sl_bench_cli_");
  const std::string json = (d.path / "ops.json").string();
  const Result r = bench(d,
                         "--op attention,gdn,matmul,rmsnorm,swiglu,rope,rmsnorm_rope,conv1d,l2norm,"
                         "gated_rmsnorm,gated_rmsnorm_proj,embedding,cross_entropy,adamw --batch 2 "
                         "--seq-len 20 --heads 2 --head-dim 8 --vocab 64 --reps 2 --warmup 1 "
                         "--json " +
                             json);
  BOOST_TEST_MESSAGE(r.out << r.err);
  BOOST_REQUIRE_EQUAL(r.code, 0);
  const nlohmann::json rows = nlohmann::json::parse(slurp(json));
  BOOST_REQUIRE_EQUAL(rows.size(), 28u);
  std::set<std::string> seen;
  for (const auto& row : rows) {
    const std::string op = row.at("op"), pass = row.at("pass");
    seen.insert(op + "/" + pass);
    const double ms = row.at("ms");
    BOOST_TEST((std::isfinite(ms) && ms > 0), op << " " << pass << " ms " << ms);
    BOOST_TEST(double(row.at("bytes")) > 0, op);
    const bool products = op == "attention" || op == "matmul";
    BOOST_TEST((double(row.at("flops")) > 0) == products, op);
    BOOST_TEST((double(row.at("tflops")) > 0) == products, op);
    BOOST_TEST(double(row.at("gbs")) > 0, op);
    BOOST_TEST(r.out.find(op) != std::string::npos);
  }
  BOOST_TEST(seen.size() == 28u);
  // Attention: the causal forward counts 2 x 2 B H T^2 hd / 2, the backward 2.5 times that.
  for (const auto& row : rows)
    if (row.at("op") == "attention")
      BOOST_TEST(double(row.at("flops")) ==
                 (row.at("pass") == "fwd" ? 1.0 : 2.5) * 2 * 2 * 2 * 2 * 20.0 * 20 * 8 / 2);
}

BOOST_AUTO_TEST_CASE(bad_arguments_are_one_line) {
  TempDir d("sl_bench_cli_bad_");
  Result r = bench(d, "--op attention,softmaxx --batch 1 --seq-len 8 --heads 1 --head-dim 8");
  BOOST_TEST(r.code != 0);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  BOOST_TEST(r.err.find("softmaxx") != std::string::npos, r.err);
  r = bench(d, "--op rmsnorm --reps 0");
  BOOST_TEST(r.code != 0);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  BOOST_TEST(r.err.find("--reps") != std::string::npos, r.err);
}

// --data: the ids come from a dataset (a byte-level text file here) instead of random, for the op
// bench's embedding and the whole-model bench; a missing file is one error line naming it.
BOOST_AUTO_TEST_CASE(ids_from_a_dataset) {
  TempDir d("sl_bench_cli_data_");
  const std::string text = (d.path / "train.txt").string();
  {
    std::ofstream f(text, std::ios::binary);
    for (int i = 0; i < 200; ++i) f << "the cat sat on the mat; ";
  }
  Result r = bench_ok(d,
                      "--op embedding --batch 2 --seq-len 64 --heads 2 --head-dim 8 --vocab 256 "
                      "--reps 2 --warmup 1 --data " +
                          text);
  BOOST_TEST(r.out.find("data V=256") != std::string::npos, r.out);
  r = bench_ok(d, "--arch dense,hybrid --sizes L0 --seq-len 16 --batch 2 --steps 1 --data " + text);
  BOOST_TEST(r.out.find("hybrid") != std::string::npos, r.out);
  const std::string missing = (d.path / "nope.txt").string();
  for (const std::string args :
       {"--op embedding --batch 1 --seq-len 8 --heads 1 --head-dim 8 --vocab 256",
        "--arch dense --sizes L0 --seq-len 16 --batch 2 --steps 1"}) {
    r = bench(d, args + " --data " + missing);
    BOOST_TEST(r.code != 0);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
    BOOST_TEST(r.err.find("nope.txt") != std::string::npos, r.err);
  }
}

// --concurrent K: K copies of a run as threads of one process; the row's tokens/s is their
// aggregate (K x one copy's tokens over the slowest copy's time), each copy's own in the JSON.
BOOST_AUTO_TEST_CASE(concurrent_copies_report_their_aggregate) {
  TempDir d("sl_bench_cli_conc_");
  const std::string json = (d.path / "conc.json").string();
  Result r = bench(d,
                   "--arch dense,hybrid --sizes L0 --seq-len 16 --batch 2 --vocab 64 --steps 2 "
                   "--warmup 1 --concurrent 2 --json " +
                       json);
  BOOST_TEST_MESSAGE(r.out << r.err);
  BOOST_REQUIRE_EQUAL(r.code, 0);
  const nlohmann::json rows = nlohmann::json::parse(slurp(json));
  BOOST_REQUIRE_EQUAL(rows.size(), 2u);
  for (const auto& row : rows) {
    BOOST_TEST(row.at("concurrent") == 2);
    const auto& each = row.at("tokens_per_s_each");
    BOOST_REQUIRE_EQUAL(each.size(), 2u);
    double slowest = 1e300;
    for (const auto& e : each) {
      BOOST_TEST((std::isfinite(double(e)) && double(e) > 0));
      slowest = std::min(slowest, double(e));
    }
    BOOST_TEST(std::abs(double(row.at("tokens_per_s")) / (2 * slowest) - 1) < 1e-9);
  }
  BOOST_TEST(r.out.find("2 copies, tokens/s each:") != std::string::npos, r.out);
  // --profile times one run; a copy that cannot start is one error line (the other copies do
  // not wait for it).
  r = bench(d, "--arch dense --sizes L0 --seq-len 16 --batch 2 --steps 1 --concurrent 2 --profile");
  BOOST_TEST(r.code != 0);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  BOOST_TEST(r.err.find("--profile") != std::string::npos, r.err);
  const std::string bad = std::string(SL_EXE) +
                          " bench --device cuda:99 --arch dense --sizes L0 --seq-len 16 --batch 2 "
                          "--steps 1 --concurrent 2 2>" +
                          (d.path / "bad_err").string() + " >/dev/null";
  BOOST_TEST(exit_code(std::system(bad.c_str())) != 0);
  const std::string err = slurp(d.path / "bad_err");
  BOOST_TEST(std::count(err.begin(), err.end(), '\n') == 1, err);
  BOOST_TEST(err.find("bench --concurrent: copy") != std::string::npos, err);
}

// `bench --profile`: one table row per op with its calls a step, ms a step and share (the shares
// summing to 100%), and the step issue's measure, the ops outside the matrix products, attention
// and the GDN recurrence, equal to the sum of those rows.
BOOST_AUTO_TEST_CASE(profile_table_sums_to_its_outside_line) {
  TempDir d("sl_bench_cli_");
  const Result r = bench(d,
                         "--arch hybrid --sizes L0 --seq-len 16 --batch 2 --vocab 64 --steps 1 "
                         "--warmup 1 --profile");
  BOOST_TEST_MESSAGE(r.out << r.err);
  BOOST_REQUIRE_EQUAL(r.code, 0);
  std::istringstream in(r.out);
  std::string line;
  bool table = false;
  int rows = 0;
  double share = 0, outside = 0, printed = -1, printed_pct = -1;
  std::set<std::string> ops;
  while (std::getline(in, line)) {
    if (line.find("  op ") == 0) {
      table = true;
      continue;
    }
    if (!table) continue;
    if (std::sscanf(line.c_str(), "  outside matmul, attention and gdn: %lf ms/step (%lf%%)",
                    &printed, &printed_pct) == 2)
      break;
    char name[64];
    double calls, ms, pct;
    BOOST_REQUIRE_MESSAGE(
        std::sscanf(line.c_str(), " %63s %lf %lf %lf%%", name, &calls, &ms, &pct) == 4, line);
    ops.insert(name);
    ++rows;
    share += pct;
    const std::string n = name;
    if (n != "matmul_forward" && n != "matmul_backward" && n != "attention_forward" &&
        n != "attention_backward" && n != "gdn_forward" && n != "gdn_backward")
      outside += ms;
  }
  for (const char* op :
       {"matmul_forward", "attention_backward", "gdn_backward", "cross_entropy", "adamw"})
    BOOST_TEST(ops.count(op) == 1u, op);
  BOOST_TEST(std::abs(share - 100.0) < 0.05 * rows);
  BOOST_REQUIRE(printed >= 0);
  BOOST_TEST(std::abs(printed - outside) <= 0.0005 * rows + 1e-9, printed << " vs " << outside);
  BOOST_TEST((printed_pct > 0 && printed_pct < 100));
}
