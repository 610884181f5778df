// SHA-256 (FIPS 180-4): the cache key and the cache-entry checksum. A strong
// hash, so that two different kernels never share a cubin file.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lowbit {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  Sha256& update(const void* data, size_t size);
  Sha256& update(std::string_view s) { return update(s.data(), s.size()); }
  // Hashes the length first, so that update_field("ab").update_field("c")
  // differs from update_field("a").update_field("bc").
  Sha256& update_field(std::string_view s);
  Digest finish();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

Digest sha256(const void* data, size_t size);
inline Digest sha256(std::string_view s) { return sha256(s.data(), s.size()); }
std::string to_hex(const Digest& d);

}  // namespace lowbit
