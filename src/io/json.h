// JSON files: loading with errors that name the file and line, and atomic writing. Uses nlohmann::json.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace tune {

using Json = nlohmann::json;

// Parses a JSON file; IoError if it cannot be read, FormatError with file:line:column if it is not JSON.
Json json_load_file(const std::string& path);
// Parses JSON text; `source` names it in errors.
Json json_parse(const std::string& text, const std::string& source);
// Writes pretty JSON (indent 2) to path.tmp, then renames it over path.
void json_save_file(const std::string& path, const Json& j);

// Writes bytes to `path` through a temporary file in the same directory and a rename, so readers never see a
// partial file.
void write_file_atomic(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

}  // namespace tune
