// Column tables read from CSV (named columns) or from a collected sweep in HDF5 (sweep.h5: the root
// group holds 1-D datasets, one per column, with the same names as sweep.csv).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace sl::fit {

// A table of named columns. Every column keeps its cells as text (CSV cells as written, HDF5
// numbers printed with 17 significant digits) and, for HDF5 numeric datasets, the values
// themselves, so that numbers read from HDF5 are not rounded through text.
class Table {
 public:
  struct Column {
    std::string name;
    std::vector<std::string> text;  // one cell per row
    std::vector<double> values;     // HDF5 numeric datasets only; empty otherwise
  };

  // `source` names the file in error messages; `lines` gives the line of each data row (CSV),
  // empty where rows are dataset indices (HDF5).
  explicit Table(std::string source, std::vector<int> lines = {})
      : source_(std::move(source)), lines_(std::move(lines)) {}

  const std::string& source() const { return source_; }
  size_t num_rows() const { return columns_.empty() ? 0 : columns_.front().text.size(); }
  const std::vector<Column>& columns() const { return columns_; }
  bool has(const std::string& name) const;

  // The column named `name`; throws sl::Error naming the file and the columns it has.
  const Column& column(const std::string& name) const;

  // Cell (row, column) as a number; throws sl::Error naming the row and column if it is not one.
  // Empty cells, "nan" and "NaN" read as NaN (callers reject NaN where it matters).
  double number(size_t row, const std::string& name) const;

  // "file.csv: line 18" (CSV) or "file.h5: row 17 (0-based)" (HDF5): where row `row` came from.
  std::string where(size_t row) const;

  void add_column(Column c);

 private:
  std::string source_;
  std::vector<int> lines_;
  std::vector<Column> columns_;
};

// Reads a CSV file with a header line (RFC 4180 quoting, CRLF or LF line ends). Throws sl::Error
// on a missing file, an empty file, or a row with the wrong number of cells (naming the line).
Table read_csv(const std::string& path);

// Reads every 1-D dataset of the root group of an HDF5 file as a column: integer and float
// datasets as numbers, string datasets (variable- or fixed-length) as text. Datasets of other
// shapes or types are skipped. Throws sl::Error if the file cannot be read or the columns differ
// in length.
Table read_hdf5(const std::string& path);

// read_hdf5 for names ending in .h5 / .hdf5, read_csv otherwise.
Table read_table(const std::string& path);

}  // namespace sl::fit
