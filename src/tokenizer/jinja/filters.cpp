// jinja2's built-in filters and tests, transformers' tojson override, and the template globals (see
// builtins.h). Each follows jinja2 3.1's Python implementation, with autoescape off as transformers renders.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <string_view>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/pystr.h"

namespace tune::jinja {

namespace {

[[noreturn]] void type_error(const std::string& what) {
  throw EvalError("TypeError: " + what);
}

bool given(const Value& v) {
  return !v.is_undefined();
}

bool flag(const Value& v, bool dflt) {
  return given(v) ? truthy(v) : dflt;
}

Value keep_markup(const Value& from, std::string s) {
  return from.safe() ? Value::markup(std::move(s)) : Value(std::move(s));
}

// jinja2's make_attrgetter: "a.b.0" looks up a, b, then item 0, each with environment.getitem.
Value attr_path(const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return get_item(item, attribute);
  Value v = item;
  static const std::string kDot = ".";
  for (const std::string& part : py_split(attribute.str(), &kDot, -1)) {
    const bool digits =
        !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = get_item(v, digits ? Value(static_cast<int64_t>(std::stoll(part))) : Value(part));
  }
  return v;
}

// Sort key of sort/dictsort/unique/min/max: strings compare case-insensitively unless asked otherwise.
Value ignore_case(const Value& v, bool case_sensitive) {
  return (!case_sensitive && v.is_string()) ? Value(py_lower(v.str())) : v;
}

CallArgs rest_args(const CallArgs& a, size_t from) {
  CallArgs out;
  for (size_t i = from; i < a.args.size(); ++i) out.args.push_back(a.args[i]);
  out.kwargs = a.kwargs;
  return out;
}

Value run_test(const Value& name, const Value& v, CallArgs args) {
  if (!name.is_string()) type_error("test name must be a string");
  const TestFn t = find_test(name.str());
  if (!t) throw EvalError("TemplateRuntimeError: no test named " + py_repr_str(name.str()));
  return Value(t(v, args));
}

// --- filters ---

Value f_abs(const Value& v, CallArgs& a) {
  ArgReader(a, "abs").done();
  if (v.kind() == Value::Kind::kFloat) return Value(std::abs(v.as_float()));
  if (v.is_int()) return v.as_int() < 0 ? negate(v) : Value(v.as_int());
  type_error("bad operand type for abs(): '" + std::string(type_name(v)) + "'");
}

Value f_attr(const Value& v, CallArgs& a) {
  ArgReader r(a, "attr");
  const Value name = r.get(0, "name");
  r.done();
  if (!name.is_string()) type_error("attribute name must be a string");
  // Only Python attributes (methods), never dict items: {'a': 1}|attr('a') is undefined.
  const bool is_method = get_attr(Value::dict(DictData{}), name.str()).is_callable();
  if (v.is_dict() && !is_method)
    return Value::undefined("'dict object' has no attribute " + py_repr_str(name.str()));
  return get_attr(v, name.str());
}

Value f_capitalize(const Value& v, CallArgs& a) {
  ArgReader(a, "capitalize").done();
  return Value(py_capitalize(to_str(v)));
}

Value f_length(const Value& v, CallArgs& a) {
  ArgReader(a, "length").done();
  return Value(py_len(v));
}

Value f_default(const Value& v, CallArgs& a) {
  ArgReader r(a, "default");
  const Value dflt = r.get(0, "default_value"), boolean = r.get(1, "boolean");
  r.done();
  if (v.is_undefined() || (flag(boolean, false) && !truthy(v))) return given(dflt) ? dflt : Value("");
  return v;
}

std::vector<Value> sorted_copy(std::vector<Value> items, bool reverse,
                               const std::function<Value(const Value&)>& key) {
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& it : items) keyed.emplace_back(key(it), std::move(it));
  std::stable_sort(keyed.begin(), keyed.end(), [reverse](const auto& x, const auto& y) {
    return reverse ? py_less(y.first, x.first) : py_less(x.first, y.first);
  });
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return out;
}

Value f_dictsort(const Value& v, CallArgs& a) {
  ArgReader r(a, "dictsort");
  const bool case_sensitive = flag(r.get(0, "case_sensitive"), false);
  const Value by = r.get(1, "by");
  const bool reverse = flag(r.get(2, "reverse"), false);
  r.done();
  if (!v.is_dict()) type_error("dictsort needs a mapping");
  size_t pos = 0;
  if (given(by)) {
    if (!by.is_string() || (by.str() != "key" && by.str() != "value"))
      throw EvalError("FilterArgumentError: You can only sort by either \"key\" or \"value\"");
    pos = by.str() == "value" ? 1 : 0;
  }
  std::vector<Value> pairs;
  for (const auto& [k, e] : v.dict().items) pairs.push_back(Value::list({k, e}, true));
  return Value::list(sorted_copy(std::move(pairs), reverse, [&](const Value& p) {
    return ignore_case(p.list().items[pos], case_sensitive);
  }));
}

Value f_escape(const Value& v, CallArgs& a) {
  ArgReader(a, "escape").done();
  return v.safe() ? v : Value::markup(html_escape(to_str(v)));
}

Value f_first(const Value& v, CallArgs& a) {
  ArgReader(a, "first").done();
  std::vector<Value> items = iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(const Value& v, CallArgs& a) {
  ArgReader(a, "last").done();
  std::vector<Value> items = iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

// Python float(str): surrounding whitespace allowed, underscores between digits, inf/nan spellings.
bool parse_float(const std::string& text, double& out) {
  std::string t = py_strip(text, nullptr, true, true);
  std::erase(t, '_');
  if (t.empty()) return false;
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size() && t.find_first_of("xXpP") == std::string::npos;
}

Value f_float(const Value& v, CallArgs& a) {
  ArgReader r(a, "float");
  const Value dflt = r.get(0, "default");
  r.done();
  if (v.is_number()) return Value(v.as_float());
  double d;
  if (v.is_string() && parse_float(v.str(), d)) return Value(d);
  return given(dflt) ? dflt : Value(0.0);
}

Value f_int(const Value& v, CallArgs& a) {
  ArgReader r(a, "int");
  const Value dflt = r.get(0, "default"), base = r.get(1, "base");
  r.done();
  if (v.is_int()) return Value(v.as_int());
  if (v.kind() == Value::Kind::kFloat) return Value(static_cast<int64_t>(v.as_float()));
  if (v.is_string()) {
    std::string t = py_strip(v.str(), nullptr, true, true);
    std::erase(t, '_');
    const int b = given(base) ? static_cast<int>(base.as_int()) : 10;
    char* end = nullptr;
    errno = 0;
    const long long i = t.empty() ? 0 : std::strtoll(t.c_str(), &end, b);
    if (!t.empty() && end == t.c_str() + t.size() && errno == 0) return Value(static_cast<int64_t>(i));
    double d;
    if (parse_float(v.str(), d)) return Value(static_cast<int64_t>(d));  // "42.23"|int is 42, as in jinja2
  }
  return given(dflt) ? dflt : Value(0);
}

Value f_indent(const Value& v, CallArgs& a) {
  ArgReader r(a, "indent");
  const Value width = r.get(0, "width");
  const bool first = flag(r.get(1, "first"), false), blank = flag(r.get(2, "blank"), false);
  r.done();
  std::string indention = "    ";
  if (width.is_string()) {
    indention = width.str();
  } else if (given(width)) {
    indention = std::string(static_cast<size_t>(std::max<int64_t>(0, width.as_int())), ' ');
  }
  // jinja2 appends a newline before splitlines(), so a trailing newline does not produce an indented empty
  // line.
  const std::vector<std::string> lines = py_splitlines(to_str(v) + "\n");
  std::string rv;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i == 0) {
      rv = lines[0];
    } else {
      rv += "\n";
      if (blank || !lines[i].empty()) rv += indention;
      rv += lines[i];
    }
  }
  return Value(first ? indention + rv : rv);
}

Value f_items(const Value& v, CallArgs& a) {
  ArgReader(a, "items").done();
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict()) type_error("Can only get item pairs from a mapping.");
  std::vector<Value> out;
  for (const auto& [k, e] : v.dict().items) out.push_back(Value::list({k, e}, true));
  return Value::list(std::move(out));
}

