// libFuzzer target: the disk cache entry reader, fed arbitrary bytes as a
// cache file (src/cache/disk_store.hpp documents the layout).
//
// Input layout (tests/fuzz/README.md):
//   byte 0   flags (kFlag* below)
//   rest     the file's bytes
//
// With kFlagFixChecksum the SHA-256 field (bytes 72..104) is recomputed
// before anything reads the bytes, so that mutations reach past the checksum
// (metadata, payload, lengths) instead of all dying on "checksum mismatch".
//
// Properties checked (a violation aborts):
//   - DiskStore::parse never crashes and accepts exactly canonical entries:
//     serialize(parse(bytes)) == bytes;
//   - the metadata of an accepted entry is read the way KernelCache reads it
//     (json_get_int / json_get_string) without crashing;
//   - with kFlagDisk the bytes are written as a file in a private cache
//     directory, under the name its header gives (or a wrong one with
//     kFlagWrongName), and DiskStore::load / list agree with parse: a valid,
//     correctly named entry is a hit with the same content; anything else is
//     a miss and the file is gone afterwards (damage is removed, never
//     served).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cache/disk_store.hpp"
#include "common/json.hpp"
#include "common/log.hpp"
#include "common/sha256.hpp"

namespace {

constexpr uint8_t kFlagFixChecksum = 1u << 0;
constexpr uint8_t kFlagDisk = 1u << 1;
constexpr uint8_t kFlagWrongName = 1u << 2;
constexpr uint8_t kFlagAnyVersion = 1u << 3;

constexpr size_t kOffNvrtc = 12, kOffKey = 16, kOffChecksum = 72, kHeaderSize = 104;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "fuzz_cache_entry: %s\n", what);
  std::abort();
}

struct Env {
  std::string dir;
  lowbit::Logger logger{nullptr, nullptr, LOWBIT_LOG_ERROR};
  std::unique_ptr<lowbit::DiskStore> store;
};

void remove_private_dir();

Env& env() {
  static Env* e = [] {
    auto* env = new Env;
    const char* base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string templ = std::string(base) + "/lowbit-fuzz-cache-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) die("mkdtemp failed");
    env->dir = templ + "/cache";
    lowbit::DiskStore::Options o;
    o.dir = env->dir;
    o.logger = &env->logger;
    o.max_bytes = UINT64_MAX;
    env->store = std::make_unique<lowbit::DiskStore>(std::move(o));
    if (!env->store->writable()) die("the private cache directory is not writable");
    std::atexit(remove_private_dir);  // best effort, when the fuzzer exits normally
    return env;
  }();
  return *e;
}

void remove_private_dir() {
  const std::string& dir = env().dir;
  const std::string cmd = "rm -rf '" + dir.substr(0, dir.rfind('/')) + "'";
  if (std::system(cmd.c_str()) != 0) {
  }
}

uint32_t get_u32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

bool same(const lowbit::CacheEntry& a, const lowbit::CacheEntry& b) {
  return a.base_key == b.base_key && a.nvrtc_version == b.nvrtc_version && a.kind == b.kind &&
         a.metadata == b.metadata && a.payload == b.payload;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  std::vector<uint8_t> bytes(data + 1, data + size);
  if ((flags & kFlagFixChecksum) && bytes.size() >= kHeaderSize) {
    lowbit::Sha256 h;
    h.update(bytes.data(), kOffChecksum);
    h.update(bytes.data() + kHeaderSize, bytes.size() - kHeaderSize);
    const lowbit::Digest sum = h.finish();
    std::memcpy(bytes.data() + kOffChecksum, sum.data(), sum.size());
  }

  // An exactly sized copy: any read past the end is an ASan report.
  std::unique_ptr<uint8_t[]> exact(new uint8_t[bytes.size() + (bytes.empty() ? 1 : 0)]);
  if (!bytes.empty()) std::memcpy(exact.get(), bytes.data(), bytes.size());
  std::string problem;
  const std::optional<lowbit::CacheEntry> parsed = lowbit::DiskStore::parse(exact.get(), bytes.size(), &problem);
  if (parsed) {
    if (lowbit::DiskStore::serialize(*parsed) != bytes) die("parse accepted a non-canonical entry");
    // What KernelCache::load_entry reads from the metadata.
    for (const char* key : {"registers", "spill_stores", "spill_loads", "stack_frame", "shared_bytes", "nvrtc"})
      (void)lowbit::json_get_int(parsed->metadata, key);
    for (const char* key : {"kernel", "arch", "options", "family"}) (void)lowbit::json_get_string(parsed->metadata, key);
  } else if (problem.empty()) {
    die("parse rejected an entry without saying why");
  }
  (void)lowbit::DiskStore::parse(nullptr, bytes.size(), nullptr);  // NULL data is a miss, never a read

  if (!(flags & kFlagDisk)) return 0;
  Env& e = env();
  lowbit::Digest key{};
  int32_t version = 0;
  if (bytes.size() >= kOffKey + 32) std::memcpy(key.data(), bytes.data() + kOffKey, 32);
  if (bytes.size() >= kOffNvrtc + 4) {
    const uint32_t v = get_u32(bytes.data() + kOffNvrtc);
    version = v <= uint32_t(INT32_MAX) ? int32_t(v) : 0;
  }
  if (flags & kFlagWrongName) key[0] ^= 0x5a;
  const std::string path = e.dir + "/" + lowbit::DiskStore::file_name(key, version);
  {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) die("cannot write the entry file");
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) die("short write");
    std::fclose(f);
    ::chmod(path.c_str(), 0600);
  }
  const bool servable = parsed && !(flags & kFlagWrongName) && parsed->base_key == key && parsed->nvrtc_version == version;
  const std::optional<lowbit::CacheEntry> loaded =
      e.store->load(key, (flags & kFlagAnyVersion) ? 0 : version);
  if (servable) {
    if (!loaded || !same(*loaded, *parsed)) die("a valid, correctly named entry was not served as written");
    const std::vector<lowbit::CacheEntryInfo> listed = e.store->list(true);
    if (listed.size() != 1 || !listed[0].valid) die("list(verify) disagrees with parse on a valid entry");
    (void)e.store->list(false);
    if (e.store->usage().entries != 1) die("usage() miscounts");
  } else {
    if (loaded) die("a damaged or misnamed entry was served");
    // The lookup opened the file (its name is the one looked up): damage is
    // removed, never left for the next reader.
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) die("a damaged or misnamed entry was left in the cache directory");
    (void)e.store->list(true);
    (void)e.store->list(false);
  }
  ::unlink(path.c_str());
  return 0;
}
