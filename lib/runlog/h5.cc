#include "runlog/h5.h"

#include <mutex>

namespace sl::h5 {

void quiet() {
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}

namespace {

// H5Ewalk2 callback: walking upward, the first entry is where the error was detected.
herr_t take_first(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n == 0 && err && err->desc) *out = err->desc;
  return 0;
}

}  // namespace

std::string detail() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_first, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg;
}

void fail(const std::string& what) {
  const std::string d = detail();
  throw LibError(d.empty() ? what : what + ": " + d);
}

hid_t check(hid_t id, const std::string& what) {
  if (id < 0) fail(what);
  return id;
}

void check_status(herr_t status, const std::string& what) {
  if (status < 0) fail(what);
}

Id file_access(bool latest) {
  quiet();
  Id fapl(check(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate"), H5Pclose);
  // ignore_when_disabled = true: on file systems without flock, proceed rather than fail.
  check_status(H5Pset_file_locking(fapl, false, true), "H5Pset_file_locking");
  if (latest)
    check_status(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST),
                 "H5Pset_libver_bounds");
  return fapl;
}

namespace {

Id utf8_vlen_type() {
  Id t(check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose);
  check_status(H5Tset_size(t, H5T_VARIABLE), "H5Tset_size");
  check_status(H5Tset_cset(t, H5T_CSET_UTF8), "H5Tset_cset");
  return t;
}

// Opens attribute `name` for writing with the given type, replacing an existing one.
Id create_attr(hid_t obj, const std::string& name, hid_t type) {
  if (H5Aexists(obj, name.c_str()) > 0)
    check_status(H5Adelete(obj, name.c_str()), "H5Adelete " + name);
  Id space(check(H5Screate(H5S_SCALAR), "H5Screate"), H5Sclose);
  return Id(check(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT),
                  "cannot create attribute '" + name + "'"),
            H5Aclose);
}

// Opens an existing scalar attribute (one element), naming `where` and `name` in errors.
Id open_attr(hid_t obj, const std::string& name, const std::string& where) {
  const htri_t e = H5Aexists(obj, name.c_str());
  if (e < 0) fail(where + ": cannot query attribute '" + name + "'");
  if (e == 0) ::sl::fail(where + ": missing attribute '" + name + "'");
  Id a(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT),
             where + ": cannot open attribute '" + name + "'"),
       H5Aclose);
  Id space(check(H5Aget_space(a), where + ": attribute '" + name + "'"), H5Sclose);
  if (H5Sget_simple_extent_npoints(space) != 1)
    ::sl::fail(where + ": attribute '" + name + "' is not a scalar");
  return a;
}

}  // namespace

void write_string_attr(hid_t obj, const std::string& name, const std::string& value) {
  Id t = utf8_vlen_type();
  Id a;
  if (H5Aexists(obj, name.c_str()) > 0) {
    Id old(check(H5Aopen(obj, name.c_str(), H5P_DEFAULT), "cannot open attribute '" + name + "'"),
           H5Aclose);
    Id old_type(check(H5Aget_type(old), "H5Aget_type"), H5Tclose);
    Id old_space(check(H5Aget_space(old), "H5Aget_space"), H5Sclose);
    if (H5Tis_variable_str(old_type) > 0 && H5Sget_simple_extent_npoints(old_space) == 1)
      a = std::move(old);
  }
  if (!a.valid()) a = create_attr(obj, name, t);
  const char* p = value.c_str();
  check_status(H5Awrite(a, t, &p), "cannot write attribute '" + name + "'");
}

void write_int_attr(hid_t obj, const std::string& name, int64_t value) {
  Id a = create_attr(obj, name, H5T_STD_I64LE);
  check_status(H5Awrite(a, H5T_NATIVE_INT64, &value), "cannot write attribute '" + name + "'");
}

void write_double_attr(hid_t obj, const std::string& name, double value) {
  Id a = create_attr(obj, name, H5T_IEEE_F64LE);
  check_status(H5Awrite(a, H5T_NATIVE_DOUBLE, &value), "cannot write attribute '" + name + "'");
}

bool has_attr(hid_t obj, const std::string& name) { return H5Aexists(obj, name.c_str()) > 0; }

std::string read_string_attr(hid_t obj, const std::string& name, const std::string& where) {
  Id a = open_attr(obj, name, where);
  Id ft(check(H5Aget_type(a), where + ": attribute '" + name + "'"), H5Tclose);
  if (H5Tget_class(ft) != H5T_STRING)
    ::sl::fail(where + ": attribute '" + name + "' is not a string");
  const std::string what = where + ": cannot read attribute '" + name + "'";
  if (H5Tis_variable_str(ft) > 0) {
    Id mt = utf8_vlen_type();
    char* p = nullptr;
    check_status(H5Aread(a, mt, &p), what);
    std::string s = p ? p : "";
    if (p) H5free_memory(p);
    return s;
  }
  const size_t n = H5Tget_size(ft);
  Id mt(check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose);
  check_status(H5Tset_size(mt, n + 1), "H5Tset_size");  // room for a terminator
  check_status(H5Tset_strpad(mt, H5T_STR_NULLTERM), "H5Tset_strpad");
  std::string buf(n + 1, '\0');
  check_status(H5Aread(a, mt, buf.data()), what);
  buf.resize(std::char_traits<char>::length(buf.c_str()));
  return buf;
}

int64_t read_int_attr(hid_t obj, const std::string& name, const std::string& where) {
  Id a = open_attr(obj, name, where);
  int64_t v = 0;
  check_status(H5Aread(a, H5T_NATIVE_INT64, &v),
               where + ": cannot read attribute '" + name + "' as int64");
  return v;
}

double read_double_attr(hid_t obj, const std::string& name, const std::string& where) {
  Id a = open_attr(obj, name, where);
  double v = 0;
  check_status(H5Aread(a, H5T_NATIVE_DOUBLE, &v),
               where + ": cannot read attribute '" + name + "' as float64");
  return v;
}

}  // namespace sl::h5
