#include "core/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
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

// Replaces the lock file's content with our pid (so a refused second writer can name us).
void stamp_pid(int fd) {
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) == 0) {
    // Best effort: the lock itself is the flock; the pid only improves the refusal message.
    [[maybe_unused]] ssize_t w = ::pwrite(fd, pid.data(), pid.size(), 0);
  }
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

void write_new_file_durable(const std::string& path, const void* bytes, size_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) fail("file '" + path + "': cannot create: " + errno_text());
  auto give_up = [&](const std::string& what, int err) {
    ::close(fd);
    ::unlink(path.c_str());
    fail("file '" + path + "': " + what + ": " + std::strerror(err) + " (" + std::to_string(size) +
         " bytes needed)");
  };
  if (size > 0) {
    // posix_fallocate returns the error (it does not set errno). File systems without it
    // (EOPNOTSUPP, EINVAL) fall back to plain writes, which report the same errors later.
    const int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(size));
    if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) give_up("cannot reserve space", rc);
  }
  const char* p = static_cast<const char*>(bytes);
  size_t done = 0;
  while (done < size) {
    const ssize_t w = ::write(fd, p + done, size - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      give_up("write failed", errno);
    }
    if (w == 0) give_up("write failed", ENOSPC);
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0) give_up("fsync failed", errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    fail("file '" + path + "': close failed: " + std::strerror(err));
  }
}

int try_lock_file(const std::string& path, bool inheritable, std::string* holder) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | (inheritable ? 0 : O_CLOEXEC), 0644);
  if (fd < 0) fail("lock '" + path + "': cannot open: " + errno_text());
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (holder) {
      char buf[32] = {0};
      const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
      std::string s = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
      while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
      *holder = s.find_first_not_of("0123456789") == std::string::npos ? s : "";
    }
    ::close(fd);
    if (err != EWOULDBLOCK) fail("lock '" + path + "': flock failed: " + std::strerror(err));
    return -1;
  }
  stamp_pid(fd);
  return fd;
}

int inherited_lock_fd(const std::string& path) {
  struct stat want;
  if (::stat(path.c_str(), &want) != 0) return -1;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return -1;
  const int own = ::dirfd(d);
  int found = -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    const int fd = std::atoi(e->d_name);
    struct stat st;
    if (fd == own || ::fstat(fd, &st) != 0) continue;
    if (st.st_dev != want.st_dev || st.st_ino != want.st_ino) continue;
    // flock on a descriptor whose open file description already holds the lock succeeds (a
    // no-op); one held through another description fails with EWOULDBLOCK.
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      found = fd;
      break;
    }
  }
  ::closedir(d);
  if (found >= 0) stamp_pid(found);
  return found;
}

}  // namespace sl
