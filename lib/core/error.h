// Errors are exceptions carrying one line that names the file, key or row at fault.
#pragma once
#include <stdexcept>
#include <string>

namespace sl {

// The one exception type the toolkit throws for bad input or failed I/O. The CLI prints what()
// as a single line and exits non-zero.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

[[noreturn]] inline void fail(const std::string& msg) { throw Error(msg); }

}  // namespace sl

// Internal invariant (a bug if it fires, not bad user input).
#define SL_ASSERT(cond)                                                              \
  do {                                                                               \
    if (!(cond))                                                                     \
      ::sl::fail(std::string("internal error: ") + #cond + " at " + __FILE__ + ":" + \
                 std::to_string(__LINE__));                                          \
  } while (0)
