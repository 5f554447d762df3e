// Python semantics of the interpreter's values (see value.h): truthiness, str/repr, equality, ordering and
// the json.dumps output of transformers' tojson filter.
#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tokenizer/jinja/pystr.h"

namespace tune::jinja {

const Value* DictData::find_str(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k.is_string() && k.str() == key) return &v;
  return nullptr;
}

const Value* DictData::find(const Value& key) const {
  if (key.is_string()) return find_str(key.str());
  for (const auto& [k, v] : items)
    if (py_equal(k, key)) return &v;
  return nullptr;
}

void DictData::set(Value key, Value value) {
  for (auto& [k, v] : items) {
    if (py_equal(k, key)) {
      v = std::move(value);
      return;
    }
  }
  items.emplace_back(std::move(key), std::move(value));
}

Value::Value(std::string s) : kind_(Kind::kString), p_(std::make_shared<std::string>(std::move(s))) {}

Value Value::undefined(std::string hint) {
  Value v;
  v.p_ = std::make_shared<std::string>(std::move(hint));
  return v;
}

Value Value::none() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::markup(std::string s) {
  Value v(std::move(s));
  v.safe_ = true;
  return v;
}

Value Value::list(std::vector<Value> items, bool is_tuple) {
  Value v;
  v.kind_ = Kind::kList;
  v.p_ = std::make_shared<ListData>(ListData{std::move(items), is_tuple});
  return v;
}

Value Value::dict(DictData d) {
  Value v;
  v.kind_ = Kind::kDict;
  v.p_ = std::make_shared<DictData>(std::move(d));
  return v;
}

Value Value::make_namespace(DictData d) {
  Value v;
  v.kind_ = Kind::kNamespace;
  v.p_ = std::make_shared<DictData>(std::move(d));
  return v;
}

Value Value::loop_object(std::shared_ptr<DictData> fields) {
  Value v;
  v.kind_ = Kind::kLoop;
  v.p_ = std::move(fields);
  return v;
}

Value Value::callable(std::string name, NativeFn fn) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.p_ = std::make_shared<Callable>(Callable{std::move(name), std::move(fn)});
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return none();
    case nlohmann::ordered_json::value_t::boolean:
      return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const auto u = j.get<uint64_t>();
      // Python ints are unbounded; beyond int64 this engine keeps the nearest float.
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return Value(static_cast<double>(u));
      return Value(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e));
      return list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      DictData d;
      d.items.reserve(j.size());
      for (const auto& [k, e] : j.items()) d.items.emplace_back(Value(k), from_json(e));
      return dict(std::move(d));
    }
    default:
      return none();  // binary and discarded values never come from JSON text
  }
}

const std::string& Value::hint() const {
  static const std::string kNoHint = "value is undefined";
  return p_ ? *static_cast<const std::string*>(p_.get()) : kNoHint;
}

const char* type_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      return v.list().is_tuple ? "tuple" : "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kNamespace:
      return "Namespace";
    case Value::Kind::kLoop:
      return "LoopContext";
    case Value::Kind::kCallable:
      return "function";
  }
  return "object";
}

bool truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.as_bool();
    case Value::Kind::kInt:
      return v.as_int() != 0;
    case Value::Kind::kFloat:
      return v.as_float() != 0.0;
    case Value::Kind::kString:
      return !v.str().empty();
    case Value::Kind::kList:
      return !v.list().items.empty();
    case Value::Kind::kDict:
      return !v.dict().items.empty();
    default:
      return true;
  }
}

namespace {

std::string repr_dict_body(const DictData& d) {
  std::string out = "{";
  bool first = true;
  for (const auto& [k, e] : d.items) {
    if (!first) out += ", ";
    first = false;
    out += to_repr(k) + ": " + to_repr(e);
  }
  return out + "}";
}

}  // namespace

std::string to_str(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kString:
      return v.str();
    default:
      return to_repr(v);
  }
}

std::string to_repr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return v.as_bool() ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(v.as_int());
    case Value::Kind::kFloat:
      return py_repr_float(v.as_float());
    case Value::Kind::kString:
      return v.safe() ? "Markup(" + py_repr_str(v.str()) + ")" : py_repr_str(v.str());
    case Value::Kind::kList: {
      const ListData& l = v.list();
      std::string out = l.is_tuple ? "(" : "[";
      for (size_t i = 0; i < l.items.size(); ++i) {
        if (i) out += ", ";
        out += to_repr(l.items[i]);
      }
      if (l.is_tuple && l.items.size() == 1) out += ",";
      return out + (l.is_tuple ? ")" : "]");
    }
    case Value::Kind::kDict:
      return repr_dict_body(v.dict());
    case Value::Kind::kNamespace:
      return "<Namespace " + repr_dict_body(v.object()) + ">";
    case Value::Kind::kLoop:
      return "<LoopContext>";
    case Value::Kind::kCallable:
      return "<function " + v.fn().name + ">";
  }
  return "";
}

