// scalinglab: one executable, subcommands like git. Every subcommand reports bad input by throwing
// sl::Error; main prints its one line and exits non-zero (2), leaving files as they were.
#include <cstdio>
#include <exception>

#include <signal.h>

#include <cstring>

#include "cli/commands.h"
#include "core/error.h"
#include "train/trainer.h"

int main(int argc, char** argv) {
  // `train` catches SIGTERM/SIGUSR1/SIGINT/SIGHUP to checkpoint and exit as preempted; a signal
  // that arrives while the command line is parsed and the data opened is kept for the loop, so take
  // them before anything else (a scheduler may signal a task the moment it starts).
  // A launcher may also block them across exec (sweep launch does), so that one sent while the
  // process is still being loaded, before main, stays pending until here instead of killing it.
  if (argc > 1 && std::strcmp(argv[1], "train") == 0) {
    sl::install_stop_handlers();
    sigset_t stops;
    sigemptyset(&stops);
    for (int s : {SIGTERM, SIGINT, SIGUSR1, SIGHUP}) sigaddset(&stops, s);
    sigprocmask(SIG_UNBLOCK, &stops, nullptr);
  }
  CLI::App app{"scalinglab: scaling laws and token savings of hybrid vs dense language models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "scalinglab 0.1.0");
  sl::cli::register_train(app);
  sl::cli::register_bench(app);
  sl::cli::register_fit(app);
  sl::cli::register_export(app);
  sl::cli::register_doctor(app);
  sl::cli::register_sweep(app);
  sl::cli::register_data(app);
  sl::cli::register_report(app);
  sl::cli::register_study(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const sl::Error& e) {
    std::fprintf(stderr, "scalinglab: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "scalinglab: unexpected error: %s\n", e.what());
    return 1;
  }
  return 0;
}
