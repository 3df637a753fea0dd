#include "core/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"

namespace sl {

namespace {

std::string errno_text() { return std::strerror(errno); }

// Opens `path` read-only (O_DIRECTORY for directories), fsyncs and closes it.
void fsync_path(const std::string& path, bool dir) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (dir ? O_DIRECTORY : 0));
  if (fd < 0) fail("fsync '" + path + "': cannot open: " + errno_text());
  if (::fsync(fd) != 0) {
    const std::string e = errno_text();
    ::close(fd);
    fail("fsync '" + path + "': " + e);
  }
  ::close(fd);
}

}  // namespace

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void make_dirs(const std::string& dir) {
  if (dir.empty()) return;
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) fail("directory '" + dir + "': exists and is not a directory");
    return;
  }
  const std::string parent = parent_dir(dir);
  if (parent != dir) make_dirs(parent);
  if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
    fail("directory '" + dir + "': cannot create: " + errno_text());
}

void fsync_file(const std::string& path) { fsync_path(path, false); }
void fsync_dir(const std::string& dir) { fsync_path(dir, true); }

void rename_durable(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    fail("rename '" + from + "' -> '" + to + "': " + errno_text());
  fsync_dir(parent_dir(to));
}

void atomic_write_file(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail("file '" + tmp + "': cannot create: " + errno_text());
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      const std::string e = errno_text();
      ::close(fd);
      fail("file '" + tmp + "': write failed: " + e);
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) {
    const std::string e = errno_text();
    ::close(fd);
    fail("file '" + tmp + "': fsync failed: " + e);
  }
  if (::close(fd) != 0) fail("file '" + tmp + "': close failed: " + errno_text());
  rename_durable(tmp, path);
}

std::string read_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("file '" + path + "': cannot open: " + errno_text());
  std::string out;
  char buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const bool bad = std::ferror(f);
  std::fclose(f);
  if (bad) fail("file '" + path + "': read error");
  return out;
}

}  // namespace sl