bool py_equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (a.kind() == K::kFloat || b.kind() == K::kFloat) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::kUndefined:
    case K::kNone:
      return true;
    case K::kString:
      return a.str() == b.str();
    case K::kList: {
      const ListData &x = a.list(), &y = b.list();
      if (x.is_tuple != y.is_tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i)
        if (!py_equal(x.items[i], y.items[i])) return false;
      return true;
    }
    case K::kDict: {
      const DictData &x = a.dict(), &y = b.dict();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, e] : x.items) {
        const Value* other = y.find(k);
        if (!other || !py_equal(e, *other)) return false;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

bool py_less(const Value& a, const Value& b, const char* op) {
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  if (a.is_number() && b.is_number()) {
    if (a.kind() == Value::Kind::kFloat || b.kind() == Value::Kind::kFloat)
      return a.as_float() < b.as_float();
    return a.as_int() < b.as_int();
  }
  // UTF-8 byte order is code point order, which is Python's string order.
  if (a.is_string() && b.is_string()) return a.str() < b.str();
  if (a.is_list() && b.is_list() && a.list().is_tuple == b.list().is_tuple) {
    const auto &x = a.list().items, &y = b.list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (py_equal(x[i], y[i])) continue;
      return py_less(x[i], y[i], op);
    }
    return x.size() < y.size();
  }
  throw EvalError(std::string("TypeError: '") + op + "' not supported between instances of '" + type_name(a) +
                  "' and '" + type_name(b) + "'");
}

bool hashable(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kDict:
    case Value::Kind::kNamespace:
    case Value::Kind::kLoop:
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kList:
      if (!v.list().is_tuple) return false;
      for (const Value& e : v.list().items)
        if (!hashable(e)) return false;
      return true;
    default:
      return true;
  }
}

void fail_undefined(const Value& v) {
  throw EvalError("UndefinedError: " + v.hint());
}

namespace {

// json.dumps turns int, float, bool and None keys into strings.
std::string json_key(const Value& k) {
  switch (k.kind()) {
    case Value::Kind::kString:
      return k.str();
    case Value::Kind::kNone:
      return "null";
    case Value::Kind::kBool:
      return k.as_bool() ? "true" : "false";
    case Value::Kind::kInt:
    case Value::Kind::kFloat:
      return to_repr(k);
    default:
      throw EvalError(std::string("TypeError: keys must be str, int, float, bool or None, not ") +
                      type_name(k));
  }
}

void dump_json(const Value& v, const JsonStyle& s, int depth, std::string& out) {
  auto newline = [&](int level) {
    if (!s.pretty) return;
    out += '\n';
    for (int i = 0; i < level; ++i) out += s.indent;
  };
  switch (v.kind()) {
    case Value::Kind::kNone:
      out += "null";
      return;
    case Value::Kind::kBool:
      out += v.as_bool() ? "true" : "false";
      return;
    case Value::Kind::kInt:
      out += std::to_string(v.as_int());
      return;
    case Value::Kind::kFloat: {
      const double f = v.as_float();
      if (std::isnan(f)) {
        out += "NaN";
      } else if (std::isinf(f)) {
        out += f > 0 ? "Infinity" : "-Infinity";
      } else {
        out += py_repr_float(f);
      }
      return;
    }
    case Value::Kind::kString:
      out += json_quote(v.str(), s.ensure_ascii);
      return;
    case Value::Kind::kList: {
      const auto& items = v.list().items;
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += s.item_sep;
        newline(depth + 1);
        dump_json(items[i], s, depth + 1, out);
      }
      newline(depth);
      out += ']';
      return;
    }
    case Value::Kind::kDict: {
      std::vector<const std::pair<Value, Value>*> items;
      for (const auto& kv : v.dict().items) items.push_back(&kv);
      if (items.empty()) {
        out += "{}";
        return;
      }
      if (s.sort_keys)
        std::stable_sort(items.begin(), items.end(),
                         [](auto* a, auto* b) { return py_less(a->first, b->first); });
      out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += s.item_sep;
        newline(depth + 1);
        out += json_quote(json_key(items[i]->first), s.ensure_ascii);
        out += s.key_sep;
        dump_json(items[i]->second, s, depth + 1, out);
      }
      newline(depth);
      out += '}';
      return;
    }
    default:
      throw EvalError(std::string("TypeError: Object of type ") + type_name(v) + " is not JSON serializable");
  }
}

}  // namespace

std::string to_json(const Value& v, const JsonStyle& style) {
  std::string out;
  dump_json(v, style, 0, out);
  return out;
}

}  // namespace tune::jinja
