#include "support/test_support.hpp"

#include <dirent.h>
#include <ftw.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "cuda/driver.hpp"

extern char** environ;

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

ChildRun run_self(const std::vector<std::string>& set, const std::vector<std::string>& unset) {
  auto name_of = [](const std::string& kv) { return kv.substr(0, kv.find('=')); };
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string name = name_of(kv);
    const bool dropped = std::find(unset.begin(), unset.end(), name) != unset.end() ||
                         std::any_of(set.begin(), set.end(), [&](const std::string& x) { return name_of(x) == name; });
    if (!dropped) env_strings.push_back(kv);
  }
  env_strings.insert(env_strings.end(), set.begin(), set.end());
  std::vector<char*> envp;
  for (std::string& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  char exe[] = "/proc/self/exe";
  char* argv[] = {exe, nullptr};

  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execve(exe, argv, envp.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  ChildRun r;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n > 0) r.output.append(buf, size_t(n));
    else if (n == 0 || errno != EINTR) break;
  }
  ::close(fds[0]);
  while (::waitpid(pid, &r.status, 0) < 0 && errno == EINTR) {
  }
  std::istringstream lines(r.output);
  for (std::string line; std::getline(lines, line);) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) r.values[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return r;
}

}  // namespace lowbit::test
