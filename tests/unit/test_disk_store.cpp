// Unit tests of the on-disk cubin store (src/cache/disk_store.*): format,
// damage handling, permissions, read-only directories, LRU, locks and
// concurrency. CPU only; every test works in its own mkdtemp directory.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache/disk_store.hpp"
#include "common/log.hpp"
#include "common/sha256.hpp"

namespace {

using lowbit::CacheEntry;
using lowbit::Digest;
using lowbit::DiskStore;
using lowbit::PayloadKind;
namespace fs = std::filesystem;

constexpr size_t kHeader = 104;
constexpr int32_t kNvrtc = 13000;

// A unique directory under /tmp, removed (with everything in it) at scope end.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/lowbit-ds-test-XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() {
    restore_permissions(path);
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string sub(const std::string& name) const { return path + "/" + name; }

 private:
  // Tests chmod directories to 0500/0777; make them removable again.
  static void restore_permissions(const std::string& dir) {
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return;
    ::chmod(dir.c_str(), 0700);
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) restore_permissions(e.path().string());
  }
};

// A Logger whose callback counts warnings (and keeps their text).
struct LogCapture {
  std::atomic<int> warnings{0};
  std::mutex mu;
  std::vector<std::string> messages;
  lowbit::Logger logger;

  LogCapture() : logger(make_logger(this)) {}

  std::string all() {
    std::lock_guard<std::mutex> g(mu);
    std::string s;
    for (const auto& m : messages) s += m + "\n";
    return s;
  }

 private:
  static void callback(void* user, int32_t level, const char* message) {
    auto* self = static_cast<LogCapture*>(user);
    if (level != LOWBIT_LOG_WARN) return;
    self->warnings.fetch_add(1);
    std::lock_guard<std::mutex> g(self->mu);
    self->messages.emplace_back(message);
  }
  // $LOWBIT_LOG overrides the level at construction; keep it from filtering
  // out the warnings these tests count.
  static lowbit::Logger make_logger(LogCapture* self) {
    const char* v = std::getenv("LOWBIT_LOG");
    std::string saved = v ? v : "";
    ::unsetenv("LOWBIT_LOG");
    lowbit::Logger l(&LogCapture::callback, self, LOWBIT_LOG_WARN);
    if (v != nullptr) ::setenv("LOWBIT_LOG", saved.c_str(), 1);
    return l;
  }
};

Digest key_of(int i) { return lowbit::sha256("kernel-" + std::to_string(i)); }

// A deterministic entry; payloads of the same size give files of the same
// size (the metadata has a fixed width).
CacheEntry make_entry(int i, int32_t nvrtc = kNvrtc, size_t payload_size = 64) {
  CacheEntry e;
  e.base_key = key_of(i);
  e.nvrtc_version = nvrtc;
  e.kind = PayloadKind::Cubin;
  char meta[64];
  std::snprintf(meta, sizeof(meta), "{\"kernel\":\"k%06d\",\"nvrtc\":%08d}", i % 1000000, nvrtc);
  e.metadata = meta;
  e.payload.resize(payload_size);
  std::mt19937 rng(uint32_t(i * 7919 + nvrtc));
  for (auto& b : e.payload) b = uint8_t(rng());
  return e;
}

bool same_entry(const CacheEntry& a, const CacheEntry& b) {
  return a.base_key == b.base_key && a.nvrtc_version == b.nvrtc_version && a.kind == b.kind &&
         a.metadata == b.metadata && a.payload == b.payload;
}

DiskStore::Options opts(const std::string& dir, const lowbit::Logger* logger = nullptr) {
  DiskStore::Options o;
  o.dir = dir;
  o.logger = logger;
  return o;
}

std::string entry_path(const std::string& dir, const Digest& k, int32_t v) {
  return dir + "/" + DiskStore::file_name(k, v);
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(f.good());
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return unsigned(st.st_mode & 07777);
}

int64_t mtime_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return int64_t(st.st_mtime);
}

void set_mtime(const std::string& path, int64_t unix_seconds) {
  struct timespec t[2] = {{time_t(unix_seconds), 0}, {time_t(unix_seconds), 0}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), t, 0) == 0);
}

int64_t now() { return int64_t(std::time(nullptr)); }

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

size_t count_entries(const std::string& dir) {
  auto n = names_in(dir);
  return size_t(std::count_if(n.begin(), n.end(), [](const std::string& s) {
    return s.size() > 4 && s.compare(s.size() - 4, 4, ".lbk") == 0 && s[0] != '.';
  }));
}

size_t count_temps(const std::string& dir) {
  auto n = names_in(dir);
  return size_t(std::count_if(n.begin(), n.end(), [](const std::string& s) { return s.rfind(".tmp-", 0) == 0; }));
}

void put_u64(std::vector<uint8_t>& b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[off + size_t(i)] = uint8_t(v >> (8 * i));
}
uint64_t get_u64(const std::vector<uint8_t>& b, size_t off) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(b[off + size_t(i)]) << (8 * i);
  return v;
}
uint32_t get_u32(const std::vector<uint8_t>& b, size_t off) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(b[off + size_t(i)]) << (8 * i);
  return v;
}

std::optional<CacheEntry> parse(const std::vector<uint8_t>& b, std::string* problem = nullptr) {
  std::string p;
  auto r = DiskStore::parse(b.data(), b.size(), &p);
  if (!r) CHECK_FALSE(p.empty());  // every rejection says why
  if (problem) *problem = p;
  return r;
}

}  // namespace

