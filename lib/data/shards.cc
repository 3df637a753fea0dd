#include "data/shards.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "data/sha256.h"

namespace sl {

namespace {

constexpr int64_t kHeaderInts = 256;
constexpr int32_t kMagicV1 = 20240520;
constexpr int32_t kMagicV7 = 20240801;

}  // namespace

ShardFormat parse_shard_format(const std::string& name) {
  if (name == "llmc") return ShardFormat::kLlmc;
  if (name == "raw") return ShardFormat::kRaw;
  fail("shard format '" + name + "': expected llmc or raw");
}

const char* shard_extension(ShardFormat f) { return f == ShardFormat::kLlmc ? ".bin" : ".raw"; }

int shard_width(int64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

ShardWriter::ShardWriter(const std::string& path, ShardFormat format, int64_t vocab_size)
    : path_(path),
      tmp_(path + ".tmp"),
      format_(format),
      vocab_(vocab_size),
      width_(shard_width(vocab_size)) {
  if (vocab_size <= 0 || vocab_size > (int64_t{1} << 32))
    fail("shard '" + path + "': vocab_size " + std::to_string(vocab_size) + " outside [1, 2^32]");
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd_ < 0) fail("shard '" + tmp_ + "': cannot create: " + std::strerror(errno));
  if (format_ == ShardFormat::kLlmc) {
    // Placeholder header; finish() writes the count into word 2.
    int32_t header[kHeaderInts] = {};
    header[0] = width_ == 2 ? kMagicV1 : kMagicV7;
    header[1] = width_ == 2 ? 1 : 7;
    write_all(header, sizeof header);
  }
}

ShardWriter::~ShardWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void ShardWriter::write_all(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd_, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("shard '" + tmp_ + "': write failed: " + std::strerror(errno));
    }
    c += w;
    n -= static_cast<size_t>(w);
  }
}

template <typename T>
void ShardWriter::append_impl(const T* ids, int64_t n) {
  if (sealed_) fail("shard '" + path_ + "': append after seal");
  // llm.c stores the count as int32 (our reader takes it unsigned); keep llm.c's own readers happy.
  if (format_ == ShardFormat::kLlmc && count_ + n > INT32_MAX)
    fail("shard '" + path_ + "': more than 2^31-1 tokens (llm.c header limit); use smaller shards");
  constexpr int64_t kChunk = 1 << 16;
  for (int64_t done = 0; done < n; done += kChunk) {
    const int64_t m = std::min(kChunk, n - done);
    buf_.resize(static_cast<size_t>(m * width_));
    char* out = buf_.data();
    for (int64_t i = 0; i < m; ++i) {
      const uint64_t id = ids[done + i];
      if (id >= static_cast<uint64_t>(vocab_))
        fail("shard '" + path_ + "': token id " + std::to_string(id) + " at offset " +
             std::to_string(count_ + done + i) + " >= vocab_size " + std::to_string(vocab_));
      // Little-endian on the (little-endian) hosts we build for.
      if (width_ == 2) {
        const uint16_t v = static_cast<uint16_t>(id);
        std::memcpy(out + 2 * i, &v, 2);
      } else {
        const uint32_t v = static_cast<uint32_t>(id);
        std::memcpy(out + 4 * i, &v, 4);
      }
    }
    write_all(buf_.data(), buf_.size());
  }
  count_ += n;
}

void ShardWriter::append(const uint32_t* ids, int64_t n) { append_impl(ids, n); }
void ShardWriter::append_bytes(const uint8_t* bytes, int64_t n) { append_impl(bytes, n); }

ShardInfo ShardWriter::seal() {
  if (sealed_) fail("shard '" + path_ + "': sealed twice");
  sealed_ = true;
  if (format_ == ShardFormat::kLlmc) {
    const int32_t count = static_cast<int32_t>(count_);
    if (::pwrite(fd_, &count, 4, 8) != 4)
      fail("shard '" + tmp_ + "': header write failed: " + std::strerror(errno));
  }
  if (::fsync(fd_) != 0) fail("shard '" + tmp_ + "': fsync failed: " + std::strerror(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("shard '" + tmp_ + "': close failed: " + std::strerror(errno));
  ShardInfo info;
  info.path = path_;
  info.tokens = count_;
  info.sha256 = sha256_ = sha256_file(tmp_);
  struct stat st;
  if (::stat(tmp_.c_str(), &st) != 0) fail("shard '" + tmp_ + "': cannot stat");
  info.bytes = static_cast<int64_t>(st.st_size);
  return info;
}

void ShardWriter::commit() {
  if (!sealed_ || committed_) fail("shard '" + path_ + "': commit without seal, or twice");
  rename_durable(tmp_, path_);
  committed_ = true;
  if (format_ == ShardFormat::kRaw) {
    nlohmann::ordered_json j;
    j["format"] = "scalinglab.raw/1";
    j["dtype"] = width_ == 2 ? "uint16" : "uint32";
    j["tokens"] = count_;
    j["vocab_size"] = vocab_;
    j["sha256"] = sha256_;
    atomic_write_file(path_ + ".json", j.dump(2) + "\n");
  }
}

ShardInfo write_shard(const std::string& path, ShardFormat format, const uint32_t* ids, int64_t n,
                      int64_t vocab_size) {
  ShardWriter w(path, format, vocab_size);
  w.append(ids, n);
  return w.finish();
}

}  // namespace sl
