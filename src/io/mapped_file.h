// Read-only memory maps of whole files, shared by the safetensors and GGUF readers. The returned owner unmaps the
// file when the last tensor viewing it is gone.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace tune {

// Maps `path` read-only; *size receives its length (an empty file maps to a null pointer). IoError naming the file
// when it cannot be opened or mapped.
std::shared_ptr<void> map_file(const std::string& path, size_t* size);

}  // namespace tune