TEST_CASE("disk store: file name") {
  Digest k = key_of(1);
  CHECK(DiskStore::file_name(k, 13000) == lowbit::to_hex(k) + "-13000.lbk");
  CHECK(DiskStore::file_name(k, 0) == lowbit::to_hex(k) + "-0.lbk");
}

TEST_CASE("disk store: serialize follows the documented layout and parses back") {
  CacheEntry e = make_entry(3, 12080, 100);
  e.kind = PayloadKind::Ptx;
  std::vector<uint8_t> b = DiskStore::serialize(e);
  REQUIRE(b.size() == kHeader + e.metadata.size() + e.payload.size());
  CHECK(std::memcmp(b.data(), "LOWBITK\0", 8) == 0);
  CHECK(get_u32(b, 8) == lowbit::kCacheFormatVersion);
  CHECK(get_u32(b, 12) == 12080u);
  CHECK(std::equal(e.base_key.begin(), e.base_key.end(), b.begin() + 16));
  CHECK(get_u64(b, 48) == e.metadata.size());
  CHECK(get_u64(b, 56) == e.payload.size());
  CHECK(b[64] == 1);
  for (size_t i = 65; i < 72; ++i) CHECK(b[i] == 0);
  lowbit::Sha256 h;
  h.update(b.data(), 72);
  h.update(b.data() + kHeader, b.size() - kHeader);
  Digest sum = h.finish();
  CHECK(std::equal(sum.begin(), sum.end(), b.begin() + 72));
  CHECK(std::string(b.begin() + kHeader, b.begin() + kHeader + long(e.metadata.size())) == e.metadata);

  auto back = parse(b);
  REQUIRE(back);
  CHECK(same_entry(*back, e));

  SUBCASE("empty metadata and payload") {
    CacheEntry z;
    z.base_key = key_of(4);
    auto zb = DiskStore::serialize(z);
    CHECK(zb.size() == kHeader);
    auto zr = parse(zb);
    REQUIRE(zr);
    CHECK(same_entry(*zr, z));
  }
}

TEST_CASE("disk store: parse rejects hostile bytes without crashing") {
  const CacheEntry e = make_entry(5, kNvrtc, 40);
  const std::vector<uint8_t> good = DiskStore::serialize(e);
  std::string problem;

  SUBCASE("null and empty") {
    CHECK_FALSE(DiskStore::parse(nullptr, 0, &problem));
    CHECK_FALSE(DiskStore::parse(nullptr, 100, &problem));
    CHECK_FALSE(DiskStore::parse(good.data(), 0, nullptr));  // problem may be null
  }
  SUBCASE("every truncation") {
    int accepted = 0;
    for (size_t n = 0; n < good.size(); ++n) {
      std::vector<uint8_t> b(good.begin(), good.begin() + long(n));
      if (parse(b)) ++accepted;
    }
    CHECK(accepted == 0);
  }
  SUBCASE("every single bit flip") {
    int accepted = 0;
    for (size_t i = 0; i < good.size() * 8; ++i) {
      std::vector<uint8_t> b = good;
      b[i / 8] ^= uint8_t(1u << (i % 8));
      if (parse(b)) ++accepted;
    }
    CHECK(accepted == 0);
  }
  SUBCASE("trailing byte") {
    std::vector<uint8_t> b = good;
    b.push_back(0);
    CHECK_FALSE(parse(b, &problem));
    CHECK(problem.find("trailing") != std::string::npos);
  }
  SUBCASE("huge length fields") {
    const uint64_t body = good.size() - kHeader;
    const uint64_t cases[][2] = {
        {UINT64_MAX, e.payload.size()},
        {e.metadata.size(), UINT64_MAX},
        {UINT64_MAX, UINT64_MAX},
        {UINT64_MAX, body + 1},  // M + P wraps around to exactly `body`
        {body + 1, 0},
        {body, 1},
        {1ull << 63, 1ull << 63},  // sum wraps to 0
        {0, body + 1},
    };
    for (const auto& c : cases) {
      std::vector<uint8_t> b = good;
      put_u64(b, 48, c[0]);
      put_u64(b, 56, c[1]);
      CHECK_FALSE(parse(b, &problem));
    }
  }
  SUBCASE("bad version, kind, reserved bytes") {
    std::vector<uint8_t> b = good;
    b[8] = 2;
    CHECK_FALSE(parse(b, &problem));
    CHECK(problem.find("version") != std::string::npos);
    b = good;
    b[64] = 7;
    CHECK_FALSE(parse(b));
    b = good;
    b[70] = 1;
    CHECK_FALSE(parse(b));
  }
  SUBCASE("random garbage, with and without a valid magic") {
    std::mt19937 rng(1234);
    int accepted = 0;
    for (int i = 0; i < 3000; ++i) {
      std::vector<uint8_t> b(rng() % 400);
      for (auto& x : b) x = uint8_t(rng());
      if (i % 2 == 1 && b.size() >= kHeader) {
        std::copy(good.begin(), good.begin() + 16, b.begin());  // magic, version, nvrtc
        for (size_t j = 65; j < 72; ++j) b[j] = 0;
        b[64] = 0;
        put_u64(b, 48, rng() % 300);
        put_u64(b, 56, rng() % 300);
      }
      if (parse(b)) ++accepted;
    }
    CHECK(accepted == 0);
  }
}

