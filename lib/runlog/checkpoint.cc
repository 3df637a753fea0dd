#include "runlog/checkpoint.h"

#include <unistd.h>

#include <cstdio>

#include "core/crc32.h"
#include "core/error.h"
#include "core/fs.h"
#include "runlog/h5.h"

namespace sl {

namespace {

using h5::Id;

// /2 adds the checksums; /1 files (written before them) still load, unverified.
constexpr const char* kSchema = "scalinglab.ckpt/2";
constexpr const char* kSchemaV1 = "scalinglab.ckpt/1";

// The CRC of the named integers or strings in a canonical byte form (name, NUL, then the value as
// 8 little-endian bytes or as its length and bytes), in name order, so any change to a name or a
// value changes it.
uint32_t crc_of(const std::map<std::string, int64_t>& ints) {
  uint32_t c = 0;
  for (const auto& [name, v] : ints) {
    c = crc32(name.c_str(), name.size() + 1, c);
    c = crc32(&v, sizeof v, c);
  }
  return c;
}
uint32_t crc_of(const std::map<std::string, std::string>& strings) {
  uint32_t c = 0;
  for (const auto& [name, v] : strings) {
    c = crc32(name.c_str(), name.size() + 1, c);
    const uint64_t n = v.size();
    c = crc32(&n, sizeof n, c);
    c = crc32(v.data(), v.size(), c);
  }
  return c;
}
uint32_t crc_of(const std::vector<float>& v) { return crc32(v.data(), v.size() * sizeof(float)); }

std::string hex(uint32_t x) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", x);
  return buf;
}

// A stored checksum (an int64 attribute) against the one computed from what was read.
void verify(hid_t obj, const char* attr, uint32_t computed, const std::string& what,
            const std::string& where) {
  if (!h5::has_attr(obj, attr)) fail(where + ": " + what + " has no checksum (corrupt file)");
  const int64_t stored = h5::read_int_attr(obj, attr, where);
  if (stored != static_cast<int64_t>(computed))
    fail(where + ": " + what + " fails its checksum (stored crc32 " +
         hex(static_cast<uint32_t>(stored)) + ", read " + hex(computed) +
         "): the checkpoint is corrupt");
}

void check_name(const std::string& file, const char* kind, const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    fail("checkpoint " + file + ": invalid " + kind + " name '" + name +
         "' (must be non-empty, without '/')");
}

// Names of the links (datasets) or attributes of a group, in HDF5's name order.
herr_t collect_link(hid_t, const char* name, const H5L_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}
herr_t collect_attr(hid_t, const char* name, const H5A_info_t*, void* out) {
  static_cast<std::vector<std::string>*>(out)->emplace_back(name);
  return 0;
}

Id open_group(hid_t file, const char* name, const std::string& where) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0) fail(where + ": missing group /" + name);
  return Id(h5::check(H5Gopen2(file, name, H5P_DEFAULT), where + ": cannot open /" + name),
            H5Gclose);
}

}  // namespace

std::string checkpoint_path(const std::string& dir) { return dir + "/state.h5"; }

bool checkpoint_exists(const std::string& dir) { return path_exists(checkpoint_path(dir)); }

