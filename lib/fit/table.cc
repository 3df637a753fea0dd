#include "fit/table.h"

#include <hdf5.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "runlog/h5.h"

namespace sl::fit {

bool Table::has(const std::string& name) const {
  return std::any_of(columns_.begin(), columns_.end(),
                     [&](const Column& c) { return c.name == name; });
}

const Table::Column& Table::column(const std::string& name) const {
  for (const Column& c : columns_)
    if (c.name == name) return c;
  std::string names;
  for (const Column& c : columns_) names += (names.empty() ? "'" : ", '") + c.name + "'";
  fail(source_ + ": no column '" + name + "' (columns: " + names + ")");
}

std::string Table::where(size_t row) const {
  if (row < lines_.size()) return source_ + ": line " + std::to_string(lines_[row]);
  return source_ + ": row " + std::to_string(row) + " (0-based)";
}

double Table::number(size_t row, const std::string& name) const {
  const Column& c = column(name);
  SL_ASSERT(row < c.text.size());
  if (!c.values.empty()) return c.values[row];
  std::string s = c.text[row];
  // Trim spaces: "1e9 " is a number.
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
  size_t start = s.find_first_not_of(" \t");
  s = start == std::string::npos ? std::string() : s.substr(start);
  if (s.empty() || s == "nan" || s == "NaN" || s == "NAN") return std::nan("");
  const char* b = s.c_str();
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(b, &end);
  if (end == b || *end != '\0')
    fail(where(row) + ": column '" + name + "': '" + c.text[row] + "' is not a number");
  return v;
}

void Table::add_column(Column c) {
  if (!columns_.empty() && c.text.size() != num_rows())
    fail(source_ + ": column '" + c.name + "' has " + std::to_string(c.text.size()) +
         " rows, column '" + columns_.front().name + "' has " + std::to_string(num_rows()));
  if (has(c.name)) fail(source_ + ": duplicate column '" + c.name + "'");
  columns_.push_back(std::move(c));
}

namespace {

// Splits one CSV record starting at `pos` in `text` into cells (RFC 4180: cells may be quoted,
// a quote inside quotes is doubled, quoted cells may hold commas and line breaks). Advances
// `pos` past the record's line end and counts the lines it consumed in `lines`.
std::vector<std::string> parse_record(const std::string& text, size_t& pos, int& lines,
                                      const std::string& path, int line_no) {
  std::vector<std::string> cells;
  std::string cell;
  bool quoted = false, was_quoted = false;
  lines = 1;
  while (pos < text.size()) {
    char ch = text[pos];
    if (quoted) {
      if (ch == '"') {
        if (pos + 1 < text.size() && text[pos + 1] == '"') {
          cell += '"';
          pos += 2;
          continue;
        }
        quoted = false;
      } else {
        if (ch == '\n') ++lines;
        cell += ch;
      }
      ++pos;
      continue;
    }
    if (ch == '"' && cell.empty() && !was_quoted) {
      quoted = was_quoted = true;
      ++pos;
      continue;
    }
    if (ch == ',') {
      cells.push_back(std::move(cell));
      cell.clear();
      was_quoted = false;
      ++pos;
      continue;
    }
    if (ch == '\r' || ch == '\n') {
      if (ch == '\r' && pos + 1 < text.size() && text[pos + 1] == '\n') ++pos;
      ++pos;
      cells.push_back(std::move(cell));
      return cells;
    }
    cell += ch;
    ++pos;
  }
  if (quoted) fail(path + ": line " + std::to_string(line_no) + ": unterminated quoted cell");
  cells.push_back(std::move(cell));
  return cells;
}

}  // namespace

Table read_csv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path + ": cannot open (" + std::strerror(errno) + ")");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);  // UTF-8 BOM
  size_t pos = 0;
  int line = 1, lines = 0;
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) fail(path + ": empty file");
  std::vector<std::string> header = parse_record(text, pos, lines, path, line);
  line += lines;
  std::vector<Table::Column> cols(header.size());
  for (size_t j = 0; j < header.size(); ++j) {
    cols[j].name = header[j];
    if (header[j].empty())
      fail(path + ": line 1: column " + std::to_string(j + 1) + " has no name");
  }
  std::vector<int> row_lines;
  while (pos < text.size()) {
    int first = line;
    std::vector<std::string> cells = parse_record(text, pos, lines, path, line);
    line += lines;
    if (cells.size() == 1 && cells[0].find_first_not_of(" \t") == std::string::npos) continue;
    if (cells.size() != header.size())
      fail(path + ": line " + std::to_string(first) + ": " + std::to_string(cells.size()) +
           " cells, the header has " + std::to_string(header.size()));
    for (size_t j = 0; j < cells.size(); ++j) cols[j].text.push_back(std::move(cells[j]));
    row_lines.push_back(first);
  }
  Table t(path, std::move(row_lines));
  for (auto& c : cols) t.add_column(std::move(c));
  return t;
}