TEST_CASE("disk store: round trip, exact lookup, remove") {
  TempDir t;
  const std::string dir = t.sub("cache");
  DiskStore s(opts(dir));
  REQUIRE(s.writable());
  CHECK(s.dir() == dir);

  CacheEntry e = make_entry(1, kNvrtc, 5000);
  CHECK_FALSE(s.load(e.base_key, kNvrtc));
  s.store(e);
  const std::string path = entry_path(dir, e.base_key, kNvrtc);
  REQUIRE(exists(path));
  CHECK(count_temps(dir) == 0);

  auto r = s.load(e.base_key, kNvrtc);
  REQUIRE(r);
  CHECK(same_entry(*r, e));
  CHECK_FALSE(s.load(e.base_key, kNvrtc + 1));  // other NVRTC version: other key
  CHECK_FALSE(s.load(key_of(2), kNvrtc));

  // A second store on the same dir (another process) sees it.
  DiskStore s2(opts(dir));
  auto r2 = s2.load(e.base_key, kNvrtc);
  REQUIRE(r2);
  CHECK(same_entry(*r2, e));

  // Overwrite with new content.
  CacheEntry e2 = e;
  e2.payload.assign(10, 0xab);
  s.store(e2);
  r = s.load(e.base_key, kNvrtc);
  REQUIRE(r);
  CHECK(r->payload == e2.payload);

  s.remove(e.base_key, kNvrtc);
  CHECK_FALSE(exists(path));
  CHECK_FALSE(s.load(e.base_key, kNvrtc));
  s.remove(e.base_key, kNvrtc);  // removing a missing entry is fine
  CHECK(s.damaged_count() == 0);
}

