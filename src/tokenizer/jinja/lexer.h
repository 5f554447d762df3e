// Jinja lexer with the settings transformers renders chat templates with: trim_blocks and lstrip_blocks on,
// `-`/`+` whitespace control, comments, {% raw %}, newlines normalized to \n and one trailing newline dropped
// (keep_trailing_newline=False). Produces text runs and the tokens inside {{ }} and {% %}.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tune::jinja {

enum class Tok : uint8_t {
  kText,
  kVarBegin,
  kVarEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInt,
  kFloat,
  kOp,  // text holds the operator: + - * / // % ** ~ == != < <= > >= = . : | , ( ) [ ] { }
  kEof,
};

struct Token {
  Tok type;
  std::string text;  // text run, name, decoded string literal, or operator
  int line = 1;
  int64_t int_value = 0;
  double float_value = 0;
};

// Throws tune::FormatError naming the line on malformed input (unclosed tag, bad literal).
std::vector<Token> tokenize(std::string_view source);

}  // namespace tune::jinja
