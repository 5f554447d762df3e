// Jinja parser: tokens (lexer.h) to a statement tree (ast.h), following jinja2's grammar and operator
// precedence. Tags outside the subset chat templates use (include, extends, block, call, with, ...) and
// unknown filters or tests throw tune::FormatError naming the construct and its line.
#pragma once

#include <string_view>

#include "tokenizer/jinja/ast.h"

namespace tune::jinja {

Body parse_template(std::string_view source);

}  // namespace tune::jinja
