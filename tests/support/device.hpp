// Device memory for the GPU tests, through lowbit's own driver table (the
// tests need no CUDA runtime either). All calls run in device 0's primary
// context, made current on the calling thread.
#pragma once

#include <cuda.h>

#include <cstdint>
#include <vector>

namespace lowbit::test {

// Makes device 0's primary context current on this thread (retained once).
void use_primary_context();

class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  uint64_t ptr() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  void upload(const void* host, size_t bytes, size_t offset = 0);
  void download(void* host, size_t bytes, size_t offset = 0) const;
  void fill(uint8_t byte);  // synchronous memset
  std::vector<uint8_t> to_host() const;

 private:
  uint64_t ptr_ = 0;
  size_t bytes_ = 0;
};

void synchronize();

}  // namespace lowbit::test
