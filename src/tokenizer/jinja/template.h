// A compiled Jinja template: parse once (parser.h), render many times against a context of variables. Scoping
// follows jinja2: a for-loop iteration and a macro call see the enclosing variables but their own `set`s stay
// local; `namespace()` objects are how state leaves a loop. Copies share the parsed tree.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace tune::jinja {

class Template {
 public:
  // Throws tune::FormatError on a syntax error or unsupported construct, naming it and its line.
  explicit Template(std::string_view source);
  // `context` holds the template's variables on top of the globals (range, dict, namespace, raise_exception,
  // strftime_now). Throws tune::FormatError when the template raises or fails (the line and Python-style
  // error).
  std::string render(const DictData& context) const;

 private:
  std::shared_ptr<const Body> body_;
};

}  // namespace tune::jinja
