// Child processes, written once: starting a program (fork + exec, with its output redirected,
// descriptors closed, an environment, a working directory), waiting for it, capturing its
// output, quoting a word for a shell script, and forwarding the stop signals a supervisor
// receives (SIGTERM, SIGINT, SIGUSR1, ...) to its children. The sweep executors (lib/sweep),
// `train --nproc` (train/dist.cc), `study`, `data prepare`'s decompressors and `report`'s gnuplot
// all start their children here, so every child gets the same care: nothing is run through a
// shell, our signal handlers never run in a child, and an unexecutable program is exit code 127.
#pragma once
#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace sl {

// `s` as one word for a POSIX shell, whatever its bytes: 'it'\''s'. Only for scripts we write
// (an sbatch script); a child started here gets its arguments without a shell.
std::string shell_quote(const std::string& s);

// The exit code a shell reports for a waitpid() or std::system() status: the code the process
// exited with, or 128 + the signal that killed it.
int exit_code(int wait_status);

// Where a child's standard output or error goes.
struct Redirect {
  enum class To {
    kInherit,   // ours
    kNull,      // /dev/null
    kAppend,    // the file `path`, created if missing, appended to
    kTruncate,  // the file `path`, created or emptied
    kPipe,      // a pipe whose read end Process::out holds (standard output only)
    kStdout,    // wherever the child's standard output goes, as 2>&1 (standard error only)
  };
  To to = To::kInherit;
  std::string path;
  static Redirect inherit() { return {}; }
  static Redirect null() { return {To::kNull, ""}; }
  static Redirect append(const std::string& p) { return {To::kAppend, p}; }
  static Redirect truncate(const std::string& p) { return {To::kTruncate, p}; }
  static Redirect pipe() { return {To::kPipe, ""}; }
  static Redirect to_stdout() { return {To::kStdout, ""}; }
};

struct SpawnOptions {
  // The file to execute, when it is not argv[0] (which the child then sees as its name).
  std::string program;
  Redirect out, err;
  std::string cwd;  // the child's working directory ("": ours)
  // Variables set in the child's environment (the rest of ours is inherited).
  std::vector<std::pair<std::string, std::string>> env;
  // Our descriptors the child must not keep. Descriptors opened without O_CLOEXEC are inherited
  // on purpose (a run's lock: core/fs.h try_lock_file), so another run's must be named here.
  std::vector<int> close_fds;
  // The child leads a new process group, so signal(-pid, ...) reaches it and its children.
  bool new_process_group = false;
  // SIGTERM, SIGINT, SIGUSR1 and SIGHUP stay blocked across exec: one sent while the program is
  // still loading stays pending until it unblocks them (`scalinglab train` does, in main, once
  // its handlers are installed) instead of killing it.
  bool block_stop_signals = false;
  // RLIMIT_FSIZE of the child in bytes (-1: ours), as a full disk or a quota would limit it.
  int64_t file_size_limit = -1;
  // Non-empty: the child's standard input is a pipe that receives this text, then end of file
  // (a control program's command, e.g. `quit`); empty: our standard input.
  std::string input;
};

struct Process {
  pid_t pid = -1;
  int out =
      -1;  // with Redirect::pipe(): the read end of the child's standard output (ours to close)
};

// Starts options.program, else argv[0] (searched in PATH when it has no '/'), with argv. Before the
// fork the output files are opened and stdio is flushed; in the child every signal with a
// handler of ours is reset to the default (before the mask is restored, so a signal sent to the
// child in that window cannot run our handler there). Throws sl::Error when fork fails or a
// redirect file cannot be opened; a program that cannot be executed writes one line to the
// child's standard error and exits 127, as a shell's child does.
Process spawn(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// How a child ended.
struct ExitStatus {
  pid_t pid = -1;  // the child; -1: none ended (poll: still running; or no child is left)
  int code = 0;    // exit_code(): its exit code, or 128 + the signal that killed it
  int signal = 0;  // the signal that killed it, 0 when it exited
  bool signaled() const { return signal != 0; }
};

// Waits for `pid` (-1: any child of ours). `block`: until one ends, through interruptions by
// signals; else returns at once, with pid -1 while it runs.
ExitStatus wait_child(pid_t pid, bool block = true);

// spawn() and wait_child(): the child's exit code.
int run_process(const std::vector<std::string>& argv, const SpawnOptions& options = {});

// Runs argv with its standard output read into the returned string (options.out is replaced by a
// pipe; options.err may be Redirect::to_stdout() to read both, as 2>&1). *code: its exit code.
std::string capture_output(const std::vector<std::string>& argv, int* code,
                           SpawnOptions options = {});

// Where spawn() would find `program`: itself when it names a path (has a '/'), else the first
// executable file of that name in PATH; "" when there is none. For saying once, before starting
// anything, that an optional tool (gnuplot, nvidia-cuda-mps-control) is not installed.
std::string find_program(const std::string& program);

// The path of this process's executable (/proc/self/exe): children that run scalinglab again
// (a sweep's trainers, a study's launcher) start the very binary that started them.
std::string self_executable();

// Sends `sig` to `target`: a pid, or -pgid for a whole process group. Errors (the child has just
// exited) are ignored: the caller reaps it anyway.
void signal_process(pid_t target, int sig);

// The stop signals of a process that supervises children (a launcher): while an instance lives,
// each of `signals` is recorded instead of acting by default, and the handler itself sends
// `forward_as` (0: the signal received) at once to every target added, so a child is told even
// while we block in wait_child (handlers are installed with SA_RESTART, as signal() does).
// A target added after a signal was received is sent it on add(), so a child started during a
// stop is stopped too. One instance at a time; the destructor restores the previous handlers.
class SignalForwarder {
 public:
  SignalForwarder(std::initializer_list<int> signals, int forward_as = 0);
  ~SignalForwarder();
  SignalForwarder(const SignalForwarder&) = delete;
  SignalForwarder& operator=(const SignalForwarder&) = delete;

  // The latest signal received, 0 if none.
  int received() const;
  // A pid, or -pgid for a process group (signal_process); remove() it once it is reaped, so a
  // reused pid is never signalled.
  void add(pid_t target);
  void remove(pid_t target);
  // Sends `sig` to every target now (a supervisor's own decision, e.g. the others after a rank
  // failed).
  void signal_all(int sig) const;

 private:
  std::vector<std::pair<int, struct sigaction>> previous_;  // the handlers to restore
};

}  // namespace sl
