// The value type of the Jinja interpreter: the Python objects a chat template can touch (None, bool, int,
// float, str, list/tuple, dict with insertion order, Jinja's Undefined, namespace and loop objects,
// callables), with the Python semantics templates rely on: truthiness, str()/repr(), ==, <, json.dumps. Lists
// and dicts are shared and immutable once built (transformers renders in an ImmutableSandboxedEnvironment);
// namespaces are mutable.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace tune::jinja {

class Value;

struct ListData {
  std::vector<Value> items;
  bool is_tuple = false;
};

// Insertion-ordered. Keys are strings from JSON; dict literals may also use other hashable values (numbers,
// bools, None, tuples), compared as Python does (1 == 1.0 == True).
struct DictData {
  std::vector<std::pair<Value, Value>> items;
  const Value* find_str(std::string_view key) const;  // string keys only
  const Value* find(const Value& key) const;
  void set(Value key, Value value);
};

struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

using NativeFn = std::function<Value(CallArgs&)>;

struct Callable {
  std::string name;
  NativeFn fn;
};

// A Python-level error while rendering (TypeError, UndefinedError, ...) or raise_exception() from the
// template. The interpreter records the template line and turns it into tune::FormatError.
class EvalError : public std::runtime_error {
 public:
  explicit EvalError(const std::string& message, bool raised = false)
      : std::runtime_error(message), raised_(raised) {}
  bool raised() const { return raised_; }
  int line = 0;

 private:
  bool raised_;
};

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kLoop,
    kCallable
  };

  Value() = default;  // Undefined without a hint
  Value(bool b) : kind_(Kind::kBool), b_(b) {}
  Value(int64_t i) : kind_(Kind::kInt), i_(i) {}
  Value(int i) : kind_(Kind::kInt), i_(i) {}
  Value(double f) : kind_(Kind::kFloat), f_(f) {}
  Value(std::string s);
  Value(const char* s) : Value(std::string(s)) {}

  // `hint` is the message of the UndefinedError raised when the value is used, e.g. "'x' is undefined".
  static Value undefined(std::string hint);
  static Value none();
  // markupsafe.Markup, made by |safe and |escape: `+` with a plain string escapes the plain one.
  static Value markup(std::string s);
  static Value list(std::vector<Value> items, bool is_tuple = false);
  static Value dict(DictData d);
  static Value make_namespace(DictData d);
  static Value loop_object(std::shared_ptr<DictData> fields);
  static Value callable(std::string name, NativeFn fn);
  // JSON as Python's json.loads gives it (objects keep their key order).
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_int() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }  // bool is an int in Python
  bool is_number() const { return is_int() || kind_ == Kind::kFloat; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_callable() const { return kind_ == Kind::kCallable; }
  bool safe() const { return safe_; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::kBool ? (b_ ? 1 : 0) : i_; }
  double as_float() const { return kind_ == Kind::kFloat ? f_ : static_cast<double>(as_int()); }
  const std::string& str() const { return *static_cast<const std::string*>(p_.get()); }
  const ListData& list() const { return *static_cast<const ListData*>(p_.get()); }
  const DictData& dict() const { return *static_cast<const DictData*>(p_.get()); }
  DictData& object() const { return *static_cast<DictData*>(p_.get()); }  // namespace / loop attributes
  const Callable& fn() const { return *static_cast<const Callable*>(p_.get()); }
  const std::string& hint() const;
  const void* identity() const { return p_.get(); }

 private:
  Kind kind_ = Kind::kUndefined;
  bool safe_ = false;
  union {
    bool b_;
    int64_t i_;
    double f_ = 0;
  };
  std::shared_ptr<void> p_;
};

// Python's type(x).__name__, for error messages.
const char* type_name(const Value& v);
bool truthy(const Value& v);
// str(x) as Jinja prints it ("" for Undefined).
std::string to_str(const Value& v);
std::string to_repr(const Value& v);
bool py_equal(const Value& a, const Value& b);
// Whether `v` can be a dict key (Python's hash() accepts it).
bool hashable(const Value& v);
// a < b; TypeError where Python has no ordering (`op` names the operator in the message).
bool py_less(const Value& a, const Value& b, const char* op = "<");
// The UndefinedError that using `v` raises.
[[noreturn]] void fail_undefined(const Value& v);

// json.dumps options; the defaults are transformers' tojson filter (ensure_ascii=False, ", " and ": ").
struct JsonStyle {
  bool ensure_ascii = false;
  bool pretty = false;  // indent given
  std::string indent;
  std::string item_sep = ", ";
  std::string key_sep = ": ";
  bool sort_keys = false;
};
std::string to_json(const Value& v, const JsonStyle& style);

}  // namespace tune::jinja
