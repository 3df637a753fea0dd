#include "runlog/runlog.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <thread>

#include "core/error.h"
#include "core/fs.h"
#include "runlog/h5.h"

namespace sl {

namespace {

using h5::Id;

// One table of the log (/train, /eval, /budgets): parallel 1-D columns. Column 0 is the key
// (step, or tokens for /budgets), written last in every flush (see runlog.h).
struct TableSpec {
  const char* group;
  std::vector<const char*> columns;
  std::vector<bool> is_int;
  hsize_t chunk;  // elements per chunk: a train chunk of 1024 float64 is 8 KiB
};

const std::array<TableSpec, 3>& tables() {
  static const std::array<TableSpec, 3> t = {{
      {"train",
       {"step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "time_s"},
       {true, true, false, false, false, false, false},
       1024},
      {"eval", {"step", "tokens", "loss"}, {true, true, false}, 256},
      {"budgets", {"tokens", "loss"}, {true, false}, 64},
  }};
  return t;
}
enum { kTrain = 0, kEval = 1, kBudgets = 2 };

constexpr int64_t kIntFill = -1;  // never a valid step or token count: marks unwritten rows

const char* const kStatuses[] = {"running", "completed", "diverged", "failed", "preempted"};

void check_status_value(const std::string& path, const std::string& s) {
  for (const char* k : kStatuses)
    if (s == k) return;
  fail("run log '" + path + "': invalid status '" + s +
       "' (expected running|completed|diverged|failed|preempted)");
}

// Creates the file with every group, dataset (empty) and attribute, then closes it. SWMR forbids
// creating objects later, so everything the schema has must exist here.
void create_file(const std::string& path, const RunAttrs& a) {
  check_status_value(path, a.status);
  Id fapl = h5::file_access(true);
  // Paged file-space allocation: no metadata object smaller than a page straddles a 4 KiB page
  // boundary. Linux checks for a fatal signal between the pages of a write(), so a SIGKILLed
  // writer can leave a straddling object header half old, half new, i.e. with a checksum that
  // no reader will ever accept; a write within one page is never torn that way.
  Id fcpl(h5::check(H5Pcreate(H5P_FILE_CREATE), "H5Pcreate"), H5Pclose);
  h5::check_status(H5Pset_file_space_strategy(fcpl, H5F_FSPACE_STRATEGY_PAGE, false, 1),
                   "H5Pset_file_space_strategy");
  h5::check_status(H5Pset_file_space_page_size(fcpl, 4096), "H5Pset_file_space_page_size");
  Id file(h5::check(H5Fcreate(path.c_str(), H5F_ACC_EXCL, fcpl, fapl),
                    "run log '" + path + "': cannot create"),
          H5Fclose);
  h5::write_string_attr(file, "schema", kRunLogSchema);
  h5::write_string_attr(file, "run_id", a.run_id);
  h5::write_string_attr(file, "arch", a.arch);
  h5::write_string_attr(file, "pattern", a.pattern);
  h5::write_int_attr(file, "n_params", a.n_params);
  h5::write_int_attr(file, "n_params_nonembedding", a.n_params_nonembedding);
  h5::write_double_attr(file, "flops_per_token", a.flops_per_token);
  h5::write_int_attr(file, "seq_len", a.seq_len);
  h5::write_int_attr(file, "batch_tokens", a.batch_tokens);
  h5::write_int_attr(file, "tokens_planned", a.tokens_planned);
  h5::write_string_attr(file, "status", a.status);
  h5::write_string_attr(file, "config", a.config);
  h5::write_string_attr(file, "version", a.version);
  h5::write_string_attr(file, "device", a.device);
  // Created now, empty, because SWMR forbids creating attributes later (set_status leaves SWMR
  // to change them, which may also create them in logs written before they existed).
  h5::write_string_attr(file, "status_reason", a.status_reason);
  h5::write_string_attr(file, "config_changes", a.config_changes);

  const hsize_t zero = 0, unlimited = H5S_UNLIMITED;
  Id space(h5::check(H5Screate_simple(1, &zero, &unlimited), "H5Screate_simple"), H5Sclose);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const TableSpec& t : tables()) {
    Id g(h5::check(H5Gcreate2(file, t.group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                   "run log '" + path + "': cannot create group /" + t.group),
         H5Gclose);
    for (size_t c = 0; c < t.columns.size(); ++c) {
      Id dcpl(h5::check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate"), H5Pclose);
      h5::check_status(H5Pset_chunk(dcpl, 1, &t.chunk), "H5Pset_chunk");
      // Fill values mark rows whose data never reached the file (a killed writer).
      if (t.is_int[c])
        h5::check_status(H5Pset_fill_value(dcpl, H5T_NATIVE_INT64, &kIntFill), "fill");
      else
        h5::check_status(H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, &nan), "fill");
      Id ds(h5::check(H5Dcreate2(g, t.columns[c], t.is_int[c] ? H5T_STD_I64LE : H5T_IEEE_F64LE,
                                 space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
                      "run log '" + path + "': cannot create /" + t.group + "/" + t.columns[c]),
            H5Dclose);
    }
  }
  h5::check_status(H5Fflush(file, H5F_SCOPE_GLOBAL), "run log '" + path + "': flush");
  if (!file.reset()) h5::fail("run log '" + path + "': close");
}

// Reads the first n elements of a 1-D dataset.
template <class T>
std::vector<T> read_column(hid_t ds, hsize_t n, hid_t memtype, const std::string& what) {
  std::vector<T> v(n);
  if (n == 0) return v;
  Id fspace(h5::check(H5Dget_space(ds), what), H5Sclose);
  const hsize_t start = 0;
  h5::check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, nullptr, &n, nullptr), what);
  Id mspace(h5::check(H5Screate_simple(1, &n, nullptr), what), H5Sclose);
  h5::check_status(H5Dread(ds, memtype, mspace, fspace, H5P_DEFAULT, v.data()), what);
  return v;
}

hsize_t extent(hid_t ds, const std::string& what) {
  Id space(h5::check(H5Dget_space(ds), what), H5Sclose);
  if (H5Sget_simple_extent_ndims(space) != 1) fail(what + ": not a 1-D dataset");
  hsize_t n = 0;
  h5::check_status(H5Sget_simple_extent_dims(space, &n, nullptr), what);
  return n;
}

// One table read back: columns as int64 or double, trimmed to rows that are complete.
struct TableData {
  std::vector<std::vector<int64_t>> ints;  // indexed by column (empty for float columns)
  std::vector<std::vector<double>> reals;  // indexed by column (empty for int columns)
};

TableData read_table(hid_t file, const TableSpec& t, const std::string& where) {
  const std::string gname = std::string("/") + t.group;
  const htri_t exists = H5Lexists(file, t.group, H5P_DEFAULT);
  if (exists <= 0) fail(where + ": missing group " + gname);
  Id g(h5::check(H5Gopen2(file, t.group, H5P_DEFAULT), where + ": cannot open " + gname), H5Gclose);
  std::vector<Id> ds;
  hsize_t n = std::numeric_limits<hsize_t>::max();
  for (const char* col : t.columns) {
    const std::string what = where + ": dataset " + gname + "/" + col;
    if (H5Lexists(g, col, H5P_DEFAULT) <= 0) fail(where + ": missing dataset " + gname + "/" + col);
    ds.emplace_back(h5::check(H5Dopen2(g, col, H5P_DEFAULT), what), H5Dclose);
    n = std::min(n, extent(ds.back(), what));
  }
  // A writer killed mid-flush may have extended columns unevenly: the shortest wins.
  TableData d;
  d.ints.resize(t.columns.size());
  d.reals.resize(t.columns.size());
  for (size_t c = 0; c < t.columns.size(); ++c) {
    const std::string what = where + ": cannot read " + gname + "/" + t.columns[c];
    if (t.is_int[c])
      d.ints[c] = read_column<int64_t>(ds[c], n, H5T_NATIVE_INT64, what);
    else
      d.reals[c] = read_column<double>(ds[c], n, H5T_NATIVE_DOUBLE, what);
  }
  // Key column written last: rows whose key still holds the fill value never completed.
  size_t rows = n;
  while (rows > 0 && d.ints[0][rows - 1] == kIntFill) --rows;
  for (auto& v : d.ints)
    if (!v.empty()) v.resize(rows);
  for (auto& v : d.reals)
    if (!v.empty()) v.resize(rows);
  return d;
}

RunLog read_once(const std::string& path) {
  const std::string where = "run log '" + path + "'";
  Id fapl = h5::file_access(true);
  // A SWMR reader retries a metadata read whose checksum fails (a torn write) with a sleep that
  // doubles each time; HDF5 1.10's default of 100 attempts means 2^100 ns, i.e. a reader of a
  // log whose writer was SIGKILLed mid-write hangs forever (seen in ~2% of such trials). 16
  // attempts sleep at most 2^16 ns in all; read_runlog's own retry loop covers a live writer.
  h5::check_status(H5Pset_metadata_read_attempts(fapl, 16),
                   where + ": H5Pset_metadata_read_attempts");
  Id file(h5::check(H5Fopen(path.c_str(), H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl),
                    where + ": cannot open"),
          H5Fclose);
  RunLog log;
  const std::string schema = h5::read_string_attr(file, "schema", where);
  if (schema != kRunLogSchema)
    fail(where + ": schema '" + schema + "' (expected " + kRunLogSchema + ")");
  RunAttrs& a = log.attrs;
  a.run_id = h5::read_string_attr(file, "run_id", where);
  a.arch = h5::read_string_attr(file, "arch", where);
  a.pattern = h5::read_string_attr(file, "pattern", where);
  a.n_params = h5::read_int_attr(file, "n_params", where);
  a.n_params_nonembedding = h5::read_int_attr(file, "n_params_nonembedding", where);
  a.flops_per_token = h5::read_double_attr(file, "flops_per_token", where);
  a.seq_len = h5::read_int_attr(file, "seq_len", where);
  a.batch_tokens = h5::read_int_attr(file, "batch_tokens", where);
  a.tokens_planned = h5::read_int_attr(file, "tokens_planned", where);
  a.status = h5::read_string_attr(file, "status", where);
  // A torn read of an attribute being rewritten (set_status) is retried like a library error.
  bool status_ok = false;
  for (const char* k : kStatuses) status_ok |= a.status == k;
  if (!status_ok) throw h5::LibError(where + ": invalid status '" + a.status + "'");
  a.config = h5::read_string_attr(file, "config", where);
  a.version = h5::read_string_attr(file, "version", where);
  a.device = h5::read_string_attr(file, "device", where);
  if (h5::has_attr(file, "status_reason"))
    a.status_reason = h5::read_string_attr(file, "status_reason", where);
  if (h5::has_attr(file, "config_changes"))
    a.config_changes = h5::read_string_attr(file, "config_changes", where);

  TableData tr = read_table(file, tables()[kTrain], where);
  log.train.resize(tr.ints[0].size());
  for (size_t i = 0; i < log.train.size(); ++i)
    log.train[i] = TrainRow{tr.ints[0][i],  tr.ints[1][i],  tr.reals[2][i], tr.reals[3][i],
                            tr.reals[4][i], tr.reals[5][i], tr.reals[6][i]};
  TableData ev = read_table(file, tables()[kEval], where);
  log.eval_step = std::move(ev.ints[0]);
  log.eval_tokens = std::move(ev.ints[1]);
  log.eval_loss = std::move(ev.reals[2]);
  TableData bu = read_table(file, tables()[kBudgets], where);
  log.budget_tokens = std::move(bu.ints[0]);
  log.budget_loss = std::move(bu.reals[1]);
  return log;
}

}  // namespace

RunLog read_runlog(const std::string& path) {
  if (!path_exists(path)) fail("run log '" + path + "': no such file");
  // A writer changing `status` holds the file outside SWMR for a few milliseconds; opens and
  // reads during that window fail inside HDF5, so retry those for up to 1 s before reporting.
  // Errors about content (schema, missing attribute) are final at once.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (;;) {
    try {
      return read_once(path);
    } catch (const h5::LibError&) {
      if (std::chrono::steady_clock::now() >= deadline) throw;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

struct RunLogWriter::Impl {
  struct Column {
    Id ds;
    std::vector<int64_t> ibuf;  // rows appended but not yet written (int columns)
    std::vector<double> dbuf;   // (float columns)
  };
  struct Table {
    Id group;
    std::vector<Column> cols;
    hsize_t written = 0;  // rows in the file
    size_t pending() const {
      return cols[0].ibuf.size();  // column 0 is always an int key
    }
  };

  std::string path;
  Id file;
  std::array<Table, 3> t;
  double autoflush_s = 2.0;
  std::chrono::steady_clock::time_point oldest_pending;
  bool any_pending = false;
  bool closed = true;

  std::string where() const { return "run log '" + path + "'"; }

  // Opens `path` in SWMR-write mode and every dataset, with table row counts from the file.
  void open_swmr() {
    Id fapl = h5::file_access(true);
    file = Id(h5::check(H5Fopen(path.c_str(), H5F_ACC_RDWR | H5F_ACC_SWMR_WRITE, fapl),
                        where() + ": cannot open for SWMR write"),
              H5Fclose);
    for (size_t k = 0; k < 3; ++k) {
      const TableSpec& spec = tables()[k];
      Table& tb = t[k];
      tb.group = Id(h5::check(H5Gopen2(file, spec.group, H5P_DEFAULT),
                              where() + ": cannot open /" + spec.group),
                    H5Gclose);
      tb.cols.resize(spec.columns.size());
      for (size_t c = 0; c < spec.columns.size(); ++c) {
        const std::string what = where() + ": dataset /" + spec.group + "/" + spec.columns[c];
        tb.cols[c].ds =
            Id(h5::check(H5Dopen2(tb.group, spec.columns[c], H5P_DEFAULT), what), H5Dclose);
        const hsize_t n = extent(tb.cols[c].ds, what);
        if (c == 0) tb.written = n;
        if (n != tb.written)
          fail(what + " has " + std::to_string(n) + " rows, /" + spec.group + "/" +
               spec.columns[0] + " has " + std::to_string(tb.written));
      }
    }
    closed = false;
  }

  // Closes every handle; the file's SWMR-write mark is cleared by H5Fclose.
  void close_handles() {
    bool ok = true;
    for (Table& tb : t) {
      for (Column& c : tb.cols) ok &= c.ds.reset();
      ok &= tb.group.reset();
    }
    ok &= file.reset();
    closed = true;
    if (!ok) h5::fail(where() + ": close");
  }

  // Appends the buffered rows of one column at row `at` (extend, then write the new slab).
  template <class T>
  void write_column(Column& col, std::vector<T>& buf, hsize_t at, hid_t memtype,
                    const std::string& what) {
    const hsize_t k = buf.size();
    const hsize_t n = at + k;
    h5::check_status(H5Dset_extent(col.ds, &n), what);
    Id fspace(h5::check(H5Dget_space(col.ds), what), H5Sclose);
    h5::check_status(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &at, nullptr, &k, nullptr), what);
    Id mspace(h5::check(H5Screate_simple(1, &k, nullptr), what), H5Sclose);
    h5::check_status(H5Dwrite(col.ds, memtype, mspace, fspace, H5P_DEFAULT, buf.data()), what);
    h5::check_status(H5Dflush(col.ds), what);
    buf.clear();
  }

  // Writes every buffered row. Per table: non-key columns first, the key column last, each
  // extended + written + H5Dflush'ed before the next (so a prefix of rows is always complete).
  void write_pending() {
    if (!any_pending) return;
    SL_ASSERT(!closed);
    for (size_t k = 0; k < 3; ++k) {
      Table& tb = t[k];
      const size_t rows = tb.pending();
      if (rows == 0) continue;
      const TableSpec& spec = tables()[k];
      for (size_t i = 1; i <= spec.columns.size(); ++i) {
        const size_t c = i % spec.columns.size();  // 1, 2, ..., n-1, then 0 (the key)
        const std::string what =
            where() + ": cannot append to /" + spec.group + "/" + spec.columns[c];
        Column& col = tb.cols[c];
        if (spec.is_int[c])
          write_column(col, col.ibuf, tb.written, H5T_NATIVE_INT64, what);
        else
          write_column(col, col.dbuf, tb.written, H5T_NATIVE_DOUBLE, what);
      }
      tb.written += rows;
    }
    any_pending = false;
  }

  void note_append() {
    if (closed) fail(where() + ": append after close");
    const auto now = std::chrono::steady_clock::now();
    if (!any_pending) {
      any_pending = true;
      oldest_pending = now;
    }
    if (autoflush_s >= 0 &&
        std::chrono::duration<double>(now - oldest_pending).count() >= autoflush_s) {
      write_pending();
      h5::check_status(H5Fflush(file, H5F_SCOPE_GLOBAL), where() + ": flush");
    }
  }

  // Everything written, HDF5 caches flushed, and the file fsynced.
  void flush_durable() {
    write_pending();
    h5::check_status(H5Fflush(file, H5F_SCOPE_GLOBAL), where() + ": flush");
    void* handle = nullptr;
    h5::check_status(H5Fget_vfd_handle(file, H5P_DEFAULT, &handle), where() + ": vfd handle");
    // The default (sec2) driver's handle is a pointer to its POSIX file descriptor.
    if (handle && ::fsync(*static_cast<int*>(handle)) != 0) fail(where() + ": fsync failed");
  }
};

RunLogWriter::RunLogWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RunLogWriter::RunLogWriter(RunLogWriter&&) noexcept = default;
RunLogWriter& RunLogWriter::operator=(RunLogWriter&& o) noexcept {
  if (this != &o) {
    try {
      close();
    } catch (...) {  // a destructor-like path: nothing useful to do with the error
    }
    impl_ = std::move(o.impl_);
  }
  return *this;
}
RunLogWriter::~RunLogWriter() {
  try {
    close();
  } catch (...) {  // destructors must not throw; call close() to see errors
  }
}

RunLogWriter RunLogWriter::create(const std::string& path, const RunAttrs& attrs) {
  if (path_exists(path)) fail("run log '" + path + "': already exists");
  create_file(path, attrs);
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->open_swmr();
  return RunLogWriter(std::move(impl));
}

namespace {

// Reads a log that SWMR readers refuse because a writer died while it held the file open
// outside SWMR (inside set_status()), leaving the superblock marked "open for write". The mark is
// cleared on a private copy, as h5clear does (HDF5's private fapl property "clear_status_flags",
// registered in 1.10 and used by h5clear and HDF5's own tests); the original is left untouched.
RunLog read_runlog_clearing_marks(const std::string& path) {
  const std::string copy = path + ".recover";
  std::error_code ec;
  std::filesystem::copy_file(path, copy, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) fail("run log '" + path + "': cannot copy to " + copy + ": " + ec.message());
  try {
    Id fapl = h5::file_access(true);
    hbool_t clear = true;
    h5::check_status(H5Pset(fapl, "clear_status_flags", &clear),
                     "run log '" + path + "': cannot request clearing of status flags");
    Id file(h5::check(H5Fopen(copy.c_str(), H5F_ACC_RDWR, fapl),
                      "run log '" + path + "': unreadable even with status flags cleared"),
            H5Fclose);
    if (!file.reset()) h5::fail("run log '" + copy + "': close");
    RunLog log = read_runlog(copy);
    std::filesystem::remove(copy, ec);
    return log;
  } catch (...) {
    std::filesystem::remove(copy, ec);
    throw;
  }
}

}  // namespace

RunLogWriter RunLogWriter::resume(const std::string& path, int64_t keep_step,
                                  int64_t keep_budget_tokens, const Update* update) {
  return resume_keeping(path, keep_step, update,
                        [keep_budget_tokens](int64_t t) { return t <= keep_budget_tokens; });
}

RunLogWriter RunLogWriter::resume(const std::string& path, int64_t keep_step,
                                  const std::vector<int64_t>& keep_budgets, const Update* update) {
  // Each kept once: a row appended twice (never written so, but a log is outside input) would
  // otherwise come back as two rows of one budget.
  return resume_keeping(path, keep_step, update, [left = keep_budgets](int64_t t) mutable {
    const auto it = std::find(left.begin(), left.end(), t);
    if (it == left.end()) return false;
    left.erase(it);
    return true;
  });
}

RunLogWriter RunLogWriter::resume_keeping(const std::string& path, int64_t keep_step,
                                          const Update* update,
                                          const std::function<bool(int64_t)>& keep_budget) {
  RunLog old;
  try {
    old = read_runlog(path);
  } catch (const h5::LibError&) {
    old = read_runlog_clearing_marks(path);
  }
  const std::string tmp = path + ".tmp";
  if (path_exists(tmp) && ::unlink(tmp.c_str()) != 0)
    fail("run log '" + tmp + "': cannot remove stale file");
  RunAttrs attrs = old.attrs;
  attrs.status = "running";
  attrs.status_reason.clear();
  if (update) {
    attrs.config = update->config;
    attrs.tokens_planned = update->tokens_planned;
    if (!update->change.empty())
      attrs.config_changes += (attrs.config_changes.empty() ? "" : "\n") + update->change;
  }
  {
    RunLogWriter w = create(tmp, attrs);
    w.set_autoflush_seconds(-1);
    for (const TrainRow& r : old.train)
      if (r.step <= keep_step) w.append_train(r);
    for (size_t i = 0; i < old.eval_step.size(); ++i)
      if (old.eval_step[i] <= keep_step)
        w.append_eval(old.eval_step[i], old.eval_tokens[i], old.eval_loss[i]);
    for (size_t i = 0; i < old.budget_tokens.size(); ++i)
      if (keep_budget(old.budget_tokens[i]))
        w.append_budget(old.budget_tokens[i], old.budget_loss[i]);
    w.close();
  }
  fsync_file(tmp);
  rename_durable(tmp, path);
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->open_swmr();
  return RunLogWriter(std::move(impl));
}

void RunLogWriter::append_train(const TrainRow& r) {
  Impl& m = *impl_;
  auto& c = m.t[kTrain].cols;
  c[0].ibuf.push_back(r.step);
  c[1].ibuf.push_back(r.tokens);
  c[2].dbuf.push_back(r.loss);
  c[3].dbuf.push_back(r.lr);
  c[4].dbuf.push_back(r.grad_norm);
  c[5].dbuf.push_back(r.tokens_per_s);
  c[6].dbuf.push_back(r.time_s);
  m.note_append();
}

void RunLogWriter::append_eval(int64_t step, int64_t tokens, double loss) {
  Impl& m = *impl_;
  auto& c = m.t[kEval].cols;
  c[0].ibuf.push_back(step);
  c[1].ibuf.push_back(tokens);
  c[2].dbuf.push_back(loss);
  m.note_append();
}

void RunLogWriter::append_budget(int64_t tokens, double loss) {
  Impl& m = *impl_;
  auto& c = m.t[kBudgets].cols;
  c[0].ibuf.push_back(tokens);
  c[1].dbuf.push_back(loss);
  m.note_append();
}

void RunLogWriter::flush() {
  if (!impl_ || impl_->closed) fail("run log: flush after close");
  impl_->flush_durable();
}

void RunLogWriter::set_status(const std::string& status, const std::string& reason) {
  if (!impl_ || impl_->closed) fail("run log: set_status after close");
  Impl& m = *impl_;
  check_status_value(m.path, status);
  m.write_pending();
  m.close_handles();
  {
    // Outside SWMR: attributes (a variable-length string lives in the global heap) may change.
    Id fapl = h5::file_access(true);
    Id file(h5::check(H5Fopen(m.path.c_str(), H5F_ACC_RDWR, fapl),
                      m.where() + ": cannot reopen to set status"),
            H5Fclose);
    h5::write_string_attr(file, "status", status);
    h5::write_string_attr(file, "status_reason", reason);
    h5::check_status(H5Fflush(file, H5F_SCOPE_GLOBAL), m.where() + ": flush");
    if (!file.reset()) h5::fail(m.where() + ": close");
  }
  fsync_file(m.path);
  m.open_swmr();
}

void RunLogWriter::close() {
  if (!impl_ || impl_->closed) return;
  try {
    impl_->flush_durable();
  } catch (...) {
    try {
      impl_->close_handles();
    } catch (...) {  // the flush error is the one to report
    }
    throw;
  }
  impl_->close_handles();
}

void RunLogWriter::set_autoflush_seconds(double s) { impl_->autoflush_s = s; }
const std::string& RunLogWriter::path() const { return impl_->path; }

}  // namespace sl
