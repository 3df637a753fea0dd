// Child processes (core/process.h): a shell reads shell_quote() back as the very bytes; spawn's
// redirects, environment, working directory and closed descriptors; exit codes of an exit, a
// kill and an unexecutable program; the stop signals blocked across exec on request; and the
// SignalForwarder passing a stop on to its children while we wait for them.
#define BOOST_TEST_MODULE core_process
#include <boost/test/unit_test.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "common/files.h"
#include "core/error.h"
#include "core/process.h"

namespace fs = std::filesystem;
using sl::test::slurp;

namespace {

std::string sh_out(const std::string& script, int* rc = nullptr, sl::SpawnOptions o = {}) {
  return sl::capture_output({"/bin/sh", "-c", script}, rc, o);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_shell_reads_a_quoted_word_back_unchanged) {
  for (const std::string w : {"", "plain", "two words", "it's", "'", "''", "a\"b", "$HOME `x`",
                              "back\\slash", "new\nline", "*?[", "--flag", "; rm -rf /"}) {
    int rc = -1;
    const std::string out = sh_out("printf '%s' " + sl::shell_quote(w), &rc);
    BOOST_TEST(rc == 0);
    BOOST_TEST(out == w);
  }
}

BOOST_AUTO_TEST_CASE(spawn_redirects_environment_and_directory) {
  sl::test::TempDir d("sl_process_");
  const std::string log = (d.path / "log").string();
  sl::SpawnOptions o;
  o.out = sl::Redirect::append(log);
  o.err = sl::Redirect::to_stdout();
  o.cwd = d.path.string();
  o.env = {{"SL_PROCESS_TEST", "a b"}, {"HOME", "/nowhere"}};
  const std::vector<std::string> cmd = {
      "/bin/sh", "-c", "echo \"$SL_PROCESS_TEST|$HOME|$(pwd)\"; echo to-stderr >&2; exit 7"};
  BOOST_TEST(sl::run_process(cmd, o) == 7);
  BOOST_TEST(sl::run_process(cmd, o) == 7);  // appended, not replaced
  const std::string line = "a b|/nowhere|" + fs::canonical(d.path).string() + "\nto-stderr\n";
  BOOST_TEST(slurp(log) == line + line);
  o.out = sl::Redirect::truncate(log);
  o.err = sl::Redirect::null();
  BOOST_TEST(sl::run_process(cmd, o) == 7);
  BOOST_TEST(slurp(log) == line.substr(0, line.find('\n') + 1));
  // A program that cannot be executed: exit code 127 and one line naming it, as a shell says.
  int rc = 0;
  sl::SpawnOptions e;
  e.err = sl::Redirect::to_stdout();
  const std::string err = sl::capture_output({"/no/such/program", "x"}, &rc, e);
  BOOST_TEST(rc == 127);
  BOOST_TEST(err.find("cannot run '/no/such/program'") != std::string::npos, err);
  // A redirect that cannot be opened is an error here, before any child exists.
  sl::SpawnOptions bad;
  bad.out = sl::Redirect::append((d.path / "no" / "such" / "dir").string());
  BOOST_CHECK_THROW(sl::spawn({"/bin/true"}, bad), sl::Error);
}

BOOST_AUTO_TEST_CASE(exit_codes_and_closed_descriptors) {
  // Killed by a signal: 128 + the signal, and signaled().
  const sl::Process p = sl::spawn({"/bin/sh", "-c", "kill -KILL $$"});
  const sl::ExitStatus e = sl::wait_child(p.pid);
  BOOST_TEST(e.pid == p.pid);
  BOOST_TEST(e.code == 128 + SIGKILL);
  BOOST_TEST(e.signaled());
  BOOST_TEST(sl::exit_code(0) == 0);
  // A descriptor without O_CLOEXEC is inherited unless named in close_fds.
  const int fd = ::open("/dev/null", O_RDONLY);
  BOOST_REQUIRE(fd >= 3);
  const std::string probe = "test -e /proc/self/fd/" + std::to_string(fd);
  int rc = -1;
  sh_out(probe, &rc);
  BOOST_TEST(rc == 0);
  sl::SpawnOptions o;
  o.close_fds = {fd};
  sh_out(probe, &rc, o);
  BOOST_TEST(rc == 1);
  ::close(fd);
  // Polling a running child: pid -1 until it ends.
  const sl::Process s = sl::spawn({"/bin/sleep", "0.3"});
  BOOST_TEST(sl::wait_child(s.pid, false).pid == -1);
  BOOST_TEST(sl::wait_child(s.pid).code == 0);
}

BOOST_AUTO_TEST_CASE(stop_signals_blocked_across_exec_on_request) {
  // SigBlk of /proc/self/status: the blocked mask in hex; SIGTERM is bit 15 (1 << (15 - 1)).
  auto sigterm_blocked = [](bool block) {
    sl::SpawnOptions o;
    o.block_stop_signals = block;
    int rc = -1;
    // awk itself, not through sh: dash unblocks every signal when it starts.
    const std::string mask =
        sl::capture_output({"awk", "/^SigBlk/ {print $2}", "/proc/self/status"}, &rc, o);
    BOOST_REQUIRE(rc == 0);
    return (std::stoull(mask, nullptr, 16) >> (SIGTERM - 1) & 1) != 0;
  };
  BOOST_TEST(sigterm_blocked(true));
  BOOST_TEST(!sigterm_blocked(false));
}

BOOST_AUTO_TEST_CASE(a_forwarder_passes_a_stop_to_its_children_at_once) {
  sl::test::TempDir d("sl_process_fw_");
  const std::string seen = (d.path / "seen").string();
  {
    sl::SignalForwarder stops({SIGUSR1}, SIGTERM);
    // The child reports the SIGTERM it is sent (ours arrives as SIGUSR1) and exits.
    const sl::Process p =
        sl::spawn({"/bin/sh", "-c",
                   "trap 'echo term > " + seen + "; exit 0' TERM; while :; do sleep 0.05; done"});
    stops.add(p.pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // its trap is set
    ::kill(::getpid(), SIGUSR1);
    // wait_child blocks: the handler itself must have told the child.
    const sl::ExitStatus e = sl::wait_child(p.pid);
    stops.remove(p.pid);
    BOOST_TEST(stops.received() == SIGUSR1);
    BOOST_TEST(e.code == 0);
    BOOST_TEST(slurp(seen) == "term\n");
    // A child added after the stop is sent it on add().
    const sl::Process late = sl::spawn({"/bin/sleep", "30"});
    stops.add(late.pid);
    const sl::ExitStatus l = sl::wait_child(late.pid);
    stops.remove(late.pid);
    BOOST_TEST(l.signal == SIGTERM);
  }
  // Gone: the previous (default) disposition is back.
  struct sigaction now {};
  sigaction(SIGUSR1, nullptr, &now);
  BOOST_TEST((now.sa_handler == SIG_DFL));
}
