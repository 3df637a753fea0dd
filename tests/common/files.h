// Small file helpers shared by the tests that drive the scalinglab binary.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <initializer_list>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/process.h"

namespace sl::test {

// The whole file as a string ("" if it cannot be read).
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Real English text for training corpora: the named licence texts of Debian's base-files
// (/usr/share/common-licenses), concatenated in the given order.
inline std::string licenses(std::initializer_list<const char*> names) {
  std::string s;
  for (const char* n : names) s += slurp(std::string("/usr/share/common-licenses/") + n);
  return s;
}

// The exit code from a std::system() or waitpid() status, the shell's way: 128 + the signal when
// the process was killed (the library's, so tests and executors read statuses alike).
using ::sl::exit_code;

// SL_EXE followed by `args`: the argv of a scalinglab child (core/process.h spawn).
inline std::vector<std::string> scalinglab_argv(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {SL_EXE};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// A fresh directory TMP/<prefix><pid>, removed with everything in it when the test ends.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& prefix)
      : path(std::filesystem::temp_directory_path() / (prefix + std::to_string(getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace sl::test
