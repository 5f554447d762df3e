// Operators, attribute/item access, methods of str/list/dict and iteration, with Python's semantics and
// jinja2's sandbox rules (see builtins.h). Error messages follow Python's wording.
#include <algorithm>
#include <cmath>
#include <limits>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/pystr.h"

namespace tune::jinja {

namespace {

[[noreturn]] void type_error(const std::string& what) {
  throw EvalError("TypeError: " + what);
}

// jinja2's object_type_repr, used in Undefined hints.
std::string object_type_repr(const Value& v) {
  if (v.is_none()) return "None";
  if (v.kind() == Value::Kind::kNamespace) return "jinja2.utils.Namespace object";
  if (v.kind() == Value::Kind::kLoop) return "jinja2.runtime.LoopContext object";
  return std::string(type_name(v)) + " object";
}

Value missing_attr(const Value& obj, const std::string& name) {
  return Value::undefined(py_repr_str(object_type_repr(obj)) + " has no attribute " + py_repr_str(name));
}

Value missing_item(const Value& obj, const Value& key) {
  if (key.is_string()) return missing_attr(obj, key.str());
  return Value::undefined(object_type_repr(obj) + " has no element " + to_repr(key));
}

int64_t require_int(const Value& v, const char* what) {
  if (!v.is_int()) type_error(std::string(what) + " must be an integer, not '" + type_name(v) + "'");
  return v.as_int();
}

const std::string* optional_str(const Value& v, const char* fn) {
  if (v.is_undefined() || v.is_none()) return nullptr;
  if (!v.is_string()) type_error(std::string(fn) + " arg must be None or str");
  return &v.str();
}

// A method that the ImmutableSandboxedEnvironment refuses to call.
Value unsafe_method(const Value& obj, const std::string& name) {
  const std::string message = "SecurityError: access to attribute " + py_repr_str(name) + " of " +
                              py_repr_str(type_name(obj)) + " object is unsafe.";
  return Value::callable(name, [message](CallArgs&) -> Value { throw EvalError(message); });
}

// Resolves Python's optional start/end arguments of find/count/startswith to a code point range.
void clamp_range(const Value& start, const Value& end, int64_t len, int64_t& b, int64_t& e) {
  b = 0;
  e = len;
  if (!start.is_undefined() && !start.is_none()) {
    b = require_int(start, "slice index");
    if (b < 0) b = std::max<int64_t>(0, b + len);
  }
  if (!end.is_undefined() && !end.is_none()) {
    e = require_int(end, "slice index");
    if (e < 0) e = std::max<int64_t>(0, e + len);
    e = std::min(e, len);
  }
}

Value str_method_call(const std::string& name, const std::string& s, CallArgs& call) {
  ArgReader a(call, name.c_str());
  auto result = [&](Value v) {
    a.done();
    return v;
  };
  if (name == "startswith" || name == "endswith") {
    const Value prefix = a.get(0, "prefix");
    const std::u32string u = utf8_to_u32(s);
    int64_t b, e;
    clamp_range(a.get(1, "start"), a.get(2, "end"), static_cast<int64_t>(u.size()), b, e);
    const std::u32string part = b <= e ? u.substr(b, e - b) : std::u32string();
    std::vector<Value> options;
    if (prefix.is_list() && prefix.list().is_tuple) {
      options = prefix.list().items;
    } else {
      options.push_back(prefix);
    }
    bool hit = false;
    for (const Value& o : options) {
      if (!o.is_string())
        type_error(name + " first arg must be str or a tuple of str, not " + std::string(type_name(o)));
      const std::u32string p = utf8_to_u32(o.str());
      if (b > e || p.size() > part.size()) continue;
      hit = hit || (name == "startswith" ? part.compare(0, p.size(), p) == 0
                                         : part.compare(part.size() - p.size(), p.size(), p) == 0);
    }
    return result(Value(hit));
  }
  if (name == "split" || name == "rsplit") {
    const std::string* sep = optional_str(a.get(0, "sep"), name.c_str());
    const Value maxsplit = a.get(1, "maxsplit");
    const int64_t max = maxsplit.is_undefined() ? -1 : require_int(maxsplit, "maxsplit");
    if (sep && sep->empty()) throw EvalError("ValueError: empty separator");
    std::vector<Value> parts;
    for (auto& p : name == "split" ? py_split(s, sep, max) : py_rsplit(s, sep, max))
      parts.emplace_back(std::move(p));
    return result(Value::list(std::move(parts)));
  }
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const std::string* chars = optional_str(a.get(0, "chars"), name.c_str());
    return result(Value(py_strip(s, chars, name != "rstrip", name != "lstrip")));
  }
  if (name == "replace") {
    const Value old_s = a.get(0, "old"), new_s = a.get(1, "new"), count = a.get(2, "count");
    if (!old_s.is_string() || !new_s.is_string()) type_error("replace() arguments must be str");
    const int64_t n = count.is_undefined() ? -1 : require_int(count, "count");
    return result(Value(py_replace(s, old_s.str(), new_s.str(), n)));
  }
  if (name == "upper") return result(Value(py_upper(s)));
  if (name == "lower" || name == "casefold") return result(Value(py_lower(s)));
  if (name == "title") return result(Value(py_title(s)));
  if (name == "capitalize") return result(Value(py_capitalize(s)));
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    const Value sub = a.get(0, "sub");
    if (!sub.is_string()) type_error("must be str, not " + std::string(type_name(sub)));
    const std::u32string u = utf8_to_u32(s), p = utf8_to_u32(sub.str());
    int64_t b, e;
    clamp_range(a.get(1, "start"), a.get(2, "end"), static_cast<int64_t>(u.size()), b, e);
    if (name == "count") {
      int64_t n = 0;
      if (b <= e) {
        if (p.empty()) return result(Value(e - b + 1));
        for (size_t at = u.find(p, b); at != std::u32string::npos && static_cast<int64_t>(at + p.size()) <= e;
             at = u.find(p, at + p.size()))
          ++n;
      }
      return result(Value(n));
    }
    int64_t found = -1;
    if (b <= e) {
      const std::u32string part = u.substr(b, e - b);
      const size_t at = (name == "find" || name == "index") ? part.find(p) : part.rfind(p);
      if (at != std::u32string::npos) found = b + static_cast<int64_t>(at);
    }
    if (found < 0 && (name == "index" || name == "rindex"))
      throw EvalError("ValueError: substring not found");
    return result(Value(found));
  }
  if (name == "join") {
    std::string out;
    bool first = true;
    for (const Value& item : iterate(a.get(0, "iterable"))) {
      if (!item.is_string())
        type_error("sequence item: expected str instance, " + std::string(type_name(item)) + " found");
      if (!first) out += s;
      first = false;
      out += item.str();
    }
    return result(Value(std::move(out)));
  }
  if (name == "splitlines") {
    std::vector<Value> lines;
    for (auto& l : py_splitlines(s)) lines.emplace_back(std::move(l));
    return result(Value::list(std::move(lines)));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    const Value x = a.get(0, name == "removeprefix" ? "prefix" : "suffix");
    if (!x.is_string()) type_error(name + "() argument must be str");
    const std::string& t = x.str();
    if (name == "removeprefix" && s.compare(0, t.size(), t) == 0) return result(Value(s.substr(t.size())));
    if (name == "removesuffix" && s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0)
      return result(Value(s.substr(0, s.size() - t.size())));
    return result(Value(s));
  }
  if (name == "isspace" || name == "islower" || name == "isupper") {
    const std::u32string u = utf8_to_u32(s);
    bool ok = !u.empty(), cased = false;
    for (char32_t c : u) {
      if (name == "isspace") {
        ok = ok && py_isspace(c);
      } else if (py_is_cased(c)) {
        cased = true;
        ok = ok && (name == "islower" ? py_is_lower_char(c) : py_is_upper_char(c));
      }
    }
    return result(Value(ok && (name == "isspace" || cased)));
  }
  throw EvalError("unsupported string method '" + name + "'");
}

