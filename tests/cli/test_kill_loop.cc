// Issue 19, item 2: kill -9 at random moments of a run and its resumes loses and repeats no
// step (the deterministic window between log flush and checkpoint: test_reliability.cc).
#define BOOST_TEST_MODULE kill_loop
#include <boost/test/unit_test.hpp>

#include <signal.h>

#include <random>
#include <string>
#include <vector>

#include "common/files.h"
#include "common/train_proc.h"
#include "runlog/runlog.h"

using namespace sl::test;  // NOLINT: the helpers of common/train_proc.h

// 20 kill -9 at random moments (seeded), each followed by a resume that is killed again, then a
// resume to the end: every step logged once, every loss bitwise the uninterrupted run's.
BOOST_AUTO_TEST_CASE(kill9_at_random_moments_loses_and_repeats_nothing) {
  Fixture f;
  const std::vector<std::string> tokens = {"--set", "train.tokens=51200"};
  const std::string ref = f.path("ref");
  BOOST_REQUIRE_EQUAL(run(train_args(f, ref, tokens)), 0);
  const sl::RunLog want = sl::read_runlog(ref + "/log.h5");
  const std::string r = f.path("killed");
  std::mt19937 rng(19);
  std::uniform_int_distribution<int> ms(30, 400);
  int kills = 0;
  for (int i = 0; i < 20; ++i) {
    std::vector<std::string> a = train_args(f, r, tokens);
    if (i > 0) a.push_back("--resume");
    Proc p = spawn(a, f.path("k.err"));
    std::this_thread::sleep_for(std::chrono::milliseconds(ms(rng)));
    kill(p.pid, SIGKILL);
    const int rc = wait_exit(p);
    kills += rc == 128 + SIGKILL;
    BOOST_REQUIRE_MESSAGE(rc == 128 + SIGKILL || rc == 0,
                          "kill " << i << ": exit " << rc << ": " << slurp(f.path("k.err")));
  }
  BOOST_TEST(kills >= 15);  // (a run that finished before its kill is no test of anything)
  std::string err;
  BOOST_REQUIRE_EQUAL(run(train_args(f, r, {"--set", "train.tokens=51200", "--resume"}), &err), 0);
  check_same_as(sl::read_runlog(r + "/log.h5"), want);
}