namespace {

std::string format_number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

struct ReadCtx {
  std::string path;
  std::vector<Table::Column> cols;
  std::string error;
};

// Reads one dataset `name` of the root group into ctx->cols (skips non-1-D or non-scalar types).
void read_dataset(hid_t file, const std::string& name, ReadCtx* ctx) {
  const std::string what = ctx->path + ": dataset '" + name + "'";
  h5::Id ds(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.valid()) fail(what + ": cannot open");
  h5::Id space(H5Dget_space(ds), H5Sclose);
  h5::Id ftype(H5Dget_type(ds), H5Tclose);
  if (!space.valid() || !ftype.valid()) fail(what + ": cannot read its shape or type");
  if (H5Sget_simple_extent_ndims(space) != 1) return;
  hsize_t n = 0;
  H5Sget_simple_extent_dims(space, &n, nullptr);
  Table::Column col;
  col.name = name;
  H5T_class_t cls = H5Tget_class(ftype);
  if (cls == H5T_INTEGER || cls == H5T_FLOAT) {
    col.values.resize(n);
    if (n > 0 &&
        H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, col.values.data()) < 0)
      fail(what + ": cannot read as numbers");
    col.text.reserve(n);
    for (double v : col.values) col.text.push_back(format_number(v));
  } else if (cls == H5T_STRING) {
    col.text.resize(n);
    if (H5Tis_variable_str(ftype) > 0) {
      h5::Id mtype(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mtype, H5T_VARIABLE);
      H5Tset_cset(mtype, H5Tget_cset(ftype));
      std::vector<char*> buf(n, nullptr);
      if (n > 0 && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
        fail(what + ": cannot read as variable-length strings");
      for (hsize_t i = 0; i < n; ++i) col.text[i] = buf[i] ? buf[i] : "";
      if (n > 0) H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, buf.data());
    } else {
      size_t size = H5Tget_size(ftype);
      h5::Id mtype(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mtype, size);
      H5Tset_strpad(mtype, H5T_STR_NULLPAD);
      H5Tset_cset(mtype, H5Tget_cset(ftype));
      std::vector<char> buf(n * size + 1, '\0');
      if (n > 0 && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
        fail(what + ": cannot read as fixed-length strings");
      bool space_pad = H5Tget_strpad(ftype) == H5T_STR_SPACEPAD;
      for (hsize_t i = 0; i < n; ++i) {
        const char* p = buf.data() + i * size;
        size_t len = strnlen(p, size);
        std::string s(p, len);
        if (space_pad)
          while (!s.empty() && s.back() == ' ') s.pop_back();
        col.text[i] = std::move(s);
      }
    }
  } else {
    return;  // compound, enum, ...: not a table column
  }
  ctx->cols.push_back(std::move(col));
}

herr_t visit_link(hid_t group, const char* name, const H5L_info_t*, void* data) {
  auto* ctx = static_cast<ReadCtx*>(data);
  H5O_info_t info;
  if (H5Oget_info_by_name(group, name, &info, H5P_DEFAULT) < 0) return 0;
  if (info.type != H5O_TYPE_DATASET) return 0;
  try {
    read_dataset(group, name, ctx);
  } catch (const Error& e) {
    ctx->error = e.what();
    return -1;
  }
  return 0;
}

}  // namespace

Table read_hdf5(const std::string& path) {
  h5::quiet();
  {
    std::ifstream probe(path);
    if (!probe) fail(path + ": cannot open (" + std::strerror(errno) + ")");
  }
  if (H5Fis_hdf5(path.c_str()) <= 0) fail(path + ": not an HDF5 file");
  h5::Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_file_locking(fapl, false, true);
  h5::Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose);
  if (!file.valid()) fail(path + ": cannot open as HDF5");
  ReadCtx ctx{path, {}, {}};
  hsize_t idx = 0;
  herr_t st = H5Literate(file, H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, visit_link, &ctx);
  if (st < 0 && ctx.error.empty()) {
    // Files without creation-order tracking: iterate by name instead.
    ctx.cols.clear();
    idx = 0;
    st = H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, &idx, visit_link, &ctx);
  }
  if (!ctx.error.empty()) fail(ctx.error);
  if (st < 0) fail(path + ": cannot list the root group");
  if (ctx.cols.empty()) fail(path + ": no 1-D datasets in the root group");
  Table t(path);
  for (auto& c : ctx.cols) t.add_column(std::move(c));
  return t;
}

Table read_table(const std::string& path) {
  auto ends_with = [&](const std::string& suf) {
    return path.size() >= suf.size() &&
           path.compare(path.size() - suf.size(), suf.size(), suf) == 0;
  };
  if (ends_with(".h5") || ends_with(".hdf5") || ends_with(".H5")) return read_hdf5(path);
  return read_csv(path);
}

}  // namespace sl::fit