TEST_CASE("disk store: damaged entries are deleted and reported as misses") {
  TempDir t;
  const std::string dir = t.sub("cache");
  LogCapture log;
  DiskStore s(opts(dir, &log.logger));
  REQUIRE(s.writable());
  const CacheEntry e = make_entry(7, kNvrtc, 300);
  const std::string path = entry_path(dir, e.base_key, kNvrtc);
  s.store(e);
  std::vector<uint8_t> b = read_bytes(path);
  REQUIRE(b.size() == kHeader + e.metadata.size() + e.payload.size());
  const size_t meta_off = kHeader;
  const size_t payload_off = kHeader + e.metadata.size();

  // Where the damaged file lies and which key reads it.
  std::string damaged_path = path;
  Digest read_key = e.base_key;
  int32_t read_version = kNvrtc;

  SUBCASE("truncated") {
    b.resize(b.size() - 17);
    write_bytes(path, b);
  }
  SUBCASE("truncated inside the header") {
    b.resize(50);
    write_bytes(path, b);
  }
  SUBCASE("bit flipped in payload") {
    b[payload_off + 123] ^= 0x08;
    write_bytes(path, b);
  }
  SUBCASE("bit flipped in metadata") {
    b[meta_off + 3] ^= 0x01;
    write_bytes(path, b);
  }
  SUBCASE("bit flipped in the header: magic") {
    b[2] ^= 0x20;
    write_bytes(path, b);
  }
  SUBCASE("bit flipped in the header: NVRTC version") {
    b[12] ^= 0x01;
    write_bytes(path, b);
  }
  SUBCASE("bit flipped in the header: key") {
    b[20] ^= 0x80;
    write_bytes(path, b);
  }
  SUBCASE("bit flipped in the header: checksum") {
    b[100] ^= 0x04;
    write_bytes(path, b);
  }
  SUBCASE("zero-length file") { write_bytes(path, {}); }
  SUBCASE("garbage bytes") {
    std::mt19937 rng(99);
    for (auto& x : b) x = uint8_t(rng());
    write_bytes(path, b);
  }
  SUBCASE("huge length fields") {
    put_u64(b, 48, UINT64_MAX);
    put_u64(b, 56, UINT64_MAX - 5);
    write_bytes(path, b);
  }
  SUBCASE("file far larger than any entry (sparse)") {
    int fd = ::open(path.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    REQUIRE(::ftruncate(fd, off_t(1) << 30) == 0);
    ::close(fd);
  }
  SUBCASE("valid entry under another key's name") {
    read_key = key_of(8);
    damaged_path = entry_path(dir, read_key, kNvrtc);
    REQUIRE(::rename(path.c_str(), damaged_path.c_str()) == 0);
  }
  SUBCASE("valid entry under another NVRTC version's name") {
    read_version = 12000;
    damaged_path = entry_path(dir, e.base_key, read_version);
    REQUIRE(::rename(path.c_str(), damaged_path.c_str()) == 0);
  }

  CHECK_FALSE(s.load(read_key, read_version));
  CHECK_FALSE(exists(damaged_path));
  CHECK(s.damaged_count() == 1);
  CHECK(log.warnings.load() >= 1);
  CHECK(count_entries(dir) == 0);

  // The next compile stores a fresh copy that loads fine.
  s.store(e);
  auto r = s.load(e.base_key, kNvrtc);
  REQUIRE(r);
  CHECK(same_entry(*r, e));
  CHECK(s.damaged_count() == 1);
}

TEST_CASE("disk store: non-regular files under entry names are misses, not hangs") {
  TempDir t;
  const std::string dir = t.sub("cache");
  DiskStore s(opts(dir));
  const std::string fifo = entry_path(dir, key_of(90), kNvrtc);
  const std::string subdir = entry_path(dir, key_of(91), kNvrtc);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  REQUIRE(::mkdir(subdir.c_str(), 0700) == 0);
  CHECK_FALSE(s.load(key_of(90), kNvrtc));
  CHECK_FALSE(s.load(key_of(90), 0));
  CHECK_FALSE(s.load(key_of(91), kNvrtc));
  auto listed = s.list(true);
  CHECK(std::none_of(listed.begin(), listed.end(), [](const auto& i) { return i.valid; }));
  CHECK(s.usage().entries == 0);
  // A store replaces the FIFO with a real entry.
  s.store(make_entry(90));
  CHECK(s.load(key_of(90), kNvrtc));
}

TEST_CASE("disk store: every corrupted header byte is detected in a stored file") {
  TempDir t;
  const std::string dir = t.sub("cache");
  DiskStore s(opts(dir));
  const CacheEntry e = make_entry(9, kNvrtc, 32);
  const std::string path = entry_path(dir, e.base_key, kNvrtc);
  s.store(e);
  const std::vector<uint8_t> good = read_bytes(path);
  int hits = 0;
  for (size_t i = 0; i < kHeader; ++i) {
    std::vector<uint8_t> b = good;
    b[i] ^= uint8_t(1u << (i % 8));
    write_bytes(path, b);
    if (s.load(e.base_key, kNvrtc)) ++hits;
    CHECK_FALSE(exists(path));
  }
  CHECK(hits == 0);
  CHECK(s.damaged_count() == kHeader);
}

TEST_CASE("disk store: any-version lookup picks the highest version that verifies") {
  TempDir t;
  const std::string dir = t.sub("cache");
  DiskStore s(opts(dir));
  const Digest k = key_of(11);
  for (int32_t v : {11080, 13000, 12040}) s.store(make_entry(11, v));
  s.store(make_entry(12, 99999));  // another key with a higher version

  auto r = s.load(k, 0);
  REQUIRE(r);
  CHECK(r->nvrtc_version == 13000);
  r = s.load(k, -1);
  REQUIRE(r);
  CHECK(r->nvrtc_version == 13000);

  // Names that are not canonical entry names are never considered.
  write_bytes(dir + "/" + lowbit::to_hex(k) + "-013999.lbk", DiskStore::serialize(make_entry(11, 13999)));
  write_bytes(dir + "/" + lowbit::to_hex(k) + "-14000.lbk.bak", DiskStore::serialize(make_entry(11, 14000)));
  r = s.load(k, 0);
  REQUIRE(r);
  CHECK(r->nvrtc_version == 13000);

  SUBCASE("a damaged highest version falls back to the next one") {
    std::string p13 = entry_path(dir, k, 13000);
    auto b = read_bytes(p13);
    b.back() ^= 1;
    write_bytes(p13, b);
    r = s.load(k, 0);
    REQUIRE(r);
    CHECK(r->nvrtc_version == 12040);
    CHECK_FALSE(exists(p13));
    CHECK(s.damaged_count() == 1);
  }
  SUBCASE("a higher version in a read-only dir wins") {
    const std::string ro = t.sub("ro");
    { DiskStore(opts(ro)).store(make_entry(11, 14000)); }
    DiskStore::Options o = opts(dir);
    o.readonly_dirs = {ro};
    DiskStore s2(o);
    r = s2.load(k, 0);
    REQUIRE(r);
    CHECK(r->nvrtc_version == 14000);
  }
  SUBCASE("unknown key") { CHECK_FALSE(s.load(key_of(13), 0)); }
}

TEST_CASE("disk store: read-only dirs are read, never written or deleted from") {
  TempDir t;
  const std::string ro = t.sub("ro");
  const std::string w = t.sub("w");
  const CacheEntry good = make_entry(21);
  const CacheEntry bad = make_entry(22);
  {
    DiskStore prep(opts(ro));
    prep.store(good);
    prep.store(bad);
  }
  REQUIRE(::chmod(ro.c_str(), 0755) == 0);  // a typical shipped bundle
  const std::string good_path = entry_path(ro, good.base_key, kNvrtc);
  const std::string bad_path = entry_path(ro, bad.base_key, kNvrtc);
  auto bad_bytes = read_bytes(bad_path);
  bad_bytes[kHeader + 5] ^= 0x40;
  write_bytes(bad_path, bad_bytes);
  const int64_t old = now() - 7200;
  set_mtime(good_path, old);
  REQUIRE(::rmdir((ro + "/locks").c_str()) == 0);
  const auto before = names_in(ro);

  LogCapture log;
  DiskStore::Options o = opts(w, &log.logger);
  o.readonly_dirs = {ro, "", ro + "/"};  // empty and duplicate entries are harmless
  DiskStore s(o);
  REQUIRE(s.writable());
  CHECK(log.warnings.load() == 0);

  auto r = s.load(good.base_key, kNvrtc);
  REQUIRE(r);
  CHECK(same_entry(*r, good));
  r = s.load(good.base_key, 0);
  REQUIRE(r);
  CHECK(same_entry(*r, good));
  CHECK(mtime_of(good_path) == old);  // hits in a read-only dir do not touch it

  CHECK_FALSE(s.load(bad.base_key, kNvrtc));
  CHECK(exists(bad_path));  // damaged, but not ours to delete
  CHECK(read_bytes(bad_path) == bad_bytes);

  s.store(make_entry(23));
  CHECK(exists(entry_path(w, key_of(23), kNvrtc)));
  CHECK_FALSE(exists(entry_path(ro, key_of(23), kNvrtc)));
  s.remove(good.base_key, kNvrtc);
  { auto l = s.lock(good.base_key); }
  s.gc(0);
  s.clear();
  CHECK(names_in(ro) == before);
  CHECK(read_bytes(good_path) == DiskStore::serialize(good));
  CHECK(s.usage().entries == 0);  // usage/list cover the writable dir only

  SUBCASE("a read-only dir writable by others is skipped with one warning") {
    REQUIRE(::chmod(ro.c_str(), 0777) == 0);
    LogCapture log2;
    DiskStore::Options o2 = opts(w, &log2.logger);
    o2.readonly_dirs = {ro};
    DiskStore s2(o2);
    CHECK(log2.warnings.load() == 1);
    CHECK_FALSE(s2.load(good.base_key, kNvrtc));
    CHECK_FALSE(s2.load(good.base_key, 0));
    CHECK(exists(good_path));
    CHECK(log2.warnings.load() == 1);
  }
  SUBCASE("a missing read-only dir is skipped") {
    DiskStore::Options o2 = opts(w);
    o2.readonly_dirs = {t.sub("nope"), ro};
    DiskStore s2(o2);
    CHECK(s2.load(good.base_key, kNvrtc));
  }
  SUBCASE("a group-writable entry file in a read-only dir is not trusted") {
    REQUIRE(::chmod(good_path.c_str(), 0664) == 0);
    CHECK_FALSE(s.load(good.base_key, kNvrtc));
    CHECK(exists(good_path));
  }
}

TEST_CASE("disk store: READ_ONLY mode reads the dir and never changes it") {
  TempDir t;
  const std::string dir = t.sub("cache");
  const CacheEntry e = make_entry(31);
  const CacheEntry bad = make_entry(32);
  {
    DiskStore prep(opts(dir));
    prep.store(e);
    prep.store(bad);
  }
  const std::string bad_path = entry_path(dir, bad.base_key, kNvrtc);
  auto b = read_bytes(bad_path);
  b[kHeader] ^= 1;
  write_bytes(bad_path, b);
  const auto before = names_in(dir);

  DiskStore::Options o = opts(dir);
  o.writable = false;
  DiskStore s(o);
  CHECK_FALSE(s.writable());
  CHECK(s.dir() == dir);
  auto r = s.load(e.base_key, kNvrtc);
  REQUIRE(r);
  CHECK(same_entry(*r, e));
  CHECK_FALSE(s.load(bad.base_key, kNvrtc));
  CHECK(exists(bad_path));
  s.store(make_entry(33));
  s.remove(e.base_key, kNvrtc);
  { auto l = s.lock(e.base_key); }
  CHECK(s.gc(0) == 0);
  CHECK(s.clear() == 0);
  CHECK(names_in(dir) == before);
  CHECK(s.usage().entries == 2);
  CHECK(s.list(false).size() == 2);

  SUBCASE("a missing dir is not created") {
    DiskStore::Options o2 = opts(t.sub("missing"));
    o2.writable = false;
    DiskStore s2(o2);
    CHECK_FALSE(exists(t.sub("missing")));
    CHECK_FALSE(s2.load(e.base_key, kNvrtc));
  }
}

TEST_CASE("disk store: a dir writable by others is refused (memory-only, one warning)") {
  TempDir t;
  const std::string dir = t.sub("cache");
  const CacheEntry planted = make_entry(41);
  { DiskStore(opts(dir)).store(planted); }
  REQUIRE(::chmod(dir.c_str(), 0777) == 0);
  const auto before = names_in(dir);

  LogCapture log;
  DiskStore s(opts(dir, &log.logger));
  CHECK_FALSE(s.writable());
  CHECK(s.dir().empty());
  CHECK(log.warnings.load() == 1);
  CHECK(log.all().find(dir) != std::string::npos);

  CHECK_FALSE(s.load(planted.base_key, kNvrtc));  // a planted cubin is never loaded
  CHECK_FALSE(s.load(planted.base_key, 0));
  for (int i = 0; i < 3; ++i) {
    s.store(make_entry(42 + i));
    auto l = s.lock(key_of(42 + i));
    CHECK_FALSE(s.load(key_of(42 + i), kNvrtc));
  }
  CHECK(s.gc(0) == 0);
  CHECK(s.clear() == 0);
  CHECK(s.list(true).empty());
  CHECK(s.usage().entries == 0);
  CHECK(names_in(dir) == before);
  CHECK(log.warnings.load() == 1);
}

TEST_CASE("disk store: a dir owned by another user is refused") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to chown a directory to another user");
    return;
  }
  TempDir t;
  const std::string dir = t.sub("cache");
  REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
  REQUIRE(::chown(dir.c_str(), 65534, 65534) == 0);
  LogCapture log;
  DiskStore s(opts(dir, &log.logger));
  CHECK_FALSE(s.writable());
  CHECK(log.warnings.load() == 1);
  s.store(make_entry(51));
  CHECK(names_in(dir).empty());
}

