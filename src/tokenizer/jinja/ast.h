// Syntax tree of a parsed Jinja template: expressions and statements, each remembering its line for error
// messages. Filters and tests are resolved to their implementations at parse time, so an unknown name fails
// when the template is loaded, as in jinja2.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace tune::jinja {

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

// Filters: f(value, args) ; tests: t(value, args).
using FilterFn = Value (*)(const Value&, CallArgs&);
using TestFn = bool (*)(const Value&, CallArgs&);

struct Expr {
  enum class Kind {
    kLiteral,  // value
    kName,     // name
    kGetattr,  // a.name
    kGetitem,  // a[b]
    kSlice,    // a[b:c:d], each of b c d optional
    kCall,     // a(args, kwargs)
    kFilter,   // a | name(args, kwargs); a is null inside {% filter %} and {% set x | f %}
    kTest,     // a is name(args)
    kNot,      // not a
    kNeg,      // -a
    kPos,      // +a
    kBinary,   // a op b: + - * / // % ** ~
    kAnd,      // a and b
    kOr,       // a or b
    kCompare,  // a ops[0] args[0] ops[1] args[1] ...: == != < <= > >= in notin
    kCond,     // b if a else c (c optional)
    kList,     // [args]
    kTuple,    // (args)
    kDict,     // {args[2i]: args[2i+1]}
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  ExprPtr a, b, c;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  FilterFn filter = nullptr;
  TestFn test = nullptr;
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null: required (Undefined when not given)
};

struct Stmt {
  enum class Kind {
    kText,      // text
    kOutput,    // {{ expr }}
    kIf,        // branches; else_body
    kFor,       // for targets in expr [if cond]: body [else: else_body]
    kSet,       // set targets = expr; or set ns.attr = expr (ns_attr non-empty, targets[0] the namespace)
    kSetBlock,  // set targets[0] [| filter] %} body {% endset
    kMacro,     // macro name(params): body
    kBreak,
    kContinue,
    kFilterBlock,  // filter expr(null operand chain) %} body
    kGeneration,   // transformers' {% generation %}: renders its body unchanged
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr, cond;
  std::vector<std::string> targets;
  std::string ns_attr;
  std::vector<std::pair<ExprPtr, Body>> branches;
  Body body, else_body;
  std::string name;
  std::vector<MacroParam> params;
  bool uses_varargs = false, uses_kwargs = false;
};

}  // namespace tune::jinja
