// The tree-walking interpreter behind Template::render (see template.h). Scopes are a chain of variable
// tables: the globals + context at the root, one child per for-loop iteration and per macro call; `if` opens
// none.
#include "tokenizer/jinja/template.h"

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/parser.h"
#include "tokenizer/jinja/pystr.h"

namespace tune::jinja {

namespace {

struct Scope {
  std::shared_ptr<Scope> parent;
  DictData vars;
};
using ScopePtr = std::shared_ptr<Scope>;

ScopePtr child_of(const ScopePtr& parent) {
  auto s = std::make_shared<Scope>();
  s->parent = parent;
  return s;
}

class Interpreter {
 public:
  std::string run(const Body& body, const DictData& context) {
    auto root = std::make_shared<Scope>();
    add_globals(root->vars);
    for (const auto& [k, v] : context.items) root->vars.set(k, v);
    std::string out;
    exec_body(body, root, out);
    return out;
  }

 private:
  enum class Flow { kNext, kBreak, kContinue };

  Flow exec_body(const Body& body, const ScopePtr& scope, std::string& out) {
    for (const auto& s : body) {
      const Flow f = exec(*s, scope, out);
      if (f != Flow::kNext) return f;
    }
    return Flow::kNext;
  }

  Flow exec(const Stmt& s, const ScopePtr& scope, std::string& out) {
    try {
      switch (s.kind) {
        case Stmt::Kind::kText:
          out += s.text;
          return Flow::kNext;
        case Stmt::Kind::kOutput:
          out += to_str(eval(*s.expr, scope));
          return Flow::kNext;
        case Stmt::Kind::kIf:
          for (const auto& [cond, body] : s.branches)
            if (truthy(eval(*cond, scope))) return exec_body(body, scope, out);
          return exec_body(s.else_body, scope, out);
        case Stmt::Kind::kFor:
          return exec_for(s, scope, out);
        case Stmt::Kind::kSet:
          exec_set(s, scope);
          return Flow::kNext;
        case Stmt::Kind::kSetBlock: {
          std::string captured;
          exec_body(s.body, child_of(scope), captured);
          Value v(std::move(captured));
          scope->vars.set(s.targets[0], s.expr ? apply_filter_chain(*s.expr, scope, v) : v);
          return Flow::kNext;
        }
        case Stmt::Kind::kMacro:
          scope->vars.set(s.name, make_macro(s, scope));
          return Flow::kNext;
        case Stmt::Kind::kBreak:
          return Flow::kBreak;
        case Stmt::Kind::kContinue:
          return Flow::kContinue;
        case Stmt::Kind::kFilterBlock: {
          std::string captured;
          exec_body(s.body, child_of(scope), captured);
          out += to_str(apply_filter_chain(*s.expr, scope, Value(std::move(captured))));
          return Flow::kNext;
        }
        case Stmt::Kind::kGeneration:
          return exec_body(s.body, scope, out);
      }
    } catch (EvalError& e) {
      if (e.line == 0) e.line = s.line;
      throw;
    }
    return Flow::kNext;
  }

  static const Value* lookup(const ScopePtr& scope, const std::string& name) {
    for (const Scope* s = scope.get(); s; s = s->parent.get())
      if (const Value* v = s->vars.find_str(name)) return v;
    return nullptr;
  }

  static void assign(const std::vector<std::string>& targets, const Value& value, Scope& scope) {
    if (targets.size() == 1) {
      scope.vars.set(targets[0], value);
      return;
    }
    const std::vector<Value> items = iterate(value);
    if (items.size() < targets.size())
      throw EvalError("ValueError: not enough values to unpack (expected " + std::to_string(targets.size()) +
                      ", got " + std::to_string(items.size()) + ")");
    if (items.size() > targets.size())
      throw EvalError("ValueError: too many values to unpack (expected " + std::to_string(targets.size()) +
                      ")");
    for (size_t i = 0; i < targets.size(); ++i) scope.vars.set(targets[i], items[i]);
  }

  void exec_set(const Stmt& s, const ScopePtr& scope) {
    Value v = eval(*s.expr, scope);
    if (s.ns_attr.empty()) {
      assign(s.targets, v, *scope);
      return;
    }
    const Value* ns = lookup(scope, s.targets[0]);
    if (!ns || ns->kind() != Value::Kind::kNamespace)
      throw EvalError("TemplateRuntimeError: cannot assign attribute on non-namespace object");
    ns->object().set(s.ns_attr, std::move(v));
  }

