// The one set of HDF5 helpers (RAII identifiers, quiet error stacks, checked calls, attributes),
// shared by the run log, the checkpoint, the sweep table (sweep/sweep.cc), the fit's table reader
// (fit/table.cc) and the HF fixture reader (model/hf_parity.cc); not a public interface.
// The HDF5 library here is the serial, non-thread-safe build: callers keep HDF5 calls on one
// thread at a time.
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <utility>

#include "core/error.h"

namespace sl::h5 {

// Owns one HDF5 identifier and closes it with the matching H5?close. Move-only.
class Id {
 public:
  using Closer = herr_t (*)(hid_t);
  Id() = default;
  Id(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Id(Id&& o) noexcept : id_(std::exchange(o.id_, H5I_INVALID_HID)), closer_(o.closer_) {}
  Id& operator=(Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, H5I_INVALID_HID);
      closer_ = o.closer_;
    }
    return *this;
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  ~Id() { reset(); }

  // Closes now; returns false if HDF5 reported an error while closing.
  bool reset() {
    bool ok = true;
    if (id_ >= 0 && closer_) ok = closer_(id_) >= 0;
    id_ = H5I_INVALID_HID;
    return ok;
  }
  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: pass straight to the C API
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Turns off HDF5's printing of error stacks to stderr (once per process): our errors are one line,
// carrying the innermost HDF5 message (see detail()).
void quiet();

// The innermost message on HDF5's error stack ("" if empty), then clears the stack.
std::string detail();

// An error the HDF5 library reported (as opposed to a file that is valid HDF5 but not what we
// expect). Readers of a live file retry these: they can be transient while a writer rewrites
// metadata.
class LibError : public ::sl::Error {
 public:
  using ::sl::Error::Error;
};

// Throws LibError("<what>: <innermost HDF5 message>").
[[noreturn]] void fail(const std::string& what);

// Returns `id` if >= 0, else throws fail(what). For calls that return an identifier.
hid_t check(hid_t id, const std::string& what);
// Throws fail(what) if `status` < 0. For calls that return herr_t.
void check_status(herr_t status, const std::string& what);

// A file access property list with HDF5 file locking off; libver bounds latest when `latest`
// (needed for SWMR).
Id file_access(bool latest);

// Scalar attributes on an object (file, group or dataset). A string attribute that exists as a
// variable-length string is overwritten in place (never missing for a concurrent reader); any
// other existing attribute of that name is replaced.
void write_string_attr(hid_t obj, const std::string& name, const std::string& value);
void write_int_attr(hid_t obj, const std::string& name, int64_t value);
void write_double_attr(hid_t obj, const std::string& name, double value);
bool has_attr(hid_t obj, const std::string& name);
// Readers accept fixed- or variable-length strings and any integer/float stored type
// (converted by HDF5). `where` names the file for errors.
std::string read_string_attr(hid_t obj, const std::string& name, const std::string& where);
int64_t read_int_attr(hid_t obj, const std::string& name, const std::string& where);
double read_double_attr(hid_t obj, const std::string& name, const std::string& where);

}  // namespace sl::h5
