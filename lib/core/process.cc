#include "core/process.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/error.h"

extern char** environ;

namespace sl {

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

int exit_code(int wait_status) {
  return WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
}

namespace {

// A descriptor of ours at 3 or above, close-on-exec: the child's dup2 onto 0-2 then always
// moves it (dup2 of a descriptor onto itself would keep its close-on-exec flag).
int high_fd(int fd, const std::string& what) {
  if (fd < 0) fail(what + ": " + std::strerror(errno));
  if (fd >= 3) return fd;
  const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  const int e = errno;
  ::close(fd);
  if (moved < 0) fail(what + ": " + std::strerror(e));
  return moved;
}

int open_redirect(const Redirect& r) {
  switch (r.to) {
    case Redirect::To::kNull:
      return high_fd(::open("/dev/null", O_WRONLY | O_CLOEXEC), "cannot open /dev/null");
    case Redirect::To::kAppend:
      return high_fd(::open(r.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644),
                     "cannot open '" + r.path + "' for a child's output");
    case Redirect::To::kTruncate:
      return high_fd(::open(r.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644),
                     "cannot open '" + r.path + "' for a child's output");
    default:
      return -1;
  }
}

// In the child, between fork and exec: async-signal-safe calls only (the parent may have other
// threads, whose locks the child's copy of memory holds forever).
void write_all(int fd, const char* s, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, s, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    s += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

Process spawn(const std::vector<std::string>& argv, const SpawnOptions& o) {
  SL_ASSERT(!argv.empty() && !argv[0].empty());
  SL_ASSERT(o.out.to != Redirect::To::kStdout && o.err.to != Redirect::To::kPipe);
  // Everything the child needs is made here, before the fork.
  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  std::vector<std::string> env_text;
  std::vector<char*> envp;
  if (!o.env.empty()) {
    std::set<std::string> names;
    for (const auto& [k, v] : o.env) names.insert(k);
    for (char** e = environ; e && *e; ++e) {
      const char* eq = std::strchr(*e, '=');
      if (!eq || !names.count(std::string(*e, static_cast<size_t>(eq - *e)))) envp.push_back(*e);
    }
    for (const auto& [k, v] : o.env) env_text.push_back(k + "=" + v);
    for (std::string& t : env_text) envp.push_back(t.data());
    envp.push_back(nullptr);
  }
  char* const* child_env = o.env.empty() ? environ : envp.data();
  const std::string program = o.program.empty() ? argv[0] : o.program;
  const std::string cannot = "scalinglab: cannot run '" + program + "': ";
  int out_fd = open_redirect(o.out), err_fd = -1, pipe_read = -1, in_fd = -1, in_write = -1;
  try {
    err_fd = open_redirect(o.err);
    if (o.out.to == Redirect::To::kPipe) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) fail(std::string("pipe: ") + std::strerror(errno));
      pipe_read = p[0];
      out_fd = high_fd(p[1], "pipe");
    }
    if (!o.input.empty()) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) fail(std::string("pipe: ") + std::strerror(errno));
      in_write = p[1];
      in_fd = high_fd(p[0], "pipe");
    }
  } catch (...) {
    for (int fd : {out_fd, err_fd, pipe_read, in_fd, in_write})
      if (fd >= 0) ::close(fd);
    throw;
  }
  const bool err_to_out = o.err.to == Redirect::To::kStdout;
  sigset_t stops;
  sigemptyset(&stops);
  for (int s : {SIGTERM, SIGINT, SIGUSR1, SIGHUP}) sigaddset(&stops, s);
  std::fflush(nullptr);  // or buffered output would be written twice, by us and by the child
  // Every signal blocked across the fork: none can run one of our handlers in the child before
  // the child has reset them.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (int s = 1; s < NSIG; ++s) {
      struct sigaction sa;
      if (::sigaction(s, nullptr, &sa) != 0) continue;
      const bool handled = (sa.sa_flags & SA_SIGINFO)
                               ? sa.sa_sigaction != nullptr
                               : sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN;
      if (!handled) continue;
      struct sigaction dfl {};
      dfl.sa_handler = SIG_DFL;
      ::sigaction(s, &dfl, nullptr);
    }
    if (o.new_process_group) ::setpgid(0, 0);
    if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) {
      write_all(2, cannot.data(), cannot.size());
      write_all(2, "cannot enter its directory\n", 27);
      ::_exit(127);
    }
    if (in_fd >= 0) ::dup2(in_fd, 0);
    if (out_fd >= 0) ::dup2(out_fd, 1);
    if (err_to_out)
      ::dup2(1, 2);
    else if (err_fd >= 0)
      ::dup2(err_fd, 2);
    for (int fd : o.close_fds) ::close(fd);
    if (o.file_size_limit >= 0) {
      const rlimit lim{static_cast<rlim_t>(o.file_size_limit),
                       static_cast<rlim_t>(o.file_size_limit)};
      ::setrlimit(RLIMIT_FSIZE, &lim);
    }
    sigset_t mask = old;
    if (o.block_stop_signals) sigorset(&mask, &mask, &stops);
    ::sigprocmask(SIG_SETMASK, &mask, nullptr);
    ::execvpe(program.c_str(), cargs.data(), child_env);
    const char* why = std::strerror(errno);
    write_all(2, cannot.data(), cannot.size());
    write_all(2, why, std::strlen(why));
    write_all(2, "\n", 1);
    ::_exit(127);
  }
  const int fork_errno = errno;
  // The other half of the new-group handshake: whichever of us runs first makes the group, so a
  // signal to it right after spawn() returns cannot miss.
  if (pid > 0 && o.new_process_group) ::setpgid(pid, pid);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (out_fd >= 0) ::close(out_fd);
  if (err_fd >= 0) ::close(err_fd);
  if (in_fd >= 0) ::close(in_fd);
  if (in_write >= 0) {
    // A command line or two: the pipe buffer holds it, so this never waits for the child. A child
    // that exits without reading it is no error (EPIPE; SIGPIPE is ignored around the write).
    if (pid > 0) {
      struct sigaction ign {
      }, prev{};
      ign.sa_handler = SIG_IGN;
      ::sigaction(SIGPIPE, &ign, &prev);
      write_all(in_write, o.input.data(), o.input.size());
      ::sigaction(SIGPIPE, &prev, nullptr);
    }
    ::close(in_write);
  }
  if (pid < 0) {
    if (pipe_read >= 0) ::close(pipe_read);
    fail("cannot start '" + program + "': fork: " + std::strerror(fork_errno));
  }
  return {pid, pipe_read};
}

