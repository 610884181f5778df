// lowbit-bench: runs benchmark suites on the current GPU and writes JSON.
//   lowbit-bench [--suite NAME]... [--json FILE] [--quick]
// Suites: quantize, jit (and ceilings, always measured first).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "cuda/driver.hpp"
#include "harness.hpp"

namespace lowbit::bench {
void suite_quantize(const Options& o);
void suite_jit(const Options& o);
int jit_child_disk_hit(const char* cache_dir);
}  // namespace lowbit::bench

int main(int argc, char** argv) {
  using namespace lowbit::bench;
  if (argc == 3 && std::strcmp(argv[1], "--jit-child") == 0) return jit_child_disk_hit(argv[2]);
  Options o;
  std::vector<std::string> suites;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--suite" && i + 1 < argc) suites.push_back(argv[++i]);
    else if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--quick") { o.quick = true; o.min_runs = 20; o.min_ms = 50; }
    else {
      std::fprintf(stderr, "usage: lowbit-bench [--suite quantize|jit]... [--json FILE] [--quick]\n");
      return 2;
    }
  }
  if (suites.empty()) suites = {"quantize", "jit"};
  try {
    const lowbit::DriverApi& api = lowbit::require_driver();
    CUdevice dev = 0;
    lowbit::cu_check(api.DeviceGet(&dev, 0), "cuDeviceGet");
    Device& d = device();
    lowbit::cu_check(api.DevicePrimaryCtxRetain(&d.context, dev), "cuDevicePrimaryCtxRetain");
    lowbit::cu_check(api.CtxSetCurrent(d.context), "cuCtxSetCurrent");
    lowbit::cu_check(api.StreamCreate(&d.stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    api.DeviceGetAttribute(&d.sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
    char name[256] = {};
    api.DeviceGetName(name, 255, dev);
    d.name = name;
    std::printf("lowbit-bench on %s (%d SMs), driver %d\n", name, d.sm_count, api.version);
    ceilings(o);
    for (const std::string& s : suites) {
      if (s == "quantize") suite_quantize(o);
      else if (s == "jit") suite_jit(o);
      else { std::fprintf(stderr, "unknown suite %s\n", s.c_str()); return 2; }
    }
    if (!json_path.empty()) {
      FILE* f = std::fopen(json_path.c_str(), "w");
      if (f == nullptr) { std::perror(json_path.c_str()); return 1; }
      const Ceilings& c = ceilings(o);
      std::fprintf(f, "{\"environment\":%s,\"ceilings\":{\"copy_gbps\":%.1f,\"read_gbps\":%.1f},\"records\":%s}\n",
                   environment_json().c_str(), c.copy_gbps, c.read_gbps, records_json().c_str());
      std::fclose(f);
    }
  } catch (const lowbit::Error& e) {
    std::fprintf(stderr, "lowbit-bench: %s\n", e.what());
    return e.status() == LOWBIT_NO_DEVICE ? 2 : 1;
  }
  return 0;
}
