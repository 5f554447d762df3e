// Jinja lexer (see lexer.h). Whitespace rules follow jinja2's lexer: `-` strips all whitespace on that side,
// lstrip_blocks removes the spaces before a block or comment tag that starts a line, trim_blocks removes the
// one newline after a block or comment tag, and `+` turns either off for that tag.
#include "tokenizer/jinja/lexer.h"

#include <cctype>
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "tokenizer/jinja/pystr.h"

namespace tune::jinja {

namespace {

[[noreturn]] void fail(int line, const std::string& what) {
  throw FormatError("chat template line " + std::to_string(line) + ": " + what);
}

std::string normalize_newlines(std::string_view src) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out.push_back(src[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool all_space(std::string_view s) {
  for (char32_t c : utf8_to_u32(s))
    if (!py_isspace(c)) return false;
  return true;
}

int count_newlines(std::string_view s, size_t from, size_t to) {
  int n = 0;
  for (size_t i = from; i < to; ++i) n += s[i] == '\n';
  return n;
}

// Python's \s* at s[p]: returns the position after the run of whitespace.
size_t skip_space(std::string_view s, size_t p) {
  while (p < s.size()) {
    const auto b = static_cast<unsigned char>(s[p]);
    if (b < 0x80) {
      if (!py_isspace(b)) break;
      ++p;
      continue;
    }
    // Decode the one multi-byte character to test it.
    size_t len = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    if (p + len > s.size()) break;
    const std::u32string c = utf8_to_u32(s.substr(p, len));
    if (c.size() != 1 || !py_isspace(c[0])) break;
    p += len;
  }
  return p;
}

class Lexer {
 public:
  explicit Lexer(std::string src) : s_(std::move(src)) {}

  std::vector<Token> run() {
    size_t pos = 0;
    while (pos < s_.size()) {
      size_t open = find_opener(pos);
      if (open == std::string::npos) {
        emit_text(std::string_view(s_).substr(pos), line_);
        break;
      }
      const char kind = s_[open + 1];
      size_t p = open + 2;
      char sign = 0;
      if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) sign = s_[p++];
      emit_text(strip_before(std::string_view(s_).substr(pos, open - pos), sign, kind != '{'), line_);
      line_ += count_newlines(s_, pos, open);
      const int tag_line = line_;
      if (kind == '#') {
        pos = lex_comment(p, tag_line);
      } else if (kind == '%' && is_raw(p)) {
        pos = lex_raw(p, tag_line);
      } else {
        pos = lex_tag(kind, p, tag_line);
      }
    }
    tokens_.push_back(Token{Tok::kEof, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t find_opener(size_t pos) const {
    for (size_t i = s_.find('{', pos); i != std::string::npos; i = s_.find('{', i + 1)) {
      const char k = i + 1 < s_.size() ? s_[i + 1] : '\0';
      if (k == '{' || k == '%' || k == '#') return i;
    }
    return std::string::npos;
  }

  // The text before a tag, after the `-` sign or lstrip_blocks has had its say.
  std::string_view strip_before(std::string_view text, char sign, bool block_like) const {
    if (sign == '-') {
      size_t e = text.size();
      while (e > 0) {
        // Back up one UTF-8 character.
        size_t b = e - 1;
        while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
        const std::u32string c = utf8_to_u32(text.substr(b, e - b));
        if (c.size() != 1 || !py_isspace(c[0])) break;
        e = b;
      }
      return text.substr(0, e);
    }
    if (sign == '+' || !block_like) return text;
    const size_t nl = text.rfind('\n');
    const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
    if ((l_pos > 0 || line_starting_) && all_space(text.substr(l_pos))) return text.substr(0, l_pos);
    return text;
  }

  void emit_text(std::string_view text, int line) {
    if (!text.empty()) tokens_.push_back(Token{Tok::kText, std::string(text), line});
  }

  // After a tag's closing delimiter at `p`: `-` strips whitespace, a plain block or comment end eats one
  // newline.
  size_t after_end(size_t p, char end_sign, bool trim) {
    if (end_sign == '-') {
      const size_t q = skip_space(s_, p);
      line_ += count_newlines(s_, p, q);
      p = q;
    } else if (end_sign != '+' && trim && p < s_.size() && s_[p] == '\n') {
      ++line_;
      ++p;
    }
    line_starting_ = p > 0 && s_[p - 1] == '\n';
    return p;
  }

  size_t lex_comment(size_t p, int tag_line) {
    const size_t e = s_.find("#}", p);
    if (e == std::string::npos) fail(tag_line, "unclosed comment");
    const char end_sign = (e > p && (s_[e - 1] == '-' || s_[e - 1] == '+')) ? s_[e - 1] : 0;
    line_ += count_newlines(s_, p, e);
    return after_end(e + 2, end_sign, true);
  }

  bool is_raw(size_t p) const {
    p = skip_space(s_, p);
    if (s_.compare(p, 3, "raw") != 0) return false;
    p = skip_space(s_, p + 3);
    return s_.compare(p, 2, "%}") == 0 || s_.compare(p, 3, "-%}") == 0;
  }

  size_t lex_raw(size_t p, int tag_line) {
    const size_t begin = p;
    p = skip_space(s_, skip_space(s_, p) + 3);  // past "raw"
    if (s_[p] == '-') {
      p = skip_space(s_, p + 3);  // "-%}" strips what follows
    } else {
      p += 2;
    }
    line_ += count_newlines(s_, begin, p);
    line_starting_ = s_[p - 1] == '\n';
    // Find {%[-+]? endraw [-+]?%}.
    for (size_t i = s_.find("{%", p); i != std::string::npos; i = s_.find("{%", i + 1)) {
      size_t q = i + 2;
      char sign = 0;
      if (q < s_.size() && (s_[q] == '-' || s_[q] == '+')) sign = s_[q++];
      q = skip_space(s_, q);
      if (s_.compare(q, 6, "endraw") != 0) continue;
      q = skip_space(s_, q + 6);
      char end_sign = 0;
      if (q < s_.size() && (s_[q] == '-' || s_[q] == '+')) end_sign = s_[q++];
      if (s_.compare(q, 2, "%}") != 0) continue;
      emit_text(strip_before(std::string_view(s_).substr(p, i - p), sign, true), line_);
      line_ += count_newlines(s_, p, q);
      return after_end(q + 2, end_sign, true);
    }
    fail(tag_line, "unclosed {% raw %} block");
  }

  size_t lex_tag(char kind, size_t p, int tag_line) {
    tokens_.push_back(Token{kind == '{' ? Tok::kVarBegin : Tok::kBlockBegin, "", tag_line});
    std::vector<char> brackets;
    while (true) {
      const size_t q = skip_space(s_, p);
      line_ += count_newlines(s_, p, q);
      p = q;
      if (p >= s_.size()) fail(tag_line, kind == '{' ? "unclosed '{{'" : "unclosed '{%'");
      if (brackets.empty()) {
        const char* close = kind == '{' ? "}}" : "%}";
        char end_sign = 0;
        size_t at = std::string::npos;
        if (s_.compare(p, 2, close) == 0) {
          at = p;
        } else if ((s_[p] == '-' || (s_[p] == '+' && kind == '%')) && s_.compare(p + 1, 2, close) == 0) {
          end_sign = s_[p];
          at = p + 1;
        }
        if (at != std::string::npos) {
          tokens_.push_back(Token{kind == '{' ? Tok::kVarEnd : Tok::kBlockEnd, "", line_});
          return after_end(at + 2, end_sign, kind == '%');
        }
      }
      p = lex_token(p, brackets);
    }
  }

  size_t lex_token(size_t p, std::vector<char>& brackets) {
    const char c = s_[p];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t e = p + 1;
      while (e < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[e])) || s_[e] == '_')) ++e;
      tokens_.push_back(Token{Tok::kName, s_.substr(p, e - p), line_});
      return e;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) return lex_number(p);
    if (c == '\'' || c == '"') return lex_string(p);
    static const char* const kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "(",
                                       ")",  "[",  "]",  "{",  "}",  "<",  ">", "=", ".", ":", "|", ",", ";"};
    for (const char* op : kOps) {
      const size_t len = std::strlen(op);
      if (s_.compare(p, len, op) != 0) continue;
      if (len == 1 && std::strchr("([{", op[0])) brackets.push_back(op[0]);
      if (len == 1 && std::strchr(")]}", op[0])) {
        const char want = op[0] == ')' ? '(' : op[0] == ']' ? '[' : '{';
        if (brackets.empty() || brackets.back() != want) fail(line_, std::string("unexpected '") + op + "'");
        brackets.pop_back();
      }
      tokens_.push_back(Token{Tok::kOp, op, line_});
      return p + len;
    }
    fail(line_, std::string("unexpected character '") + c + "'");
  }

