// Status propagation helpers: the one error type inside Flotilla is absl::Status.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FLOTILLA_CONCAT_INNER_(a, b) a##b
#define FLOTILLA_CONCAT_(a, b) FLOTILLA_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                    \
  do {                                           \
    ::absl::Status _flotilla_st = (expr);        \
    if (!_flotilla_st.ok()) return _flotilla_st; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(FLOTILLA_CONCAT_(_flotilla_so_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return tmp.status();          \
  lhs = std::move(tmp).value()