Value f_join(const Value& v, CallArgs& a) {
  ArgReader r(a, "join");
  const Value sep = r.get(0, "d"), attribute = r.get(1, "attribute");
  r.done();
  std::string out;
  bool first = true;
  for (const Value& item : iterate(v)) {
    if (!first) out += given(sep) ? to_str(sep) : "";
    first = false;
    out += to_str(given(attribute) ? attr_path(item, attribute) : item);
  }
  return Value(std::move(out));
}

Value f_list(const Value& v, CallArgs& a) {
  ArgReader(a, "list").done();
  return Value::list(iterate(v));
}

Value f_lower(const Value& v, CallArgs& a) {
  ArgReader(a, "lower").done();
  return Value(py_lower(to_str(v)));
}

Value f_upper(const Value& v, CallArgs& a) {
  ArgReader(a, "upper").done();
  return Value(py_upper(to_str(v)));
}

Value f_map(const Value& v, CallArgs& a) {
  std::vector<Value> out;
  if (a.args.empty()) {
    ArgReader r(a, "map");
    const Value attribute = r.get_kw("attribute"), dflt = r.get_kw("default");
    r.done();
    if (!given(attribute)) type_error("map() needs a filter name or attribute=");
    for (const Value& item : iterate(v)) {
      Value x = attr_path(item, attribute);
      out.push_back(x.is_undefined() && given(dflt) ? dflt : x);
    }
    return Value::list(std::move(out));
  }
  if (!a.args[0].is_string()) type_error("map() filter name must be a string");
  const FilterFn f = find_filter(a.args[0].str());
  if (!f) throw EvalError("TemplateRuntimeError: no filter named " + py_repr_str(a.args[0].str()));
  for (const Value& item : iterate(v)) {
    CallArgs rest = rest_args(a, 1);
    out.push_back(f(item, rest));
  }
  return Value::list(std::move(out));
}