  size_t lex_number(size_t p) {
    auto digits = [&](size_t q, auto is_digit) {
      while (q < s_.size() && (is_digit(s_[q]) || (s_[q] == '_' && q + 1 < s_.size() && is_digit(s_[q + 1]))))
        ++q;
      return q;
    };
    auto dec = [](char ch) { return ch >= '0' && ch <= '9'; };
    auto strip_underscores = [](std::string t) {
      std::erase(t, '_');
      return t;
    };
    const char base_ch =
        p + 1 < s_.size() ? static_cast<char>(std::tolower(static_cast<unsigned char>(s_[p + 1]))) : 0;
    if (s_[p] == '0' && (base_ch == 'x' || base_ch == 'o' || base_ch == 'b')) {
      const int base = base_ch == 'x' ? 16 : base_ch == 'o' ? 8 : 2;
      auto is_digit = [base](char ch) {
        if (base == 16) return std::isxdigit(static_cast<unsigned char>(ch)) != 0;
        return ch >= '0' && ch < '0' + base;
      };
      size_t q = p + 2;
      if (q < s_.size() && s_[q] == '_') ++q;
      const size_t e = digits(q, is_digit);
      if (e == q) fail(line_, "malformed number literal");
      Token t{Tok::kInt, s_.substr(p, e - p), line_};
      t.int_value = std::stoll(strip_underscores(s_.substr(q, e - q)), nullptr, base);
      tokens_.push_back(t);
      return e;
    }
    size_t e = digits(p, dec);
    bool is_float = false;
    // `x.0.1` is two attribute lookups, as jinja2's (?<!\.) rule says, so no float right after a dot.
    const bool after_dot = !tokens_.empty() && tokens_.back().type == Tok::kOp && tokens_.back().text == ".";
    if (!after_dot && e + 1 < s_.size() && s_[e] == '.' && dec(s_[e + 1])) {
      e = digits(e + 1, dec);
      is_float = true;
    }
    if (!after_dot && e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
      size_t q = e + 1;
      if (q < s_.size() && (s_[q] == '+' || s_[q] == '-')) ++q;
      if (q < s_.size() && dec(s_[q])) {
        e = digits(q, dec);
        is_float = true;
      }
    }
    const std::string text = strip_underscores(s_.substr(p, e - p));
    Token t{is_float ? Tok::kFloat : Tok::kInt, text, line_};
    if (is_float) {
      t.float_value =
          std::strtod(text.c_str(), nullptr);  // as Python's float(): underflow to 0, overflow to inf
    } else {
      try {
        t.int_value = std::stoll(text);
      } catch (const std::out_of_range&) {
        fail(line_, "integer literal beyond 64 bits (unsupported): " + text);
      }
    }
    tokens_.push_back(t);
    return e;
  }

