// Command-line arguments of one verb: `--flag value`, `--flag=value`, boolean `--flag`, and positionals.
// Unknown flags are errors naming the flag, so a typo never silently changes a run.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace tune::cli {

class Args {
 public:
  // `value_flags` take a value; `bool_flags` do not.
  Args(const std::string& verb, int argc, char** argv, const std::vector<std::string>& value_flags,
       const std::vector<std::string>& bool_flags);
  bool has(const std::string& flag) const { return values_.count(flag) || bools_.count(flag); }
  // The last value given for `flag`, or `def`.
  std::string get(const std::string& flag, const std::string& def) const;
  // Every value given for a repeatable flag, in order.
  std::vector<std::string> get_all(const std::string& flag) const;
  std::string require(const std::string& flag) const;
  int64_t get_int(const std::string& flag, int64_t def) const;
  double get_double(const std::string& flag, double def) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

 private:
  std::string verb_;
  std::map<std::string, std::vector<std::string>> values_;
  std::map<std::string, bool> bools_;
  std::vector<std::string> positionals_;
};

}  // namespace tune::cli