Value min_max(const Value& v, CallArgs& a, bool want_max) {
  ArgReader r(a, want_max ? "max" : "min");
  const bool case_sensitive = flag(r.get(0, "case_sensitive"), false);
  const Value attribute = r.get(1, "attribute");
  r.done();
  const std::vector<Value> items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  auto key = [&](const Value& x) {
    return ignore_case(given(attribute) ? attr_path(x, attribute) : x, case_sensitive);
  };
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    const bool better =
        want_max ? py_less(key(items[best]), key(items[i])) : py_less(key(items[i]), key(items[best]));
    if (better) best = i;
  }
  return items[best];
}

Value f_max(const Value& v, CallArgs& a) {
  return min_max(v, a, true);
}
Value f_min(const Value& v, CallArgs& a) {
  return min_max(v, a, false);
}

Value select_impl(const Value& v, CallArgs& a, bool by_attr, bool keep) {
  std::vector<Value> out;
  const size_t name_pos = by_attr ? 1 : 0;
  if (by_attr && a.args.empty()) type_error("selectattr/rejectattr need an attribute name");
  for (const Value& item : iterate(v)) {
    const Value subject = by_attr ? attr_path(item, a.args[0]) : item;
    const bool pass = a.args.size() > name_pos
                          ? truthy(run_test(a.args[name_pos], subject, rest_args(a, name_pos + 1)))
                          : truthy(subject);
    if (pass == keep) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value f_select(const Value& v, CallArgs& a) {
  return select_impl(v, a, false, true);
}
Value f_reject(const Value& v, CallArgs& a) {
  return select_impl(v, a, false, false);
}
Value f_selectattr(const Value& v, CallArgs& a) {
  return select_impl(v, a, true, true);
}
Value f_rejectattr(const Value& v, CallArgs& a) {
  return select_impl(v, a, true, false);
}

Value f_replace(const Value& v, CallArgs& a) {
  ArgReader r(a, "replace");
  const Value old_s = r.get(0, "old"), new_s = r.get(1, "new"), count = r.get(2, "count");
  r.done();
  const int64_t n = given(count) && !count.is_none() ? count.as_int() : -1;
  return Value(py_replace(to_str(v), to_str(old_s), to_str(new_s), n));
}

Value f_reverse(const Value& v, CallArgs& a) {
  ArgReader(a, "reverse").done();
  if (v.is_string()) {
    std::u32string u = utf8_to_u32(v.str());
    std::reverse(u.begin(), u.end());
    return Value(u32_to_utf8(u));
  }
  std::vector<Value> items = iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

Value f_safe(const Value& v, CallArgs& a) {
  ArgReader(a, "safe").done();
  return Value::markup(to_str(v));
}

Value f_sort(const Value& v, CallArgs& a) {
  ArgReader r(a, "sort");
  const bool reverse = flag(r.get(0, "reverse"), false),
             case_sensitive = flag(r.get(1, "case_sensitive"), false);
  const Value attribute = r.get(2, "attribute");
  r.done();
  return Value::list(sorted_copy(iterate(v), reverse, [&](const Value& x) {
    return ignore_case(given(attribute) ? attr_path(x, attribute) : x, case_sensitive);
  }));
}

Value f_string(const Value& v, CallArgs& a) {
  ArgReader(a, "string").done();
  return v.is_string() ? v : Value(to_str(v));
}

Value f_sum(const Value& v, CallArgs& a) {
  ArgReader r(a, "sum");
  const Value attribute = r.get(0, "attribute"), start = r.get(1, "start");
  r.done();
  Value total = given(start) ? start : Value(0);
  for (const Value& item : iterate(v))
    total = binary_op("+", total, given(attribute) ? attr_path(item, attribute) : item);
  return total;
}

Value f_title(const Value& v, CallArgs& a) {
  ArgReader(a, "title").done();
  // jinja2 splits on runs of [-\s({\[<] and capitalizes each piece (unlike str.title(), "they're" ->
  // "They're").
  std::string out;
  bool word_start = true;
  for (char32_t c : utf8_to_u32(to_str(v))) {
    const bool delim = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
    if (delim) {
      utf8_push(out, c);
      word_start = true;
    } else {
      utf8_push(out, word_start ? py_char_upper(c) : py_char_lower(c));
      word_start = false;
    }
  }
  return Value(std::move(out));
}

Value f_tojson(const Value& v, CallArgs& a) {
  ArgReader r(a, "tojson");
  const Value ensure_ascii = r.get(0, "ensure_ascii"), indent = r.get(1, "indent"),
              separators = r.get(2, "separators"), sort_keys = r.get(3, "sort_keys");
  r.done();
  JsonStyle style;
  style.ensure_ascii = flag(ensure_ascii, false);
  style.sort_keys = flag(sort_keys, false);
  if (given(indent) && !indent.is_none()) {
    style.pretty = true;
    style.indent = indent.is_string()
                       ? indent.str()
                       : std::string(static_cast<size_t>(std::max<int64_t>(0, indent.as_int())), ' ');
    style.item_sep = ",";
  }
  if (given(separators) && !separators.is_none()) {
    if (!separators.is_list() || separators.list().items.size() != 2 ||
        !separators.list().items[0].is_string() || !separators.list().items[1].is_string())
      type_error("tojson separators must be a pair of strings");
    style.item_sep = separators.list().items[0].str();
    style.key_sep = separators.list().items[1].str();
  }
  return Value(to_json(v, style));
}

Value f_trim(const Value& v, CallArgs& a) {
  ArgReader r(a, "trim");
  const Value chars = r.get(0, "chars");
  r.done();
  const std::string chars_s = given(chars) && !chars.is_none() ? to_str(chars) : std::string();
  return keep_markup(v,
                     py_strip(to_str(v), given(chars) && !chars.is_none() ? &chars_s : nullptr, true, true));
}

Value f_unique(const Value& v, CallArgs& a) {
  ArgReader r(a, "unique");
  const bool case_sensitive = flag(r.get(0, "case_sensitive"), false);
  const Value attribute = r.get(1, "attribute");
  r.done();
  std::vector<Value> out, seen;
  for (const Value& item : iterate(v)) {
    const Value key = ignore_case(given(attribute) ? attr_path(item, attribute) : item, case_sensitive);
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return py_equal(s, key); })) continue;
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::list(std::move(out));
}

// --- tests ---

bool no_args(CallArgs& a, const char* name) {
  ArgReader(a, name).done();
  return true;
}

Value one_arg(CallArgs& a, const char* name) {
  ArgReader r(a, name);
  const Value x = r.get(0, "other");
  r.done();
  return x;
}

bool t_boolean(const Value& v, CallArgs& a) {
  return no_args(a, "boolean") && v.kind() == Value::Kind::kBool;
}
bool t_callable(const Value& v, CallArgs& a) {
  return no_args(a, "callable") && v.is_callable();
}
bool t_defined(const Value& v, CallArgs& a) {
  return no_args(a, "defined") && !v.is_undefined();
}
bool t_undefined(const Value& v, CallArgs& a) {
  return no_args(a, "undefined") && v.is_undefined();
}
bool t_none(const Value& v, CallArgs& a) {
  return no_args(a, "none") && v.is_none();
}
bool t_true(const Value& v, CallArgs& a) {
  return no_args(a, "true") && v.kind() == Value::Kind::kBool && v.as_bool();
}
bool t_false(const Value& v, CallArgs& a) {
  return no_args(a, "false") && v.kind() == Value::Kind::kBool && !v.as_bool();
}
bool t_string(const Value& v, CallArgs& a) {
  return no_args(a, "string") && v.is_string();
}
bool t_mapping(const Value& v, CallArgs& a) {
  return no_args(a, "mapping") && v.is_dict();
}
bool t_number(const Value& v, CallArgs& a) {
  return no_args(a, "number") && v.is_number();
}
bool t_integer(const Value& v, CallArgs& a) {
  return no_args(a, "integer") && v.kind() == Value::Kind::kInt;
}
bool t_float(const Value& v, CallArgs& a) {
  return no_args(a, "float") && v.kind() == Value::Kind::kFloat;
}
bool t_escaped(const Value& v, CallArgs& a) {
  return no_args(a, "escaped") && v.safe();
}
// Python's iter() works on str, list, dict and jinja2's Undefined; len() + __getitem__ on the same set.
bool t_iterable(const Value& v, CallArgs& a) {
  return no_args(a, "iterable") && (v.is_undefined() || v.is_string() || v.is_list() || v.is_dict());
}
bool t_sequence(const Value& v, CallArgs& a) {
  return no_args(a, "sequence") && (v.is_undefined() || v.is_string() || v.is_list() || v.is_dict());
}
bool t_even(const Value& v, CallArgs& a) {
  return no_args(a, "even") && v.is_int() && v.as_int() % 2 == 0;
}
bool t_odd(const Value& v, CallArgs& a) {
  return no_args(a, "odd") && v.is_int() && v.as_int() % 2 != 0;
}
bool t_divisibleby(const Value& v, CallArgs& a) {
  const Value n = one_arg(a, "divisibleby");
  return !truthy(binary_op("%", v, n));
}
bool t_eq(const Value& v, CallArgs& a) {
  return py_equal(v, one_arg(a, "eq"));
}
bool t_ne(const Value& v, CallArgs& a) {
  return !py_equal(v, one_arg(a, "ne"));
}
bool t_lt(const Value& v, CallArgs& a) {
  return py_less(v, one_arg(a, "lt"));
}
bool t_gt(const Value& v, CallArgs& a) {
  return py_less(one_arg(a, "gt"), v, ">");
}
bool t_le(const Value& v, CallArgs& a) {
  const Value o = one_arg(a, "le");
  return !py_less(o, v, "<=");
}
bool t_ge(const Value& v, CallArgs& a) {
  const Value o = one_arg(a, "ge");
  return !py_less(v, o, ">=");
}
bool t_in(const Value& v, CallArgs& a) {
  return contains(one_arg(a, "in"), v);
}
// str(v).islower() / .isupper().
bool case_test(const Value& v, CallArgs& a, const char* name, const char* method) {
  ArgReader(a, name).done();
  CallArgs no_args;
  return truthy(call_value(get_attr(Value(to_str(v)), method), no_args));
}
bool t_lower(const Value& v, CallArgs& a) {
  return case_test(v, a, "lower", "islower");
}
bool t_upper(const Value& v, CallArgs& a) {
  return case_test(v, a, "upper", "isupper");
}
bool t_sameas(const Value& v, CallArgs& a) {
  const Value o = one_arg(a, "sameas");
  if (v.kind() != o.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kNone:
    case Value::Kind::kUndefined:
      return true;
    case Value::Kind::kBool:
    case Value::Kind::kInt:
    case Value::Kind::kFloat:
    case Value::Kind::kString:
      return py_equal(v, o);
    default:
      return v.identity() == o.identity();
  }
}
bool t_filter(const Value& v, CallArgs& a) {
  return no_args(a, "filter") && v.is_string() && find_filter(v.str());
}
bool t_test(const Value& v, CallArgs& a) {
  return no_args(a, "test") && v.is_string() && find_test(v.str());
}

template <class Fn>
struct Named {
  const char* name;
  Fn fn;
};

constexpr Named<FilterFn> kFilters[] = {
    {"abs", f_abs},
    {"attr", f_attr},
    {"capitalize", f_capitalize},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"first", f_first},
    {"float", f_float},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_lower},
    {"map", f_map},
    {"max", f_max},
    {"min", f_min},
    {"reject", f_reject},
    {"rejectattr", f_rejectattr},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"safe", f_safe},
    {"select", f_select},
    {"selectattr", f_selectattr},
    {"sort", f_sort},
    {"string", f_string},
    {"sum", f_sum},
    {"title", f_title},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"unique", f_unique},
    {"upper", f_upper},
};

