// Recursive-descent Jinja parser (see parser.h). Precedence, loosest first, as in jinja2's parser:
// x if c else y, or, and, not, comparisons (== != < <= > >= in, not in), + -, ~, * / // %, **, unary - +,
// then postfix . [] () and the filter/test chain | and is.
#include "tokenizer/jinja/parser.h"

#include <algorithm>
#include <initializer_list>

#include "core/error.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/lexer.h"

namespace tune::jinja {

namespace {

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  Body parse() {
    std::string end;
    Body body = parse_body({}, &end);
    return body;
  }

 private:
  [[noreturn]] void fail(const std::string& what, int line = -1) const {
    throw FormatError("chat template line " + std::to_string(line < 0 ? cur().line : line) + ": " + what);
  }

  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  void next() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  bool is_op(const char* op) const { return cur().type == Tok::kOp && cur().text == op; }
  bool is_name(const char* name) const { return cur().type == Tok::kName && cur().text == name; }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::kVarEnd:
        return "'}}'";
      case Tok::kBlockEnd:
        return "'%}'";
      case Tok::kEof:
        return "end of template";
      case Tok::kString:
        return "string literal";
      case Tok::kText:
        return "template text";
      default:
        return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!is_op(op)) fail(std::string("expected '") + op + "', got " + describe(cur()));
    next();
  }
  std::string expect_name() {
    if (cur().type != Tok::kName) fail("expected a name, got " + describe(cur()));
    std::string name = cur().text;
    next();
    return name;
  }
  void expect_block_end() {
    if (cur().type != Tok::kBlockEnd) fail("expected '%}', got " + describe(cur()));
    next();
  }

  // Statements up to a {% tag %} named in `ends`; consumes "{%" and that name and stores it in *end.
  Body parse_body(std::initializer_list<const char*> ends, std::string* end) {
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == Tok::kEof) {
        if (ends.size() == 0) return body;
        fail(std::string("unexpected end of template, expected '") + *ends.begin() + "'");
      }
      if (t.type == Tok::kText) {
        auto s = make_stmt(Stmt::Kind::kText, t.line);
        s->text = t.text;
        body.push_back(std::move(s));
        next();
      } else if (t.type == Tok::kVarBegin) {
        auto s = make_stmt(Stmt::Kind::kOutput, t.line);
        next();
        s->expr = parse_tuple(true, false);
        if (cur().type != Tok::kVarEnd) fail("expected '}}', got " + describe(cur()));
        next();
        body.push_back(std::move(s));
      } else if (t.type == Tok::kBlockBegin) {
        const int line = t.line;
        next();
        if (cur().type != Tok::kName) fail("expected a tag name after '{%'");
        const std::string name = cur().text;
        if (std::find_if(ends.begin(), ends.end(), [&](const char* e) { return name == e; }) != ends.end()) {
          next();
          *end = name;
          return body;
        }
        next();
        body.push_back(parse_statement(name, line));
      } else {
        fail("unexpected " + describe(t));
      }
    }
  }

  StmtPtr parse_statement(const std::string& name, int line) {
    if (name == "if") return parse_if(line);
    if (name == "for") return parse_for(line);
    if (name == "set") return parse_set(line);
    if (name == "macro") return parse_macro(line);
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) fail("'" + name + "' outside of a for loop", line);
      expect_block_end();
      return make_stmt(name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue, line);
    }
    if (name == "filter") {
      auto s = make_stmt(Stmt::Kind::kFilterBlock, line);
      s->expr = parse_filter(nullptr, true);
      expect_block_end();
      std::string end;
      s->body = parse_body({"endfilter"}, &end);
      expect_block_end();
      return s;
    }
    if (name == "generation") {
      auto s = make_stmt(Stmt::Kind::kGeneration, line);
      expect_block_end();
      std::string end;
      s->body = parse_body({"endgeneration"}, &end);
      expect_block_end();
      return s;
    }
    static const char* const kUnsupported[] = {"call",  "include", "import", "from",       "extends",
                                               "block", "with",    "do",     "autoescape", "trans"};
    for (const char* u : kUnsupported)
      if (name == u) fail("unsupported tag '" + name + "'", line);
    if (name.rfind("end", 0) == 0 || name == "elif" || name == "else")
      fail("unexpected '" + name + "' (no block to close)", line);
    fail("unknown tag '" + name + "'", line);
  }

  StmtPtr parse_if(int line) {
    auto s = make_stmt(Stmt::Kind::kIf, line);
    ExprPtr cond = parse_tuple(false, false);
    expect_block_end();
    while (true) {
      std::string end;
      Body body = parse_body({"elif", "else", "endif"}, &end);
      s->branches.emplace_back(std::move(cond), std::move(body));
      if (end == "elif") {
        cond = parse_tuple(false, false);
        expect_block_end();
        continue;
      }
      expect_block_end();
      if (end == "else") {
        s->else_body = parse_body({"endif"}, &end);
        expect_block_end();
      }
      return s;
    }
  }

  std::vector<std::string> parse_target_names() {
    std::vector<std::string> names;
    const bool paren = is_op("(");
    if (paren) next();
    while (true) {
      names.push_back(expect_name());
      if (!is_op(",")) break;
      next();
      if (cur().type != Tok::kName) break;  // trailing comma
    }
    if (paren) expect_op(")");
    return names;
  }

  StmtPtr parse_for(int line) {
    auto s = make_stmt(Stmt::Kind::kFor, line);
    s->targets = parse_target_names();
    if (!is_name("in")) fail("expected 'in' in for loop, got " + describe(cur()));
    next();
    s->expr = parse_tuple(false, false);
    if (is_name("if")) {
      next();
      s->cond = parse_expression(true);
    }
    if (is_name("recursive")) fail("unsupported: recursive for loops");
    expect_block_end();
    std::string end;
    ++loop_depth_;
    s->body = parse_body({"endfor", "else"}, &end);
    --loop_depth_;
    expect_block_end();
    if (end == "else") {
      s->else_body = parse_body({"endfor"}, &end);
      expect_block_end();
    }
    return s;
  }

  StmtPtr parse_set(int line) {
    auto s = make_stmt(Stmt::Kind::kSet, line);
    if (cur().type == Tok::kName && peek().type == Tok::kOp && peek().text == ".") {
      s->targets.push_back(expect_name());
      next();
      s->ns_attr = expect_name();
    } else {
      s->targets = parse_target_names();
    }
    if (is_op("=")) {
      next();
      s->expr = parse_tuple(true, false);
      expect_block_end();
      return s;
    }
    if (!s->ns_attr.empty() || s->targets.size() != 1) fail("expected '=' in set", line);
    s->kind = Stmt::Kind::kSetBlock;
    if (is_op("|")) s->expr = parse_filter(nullptr, false);
    expect_block_end();
    std::string end;
    s->body = parse_body({"endset"}, &end);
    expect_block_end();
    return s;
  }

  StmtPtr parse_macro(int line) {
    auto s = make_stmt(Stmt::Kind::kMacro, line);
    s->name = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      if (!s->params.empty()) expect_op(",");
      if (is_op(")")) break;
      MacroParam p{expect_name(), nullptr};
      if (is_op("=")) {
        next();
        p.default_value = parse_expression(true);
      }
      s->params.push_back(std::move(p));
    }
    next();
    expect_block_end();
    macros_.push_back(s.get());
    const int saved_depth = loop_depth_;
    loop_depth_ = 0;
    std::string end;
    s->body = parse_body({"endmacro"}, &end);
    loop_depth_ = saved_depth;
    macros_.pop_back();
    if (cur().type == Tok::kName && cur().text == s->name) next();  // {% endmacro name %}
    expect_block_end();
    return s;
  }

  static StmtPtr make_stmt(Stmt::Kind kind, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = kind;
    s->line = line;
    return s;
  }

  ExprPtr make(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // A comma-separated list of expressions, a tuple when there is a comma.
  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      const bool at_end = cur().type == Tok::kVarEnd || cur().type == Tok::kBlockEnd || is_op(")");
      if (at_end) break;
      items.push_back(parse_expression(with_condexpr));
      if (!is_op(",")) break;
      is_tuple = true;
      next();
    }
    if (!is_tuple) {
      if (items.empty()) {
        if (!explicit_parens) fail("expected an expression, got " + describe(cur()));
        return make(Expr::Kind::kTuple, line);
      }
      return std::move(items[0]);
    }
    auto e = make(Expr::Kind::kTuple, line);
    e->args = std::move(items);
    return e;
  }

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    ExprPtr e = parse_or();
    while (is_name("if")) {
      auto cond = make(Expr::Kind::kCond, cur().line);
      next();
      cond->a = parse_or();
      cond->b = std::move(e);
      if (is_name("else")) {
        next();
        cond->c = parse_condexpr();
      }
      e = std::move(cond);
    }
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      auto n = make(Expr::Kind::kOr, cur().line);
      next();
      n->a = std::move(e);
      n->b = parse_and();
      e = std::move(n);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      auto n = make(Expr::Kind::kAnd, cur().line);
      next();
      n->a = std::move(e);
      n->b = parse_not();
      e = std::move(n);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      auto n = make(Expr::Kind::kNot, cur().line);
      next();
      n->a = parse_not();
      return n;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr e = parse_math1();
    auto cmp = make(Expr::Kind::kCompare, line);
    while (true) {
      if (cur().type == Tok::kOp && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                     cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        cmp->ops.push_back(cur().text);
        next();
      } else if (is_name("in")) {
        cmp->ops.push_back("in");
        next();
      } else if (is_name("not") && peek().type == Tok::kName && peek().text == "in") {
        cmp->ops.push_back("notin");
        next();
        next();
      } else {
        break;
      }
      cmp->args.push_back(parse_math1());
    }
    if (cmp->ops.empty()) return e;
    cmp->a = std::move(e);
    return cmp;
  }

  ExprPtr binary(const std::string& op, ExprPtr a, ExprPtr b, int line) {
    auto n = make(Expr::Kind::kBinary, line);
    n->name = op;
    n->a = std::move(a);
    n->b = std::move(b);
    return n;
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const std::string op = cur().text;
      const int line = cur().line;
      next();
      e = binary(op, std::move(e), parse_concat(), line);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      const int line = cur().line;
      next();
      e = binary("~", std::move(e), parse_math2(), line);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string op = cur().text;
      const int line = cur().line;
      next();
      e = binary(op, std::move(e), parse_pow(), line);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      const int line = cur().line;
      next();
      e = binary("**", std::move(e), parse_unary(true), line);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = make(is_op("-") ? Expr::Kind::kNeg : Expr::Kind::kPos, cur().line);
      next();
      e->a = parse_unary(false);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    const int line = t.line;
    switch (t.type) {
      case Tok::kName: {
        auto e = make(Expr::Kind::kLiteral, line);
        if (t.text == "true" || t.text == "True") {
          e->value = Value(true);
        } else if (t.text == "false" || t.text == "False") {
          e->value = Value(false);
        } else if (t.text == "none" || t.text == "None") {
          e->value = Value::none();
        } else {
          e->kind = Expr::Kind::kName;
          e->name = t.text;
          if (!macros_.empty() && t.text == "varargs") macros_.back()->uses_varargs = true;
          if (!macros_.empty() && t.text == "kwargs") macros_.back()->uses_kwargs = true;
        }
        next();
        return e;
      }
      case Tok::kString: {
        std::string s;
        while (cur().type == Tok::kString) {  // adjacent literals concatenate, as in Python
          s += cur().text;
          next();
        }
        auto e = make(Expr::Kind::kLiteral, line);
        e->value = Value(std::move(s));
        return e;
      }
      case Tok::kInt:
      case Tok::kFloat: {
        auto e = make(Expr::Kind::kLiteral, line);
        e->value = t.type == Tok::kInt ? Value(t.int_value) : Value(t.float_value);
        next();
        return e;
      }
      case Tok::kOp:
        if (t.text == "(") {
          next();
          ExprPtr e = parse_tuple(true, true);
          expect_op(")");
          return e;
        }
        if (t.text == "[") {
          auto e = make(Expr::Kind::kList, line);
          next();
          while (!is_op("]")) {
            if (!e->args.empty()) expect_op(",");
            if (is_op("]")) break;
            e->args.push_back(parse_expression(true));
          }
          next();
          return e;
        }
        if (t.text == "{") {
          auto e = make(Expr::Kind::kDict, line);
          next();
          while (!is_op("}")) {
            if (!e->args.empty()) expect_op(",");
            if (is_op("}")) break;
            e->args.push_back(parse_expression(true));
            expect_op(":");
            e->args.push_back(parse_expression(true));
          }
          next();
          return e;
        }
        break;
      default:
        break;
    }
    fail("unexpected " + describe(t));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        const int line = cur().line;
        next();
        if (cur().type == Tok::kName) {
          auto n = make(Expr::Kind::kGetattr, line);
          n->a = std::move(e);
          n->name = expect_name();
          e = std::move(n);
        } else if (cur().type == Tok::kInt) {
          auto n = make(Expr::Kind::kGetitem, line);
          n->a = std::move(e);
          n->b = make(Expr::Kind::kLiteral, line);
          n->b->value = Value(cur().int_value);
          next();
          e = std::move(n);
        } else {
          fail("expected an attribute name after '.', got " + describe(cur()));
        }
      } else if (is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr e) {
    const int line = cur().line;
    next();
    ExprPtr start;
    if (!is_op(":")) {
      start = parse_expression(true);
      if (!is_op(":")) {
        if (is_op(",")) fail("unsupported: tuple subscripts");
        expect_op("]");
        auto n = make(Expr::Kind::kGetitem, line);
        n->a = std::move(e);
        n->b = std::move(start);
        return n;
      }
    }
    auto n = make(Expr::Kind::kSlice, line);
    n->a = std::move(e);
    n->args.resize(3);
    n->args[0] = std::move(start);
    next();  // ':'
    if (!is_op("]") && !is_op(":")) n->args[1] = parse_expression(true);
    if (is_op(":")) {
      next();
      if (!is_op("]")) n->args[2] = parse_expression(true);
    }
    expect_op("]");
    return n;
  }

  void parse_call_args(Expr& n) {
    expect_op("(");
    while (!is_op(")")) {
      if (!n.args.empty() || !n.kwargs.empty()) expect_op(",");
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) fail("unsupported: *args / **kwargs in calls");
      if (cur().type == Tok::kName && peek().type == Tok::kOp && peek().text == "=") {
        std::string key = expect_name();
        next();
        n.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!n.kwargs.empty()) fail("positional argument after keyword argument");
        n.args.push_back(parse_expression(true));
      }
    }
    next();
  }

  ExprPtr parse_call(ExprPtr e) {
    auto n = make(Expr::Kind::kCall, cur().line);
    n->a = std::move(e);
    parse_call_args(*n);
    return n;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        e = parse_filter(std::move(e), false);
      } else if (is_name("is")) {
        e = parse_test(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::string parse_dotted_name() {
    std::string name = expect_name();
    while (is_op(".")) {
      next();
      name += "." + expect_name();
    }
    return name;
  }

  ExprPtr parse_filter(ExprPtr e, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      start_inline = false;
      const int line = cur().line;
      auto n = make(Expr::Kind::kFilter, line);
      n->name = parse_dotted_name();
      n->filter = find_filter(n->name);
      if (!n->filter) fail("unknown filter '" + n->name + "'", line);
      n->a = std::move(e);
      if (is_op("(")) parse_call_args(*n);
      e = std::move(n);
    }
    return e;
  }

  ExprPtr parse_test(ExprPtr e) {
    const int line = cur().line;
    next();  // 'is'
    bool negated = false;
    if (is_name("not")) {
      negated = true;
      next();
    }
    auto n = make(Expr::Kind::kTest, line);
    n->name = parse_dotted_name();
    n->test = find_test(n->name);
    if (!n->test) fail("unknown test '" + n->name + "'", line);
    n->a = std::move(e);
    if (is_op("(")) {
      parse_call_args(*n);
    } else {
      const Tok ty = cur().type;
      const bool starts_arg = ty == Tok::kName || ty == Tok::kString || ty == Tok::kInt ||
                              ty == Tok::kFloat || is_op("(") || is_op("[") || is_op("{");
      if (starts_arg && !is_name("else") && !is_name("or") && !is_name("and")) {
        if (is_name("is")) fail("cannot chain tests with 'is'");
        n->args.push_back(parse_postfix(parse_primary()));
      }
    }
    if (!negated) return n;
    auto neg = make(Expr::Kind::kNot, line);
    neg->a = std::move(n);
    return neg;
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int loop_depth_ = 0;
  std::vector<Stmt*> macros_;
};

}  // namespace

Body parse_template(std::string_view source) {
  return Parser(tokenize(source)).parse();
}

}  // namespace tune::jinja
