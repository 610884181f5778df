// The on-disk cubin store: one file per kernel, shared by every process of
// the user (DESIGN.md section 5).
//
// File layout of an entry (all integers little-endian):
//   offset  size  field
//   0       8     magic "LOWBITK\0"
//   8       4     format version (kFormatVersion)
//   12      4     NVRTC version that compiled it (e.g. 13000), 0 if unknown
//   16      32    base key (hash of source, headers, options, arch; see KeyHash)
//   48      8     metadata length M (JSON text)
//   56      8     payload length P (cubin or PTX bytes)
//   64      1     payload kind (0 = cubin, 1 = PTX)
//   65      7     zero
//   72      32    SHA-256 over bytes [0, 72) followed by metadata and payload
//   104     M     metadata
//   104+M   P     payload
// File name: <dir>/<hex(base key)>-<nvrtc version>.lbk. The NVRTC version is
// part of the name (so part of the key) but kept outside the base hash, so a
// process without NVRTC can still find entries for a kernel by base key.
//
// Writes go to a mkstemp file in the same directory, fsync, rename: readers
// never see a partial entry. A per-key lock file <dir>/locks/<hex>.lock
// (flock) lets one process compile a kernel while others wait for it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/log.hpp"
#include "common/sha256.hpp"

namespace lowbit {

inline constexpr uint32_t kCacheFormatVersion = 1;

enum class PayloadKind : uint8_t { Cubin = 0, Ptx = 1 };

struct CacheEntry {
  Digest base_key{};
  int32_t nvrtc_version = 0;
  PayloadKind kind = PayloadKind::Cubin;
  std::string metadata;          // JSON text
  std::vector<uint8_t> payload;  // cubin / PTX bytes
};

// One listed entry (cache ls / gc).
struct CacheEntryInfo {
  std::string path;
  Digest base_key{};
  int32_t nvrtc_version = 0;
  uint64_t file_bytes = 0;
  int64_t last_used_unix = 0;   // mtime; refreshed on hits (LRU)
  bool valid = false;           // header and checksum verified (verify/ls only)
  std::string metadata;         // JSON text when readable
  std::string problem;          // why not valid
};

struct DiskUsage {
  uint64_t entries = 0;
  uint64_t bytes = 0;
};

class DiskStore {
 public:
  struct Options {
    std::string dir;                         // writable directory ("" = none)
    std::vector<std::string> readonly_dirs;  // searched after dir, never written
    bool writable = true;                    // false: READ_ONLY mode
    uint64_t max_bytes = 4ull << 30;         // LRU cap of dir
    const Logger* logger = nullptr;          // must outlive the store; may be null
  };

  // Creates `dir` (0700, parents too) if needed and checks it: a directory
  // owned by another user, or writable by group/others, is refused. A refused
  // or unwritable dir leaves the store memory-only (writable() == false) with
  // one warning through the logger. Read-only dirs that fail the same check
  // are skipped with a warning. Never throws for these conditions.
  explicit DiskStore(Options options);
  ~DiskStore();

  bool writable() const;
  const std::string& dir() const;  // "" if memory-only

  // Looks up an entry: exact (base_key, nvrtc_version) when nvrtc_version > 0,
  // else the highest NVRTC version present for base_key. Searches dir, then
  // the read-only dirs. Verifies magic, version, lengths, key and checksum;
  // a damaged entry in the writable dir is deleted (damaged_count() += 1) and
  // reported as a miss. A hit refreshes the file's mtime (LRU) at most once a
  // minute. Never throws on damage; returns nullopt on any miss.
  std::optional<CacheEntry> load(const Digest& base_key, int32_t nvrtc_version);

  // Writes an entry atomically (temp file 0600 + fsync + rename), then
  // enforces max_bytes by evicting least-recently-used entries (not this
  // one). No-op when not writable. Failures (disk full, dir removed) are
  // logged once as warnings and leave no partial file behind; never throws.
  void store(const CacheEntry& entry);

  // Deletes the entry for (base_key, nvrtc_version) from the writable dir, if
  // any (a cubin the driver rejected).
  void remove(const Digest& base_key, int32_t nvrtc_version);

  // Exclusive cross-process lock for one key (flock on the lock file). Held
  // until the returned object is destroyed. A no-op lock when not writable.
  class KeyLock {
   public:
    KeyLock() = default;
    explicit KeyLock(int fd) : fd_(fd) {}
    KeyLock(KeyLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
    KeyLock& operator=(KeyLock&& o) noexcept;
    KeyLock(const KeyLock&) = delete;
    KeyLock& operator=(const KeyLock&) = delete;
    ~KeyLock();

   private:
    int fd_ = -1;
  };
  KeyLock lock(const Digest& base_key);

  // Maintenance (CLI `lowbit cache ...`). list/verify read every entry of the
  // writable dir (verify checks checksums; list only headers+metadata).
  std::vector<CacheEntryInfo> list(bool verify_checksums) const;
  // Evicts least-recently-used entries until the dir holds <= max_bytes;
  // returns the number removed. Also removes stale temp files (> 1 hour).
  uint64_t gc(uint64_t max_bytes);
  // Removes every entry, temp file and lock file; returns entries removed.
  uint64_t clear();
  DiskUsage usage() const;
  uint64_t damaged_count() const;

  // Parses and verifies an entry from raw bytes (also the fuzzing entry
  // point). Returns nullopt and sets *problem on any defect.
  static std::optional<CacheEntry> parse(const uint8_t* data, size_t size, std::string* problem);
  // Serializes an entry into the file layout above.
  static std::vector<uint8_t> serialize(const CacheEntry& entry);
  // "<hex>-<nvrtc>.lbk"
  static std::string file_name(const Digest& base_key, int32_t nvrtc_version);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// $LOWBIT_CACHE_DIR, else $XDG_CACHE_HOME/lowbit, else $HOME/.cache/lowbit
// ("" if none of them is set).
std::string default_cache_dir();
// The directories of $LOWBIT_CACHE_PATH (colon-separated; empty parts skipped).
std::vector<std::string> readonly_cache_dirs_from_env();

}  // namespace lowbit