constexpr Named<TestFn> kTests[] = {
    {"boolean", t_boolean},
    {"callable", t_callable},
    {"defined", t_defined},
    {"divisibleby", t_divisibleby},
    {"eq", t_eq},
    {"equalto", t_eq},
    {"escaped", t_escaped},
    {"even", t_even},
    {"false", t_false},
    {"filter", t_filter},
    {"float", t_float},
    {"ge", t_ge},
    {"greaterthan", t_gt},
    {"gt", t_gt},
    {"in", t_in},
    {"integer", t_integer},
    {"iterable", t_iterable},
    {"le", t_le},
    {"lessthan", t_lt},
    {"lower", t_lower},
    {"lt", t_lt},
    {"mapping", t_mapping},
    {"ne", t_ne},
    {"none", t_none},
    {"number", t_number},
    {"odd", t_odd},
    {"sameas", t_sameas},
    {"sequence", t_sequence},
    {"string", t_string},
    {"test", t_test},
    {"true", t_true},
    {"undefined", t_undefined},
    {"upper", t_upper},
};

// --- globals ---

DictData dict_from_args(CallArgs& a, const char* fn) {
  DictData d;
  if (a.args.size() > 1) type_error(std::string(fn) + "() expected at most 1 positional argument");
  if (a.args.size() == 1) {
    const Value& src = a.args[0];
    if (src.is_dict()) {
      d = src.dict();
    } else {
      for (const Value& pair : iterate(src)) {
        if (!pair.is_list() || pair.list().items.size() != 2 || !hashable(pair.list().items[0]))
          type_error(std::string(fn) + "() needs a mapping or (key, value) pairs");
        d.set(pair.list().items[0], pair.list().items[1]);
      }
    }
  }
  for (auto& [k, v] : a.kwargs) d.set(k, v);
  return d;
}