bool is_str_method(const std::string& name) {
  static const char* const kNames[] = {
      "startswith", "endswith", "split", "rsplit", "strip", "lstrip", "rstrip", "replace", "upper", "lower",
      "casefold", "title", "capitalize", "find", "rfind", "index", "rindex", "count", "join", "splitlines",
      "removeprefix", "removesuffix", "isspace", "islower", "isupper",
      // Python has these too; calling them fails with "unsupported string method".
      "format", "format_map", "encode", "expandtabs", "partition", "rpartition", "ljust", "rjust", "center",
      "zfill", "swapcase", "translate", "maketrans", "isdigit", "isalpha", "isalnum", "isnumeric",
      "isdecimal", "isidentifier", "isprintable", "istitle", "isascii"};
  return std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

Value list_method(const Value& self, const std::string& name) {
  if (name == "count" || name == "index") {
    return Value::callable(name, [self, name](CallArgs& call) {
      ArgReader a(call, name.c_str());
      const Value x = a.get(0, "value");
      a.done();
      const auto& items = self.list().items;
      int64_t n = 0;
      for (size_t i = 0; i < items.size(); ++i) {
        if (!py_equal(items[i], x)) continue;
        if (name == "index") return Value(static_cast<int64_t>(i));
        ++n;
      }
      if (name == "index") throw EvalError("ValueError: " + to_repr(x) + " is not in list");
      return Value(n);
    });
  }
  static const char* const kUnsafe[] = {"append", "extend",  "insert", "pop",
                                        "remove", "reverse", "sort",   "clear"};
  if (std::find(std::begin(kUnsafe), std::end(kUnsafe), name) != std::end(kUnsafe))
    return unsafe_method(self, name);
  return missing_attr(self, name);
}

// Python's dict methods, or Undefined when `name` is none.
Value dict_method(const Value& self, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return Value::callable(name, [self, name](CallArgs& call) {
      ArgReader(call, name.c_str()).done();
      std::vector<Value> out;
      for (const auto& [k, v] : self.dict().items) {
        if (name == "items") {
          out.push_back(Value::list({k, v}, true));
        } else {
          out.push_back(name == "keys" ? k : v);
        }
      }
      return Value::list(std::move(out));
    });
  }
  if (name == "get") {
    return Value::callable(name, [self](CallArgs& call) {
      ArgReader a(call, "get");
      const Value key = a.get(0, "key"), fallback = a.get(1, "default");
      a.done();
      if (!hashable(key)) type_error("unhashable type: '" + std::string(type_name(key)) + "'");
      const Value* v = self.dict().find(key);
      if (v) return *v;
      return fallback.is_undefined() ? Value::none() : fallback;
    });
  }
  if (name == "copy") {
    return Value::callable(name, [self](CallArgs& call) {
      ArgReader(call, "copy").done();
      return Value::dict(self.dict());
    });
  }
  static const char* const kUnsafe[] = {"pop", "popitem", "setdefault", "update", "clear"};
  if (std::find(std::begin(kUnsafe), std::end(kUnsafe), name) != std::end(kUnsafe))
    return unsafe_method(self, name);
  return Value();
}

