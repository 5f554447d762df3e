// Errors. Two tiers (see STYLE.md):
//  - tune::Error and subclasses: problems a user can cause (bad file, bad field, unsupported dtype). They carry a
//    message naming the file/field and a hint; the CLI prints them and exits non-zero, the server returns JSON.
//  - TUNE_CHECK(cond) << msg: invariants the program guarantees; throws InternalError with expression, file, line.
// Library code never calls exit() or abort().
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace tune {

class Error : public std::runtime_error {
 public:
  Error(const std::string& message, const std::string& hint = "")
      : std::runtime_error(hint.empty() ? message : message + " (hint: " + hint + ")"),
        message_(message),
        hint_(hint) {}
  const std::string& message() const { return message_; }
  const std::string& hint() const { return hint_; }

 private:
  std::string message_;
  std::string hint_;
};

// A file could not be opened, read or written.
class IoError : public Error {
  using Error::Error;
};
// A file's bytes or structure are wrong (truncated, corrupt, bad header, bad JSON).
class FormatError : public Error {
  using Error::Error;
};
// A config or argument value is missing, mistyped or inconsistent.
class ConfigError : public Error {
  using Error::Error;
};
// Well-formed input asking for something tune does not do (unknown model_type, unsupported dtype or device).
class UnsupportedError : public Error {
  using Error::Error;
};
// A broken invariant of tune itself: a bug, not the user's fault.
class InternalError : public Error {
  using Error::Error;
};

namespace detail {
// Collects `<<` parts and throws when the full expression ends (the temporary is destroyed).
class CheckFailure {
 public:
  CheckFailure(const char* expr, const char* file, int line) {
    os_ << "internal check failed: " << expr << " at " << file << ":" << line << ": ";
  }
  template <class T>
  CheckFailure& operator<<(const T& v) {
    os_ << v;
    return *this;
  }
  [[noreturn]] ~CheckFailure() noexcept(false) { throw InternalError(os_.str()); }

 private:
  std::ostringstream os_;
};
}  // namespace detail

}  // namespace tune

#define TUNE_CHECK(cond) \
  if (cond) {            \
  } else                 \
    ::tune::detail::CheckFailure(#cond, __FILE__, __LINE__)
