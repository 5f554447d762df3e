// Argument parsing with errors that name the verb and the flag.
#include "cli/args.h"

#include <algorithm>

#include "core/error.h"

namespace tune::cli {

Args::Args(const std::string& verb, int argc, char** argv, const std::vector<std::string>& value_flags,
           const std::vector<std::string>& bool_flags)
    : verb_(verb) {
  auto in = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positionals_.push_back(a);
      continue;
    }
    std::string value;
    bool has_value = false;
    if (auto eq = a.find('='); eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
      has_value = true;
    }
    if (in(value_flags, a)) {
      if (!has_value) {
        if (i + 1 >= argc) throw ConfigError("tune " + verb + ": " + a + " needs a value");
        value = argv[++i];
      }
      values_[a].push_back(value);
    } else if (in(bool_flags, a)) {
      if (has_value) throw ConfigError("tune " + verb + ": " + a + " takes no value");
      bools_[a] = true;
    } else {
      throw ConfigError("tune " + verb + ": unknown option " + a, "run 'tune " + verb + " --help'");
    }
  }
}

std::string Args::get(const std::string& flag, const std::string& def) const {
  auto it = values_.find(flag);
  return it == values_.end() ? def : it->second.back();
}

std::vector<std::string> Args::get_all(const std::string& flag) const {
  auto it = values_.find(flag);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::string Args::require(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end()) throw ConfigError("tune " + verb_ + ": " + flag + " is required");
  return it->second.back();
}

int64_t Args::get_int(const std::string& flag, int64_t def) const {
  if (!values_.count(flag)) return def;
  const std::string s = get(flag, "");
  try {
    size_t n = 0;
    int64_t v = std::stoll(s, &n);
    if (n == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw ConfigError("tune " + verb_ + ": " + flag + " must be an integer, got '" + s + "'");
}

double Args::get_double(const std::string& flag, double def) const {
  if (!values_.count(flag)) return def;
  const std::string s = get(flag, "");
  try {
    size_t n = 0;
    double v = std::stod(s, &n);
    if (n == s.size()) return v;
  } catch (const std::exception&) {
  }
  throw ConfigError("tune " + verb_ + ": " + flag + " must be a number, got '" + s + "'");
}

}  // namespace tune::cli