TEST_CASE("disk store: an unusable dir falls back to memory only") {
  TempDir t;
  LogCapture log;
  std::string dir;
  SUBCASE("path under a regular file (can never be created)") {
    write_bytes(t.sub("afile"), {1, 2, 3});
    dir = t.sub("afile/cache");
  }
  SUBCASE("the path is a regular file") {
    dir = t.sub("afile");
    write_bytes(dir, {1, 2, 3});
  }
  SUBCASE("chmod 0500 (not root)") {
    if (::geteuid() == 0) {
      MESSAGE("skipped: root writes through chmod 0500; covered by the regular-file cases");
      return;
    }
    dir = t.sub("ro");
    REQUIRE(::mkdir(dir.c_str(), 0500) == 0);
  }
  DiskStore s(opts(dir, &log.logger));
  CHECK_FALSE(s.writable());
  CHECK(s.dir().empty());
  CHECK(log.warnings.load() == 1);
  const CacheEntry e = make_entry(61);
  s.store(e);
  s.store(e);
  CHECK_FALSE(s.load(e.base_key, kNvrtc));
  { auto l = s.lock(e.base_key); }
  CHECK(s.usage().entries == 0);
  CHECK(log.warnings.load() == 1);
}

TEST_CASE("disk store: write failures after construction are warned about once") {
  TempDir t;
  const std::string dir = t.sub("cache");
  LogCapture log;
  DiskStore s(opts(dir, &log.logger));
  REQUIRE(s.writable());
  CHECK(log.warnings.load() == 0);

  SUBCASE("dir replaced by a file") {
    fs::remove_all(dir);
    write_bytes(dir, {0});
    for (int i = 0; i < 4; ++i) {
      s.store(make_entry(70 + i));
      auto l = s.lock(key_of(70 + i));
      CHECK_FALSE(s.load(key_of(70 + i), kNvrtc));
    }
    CHECK(log.warnings.load() == 1);
  }
  SUBCASE("dir removed: it is made again") {
    fs::remove_all(dir);
    s.store(make_entry(75));
    CHECK(s.load(key_of(75), kNvrtc));
    CHECK(mode_of(dir) == 0700u);
    CHECK(log.warnings.load() == 0);
  }
}

