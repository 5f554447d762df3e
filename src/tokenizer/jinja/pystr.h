// Python `str` semantics on UTF-8 std::string, as chat templates see them through Jinja: code-point indexing,
// isspace/strip/split, case mapping, repr() of strings and floats, json.dumps string escaping and HTML
// escaping. Ill-formed UTF-8 bytes decode to lone surrogates U+DC80..U+DCFF (Python's "surrogateescape") and
// encode back to the same byte, so no input is ever changed by a round trip. Depends on nothing else in tune.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tune::jinja {

std::u32string utf8_to_u32(std::string_view s);
std::string u32_to_utf8(std::u32string_view s);
void utf8_push(std::string& out, char32_t cp);
// Number of code points (Python len()).
int64_t utf8_length(std::string_view s);

// str.isspace() for one character: Unicode whitespace plus the ASCII separators \x1c..\x1f.
bool py_isspace(char32_t c);
// str.strip/lstrip/rstrip; `chars` null strips whitespace, else any of the code points in *chars.
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right);
// str.split(sep, maxsplit); a null sep splits on runs of whitespace and drops empty pieces.
std::vector<std::string> py_split(std::string_view s, const std::string* sep, int64_t maxsplit);
// str.rsplit(sep, maxsplit).
std::vector<std::string> py_rsplit(std::string_view s, const std::string* sep, int64_t maxsplit);
// str.splitlines() (line boundaries \n \r \r\n \v \f \x1c-\x1e \x85 \u2028 \u2029, not kept).
std::vector<std::string> py_splitlines(std::string_view s);
// str.replace(old, new, count); count < 0 replaces all.
std::string py_replace(std::string_view s, std::string_view old_s, std::string_view new_s, int64_t count);

// Case mapping covers ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic (plus ß -> SS); other characters
// are left unchanged.
std::string py_lower(std::string_view s);
std::string py_upper(std::string_view s);
bool py_is_cased(char32_t c);
bool py_is_lower_char(char32_t c);
bool py_is_upper_char(char32_t c);
char32_t py_char_lower(char32_t c);
char32_t py_char_upper(char32_t c);
// str.title(): upper-case after every uncased character.
std::string py_title(std::string_view s);
// str.capitalize().
std::string py_capitalize(std::string_view s);

// repr() of a str: quotes and escapes chosen as CPython does.
std::string py_repr_str(std::string_view s);
// repr() of a float: shortest round-trip digits, exponent form outside [1e-4, 1e16).
std::string py_repr_float(double d);
// json.dumps of a str, with or without ensure_ascii.
std::string json_quote(std::string_view s, bool ensure_ascii);
// markupsafe.escape: & < > ' ".
std::string html_escape(std::string_view s);

}  // namespace tune::jinja