void write_checkpoint(const std::string& dir, const Checkpoint& c) {
  const std::string final_path = checkpoint_path(dir);
  const std::string tmp = final_path + ".tmp";
  const std::string where = "checkpoint " + tmp;
  for (const auto& [name, v] : c.arrays) check_name(final_path, "array", name);
  for (const auto& [name, v] : c.ints) check_name(final_path, "int", name);
  for (const auto& [name, v] : c.strings) check_name(final_path, "string", name);
  make_dirs(dir);
  if (path_exists(tmp) && ::unlink(tmp.c_str()) != 0) fail(where + ": cannot remove stale file");
  // HDF5 builds the file in memory (the core driver, no backing store) and we write its image
  // ourselves: every disk error (a full disk, a quota, a file-size limit) then comes from one
  // write we control, which removes the partial file and reports one line, instead of from
  // inside HDF5, whose failed flushes leave a half-written file and an open handle that crashed
  // the process in HDF5's exit handler.
  size_t payload = 1 << 20;
  for (const auto& [name, v] : c.arrays) payload += v.size() * sizeof(float) + 1024;
  std::vector<unsigned char> image;
  {
    h5::quiet();
    Id fapl(h5::check(H5Pcreate(H5P_FILE_ACCESS), where + ": H5Pcreate"), H5Pclose);
    h5::check_status(H5Pset_fapl_core(fapl, payload, false), where + ": H5Pset_fapl_core");
    Id file(h5::check(H5Fcreate(tmp.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, fapl),
                      where + ": cannot create"),
            H5Fclose);
    h5::write_string_attr(file, "schema", kSchema);
    Id arrays(h5::check(H5Gcreate2(file, "arrays", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                        where + ": cannot create /arrays"),
              H5Gclose);
    for (const auto& [name, v] : c.arrays) {
      const std::string what = where + ": cannot write array '" + name + "'";
      const hsize_t n = v.size();
      Id space(h5::check(H5Screate_simple(1, &n, nullptr), what), H5Sclose);
      Id ds(h5::check(H5Dcreate2(arrays, name.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT,
                                 H5P_DEFAULT, H5P_DEFAULT),
                      what),
            H5Dclose);
      if (n > 0)
        h5::check_status(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()),
                         what);
      h5::write_int_attr(ds, "crc32", crc_of(v));
    }
    Id ints(h5::check(H5Gcreate2(file, "ints", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                      where + ": cannot create /ints"),
            H5Gclose);
    for (const auto& [name, v] : c.ints) h5::write_int_attr(ints, name, v);
    Id strings(h5::check(H5Gcreate2(file, "strings", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                         where + ": cannot create /strings"),
               H5Gclose);
    for (const auto& [name, v] : c.strings) h5::write_string_attr(strings, name, v);
    h5::write_int_attr(file, "ints_crc32", crc_of(c.ints));
    h5::write_int_attr(file, "strings_crc32", crc_of(c.strings));
    bool ok = strings.reset() & ints.reset() & arrays.reset();
    if (!ok) h5::fail(where + ": close failed");
    h5::check_status(H5Fflush(file, H5F_SCOPE_GLOBAL), where + ": flush");
    const ssize_t size = H5Fget_file_image(file, nullptr, 0);
    if (size <= 0) h5::fail(where + ": cannot size the file image");
    image.resize(static_cast<size_t>(size));
    if (H5Fget_file_image(file, image.data(), image.size()) != size)
      h5::fail(where + ": cannot copy the file image");
    if (!file.reset()) h5::fail(where + ": close failed");
  }
  write_new_file_durable(tmp, image.data(), image.size());
  rename_durable(tmp, final_path);  // also fsyncs `dir`
}

bool checkpoint_write_may_overlap() {
  hbool_t ts = 0;
  return H5is_library_threadsafe(&ts) >= 0 && ts;
}

Checkpoint read_checkpoint(const std::string& dir) {
  const std::string path = checkpoint_path(dir);
  const std::string where = "checkpoint " + path;
  if (!path_exists(path)) fail(where + ": no such file");
  Id fapl = h5::file_access(false);
  Id file(h5::check(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), where + ": cannot open"),
          H5Fclose);
  const std::string schema = h5::read_string_attr(file, "schema", where);
  if (schema != kSchema && schema != kSchemaV1)
    fail(where + ": schema '" + schema + "' (expected " + kSchema + ")");
  const bool checked = schema == kSchema;
  Checkpoint c;
  c.source = path;

  Id arrays = open_group(file, "arrays", where);
  std::vector<std::string> names;
  h5::check_status(H5Literate(arrays, H5_INDEX_NAME, H5_ITER_NATIVE, nullptr, collect_link, &names),
                   where + ": cannot list /arrays");
  for (const std::string& name : names) {
    const std::string what = where + ": array '" + name + "'";
    Id ds(h5::check(H5Dopen2(arrays, name.c_str(), H5P_DEFAULT), what + " cannot be opened"),
          H5Dclose);
    Id type(h5::check(H5Dget_type(ds), what), H5Tclose);
    if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 4) fail(what + " is not float32");
    Id space(h5::check(H5Dget_space(ds), what), H5Sclose);
    if (H5Sget_simple_extent_ndims(space) != 1) fail(what + " is not 1-D");
    const hssize_t n = H5Sget_simple_extent_npoints(space);
    if (n < 0) h5::fail(what);
    std::vector<float>& v = c.arrays[name];
    v.resize(static_cast<size_t>(n));
    if (n > 0)
      h5::check_status(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()),
                       what + " cannot be read");
    if (checked) verify(ds, "crc32", crc_of(v), "array '" + name + "'", where);
  }

  Id ints = open_group(file, "ints", where);
  names.clear();
  h5::check_status(H5Aiterate2(ints, H5_INDEX_NAME, H5_ITER_NATIVE, nullptr, collect_attr, &names),
                   where + ": cannot list /ints");
  for (const std::string& name : names) c.ints[name] = h5::read_int_attr(ints, name, where);

  Id strings = open_group(file, "strings", where);
  names.clear();
  h5::check_status(
      H5Aiterate2(strings, H5_INDEX_NAME, H5_ITER_NATIVE, nullptr, collect_attr, &names),
      where + ": cannot list /strings");
  for (const std::string& name : names)
    c.strings[name] = h5::read_string_attr(strings, name, where);
  if (checked) {
    verify(file, "ints_crc32", crc_of(c.ints), "the integers (/ints)", where);
    verify(file, "strings_crc32", crc_of(c.strings), "the strings (/strings)", where);
  }
  return c;
}

const std::vector<float>& Checkpoint::array(const std::string& name, size_t expected) const {
  const std::string where = "checkpoint " + (source.empty() ? std::string("(memory)") : source);
  auto it = arrays.find(name);
  if (it == arrays.end()) fail(where + ": no array '" + name + "'");
  if (it->second.size() != expected)
    fail(where + ": array '" + name + "' has " + std::to_string(it->second.size()) +
         " elements, expected " + std::to_string(expected));
  return it->second;
}

int64_t Checkpoint::int_value(const std::string& name) const {
  auto it = ints.find(name);
  if (it == ints.end())
    fail("checkpoint " + (source.empty() ? std::string("(memory)") : source) + ": no int '" + name +
         "'");
  return it->second;
}

const std::string& Checkpoint::string_value(const std::string& name) const {
  auto it = strings.find(name);
  if (it == strings.end())
    fail("checkpoint " + (source.empty() ? std::string("(memory)") : source) + ": no string '" +
         name + "'");
  return it->second;
}

}  // namespace sl