TEST_CASE("disk store: created dirs are 0700 and files 0600, whatever the umask") {
  TempDir t;
  const mode_t old_umask = ::umask(0);
  const std::string dir = t.sub("a/b/cache");
  DiskStore s(opts(dir));
  REQUIRE(s.writable());
  const CacheEntry e = make_entry(81);
  s.store(e);
  { auto l = s.lock(e.base_key); }
  ::umask(old_umask);

  CHECK(mode_of(t.sub("a")) == 0700u);
  CHECK(mode_of(t.sub("a/b")) == 0700u);
  CHECK(mode_of(dir) == 0700u);
  CHECK(mode_of(dir + "/locks") == 0700u);
  CHECK(mode_of(entry_path(dir, e.base_key, kNvrtc)) == 0600u);
  CHECK(mode_of(dir + "/locks/" + lowbit::to_hex(e.base_key) + ".lock") == 0600u);

  SUBCASE("an existing 0755 dir is accepted and left as it is") {
    const std::string d2 = t.sub("existing");
    REQUIRE(::mkdir(d2.c_str(), 0755) == 0);
    REQUIRE(::chmod(d2.c_str(), 0755) == 0);
    DiskStore s2(opts(d2));
    CHECK(s2.writable());
    CHECK(mode_of(d2) == 0755u);
  }
}

TEST_CASE("disk store: gc evicts least recently used first and respects the cap") {
  TempDir t;
  const std::string dir = t.sub("cache");
  DiskStore s(opts(dir));
  const uint64_t fsize = DiskStore::serialize(make_entry(100, kNvrtc, 1000)).size();
  const int64_t base = now() - 100000;
  for (int i = 0; i < 5; ++i) {
    s.store(make_entry(100 + i, kNvrtc, 1000));
    set_mtime(entry_path(dir, key_of(100 + i), kNvrtc), base + i * 100);  // 100 oldest
  }
  CHECK(s.usage().entries == 5);
  CHECK(s.usage().bytes == 5 * fsize);

  CHECK(s.gc(3 * fsize) == 2);
  CHECK(s.usage().bytes <= 3 * fsize);
  CHECK_FALSE(exists(entry_path(dir, key_of(100), kNvrtc)));
  CHECK_FALSE(exists(entry_path(dir, key_of(101), kNvrtc)));
  for (int i = 2; i < 5; ++i) CHECK(exists(entry_path(dir, key_of(100 + i), kNvrtc)));

  // A hit refreshes an old mtime, so 102 is now the most recently used...
  REQUIRE(s.load(key_of(102), kNvrtc));
  CHECK(mtime_of(entry_path(dir, key_of(102), kNvrtc)) >= now() - 5);
  // ...but a recent mtime is not rewritten on every hit.
  const std::string p104 = entry_path(dir, key_of(104), kNvrtc);
  set_mtime(p104, now() - 10);
  const int64_t m104 = mtime_of(p104);
  REQUIRE(s.load(key_of(104), kNvrtc));
  CHECK(mtime_of(p104) == m104);

  CHECK(s.gc(2 * fsize) == 1);
  CHECK_FALSE(exists(entry_path(dir, key_of(103), kNvrtc)));
  CHECK(exists(entry_path(dir, key_of(102), kNvrtc)));
  CHECK(exists(p104));
  CHECK(s.gc(2 * fsize) == 0);  // already under the cap

  SUBCASE("stale temp files and foreign files") {
    const std::string old_tmp = dir + "/.tmp-crashed.lbk.AAAAAA";
    const std::string new_tmp = dir + "/.tmp-inflight.lbk.BBBBBB";
    const std::string foreign = dir + "/README";
    write_bytes(old_tmp, {1, 2, 3});
    write_bytes(new_tmp, {1, 2, 3});
    write_bytes(foreign, {1});
    set_mtime(old_tmp, now() - 2 * 3600);
    CHECK(s.gc(UINT64_MAX) == 0);
    CHECK_FALSE(exists(old_tmp));
    CHECK(exists(new_tmp));
    CHECK(exists(foreign));
    CHECK(s.usage().entries == 2);  // temp and foreign files are not entries
  }
  SUBCASE("gc(0) empties the cache") {
    CHECK(s.gc(0) == 2);
    CHECK(s.usage().entries == 0);
    CHECK(s.usage().bytes == 0);
  }
}

