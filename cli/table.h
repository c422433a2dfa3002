// Plain-text tables for terminal output: columns padded to their widest cell.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

namespace flotilla::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  // Columns separated by two spaces; numbers are not special-cased (callers format them).
  std::string Render() const;
  void Print(FILE* out) const { std::fputs(Render().c_str(), out); }
  size_t rows() const { return rows_.size(); }

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace flotilla::cli