Value char_at(const std::string& s, int64_t i) {
  const std::u32string u = utf8_to_u32(s);
  const auto n = static_cast<int64_t>(u.size());
  if (i < 0) i += n;
  if (i < 0 || i >= n) return Value();
  std::string out;
  utf8_push(out, u[i]);
  return Value(std::move(out));
}

[[noreturn]] void overflow() {
  throw EvalError("OverflowError: integer too large (Python ints are unbounded; this engine's are 64-bit)");
}

int64_t add_int(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}

int64_t sub_int(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) overflow();
  return r;
}

int64_t mul_int(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}

Value concat_strings(const Value& a, const Value& b) {
  if (!a.safe() && !b.safe()) return Value(a.str() + b.str());
  // markupsafe: the plain side is escaped and the result is Markup.
  const std::string left = a.safe() ? a.str() : html_escape(a.str());
  const std::string right = b.safe() ? b.str() : html_escape(b.str());
  return Value::markup(left + right);
}

Value repeat(const Value& seq, int64_t n) {
  if (seq.is_string()) {
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.str();
    return Value(std::move(out));
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.list().items.begin(), seq.list().items.end());
  return Value::list(std::move(out), seq.list().is_tuple);
}

// CPython's float divmod: the quotient floored, the remainder with the divisor's sign.
std::pair<double, double> float_divmod(double x, double y) {
  double mod = std::fmod(x, y);
  double div = (x - mod) / y;
  if (mod != 0) {
    if ((y < 0) != (mod < 0)) {
      mod += y;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, y);
  }
  double floordiv = std::copysign(0.0, x / y);
  if (div != 0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  }
  return {floordiv, mod};
}

}  // namespace

ArgReader::ArgReader(CallArgs& args, const char* fn_name)
    : args_(args), fn_name_(fn_name), used_kw_(args.kwargs.size(), false) {}

Value ArgReader::get(size_t pos, const char* name) {
  used_positional_ = std::max(used_positional_, pos + 1);
  for (size_t i = 0; i < args_.kwargs.size(); ++i) {
    if (args_.kwargs[i].first != name) continue;
    if (pos < args_.args.size())
      type_error(std::string(fn_name_) + "() got multiple values for argument '" + name + "'");
    used_kw_[i] = true;
    return args_.kwargs[i].second;
  }
  return pos < args_.args.size() ? args_.args[pos] : Value();
}

