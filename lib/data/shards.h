// Writing token shards in the formats TokenSource reads (data/tokens.h):
//   llm.c ".bin": 256 x int32 header {magic, version, count, 0...} then the ids, little-endian;
//     version 1 (magic 20240520, uint16) when vocab_size <= 65536, else version 7 (magic 20240801,
//     uint32);
//   raw ".raw": the same ids without a header, plus the sidecar "<name>.raw.json"
//     {"format": "scalinglab.raw/1", "dtype": "uint16"|"uint32", "tokens": N, "vocab_size": V}.
// Every file appears whole or not at all: written to "<name>.tmp", fsynced, renamed (core/fs.h);
// the raw sidecar is renamed after its data file, and the reader requires both to agree.
#pragma once
#include <cstdint>
#include <string>

namespace sl {

enum class ShardFormat { kLlmc, kRaw };

ShardFormat parse_shard_format(const std::string& name);  // "llmc" | "raw", else throws
const char* shard_extension(ShardFormat f);               // ".bin" | ".raw"
int shard_width(int64_t vocab_size);                      // 2 (<= 65536) or 4 bytes per id

struct ShardInfo {
  std::string path;  // the data file (".bin" or ".raw")
  int64_t tokens = 0;
  int64_t bytes = 0;   // size of the data file
  std::string sha256;  // of the data file
};

// One shard written as a stream: append ids, then finish(). Memory is O(1) in the shard size:
// the ids go to "<path>.tmp" as they come (llm.c's count is patched into the header at the end).
// An id >= vocab_size throws naming the shard and the id's offset; the destructor of an
// unfinished writer removes the temporary file, so the final name never holds a partial shard.
class ShardWriter {
 public:
  ShardWriter(const std::string& path, ShardFormat format, int64_t vocab_size);
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  void append(const uint32_t* ids, int64_t n);
  void append_bytes(const uint8_t* bytes, int64_t n);  // byte-level tokens (ids 0..255)
  int64_t tokens() const { return count_; }
  // Patches the header and fsyncs the temporary file; returns the shard's size and sha256
  // (computed by re-reading the file, which the page cache holds). The shard is not visible yet.
  ShardInfo seal();
  // Renames the sealed shard into place (then writes the raw sidecar). Callers that write many
  // shards seal them all and commit only when the whole job succeeded, so a failure leaves the
  // directory as it was (the destructor removes uncommitted temporaries).
  void commit();
  ShardInfo finish() {  // seal + commit
    ShardInfo i = seal();
    commit();
    return i;
  }

 private:
  template <typename T>
  void append_impl(const T* ids, int64_t n);
  void write_all(const void* p, size_t n);

  std::string path_, tmp_;
  ShardFormat format_;
  int64_t vocab_;
  int width_;
  int fd_ = -1;
  bool sealed_ = false, committed_ = false;
  int64_t count_ = 0;
  std::string sha256_;
  std::string buf_;  // conversion buffer, reused
};

// Writes a whole shard at once (ShardWriter underneath).
ShardInfo write_shard(const std::string& path, ShardFormat format, const uint32_t* ids, int64_t n,
                      int64_t vocab_size);

}  // namespace sl
