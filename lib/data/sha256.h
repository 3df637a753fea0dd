// SHA-256 (FIPS 180-4), for the checksums of shards and manifests: a plain, portable
// implementation (~300 MB/s), so the data tools need no crypto library.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace sl {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  std::string hex();  // finalizes: 64 lowercase hex digits; the object is spent afterwards

 private:
  void block(const uint8_t* p);  // one 64-byte block into state_
  uint32_t state_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;  // bytes hashed
};

std::string sha256_hex(const std::string& bytes);
// Streams the file; throws sl::Error naming it if it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace sl