  Flow exec_for(const Stmt& s, const ScopePtr& scope, std::string& out) {
    std::vector<Value> items = iterate(eval(*s.expr, scope));
    if (s.cond) {
      std::vector<Value> kept;
      for (Value& item : items) {
        ScopePtr probe = child_of(scope);
        assign(s.targets, item, *probe);
        if (truthy(eval(*s.cond, probe))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec_body(s.else_body, child_of(scope), out);
    auto fields = std::make_shared<DictData>();
    const Value loop = Value::loop_object(fields);
    const auto n = static_cast<int64_t>(items.size());
    fields->set("length", Value(n));
    fields->set("depth", Value(1));
    fields->set("depth0", Value(0));
    // A weak reference: the loop object holds this callable, a strong one would make a cycle that never
    // frees.
    std::weak_ptr<DictData> weak_fields = fields;
    fields->set("cycle", Value::callable("cycle", [weak_fields](CallArgs& a) {
                  if (a.args.empty()) throw EvalError("TypeError: no items for cycling given");
                  const auto f = weak_fields.lock();
                  if (!f) throw EvalError("TemplateRuntimeError: loop.cycle used after its loop ended");
                  const int64_t i = f->find_str("index0")->as_int();
                  return a.args[static_cast<size_t>(i) % a.args.size()];
                }));
    for (int64_t i = 0; i < n; ++i) {
      fields->set("index0", Value(i));
      fields->set("index", Value(i + 1));
      fields->set("revindex", Value(n - i));
      fields->set("revindex0", Value(n - i - 1));
      fields->set("first", Value(i == 0));
      fields->set("last", Value(i == n - 1));
      fields->set("previtem", i > 0 ? items[i - 1] : Value::undefined("there is no previous item"));
      fields->set("nextitem", i + 1 < n ? items[i + 1] : Value::undefined("there is no next item"));
      ScopePtr iteration = child_of(scope);
      assign(s.targets, items[i], *iteration);
      iteration->vars.set("loop", loop);
      if (exec_body(s.body, iteration, out) == Flow::kBreak) break;
    }
    return Flow::kNext;
  }

  // The macro holds its defining scope weakly: that scope stores the macro, so a strong reference would be a
  // cycle that leaks every render.
  Value make_macro(const Stmt& m, const ScopePtr& defining_scope) {
    std::weak_ptr<Scope> weak_scope = defining_scope;
    return Value::callable(m.name, [this, &m, weak_scope](CallArgs& a) -> Value {
      const std::string who = "macro " + py_repr_str(m.name);
      const ScopePtr defining = weak_scope.lock();
      if (!defining) throw EvalError("TemplateRuntimeError: " + who + " called after its scope ended");
      if (a.args.size() > m.params.size() && !m.uses_varargs)
        throw EvalError("TypeError: " + who + " takes not more than " + std::to_string(m.params.size()) +
                        " argument(s)");
      ScopePtr scope = child_of(defining);
      std::vector<bool> used(a.kwargs.size(), false);
      for (size_t i = 0; i < m.params.size(); ++i) {
        const MacroParam& p = m.params[i];
        const Value* given = i < a.args.size() ? &a.args[i] : nullptr;
        for (size_t k = 0; k < a.kwargs.size(); ++k) {
          if (a.kwargs[k].first != p.name) continue;
          if (given)
            throw EvalError("TypeError: " + who + " got multiple values for argument " + py_repr_str(p.name));
          given = &a.kwargs[k].second;
          used[k] = true;
        }
        if (given) {
          scope->vars.set(p.name, *given);
        } else if (p.default_value) {
          scope->vars.set(p.name, eval(*p.default_value, scope));
        } else {
          scope->vars.set(p.name, Value::undefined("parameter " + py_repr_str(p.name) + " was not provided"));
        }
      }
      DictData extra_kwargs;
      for (size_t k = 0; k < a.kwargs.size(); ++k) {
        if (used[k]) continue;
        if (!m.uses_kwargs)
          throw EvalError("TypeError: " + who + " takes no keyword argument " +
                          py_repr_str(a.kwargs[k].first));
        extra_kwargs.set(a.kwargs[k].first, a.kwargs[k].second);
      }
      if (m.uses_varargs) {
        std::vector<Value> rest;
        for (size_t i = m.params.size(); i < a.args.size(); ++i) rest.push_back(a.args[i]);
        scope->vars.set("varargs", Value::list(std::move(rest), true));
      }
      if (m.uses_kwargs) scope->vars.set("kwargs", Value::dict(std::move(extra_kwargs)));
      constexpr int kMaxDepth = 200;
      if (++depth_ > kMaxDepth)
        throw EvalError("RecursionError: macro calls nested deeper than " + std::to_string(kMaxDepth));
      std::string out;
      exec_body(m.body, scope, out);
      --depth_;
      return Value(std::move(out));
    });
  }

  CallArgs eval_args(const Expr& e, const ScopePtr& scope) {
    CallArgs a;
    a.args.reserve(e.args.size());
    for (const auto& x : e.args) a.args.push_back(eval(*x, scope));
    for (const auto& [k, x] : e.kwargs) a.kwargs.emplace_back(k, eval(*x, scope));
    return a;
  }

  Value apply_filter_chain(const Expr& e, const ScopePtr& scope, const Value& input) {
    const Value operand = e.a ? apply_filter_chain(*e.a, scope, input) : input;
    CallArgs a = eval_args(e, scope);
    return e.filter(operand, a);
  }

  bool compare(const std::string& op, const Value& l, const Value& r) {
    if (op == "==") return py_equal(l, r);
    if (op == "!=") return !py_equal(l, r);
    if (op == "<") return py_less(l, r, "<");
    if (op == ">") return py_less(r, l, ">");
    if (op == "<=") return !py_less(r, l, "<=");
    if (op == ">=") return !py_less(l, r, ">=");
    if (op == "in") return contains(r, l);
    return !contains(r, l);  // notin
  }

  Value eval(const Expr& e, const ScopePtr& scope) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.value;
      case Expr::Kind::kName: {
        const Value* v = lookup(scope, e.name);
        return v ? *v : Value::undefined(py_repr_str(e.name) + " is undefined");
      }
      case Expr::Kind::kGetattr:
        return get_attr(eval(*e.a, scope), e.name);
      case Expr::Kind::kGetitem:
        return get_item(eval(*e.a, scope), eval(*e.b, scope));
      case Expr::Kind::kSlice: {
        const Value obj = eval(*e.a, scope);
        Value part[3];
        for (int i = 0; i < 3; ++i)
          if (e.args[i]) part[i] = eval(*e.args[i], scope);
        return get_slice(obj, part[0], part[1], part[2]);
      }
      case Expr::Kind::kCall: {
        const Value callee = eval(*e.a, scope);
        CallArgs a = eval_args(e, scope);
        return call_value(callee, a);
      }
      case Expr::Kind::kFilter: {
        const Value operand = eval(*e.a, scope);
        CallArgs a = eval_args(e, scope);
        return e.filter(operand, a);
      }
      case Expr::Kind::kTest: {
        const Value operand = eval(*e.a, scope);
        CallArgs a = eval_args(e, scope);
        return Value(e.test(operand, a));
      }
      case Expr::Kind::kNot:
        return Value(!truthy(eval(*e.a, scope)));
      case Expr::Kind::kNeg:
        return negate(eval(*e.a, scope));
      case Expr::Kind::kPos: {
        const Value v = eval(*e.a, scope);
        if (v.is_undefined()) fail_undefined(v);
        if (!v.is_number())
          throw EvalError(std::string("TypeError: bad operand type for unary +: '") + type_name(v) + "'");
        return v.kind() == Value::Kind::kBool ? Value(v.as_int()) : v;
      }
      case Expr::Kind::kBinary: {
        const Value l = eval(*e.a, scope);
        return binary_op(e.name, l, eval(*e.b, scope));
      }
      case Expr::Kind::kAnd: {
        Value l = eval(*e.a, scope);
        return truthy(l) ? eval(*e.b, scope) : l;
      }
      case Expr::Kind::kOr: {
        Value l = eval(*e.a, scope);
        return truthy(l) ? l : eval(*e.b, scope);
      }
      case Expr::Kind::kCompare: {
        Value l = eval(*e.a, scope);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value r = eval(*e.args[i], scope);
          if (!compare(e.ops[i], l, r)) return Value(false);
          l = std::move(r);
        }
        return Value(true);
      }
      case Expr::Kind::kCond:
        if (truthy(eval(*e.a, scope))) return eval(*e.b, scope);
        if (e.c) return eval(*e.c, scope);
        return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                                " evaluated to false and no else section was defined.");
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        std::vector<Value> items;
        items.reserve(e.args.size());
        for (const auto& x : e.args) items.push_back(eval(*x, scope));
        return Value::list(std::move(items), e.kind == Expr::Kind::kTuple);
      }
      case Expr::Kind::kDict: {
        DictData d;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value k = eval(*e.args[i], scope);
          if (!hashable(k))
            throw EvalError(std::string("TypeError: unhashable type: '") + type_name(k) + "'");
          d.set(std::move(k), eval(*e.args[i + 1], scope));
        }
        return Value::dict(std::move(d));
      }
    }
    return Value();
  }

  int depth_ = 0;
};

}  // namespace

Template::Template(std::string_view source) : body_(std::make_shared<const Body>(parse_template(source))) {}

std::string Template::render(const DictData& context) const {
  try {
    return Interpreter().run(*body_, context);
  } catch (const EvalError& e) {
    throw FormatError("chat template line " + std::to_string(e.line) + ": " + e.what(),
                      e.raised() ? "raised by the template: it does not accept this conversation" : "");
  }
}

}  // namespace tune::jinja