TEST_CASE("disk store: gc removes lock files of absent keys unless held") {
  TempDir t;
  const std::string dir = t.sub("cache");
  DiskStore s(opts(dir));
  const Digest k = key_of(111);
  const std::string lock_path = dir + "/locks/" + lowbit::to_hex(k) + ".lock";
  s.store(make_entry(112));
  { auto l = s.lock(key_of(112)); }
  {
    auto l = s.lock(k);
    s.gc(UINT64_MAX);
    CHECK(exists(lock_path));  // held: kept
  }
  s.gc(UINT64_MAX);
  CHECK_FALSE(exists(lock_path));
  CHECK(exists(dir + "/locks/" + lowbit::to_hex(key_of(112)) + ".lock"));  // has an entry
  { auto l = s.lock(k); }  // recreated on demand
  CHECK(exists(lock_path));
}

TEST_CASE("disk store: the size cap is enforced on store, never evicting the new entry") {
  TempDir t;
  const std::string dir = t.sub("cache");
  const uint64_t fsize = DiskStore::serialize(make_entry(120, kNvrtc, 2000)).size();
  DiskStore::Options o = opts(dir);
  o.max_bytes = 2 * fsize + fsize / 2;
  DiskStore s(o);
  const int64_t base = now() - 1000;
  for (int i = 0; i < 4; ++i) {
    s.store(make_entry(120 + i, kNvrtc, 2000));
    set_mtime(entry_path(dir, key_of(120 + i), kNvrtc), base + i);
    CHECK(s.usage().bytes <= o.max_bytes);
  }
  CHECK(s.usage().entries == 2);
  CHECK(exists(entry_path(dir, key_of(122), kNvrtc)));
  CHECK(exists(entry_path(dir, key_of(123), kNvrtc)));

  // A cap smaller than one entry still keeps the entry just stored.
  DiskStore::Options tiny = opts(dir);
  tiny.max_bytes = 1;
  DiskStore s2(tiny);
  s2.store(make_entry(130, kNvrtc, 2000));
  CHECK(s2.usage().entries == 1);
  CHECK(s2.load(key_of(130), kNvrtc));
}

TEST_CASE("disk store: clear removes entries, temp files and lock files") {
  TempDir t;
  const std::string dir = t.sub("cache");
  DiskStore s(opts(dir));
  for (int i = 0; i < 3; ++i) {
    s.store(make_entry(140 + i));
    auto l = s.lock(key_of(140 + i));
  }
  write_bytes(dir + "/.tmp-x.lbk.CCCCCC", {1});
  write_bytes(dir + "/README", {1});
  CHECK(s.clear() == 3);
  CHECK(count_entries(dir) == 0);
  CHECK(count_temps(dir) == 0);
  CHECK(names_in(dir + "/locks").empty());
  CHECK(exists(dir + "/README"));
  CHECK(s.usage().entries == 0);
  CHECK(s.usage().bytes == 0);
  CHECK_FALSE(s.load(key_of(140), kNvrtc));
  CHECK(s.clear() == 0);
  // Still usable afterwards.
  s.store(make_entry(143));
  CHECK(s.load(key_of(143), kNvrtc));
}

TEST_CASE("disk store: list and verify") {
  TempDir t;
  const std::string dir = t.sub("cache");
  DiskStore s(opts(dir));
  const CacheEntry a = make_entry(150), b = make_entry(151), c = make_entry(152);
  s.store(a);
  s.store(b);
  s.store(c);
  // b: payload bit flip (header fine, checksum wrong); c: truncated.
  const std::string pb = entry_path(dir, b.base_key, kNvrtc);
  auto bytes = read_bytes(pb);
  bytes.back() ^= 0x10;
  write_bytes(pb, bytes);
  const std::string pc = entry_path(dir, c.base_key, kNvrtc);
  bytes = read_bytes(pc);
  bytes.resize(bytes.size() - 1);
  write_bytes(pc, bytes);

  auto find = [](const std::vector<lowbit::CacheEntryInfo>& v, const Digest& k) {
    auto it = std::find_if(v.begin(), v.end(), [&](const auto& i) { return i.base_key == k; });
    REQUIRE(it != v.end());
    return *it;
  };
  auto quick = s.list(false);
  REQUIRE(quick.size() == 3);
  auto ia = find(quick, a.base_key);
  CHECK(ia.valid);
  CHECK(ia.metadata == a.metadata);
  CHECK(ia.nvrtc_version == kNvrtc);
  CHECK(ia.path == entry_path(dir, a.base_key, kNvrtc));
  CHECK(ia.file_bytes == DiskStore::serialize(a).size());
  CHECK(ia.last_used_unix >= now() - 60);
  CHECK(find(quick, b.base_key).valid);  // no checksum without verify
  CHECK_FALSE(find(quick, c.base_key).valid);

  auto full = s.list(true);
  REQUIRE(full.size() == 3);
  CHECK(find(full, a.base_key).valid);
  CHECK(find(full, a.base_key).metadata == a.metadata);
  auto ib = find(full, b.base_key);
  CHECK_FALSE(ib.valid);
  CHECK(ib.problem.find("checksum") != std::string::npos);
  CHECK_FALSE(find(full, c.base_key).valid);
  CHECK_FALSE(find(full, c.base_key).problem.empty());
  CHECK(count_entries(dir) == 3);  // listing never deletes
}

