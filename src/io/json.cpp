// JSON and whole-file helpers.
#include "io/json.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace tune {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError(path + ": cannot open file", "check that the path exists and is readable");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw IoError(path + ": read failed");
  return ss.str();
}

Json json_parse(const std::string& text, const std::string& source) {
  try {
    return Json::parse(text);
  } catch (const Json::parse_error& e) {
    // Translate the byte offset into line:column for the message.
    size_t pos = std::min<size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    int line = 1, col = 1;
    for (size_t i = 0; i < pos; ++i) {
      if (text[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    throw FormatError(source + ":" + std::to_string(line) + ":" + std::to_string(col) + ": invalid JSON",
                      "the file is truncated or not JSON");
  }
}

Json json_load_file(const std::string& path) { return json_parse(read_file(path), path); }

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw IoError(tmp + ": cannot create file", "check that the directory exists and is writable");
    f.write(bytes.data(), std::streamsize(bytes.size()));
    f.flush();
    if (!f) throw IoError(tmp + ": write failed", "is the disk full?");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw IoError(path + ": cannot rename from " + tmp + ": " + ec.message());
}

void json_save_file(const std::string& path, const Json& j) { write_file_atomic(path, j.dump(2) + "\n"); }

}  // namespace tune