Value ArgReader::get_kw(const char* name) {
  for (size_t i = 0; i < args_.kwargs.size(); ++i) {
    if (args_.kwargs[i].first != name) continue;
    used_kw_[i] = true;
    return args_.kwargs[i].second;
  }
  return Value();
}

void ArgReader::done() const {
  if (args_.args.size() > used_positional_)
    type_error(std::string(fn_name_) + "() takes at most " + std::to_string(used_positional_) +
               " argument(s) (" + std::to_string(args_.args.size()) + " given)");
  for (size_t i = 0; i < used_kw_.size(); ++i)
    if (!used_kw_[i])
      type_error(std::string(fn_name_) + "() got an unexpected keyword argument '" + args_.kwargs[i].first +
                 "'");
}

Value get_attr(const Value& obj, const std::string& name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      fail_undefined(obj);
    case Value::Kind::kDict: {
      Value m = dict_method(obj, name);
      if (!m.is_undefined()) return m;
      if (const Value* v = obj.dict().find_str(name)) return *v;
      return missing_attr(obj, name);
    }
    case Value::Kind::kNamespace:
    case Value::Kind::kLoop:
      if (const Value* v = obj.object().find_str(name)) return *v;
      return missing_attr(obj, name);
    case Value::Kind::kString:
      if (is_str_method(name)) {
        const Value self = obj;
        return Value::callable(name,
                               [self, name](CallArgs& a) { return str_method_call(name, self.str(), a); });
      }
      return missing_attr(obj, name);
    case Value::Kind::kList:
      return list_method(obj, name);
    default:
      return missing_attr(obj, name);
  }
}

Value get_item(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      fail_undefined(obj);
    case Value::Kind::kList: {
      if (key.is_string()) return get_attr(obj, key.str());
      if (!key.is_int()) return missing_item(obj, key);
      const auto& items = obj.list().items;
      int64_t i = key.as_int();
      if (i < 0) i += static_cast<int64_t>(items.size());
      if (i < 0 || i >= static_cast<int64_t>(items.size())) return missing_item(obj, key);
      return items[i];
    }
    case Value::Kind::kString: {
      if (key.is_string()) return get_attr(obj, key.str());
      if (!key.is_int()) return missing_item(obj, key);
      Value c = char_at(obj.str(), key.as_int());
      return c.is_undefined() ? missing_item(obj, key) : c;
    }
    case Value::Kind::kDict: {
      if (!hashable(key)) type_error("unhashable type: '" + std::string(type_name(key)) + "'");
      if (const Value* v = obj.dict().find(key)) return *v;
      if (!key.is_string()) return missing_item(obj, key);
      Value m = dict_method(obj, key.str());
      return m.is_undefined() ? missing_item(obj, key) : m;
    }
    default:
      return key.is_string() ? get_attr(obj, key.str()) : missing_item(obj, key);
  }
}

Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (!obj.is_string() && !obj.is_list())
    type_error("'" + std::string(type_name(obj)) + "' object is not subscriptable");
  auto given = [](const Value& v) { return !v.is_undefined() && !v.is_none(); };
  const int64_t st = given(step) ? require_int(step, "slice indices") : 1;
  if (st == 0) throw EvalError("ValueError: slice step cannot be zero");
  const std::u32string u = obj.is_string() ? utf8_to_u32(obj.str()) : std::u32string();
  const int64_t len =
      obj.is_string() ? static_cast<int64_t>(u.size()) : static_cast<int64_t>(obj.list().items.size());
  // CPython's PySlice_AdjustIndices.
  auto adjust = [&](const Value& v, int64_t dflt) {
    if (!given(v)) return dflt;
    int64_t i = require_int(v, "slice indices");
    if (i < 0) {
      i += len;
      if (i < 0) i = st < 0 ? -1 : 0;
    } else if (i >= len) {
      i = st < 0 ? len - 1 : len;
    }
    return i;
  };
  const int64_t b = adjust(start, st < 0 ? len - 1 : 0);
  const int64_t e = adjust(stop, st < 0 ? -1 : len);
  std::vector<int64_t> idx;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) idx.push_back(i);
  if (obj.is_string()) {
    std::u32string out;
    for (int64_t i : idx) out.push_back(u[i]);
    return Value(u32_to_utf8(out));
  }
  std::vector<Value> out;
  for (int64_t i : idx) out.push_back(obj.list().items[i]);
  return Value::list(std::move(out), obj.list().is_tuple);
}

