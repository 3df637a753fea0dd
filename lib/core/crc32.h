// CRC-32 (IEEE 802.3, the polynomial of zlib, gzip and PNG; crc32("123456789") = 0xCBF43926).
// Checkpoints store one per tensor so a flipped or zeroed byte is refused on load, naming the
// tensor, instead of being trained on.
#pragma once
#include <cstddef>
#include <cstdint>

namespace sl {

// CRC of `n` bytes continuing from `crc` (0 to start): crc32(b, crc32(a)) == crc32(a + b).
uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);

}  // namespace sl