Value g_range(CallArgs& a) {
  if (!a.kwargs.empty() || a.args.empty() || a.args.size() > 3) type_error("range expected 1 to 3 arguments");
  for (const Value& x : a.args)
    if (!x.is_int())
      type_error("'" + std::string(type_name(x)) + "' object cannot be interpreted as an integer");
  int64_t start = 0, stop, step = 1;
  if (a.args.size() == 1) {
    stop = a.args[0].as_int();
  } else {
    start = a.args[0].as_int();
    stop = a.args[1].as_int();
    if (a.args.size() == 3) step = a.args[2].as_int();
  }
  if (step == 0) throw EvalError("ValueError: range() arg 3 must not be zero");
  const int64_t n = step > 0 ? (stop > start ? (stop - start + step - 1) / step : 0)
                             : (start > stop ? (start - stop - step - 1) / -step : 0);
  constexpr int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE
  if (n > kMaxRange)
    throw EvalError(
        "OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.emplace_back(start + i * step);
  return Value::list(std::move(out));
}

Value g_raise_exception(CallArgs& a) {
  ArgReader r(a, "raise_exception");
  const Value message = r.get(0, "message");
  r.done();
  throw EvalError(to_str(message), /*raised=*/true);
}

Value g_strftime_now(CallArgs& a) {
  ArgReader r(a, "strftime_now");
  const Value format = r.get(0, "format");
  r.done();
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm local{};
  localtime_r(&now, &local);
  char buf[512];
  const size_t n = std::strftime(buf, sizeof buf, to_str(format).c_str(), &local);
  return Value(std::string(buf, n));
}

}  // namespace

FilterFn find_filter(std::string_view name) {
  for (const auto& f : kFilters)
    if (name == f.name) return f.fn;
  return nullptr;
}

TestFn find_test(std::string_view name) {
  for (const auto& t : kTests)
    if (name == t.name) return t.fn;
  return nullptr;
}

void add_globals(DictData& globals) {
  globals.set("range", Value::callable("range", g_range));
  globals.set("dict",
              Value::callable("dict", [](CallArgs& a) { return Value::dict(dict_from_args(a, "dict")); }));
  globals.set("namespace", Value::callable("namespace", [](CallArgs& a) {
                return Value::make_namespace(dict_from_args(a, "namespace"));
              }));
  globals.set("raise_exception", Value::callable("raise_exception", g_raise_exception));
  globals.set("strftime_now", Value::callable("strftime_now", g_strftime_now));
}

}  // namespace tune::jinja
