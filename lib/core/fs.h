// Durable file-system helpers: the tmp + fsync + rename + directory-fsync pattern that makes a
// file appear whole or not at all, even across a crash or power loss.
#pragma once
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

}  // namespace sl