  // A string literal, decoded as Python's unicode-escape codec does.
  size_t lex_string(size_t p) {
    const char quote = s_[p];
    const int start_line = line_;
    std::string out;
    size_t q = p + 1;
    while (true) {
      if (q >= s_.size()) fail(start_line, "unterminated string literal");
      const char c = s_[q];
      if (c == quote) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        out.push_back(c);
        ++q;
        continue;
      }
      if (q + 1 >= s_.size()) fail(start_line, "unterminated string literal");
      const char e = s_[q + 1];
      q += 2;
      auto hex = [&](int n) {
        if (q + n > s_.size()) fail(line_, "truncated \\x, \\u or \\U escape");
        uint32_t v = 0;
        for (int i = 0; i < n; ++i) {
          const char h = s_[q + i];
          if (!std::isxdigit(static_cast<unsigned char>(h))) fail(line_, "truncated \\x, \\u or \\U escape");
          v = v * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h))
                                                 ? h - '0'
                                                 : (std::tolower(h) - 'a' + 10));
        }
        q += n;
        return v;
      };
      switch (e) {
        case '\n':
          ++line_;
          break;  // line continuation
        case '\\':
          out.push_back('\\');
          break;
        case '\'':
          out.push_back('\'');
          break;
        case '"':
          out.push_back('"');
          break;
        case 'a':
          out.push_back('\a');
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'v':
          out.push_back('\v');
          break;
        case 'x':
          utf8_push(out, hex(2));
          break;
        case 'u':
          utf8_push(out, hex(4));
          break;
        case 'U': {
          const uint32_t v = hex(8);
          if (v > 0x10FFFF) fail(line_, "illegal Unicode character in \\U escape");
          utf8_push(out, v);
          break;
        }
        case 'N':
          fail(line_, "\\N{...} escapes are not supported");
        default:
          if (e >= '0' && e <= '7') {
            uint32_t v = static_cast<uint32_t>(e - '0');
            for (int i = 0; i < 2 && q < s_.size() && s_[q] >= '0' && s_[q] <= '7'; ++i, ++q)
              v = v * 8 + (s_[q] - '0');
            utf8_push(out, v);
          } else {
            out.push_back('\\');  // unknown escapes stay as written
            out.push_back(e);
          }
      }
    }
    tokens_.push_back(Token{Tok::kString, std::move(out), start_line});
    return q + 1;
  }

  std::string s_;
  std::vector<Token> tokens_;
  int line_ = 1;
  bool line_starting_ = true;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source) {
  return Lexer(normalize_newlines(source)).run();
}

}  // namespace tune::jinja
