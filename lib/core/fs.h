// Durable file-system helpers: the tmp + fsync + rename + directory-fsync pattern that makes a
// file appear whole or not at all, even across a crash or power loss.
#pragma once
#include <cstddef>
#include <string>

namespace sl {

// Writes `bytes` to `path` atomically: `path.tmp` is written and fsynced, renamed over `path`, and
// the parent directory is fsynced so the rename itself is durable. A crash at any point leaves
// either the old `path` (plus maybe a stale `path.tmp`) or the new one, never a mix.
void atomic_write_file(const std::string& path, const std::string& bytes);

// Reads a whole file; throws sl::Error naming the file if it cannot.
std::string read_file(const std::string& path);

// mkdir -p; throws naming the directory on failure.
void make_dirs(const std::string& dir);

// fsyncs an existing file (opened read-only; Linux allows fsync on such fds).
void fsync_file(const std::string& path);

// fsyncs the directory so entries created/renamed in it are durable.
void fsync_dir(const std::string& dir);

// rename(from, to) then fsync of to's parent directory.
void rename_durable(const std::string& from, const std::string& to);

// The directory part of a path ("." when there is none).
std::string parent_dir(const std::string& path);

bool path_exists(const std::string& path);

// Writes `bytes` to a new file `path` (which must not exist) and fsyncs it. The space is reserved
// first (posix_fallocate where the file system supports it), so a full disk or quota (ENOSPC,
// EDQUOT) or a file-size limit (EFBIG; SIGXFSZ must be ignored) is found before anything is
// written. On any failure the partial file is removed and one line naming `path`, the errno text
// and the size needed is thrown: no stray temporary file is left behind.
void write_new_file_durable(const std::string& path, const void* bytes, size_t size);

// An exclusive advisory lock (flock) on `path`, created if missing, e.g. RUN/lock: one writer per
// run directory. Returns the descriptor (the lock lives as long as it stays open) after writing
// this process's pid into the file, or -1 when another process holds it, with *holder set to the
// pid the holder wrote ("" when unknown). `inheritable`: without O_CLOEXEC, so a child exec'd by
// the caller keeps holding it (sweep launch hands each train child its run's lock this way).
int try_lock_file(const std::string& path, bool inheritable, std::string* holder);

// A descriptor this process inherited that refers to the lock file `path` and holds its lock
// (or took it now because nobody held it), -1 if none: a parent that locked RUN/lock and exec'd
// us (sweep launch, `flock RUN/lock scalinglab train ...`) delegates the lock instead of
// conflicting with it. Re-stamps the file with our pid.
int inherited_lock_fd(const std::string& path);

}  // namespace sl
