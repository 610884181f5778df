#include "support/device.hpp"

#include <doctest/doctest.h>

#include <mutex>

#include "cuda/driver.hpp"

namespace lowbit::test {

namespace {
CUcontext primary() {
  static CUcontext ctx = [] {
    const DriverApi& api = require_driver();
    CUdevice dev = 0;
    cu_check(api.DeviceGet(&dev, 0), "cuDeviceGet");
    CUcontext c = nullptr;
    cu_check(api.DevicePrimaryCtxRetain(&c, dev), "cuDevicePrimaryCtxRetain");
    return c;
  }();
  return ctx;
}
}  // namespace

void use_primary_context() { cu_check(driver().CtxSetCurrent(primary()), "cuCtxSetCurrent"); }

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  use_primary_context();
  CUdeviceptr p = 0;
  cu_check(driver().MemAlloc(&p, bytes == 0 ? 1 : bytes), "cuMemAlloc");
  ptr_ = p;
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != 0) driver().MemFree(CUdeviceptr(ptr_));
}

void DeviceBuffer::upload(const void* host, size_t bytes, size_t offset) {
  REQUIRE(offset + bytes <= bytes_);
  use_primary_context();
  if (bytes > 0) cu_check(driver().MemcpyHtoD(CUdeviceptr(ptr_ + offset), host, bytes), "cuMemcpyHtoD");
}

void DeviceBuffer::download(void* host, size_t bytes, size_t offset) const {
  REQUIRE(offset + bytes <= bytes_);
  use_primary_context();
  if (bytes > 0) cu_check(driver().MemcpyDtoH(host, CUdeviceptr(ptr_ + offset), bytes), "cuMemcpyDtoH");
}

void DeviceBuffer::fill(uint8_t byte) {
  use_primary_context();
  cu_check(driver().MemsetD8(CUdeviceptr(ptr_), byte, bytes_), "cuMemsetD8");
}

std::vector<uint8_t> DeviceBuffer::to_host() const {
  std::vector<uint8_t> out(bytes_);
  download(out.data(), bytes_);
  return out;
}

void synchronize() {
  use_primary_context();
  cu_check(driver().CtxSynchronize(), "cuCtxSynchronize");
}

}  // namespace lowbit::test