ExitStatus wait_child(pid_t pid, bool block) {
  int st = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &st, block ? 0 : WNOHANG);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return {};
    return {r, exit_code(st), WIFSIGNALED(st) ? WTERMSIG(st) : 0};
  }
}

int run_process(const std::vector<std::string>& argv, const SpawnOptions& options) {
  return wait_child(spawn(argv, options).pid).code;
}

std::string capture_output(const std::vector<std::string>& argv, int* code, SpawnOptions options) {
  options.out = Redirect::pipe();
  const Process p = spawn(argv, options);
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(p.out, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(p.out);
  const int c = wait_child(p.pid).code;
  if (code) *code = c;
  return text;
}

std::string find_program(const std::string& program) {
  auto runnable = [](const std::string& p) {
    std::error_code ec;
    return std::filesystem::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
  };
  if (program.empty()) return "";
  if (program.find('/') != std::string::npos) return runnable(program) ? program : "";
  // execvpe's own default when PATH is unset.
  const char* env = std::getenv("PATH");
  const std::string path = env ? env : "/bin:/usr/bin";
  for (size_t at = 0; at <= path.size();) {
    const size_t colon = std::min(path.find(':', at), path.size());
    // An empty entry is the working directory, as for execvpe.
    const std::string d = colon > at ? path.substr(at, colon - at) : ".";
    if (runnable(d + "/" + program)) return d + "/" + program;
    at = colon + 1;
  }
  return "";
}

std::string self_executable() {
  std::error_code ec;
  const std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) fail("cannot read /proc/self/exe: " + ec.message());
  return p.string();
}

void signal_process(pid_t target, int sig) {
  SL_ASSERT(target != 0 && target != -1);  // 0 and -1 would be our own group and everyone
  ::kill(target, sig);
}

namespace {

// The forwarder's state lives in globals: a signal handler can reach nothing else. Plain
// lock-free atomics, read and written by the handler with async-signal-safe calls only.
constexpr int kMaxTargets = 1024;
std::atomic<pid_t> g_targets[kMaxTargets];
std::atomic<int> g_received{0};
std::atomic<int> g_forward_as{0};
std::atomic<bool> g_forwarder_alive{false};

extern "C" void forward_stop_signal(int sig) {
  const int saved = errno;  // kill() may change it under the code we interrupted
  g_received.store(sig);
  const int as = g_forward_as.load();
  for (auto& t : g_targets) {
    const pid_t p = t.load();
    if (p != 0) ::kill(p, as ? as : sig);
  }
  errno = saved;
}

}  // namespace

SignalForwarder::SignalForwarder(std::initializer_list<int> signals, int forward_as) {
  SL_ASSERT(!g_forwarder_alive.exchange(true));
  g_received.store(0);
  g_forward_as.store(forward_as);
  for (auto& t : g_targets) t.store(0);
  struct sigaction sa {};
  sa.sa_handler = forward_stop_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int s : signals) {
    struct sigaction before {};
    ::sigaction(s, &sa, &before);
    previous_.emplace_back(s, before);
  }
}

SignalForwarder::~SignalForwarder() {
  for (const auto& [s, before] : previous_) ::sigaction(s, &before, nullptr);
  for (auto& t : g_targets) t.store(0);
  g_received.store(0);
  g_forwarder_alive.store(false);
}

int SignalForwarder::received() const { return g_received.load(); }

void SignalForwarder::add(pid_t target) {
  SL_ASSERT(target != 0 && target != -1);
  bool placed = false;
  for (auto& t : g_targets) {
    pid_t empty = 0;
    if (t.compare_exchange_strong(empty, target)) {
      placed = true;
      break;
    }
  }
  if (!placed) fail("more than " + std::to_string(kMaxTargets) + " children to forward signals to");
  // A signal that came before the target was in the table (while it was being started).
  if (const int sig = g_received.load()) {
    const int as = g_forward_as.load();
    ::kill(target, as ? as : sig);
  }
}

void SignalForwarder::remove(pid_t target) {
  for (auto& t : g_targets) {
    pid_t want = target;
    if (t.compare_exchange_strong(want, 0)) return;
  }
}

void SignalForwarder::signal_all(int sig) const {
  for (const auto& t : g_targets) {
    const pid_t p = t.load();
    if (p != 0) ::kill(p, sig);
  }
}

}  // namespace sl
