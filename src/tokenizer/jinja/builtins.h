// What a Jinja template can do to values, with jinja2 + Python semantics: operators, attribute and item
// access (sandboxed: methods that modify lists or dicts refuse), iteration, the built-in filters and tests,
// and the globals transformers provides (range, dict, namespace, raise_exception, strftime_now).
// operators.cpp implements access and operators, filters.cpp filters, tests and globals.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace tune::jinja {

// Null when jinja2 (as transformers configures it) has no such filter or test, or this engine does not
// implement it.
FilterFn find_filter(std::string_view name);
TestFn find_test(std::string_view name);

// environment.getattr / getitem: `a.b` tries the Python attribute (a method) first, then the item; `a[b]` the
// other way round. Missing ones give Undefined carrying jinja2's hint.
Value get_attr(const Value& obj, const std::string& name);
Value get_item(const Value& obj, const Value& key);
// a[start:stop:step]; Undefined arguments mean "omitted".
Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
Value call_value(const Value& callee, CallArgs& args);

// The items a for loop visits: list elements, dict keys, string characters; nothing for Undefined.
std::vector<Value> iterate(const Value& v);
int64_t py_len(const Value& v);
// `item in container`.
bool contains(const Value& container, const Value& item);
// + - * / // % ** and ~ .
Value binary_op(const std::string& op, const Value& a, const Value& b);
Value negate(const Value& a);

void add_globals(DictData& globals);

// Reads filter/test/function arguments the way a Python signature binds them.
class ArgReader {
 public:
  ArgReader(CallArgs& args, const char* fn_name);
  // Positional slot `pos`, or keyword `name`; Undefined when neither was passed.
  Value get(size_t pos, const char* name);
  // Keyword-only argument `name`.
  Value get_kw(const char* name);
  // Fails (TypeError) on arguments no get() asked for.
  void done() const;

 private:
  CallArgs& args_;
  const char* fn_name_;
  size_t used_positional_ = 0;
  std::vector<bool> used_kw_;
};

}  // namespace tune::jinja
