// GPU fault injection: device memory exhausted while a plan loads its kernel
// (cuModuleLoadData needs device memory for the code) must cost a status
// (OUT_OF_MEMORY), never the process, never the cache entry (an allocation
// failure is not damage), and the next attempt after memory is freed works.
//
// No op family has a workspace that lowbit allocates itself (the caller
// passes it to run), so "out of memory for the workspace" is the caller's
// allocation; lowbit's own device allocations are module loads, tested here.
// Under compute-sanitizer, exclude this file's cases (-tce="*exhausted*"):
// the failing cuMemAlloc calls that fill the GPU are reported as API errors.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "cache/disk_store.hpp"
#include "cuda/driver.hpp"
#include "lowbit/lowbit.h"
#include "support/device.hpp"
#include "support/test_support.hpp"

namespace {

// Allocates device memory in shrinking chunks until none is left; frees it
// all on destruction.
class Exhaust {
 public:
  Exhaust() {
    lowbit::test::use_primary_context();
    const lowbit::DriverApi& api = lowbit::driver();
    for (size_t chunk = size_t(1) << 32; chunk >= (size_t(1) << 16); chunk /= 2) {
      CUdeviceptr p = 0;
      while (api.MemAlloc(&p, chunk) == CUDA_SUCCESS) {
        blocks_.push_back(p);
        bytes_ += chunk;
      }
    }
  }
  ~Exhaust() { release(); }
  void release() {
    lowbit::test::use_primary_context();
    for (CUdeviceptr p : blocks_) lowbit::driver().MemFree(p);
    blocks_.clear();
  }
  size_t bytes() const { return bytes_; }

 private:
  std::vector<CUdeviceptr> blocks_;
  size_t bytes_ = 0;
};

}  // namespace

TEST_CASE("gpu faults: with device memory exhausted, plan creation is OUT_OF_MEMORY (or OK), then recovers") {
  LOWBIT_REQUIRE_GPU();
  lowbit::test::TempDir tmp;
  const std::string dir = tmp / "cache";
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_dir = dir.c_str();
  o.log_level = LOWBIT_LOG_ERROR;
  lowbit_context* ctx = nullptr;
  REQUIRE_MESSAGE(lowbit_context_create_device(0, &o, &ctx) == LOWBIT_OK, lowbit_last_error_message());

  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.x_dtype = LOWBIT_DTYPE_BF16;
  d.q_dtype = LOWBIT_DTYPE_S4;
  d.rank = 2;
  d.dims[0] = 3;
  d.dims[1] = 1000;

  lowbit_status status = LOWBIT_OK;
  std::string message;
  {
    Exhaust fill;
    MESSAGE("allocated " << (fill.bytes() >> 20) << " MiB to exhaust the device");
    lowbit_plan* plan = reinterpret_cast<lowbit_plan*>(0x1);
    status = lowbit_quantize_plan_create(ctx, &d, &plan);
    message = lowbit_last_error_message();
    CAPTURE(message);
    CHECK((status == LOWBIT_OK || status == LOWBIT_OUT_OF_MEMORY));
    if (status == LOWBIT_OK) CHECK(plan != nullptr);
    else CHECK(plan == nullptr);
    if (status == LOWBIT_OUT_OF_MEMORY) CHECK(message.find("OUT_OF_MEMORY") != std::string::npos);
    lowbit_plan_destroy(plan == reinterpret_cast<lowbit_plan*>(0x1) ? nullptr : plan);
  }
  const std::string outcome = std::string(lowbit_status_string(status)) + (status == LOWBIT_OK ? "" : " (" + message + ")");
  MESSAGE("with the device full: " << outcome);

  // Memory is back: the plan loads (from the entry the first attempt stored:
  // an allocation failure is not damage, so the entry was kept).
  lowbit_plan* plan = nullptr;
  REQUIRE_MESSAGE(lowbit_quantize_plan_create(ctx, &d, &plan) == LOWBIT_OK, lowbit_last_error_message());
  lowbit_plan_destroy(plan);
  lowbit_cache_stats st;
  st.struct_size = sizeof(st);
  REQUIRE(lowbit_context_cache_stats(ctx, &st) == LOWBIT_OK);
  CHECK(st.compiles == 1);
  CHECK(st.damaged_entries == 0);
  lowbit::DiskStore::Options so;
  so.dir = dir;
  so.writable = false;
  lowbit::DiskStore store(so);
  const std::vector<lowbit::CacheEntryInfo> entries = store.list(true);
  REQUIRE(entries.size() == 1);
  CHECK(entries[0].valid);
  lowbit_context_destroy(ctx);
}
