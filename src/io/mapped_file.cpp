// mmap of whole files.
#include "io/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace tune {

std::shared_ptr<void> map_file(const std::string& path, size_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw IoError(path + ": cannot open file: " + std::strerror(errno), "check that the path exists");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw IoError(path + ": cannot stat file");
  }
  *size = size_t(st.st_size);
  if (*size == 0) {
    ::close(fd);
    return std::shared_ptr<void>(nullptr, [](void*) {});
  }
  void* p = ::mmap(nullptr, *size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw IoError(path + ": mmap failed: " + std::strerror(errno));
  const size_t n = *size;
  return std::shared_ptr<void>(p, [n](void* q) { ::munmap(q, n); });
}

}  // namespace tune