Value call_value(const Value& callee, CallArgs& args) {
  if (callee.is_callable()) return callee.fn().fn(args);
  if (callee.is_undefined()) fail_undefined(callee);
  type_error("'" + std::string(type_name(callee)) + "' object is not callable");
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return v.list().items;
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& kv : v.dict().items) keys.push_back(kv.first);
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (char32_t c : utf8_to_u32(v.str())) {
        std::string s;
        utf8_push(s, c);
        chars.emplace_back(std::move(s));
      }
      return chars;
    }
    default:
      type_error("'" + std::string(type_name(v)) + "' object is not iterable");
  }
}

int64_t py_len(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return utf8_length(v.str());
    case Value::Kind::kList:
      return static_cast<int64_t>(v.list().items.size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(v.dict().items.size());
    default:
      type_error("object of type '" + std::string(type_name(v)) + "' has no len()");
  }
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string())
        type_error("'in <string>' requires string as left operand, not " + std::string(type_name(item)));
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      return std::any_of(container.list().items.begin(), container.list().items.end(),
                         [&](const Value& x) { return py_equal(x, item); });
    case Value::Kind::kDict:
      if (!hashable(item)) type_error("unhashable type: '" + std::string(type_name(item)) + "'");
      return container.dict().find(item) != nullptr;
    default:
      type_error("argument of type '" + std::string(type_name(container)) + "' is not iterable");
  }
}

Value negate(const Value& a) {
  if (a.is_undefined()) fail_undefined(a);
  if (a.kind() == Value::Kind::kFloat) return Value(-a.as_float());
  if (a.is_int()) return Value(sub_int(0, a.as_int()));
  type_error("bad operand type for unary -: '" + std::string(type_name(a)) + "'");
}

Value binary_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value(to_str(a) + to_str(b));
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  const bool nums = a.is_number() && b.is_number();
  const bool floats = nums && (a.kind() == Value::Kind::kFloat || b.kind() == Value::Kind::kFloat);
  if (op == "+") {
    if (floats) return Value(a.as_float() + b.as_float());
    if (nums) return Value(add_int(a.as_int(), b.as_int()));
    if (a.is_string() && b.is_string()) return concat_strings(a, b);
    if (a.is_list() && b.is_list() && a.list().is_tuple == b.list().is_tuple) {
      std::vector<Value> out = a.list().items;
      out.insert(out.end(), b.list().items.begin(), b.list().items.end());
      return Value::list(std::move(out), a.list().is_tuple);
    }
    if (a.is_string() || a.is_list())
      type_error("can only concatenate " + std::string(type_name(a)) + " (not \"" + type_name(b) + "\") to " +
                 type_name(a));
  } else if (op == "-") {
    if (floats) return Value(a.as_float() - b.as_float());
    if (nums) return Value(sub_int(a.as_int(), b.as_int()));
  } else if (op == "*") {
    if (floats) return Value(a.as_float() * b.as_float());
    if (nums) return Value(mul_int(a.as_int(), b.as_int()));
    if ((a.is_string() || a.is_list()) && b.is_int()) return repeat(a, b.as_int());
    if (a.is_int() && (b.is_string() || b.is_list())) return repeat(b, a.as_int());
  } else if (op == "/") {
    if (nums) {
      if (b.as_float() == 0) throw EvalError("ZeroDivisionError: division by zero");
      return Value(a.as_float() / b.as_float());
    }
  } else if (op == "//" || op == "%") {
    if (nums && b.as_float() == 0)
      throw EvalError(std::string("ZeroDivisionError: ") + (floats ? "float " : "integer ") +
                      (op == "//" ? "division" : "modulo") + " by zero");
    if (floats) {
      const auto [q, m] = float_divmod(a.as_float(), b.as_float());
      return Value(op == "//" ? q : m);
    }
    if (nums) {
      const int64_t x = a.as_int(), y = b.as_int();
      if (x == std::numeric_limits<int64_t>::min() && y == -1) overflow();
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      return Value(op == "//" ? q : m);
    }
    if (op == "%" && a.is_string()) throw EvalError("unsupported: printf-style string formatting with %");
  } else if (op == "**") {
    if (nums && !floats && b.as_int() >= 0) {
      int64_t result = 1, base = a.as_int();
      for (int64_t e = b.as_int(); e > 0; e >>= 1) {
        if (e & 1) result = mul_int(result, base);
        if (e > 1) base = mul_int(base, base);
      }
      return Value(result);
    }
    if (nums) return Value(std::pow(a.as_float(), b.as_float()));
  }
  type_error("unsupported operand type(s) for " + op + ": '" + type_name(a) + "' and '" + type_name(b) + "'");
}

}  // namespace tune::jinja