TEST_CASE("disk store: KeyLock excludes another process") {
  TempDir t;
  const std::string dir = t.sub("cache");
  DiskStore s(opts(dir));
  const Digest k = key_of(160);
  const std::string lock_path = dir + "/locks/" + lowbit::to_hex(k) + ".lock";

  // 0: the child got the lock; 1: it would block; 2+: error.
  auto child_try = [](const std::string& path) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (fd < 0) ::_exit(3);
      int r = ::flock(fd, LOCK_EX | LOCK_NB);
      ::_exit(r == 0 ? 0 : (errno == EWOULDBLOCK ? 1 : 2));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };

  {
    DiskStore::KeyLock l = s.lock(k);
    REQUIRE(exists(lock_path));
    CHECK(child_try(lock_path) == 1);
    DiskStore::KeyLock moved = std::move(l);  // the lock moves with the object
    CHECK(child_try(lock_path) == 1);
    DiskStore::KeyLock assigned;
    assigned = std::move(moved);
    CHECK(child_try(lock_path) == 1);
    // Another key is not blocked.
    CHECK(child_try(dir + "/locks/" + lowbit::to_hex(key_of(161)) + ".lock") == 0);
  }
  CHECK(child_try(lock_path) == 0);  // released by the destructor

  SUBCASE("a child calling lock() waits for the parent") {
    std::optional<DiskStore::KeyLock> held(s.lock(k));
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // The child inherits the parent's lock descriptor, and a flock belongs
      // to the open file description, so the lock would stay held by the
      // child itself after the parent lets go. Drop inherited descriptors
      // first (a real second process has none).
      for (int fd = 3; fd < 1024; ++fd) ::close(fd);
      DiskStore child_store(opts(dir));
      DiskStore::KeyLock l = child_store.lock(k);  // blocks until the parent lets go
      ::_exit(0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    int status = 0;
    CHECK(::waitpid(pid, &status, WNOHANG) == 0);  // still waiting
    held.reset();
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
}

TEST_CASE("disk store: concurrent stores of one key leave one valid file and no temp files") {
  TempDir t;
  const std::string dir = t.sub("cache");
  DiskStore shared(opts(dir));
  const Digest k = key_of(170);
  constexpr int kWriters = 8;
  constexpr int kRounds = 20;
  std::atomic<bool> done{false};
  std::atomic<int> bad_reads{0}, good_reads{0};

  auto entry_for = [&](int w, int r) {
    CacheEntry e = make_entry(170, kNvrtc, 512 + size_t(w * 37 + r));
    e.metadata = "{\"writer\":" + std::to_string(w) + ",\"round\":" + std::to_string(r) + "}";
    for (auto& b : e.payload) b = uint8_t(w * 31 + r);
    return e;
  };

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      // Half the writers share one store, half have their own (like
      // separate processes).
      std::optional<DiskStore> own;
      if (w % 2 == 1) own.emplace(opts(dir));
      DiskStore& s = own ? *own : shared;
      for (int r = 0; r < kRounds; ++r) s.store(entry_for(w, r));
    });
  }
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i) {
    readers.emplace_back([&] {
      DiskStore s(opts(dir));
      while (!done.load()) {
        auto e = s.load(k, kNvrtc);
        if (!e) continue;
        // Whatever is read is one whole entry written by someone.
        bool ok = !e->payload.empty() &&
                  std::all_of(e->payload.begin(), e->payload.end(), [&](uint8_t b) { return b == e->payload[0]; });
        (ok ? good_reads : bad_reads).fetch_add(1);
      }
      CHECK(s.damaged_count() == 0);
    });
  }
  for (auto& th : threads) th.join();
  done = true;
  for (auto& th : readers) th.join();

  CHECK(bad_reads.load() == 0);
  CHECK(count_entries(dir) == 1);
  CHECK(count_temps(dir) == 0);
  CHECK(shared.damaged_count() == 0);
  auto e = shared.load(k, kNvrtc);
  REQUIRE(e);
  auto listed = shared.list(true);
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].valid);
}

TEST_CASE("disk store: default_cache_dir and readonly_cache_dirs_from_env") {
  const char* names[] = {"LOWBIT_CACHE_DIR", "XDG_CACHE_HOME", "HOME", "LOWBIT_CACHE_PATH"};
  std::vector<std::optional<std::string>> saved;
  for (const char* n : names) {
    const char* v = std::getenv(n);
    saved.push_back(v ? std::optional<std::string>(v) : std::nullopt);
    ::unsetenv(n);
  }

  CHECK(lowbit::default_cache_dir().empty());
  ::setenv("HOME", "/home/u", 1);
  CHECK(lowbit::default_cache_dir() == "/home/u/.cache/lowbit");
  ::setenv("XDG_CACHE_HOME", "relative/path", 1);  // ignored, per the XDG spec
  CHECK(lowbit::default_cache_dir() == "/home/u/.cache/lowbit");
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  CHECK(lowbit::default_cache_dir() == "/xdg/lowbit");
  ::setenv("LOWBIT_CACHE_DIR", "", 1);  // empty: as if unset
  CHECK(lowbit::default_cache_dir() == "/xdg/lowbit");
  ::setenv("LOWBIT_CACHE_DIR", "/explicit", 1);
  CHECK(lowbit::default_cache_dir() == "/explicit");

  CHECK(lowbit::readonly_cache_dirs_from_env().empty());
  ::setenv("LOWBIT_CACHE_PATH", "", 1);
  CHECK(lowbit::readonly_cache_dirs_from_env().empty());
  ::setenv("LOWBIT_CACHE_PATH", ":/a::/b c:", 1);
  CHECK(lowbit::readonly_cache_dirs_from_env() == std::vector<std::string>{"/a", "/b c"});
  ::setenv("LOWBIT_CACHE_PATH", "/only", 1);
  CHECK(lowbit::readonly_cache_dirs_from_env() == std::vector<std::string>{"/only"});

  for (size_t i = 0; i < saved.size(); ++i) {
    if (saved[i])
      ::setenv(names[i], saved[i]->c_str(), 1);
    else
      ::unsetenv(names[i]);
  }
}
