#include "support/test_support.hpp"

#include <dirent.h>
#include <ftw.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "cuda/driver.hpp"

namespace lowbit::test {

namespace {
int g_skipped = 0;
}

void mark_skipped(const std::string& why) {
  ++g_skipped;
  MESSAGE("SKIPPED: " << why);
  std::printf("[skip] %s\n", why.c_str());
}

int skipped_count() { return g_skipped; }

const std::string& gpu_unavailable_reason() {
  static const std::string reason = []() -> std::string {
    const DriverApi& api = driver();
    if (!api.available) return api.problem;
    int count = 0;
    if (api.DeviceGetCount(&count) != CUDA_SUCCESS || count == 0) return "the driver reports no CUDA device";
    return "";
  }();
  return reason;
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base != nullptr && *base ? base : "/tmp") + "/lowbit-test-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) FAIL("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  // Make everything writable again (tests chmod directories), then remove.
  nftw(path_.c_str(), [](const char* p, const struct stat*, int type, struct FTW*) {
    if (type == FTW_D || type == FTW_DP || type == FTW_DNR) chmod(p, 0700);
    return 0;
  }, 16, FTW_PHYS);
  nftw(path_.c_str(), [](const char* p, const struct stat*, int, struct FTW*) { return remove(p); }, 16,
       FTW_DEPTH | FTW_PHYS);
}

std::vector<std::string> list_files(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n.size() >= suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
        out.push_back(dir + "/" + n);
    }
    closedir(d);
  }
  return out;
}

std::mt19937_64& rng() {
  static std::mt19937_64 gen = [] {
    uint64_t seed = uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
    if (const char* s = std::getenv("LOWBIT_TEST_SEED")) seed = std::strtoull(s, nullptr, 10);
    std::printf("[seed] LOWBIT_TEST_SEED=%llu\n", static_cast<unsigned long long>(seed));
    return std::mt19937_64(seed);
  }();
  return gen;
}

}  // namespace lowbit::test
