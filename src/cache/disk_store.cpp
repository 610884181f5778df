// The on-disk cubin store (DESIGN.md section 5). See disk_store.hpp for the
// file layout and the contract of every function.
//
// Rules this file follows throughout:
// - No exceptions for I/O problems: every system call is checked, failures
//   become misses (load), no-ops (store, remove) or a no-op lock, and the
//   first write failure of a store is logged once as a warning.
// - Readers never see a partial entry: writes go to a mkostemp file in the
//   cache directory, are fsync'ed, then renamed over the final name, and the
//   directory is fsync'ed so that the rename survives a crash.
// - Bytes read from disk are hostile until verified: every length is checked
//   against the file size before use, and the SHA-256 covers header, metadata
//   and payload.
// - Only directories that nobody else can write to are trusted (a planted
//   cubin is code that runs on the GPU).
#include "cache/disk_store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string_view>
#include <system_error>
#include <unordered_set>
#include <utility>

#include <fmt/format.h>

namespace lowbit {

namespace {

// ---------------------------------------------------------------------------
// Layout constants (see the table in disk_store.hpp).

constexpr uint8_t kMagic[8] = {'L', 'O', 'W', 'B', 'I', 'T', 'K', '\0'};
constexpr size_t kOffFormat = 8;
constexpr size_t kOffNvrtc = 12;
constexpr size_t kOffKey = 16;
constexpr size_t kOffMetaLen = 48;
constexpr size_t kOffPayloadLen = 56;
constexpr size_t kOffKind = 64;
constexpr size_t kOffReserved = 65;
constexpr size_t kOffChecksum = 72;  // also the length of the checksummed header prefix
constexpr size_t kHeaderSize = 104;

constexpr std::string_view kEntrySuffix = ".lbk";
// Temp files start with a dot so that they can never match the entry name
// pattern "<hex>-<nvrtc>.lbk", whatever follows.
constexpr std::string_view kTempPrefix = ".tmp-";
constexpr const char* kLockDirName = "locks";
constexpr std::string_view kLockSuffix = ".lock";

// A hit refreshes the mtime (the LRU clock) at most this often, so that hot
// kernels do not cost a metadata write on every process start.
constexpr int64_t kTouchIntervalSec = 60;
// gc removes temp files older than this (left behind by a crashed writer;
// a live writer finishes in well under a second).
constexpr int64_t kStaleTempSec = 3600;
// Upper bound on an entry file. Real cubins are a few MB; a bigger file is
// damage (or hostile) and is not read into memory.
constexpr uint64_t kMaxEntryBytes = 256ull << 20;

// ---------------------------------------------------------------------------
// Small helpers.

std::string errno_text(int e) {
  // std::strerror is not guaranteed thread-safe; the generic category is.
  return std::error_code(e, std::generic_category()).message();
}

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(p[i]) << (8 * i);
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(p[i]) << (8 * i);
  return v;
}

std::string join(const std::string& dir, std::string_view name) {
  std::string p = dir;
  if (p.empty() || p.back() != '/') p += '/';
  p += name;
  return p;
}

// Strips trailing slashes ("/a/b/" -> "/a/b"), keeping "/" itself.
std::string normalize_dir(std::string d) {
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return d;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // only the lowercase form that to_hex writes is accepted
}

bool parse_hex_key(std::string_view hex, Digest* out) {
  if (hex.size() != 64) return false;
  for (size_t i = 0; i < 32; ++i) {
    int hi = hex_value(hex[2 * i]);
    int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = uint8_t(hi << 4 | lo);
  }
  return true;
}

// Parses the canonical form of "<64 hex>-<nvrtc>.lbk" (what file_name
// writes: lowercase hex, decimal without sign or leading zeros, fits int32).
bool parse_entry_name(std::string_view name, Digest* key, int32_t* version) {
  if (name.size() < 64 + 1 + 1 + kEntrySuffix.size() || !ends_with(name, kEntrySuffix) || name[64] != '-')
    return false;
  if (!parse_hex_key(name.substr(0, 64), key)) return false;
  std::string_view digits = name.substr(65, name.size() - 65 - kEntrySuffix.size());
  if (digits.empty() || digits.size() > 10 || (digits.size() > 1 && digits[0] == '0')) return false;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v > INT32_MAX) return false;
  *version = int32_t(v);
  return true;
}

// Names in a directory ("." and ".." left out). An unreadable directory
// yields an empty list: for a cache that is the same as an empty one.
std::vector<std::string> read_dir_names(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    std::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    names.emplace_back(n);
  }
  closedir(d);
  return names;
}

int open_retry(const char* path, int flags, mode_t mode = 0) {
  int fd;
  do fd = ::open(path, flags, mode);
  while (fd < 0 && errno == EINTR);
  return fd;
}

int fsync_retry(int fd) {
  int r;
  do r = ::fsync(fd);
  while (r != 0 && errno == EINTR);
  return r;
}

int flock_retry(int fd, int op) {
  int r;
  do r = ::flock(fd, op);
  while (r != 0 && errno == EINTR);
  return r;
}

// Reads `size` bytes at `offset` (fewer on EOF: *got tells the caller the
// real length). Returns false on a read error.
bool read_exact(int fd, uint8_t* out, size_t size, uint64_t offset, size_t* got) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out + done, size - done, off_t(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) break;  // the file shrank under us: parse sees a truncated entry
    done += size_t(n);
  }
  *got = done;
  return true;
}

// Writes all bytes; returns 0 or the errno of the failure (ENOSPC, EIO...).
int write_all(int fd, const uint8_t* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    done += size_t(n);
  }
  return 0;
}

// Makes a rename or unlink in `dir` durable. Some file systems refuse fsync
// on a directory (EINVAL); the entry is still complete, so that is ignored.
void fsync_dir(const std::string& dir) {
  int fd = open_retry(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  fsync_retry(fd);
  ::close(fd);
}

// mkdir -p with mode 0700 for every directory it creates. chmod afterwards
// because mkdir's mode is filtered by the umask. Returns 0 or an errno.
int make_dirs(const std::string& dir) {
  if (dir.empty()) return ENOENT;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    std::string prefix = dir.substr(0, pos);
    if (prefix.empty()) continue;
    if (::mkdir(prefix.c_str(), 0700) == 0) {
      ::chmod(prefix.c_str(), 0700);
    } else if (errno != EEXIST) {
      return errno;
    }
  }
  return 0;
}

// Why `dir` must not be trusted, or "" when it may be. A trusted directory is
// a directory owned by the effective user (or by root, where allow_root),
// and not writable by group or others.
std::string dir_problem(const std::string& dir, bool allow_root, struct stat* st_out = nullptr) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return fmt::format("cannot stat it: {}", errno_text(errno));
  if (!S_ISDIR(st.st_mode)) return "not a directory";
  uid_t me = ::geteuid();
  if (st.st_uid != me && !(allow_root && st.st_uid == 0))
    return fmt::format("owned by uid {}, not by uid {}", st.st_uid, me);
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    return fmt::format("writable by group or others (mode {:o})", st.st_mode & 07777);
  if (st_out != nullptr) *st_out = st;
  return "";
}

// An entry file is trusted on the same terms as a directory: a regular file
// owned by us or root that nobody else can write (relevant for read-only
// dirs, whose files we did not create).
bool file_trusted(const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return false;
  if (st.st_uid != ::geteuid() && st.st_uid != 0) return false;
  return (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

bool same_file(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int64_t now_unix() { return int64_t(std::time(nullptr)); }

// The checked header fields of an entry.
struct Header {
  int32_t nvrtc_version = 0;
  Digest key{};
  uint64_t metadata_len = 0;
  uint64_t payload_len = 0;
  PayloadKind kind = PayloadKind::Cubin;
};

// Verifies everything but the checksum. `data` holds at least the first
// min(file_size, kHeaderSize) bytes; lengths are checked against file_size.
// Subtractions only: a length near 2^64 cannot overflow a sum.
bool parse_header(const uint8_t* data, uint64_t file_size, Header* h, std::string* problem) {
  auto fail = [&](std::string why) {
    if (problem != nullptr) *problem = std::move(why);
    return false;
  };
  if (data == nullptr || file_size < kHeaderSize)
    return fail(fmt::format("truncated: {} bytes, the header alone is {}", file_size, kHeaderSize));
  if (std::memcmp(data, kMagic, sizeof(kMagic)) != 0) return fail("bad magic");
  uint32_t format = get_u32(data + kOffFormat);
  if (format != kCacheFormatVersion)
    return fail(fmt::format("unsupported format version {} (expected {})", format, kCacheFormatVersion));
  uint32_t nvrtc = get_u32(data + kOffNvrtc);
  if (nvrtc > uint32_t(INT32_MAX)) return fail(fmt::format("NVRTC version {} out of range", nvrtc));
  uint8_t kind = data[kOffKind];
  if (kind > uint8_t(PayloadKind::Ptx)) return fail(fmt::format("unknown payload kind {}", kind));
  for (size_t i = kOffReserved; i < kOffChecksum; ++i)
    if (data[i] != 0) return fail("nonzero reserved header bytes");
  uint64_t body = file_size - kHeaderSize;
  uint64_t m = get_u64(data + kOffMetaLen);
  uint64_t p = get_u64(data + kOffPayloadLen);
  if (m > body) return fail(fmt::format("truncated: metadata length {} exceeds the {} bytes after the header", m, body));
  if (p > body - m)
    return fail(fmt::format("truncated: payload length {} exceeds the {} bytes after the metadata", p, body - m));
  if (m + p != body) return fail(fmt::format("{} trailing bytes after the payload", body - m - p));
  h->nvrtc_version = int32_t(nvrtc);
  std::memcpy(h->key.data(), data + kOffKey, h->key.size());
  h->metadata_len = m;
  h->payload_len = p;
  h->kind = PayloadKind(kind);
  return true;
}

Digest entry_checksum(const uint8_t* data, size_t size) {
  // Header prefix [0, 72), then metadata and payload; the checksum field
  // itself is skipped.
  Sha256 h;
  h.update(data, kOffChecksum);
  h.update(data + kHeaderSize, size - kHeaderSize);
  return h.finish();
}

}  // namespace

// ---------------------------------------------------------------------------
// Impl

struct DiskStore::Impl {
  Options opt;
  std::string dir;  // the primary directory; "" when memory-only
  bool writable = false;
  std::vector<std::string> readonly_dirs;  // trusted extra directories
  std::atomic<uint64_t> damaged{0};
  // Write failures (store, lock) are warned about once per store: a full
  // disk must not turn every compile into a log line.
  mutable std::atomic<bool> write_warned{false};

  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) const {
    if (opt.logger != nullptr) opt.logger->warn(format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void debug(fmt::format_string<Args...> format, Args&&... args) const {
    if (opt.logger != nullptr) opt.logger->debug(format, std::forward<Args>(args)...);
  }
  template <typename... Args>
  void warn_write_once(fmt::format_string<Args...> format, Args&&... args) const {
    if (!write_warned.exchange(true)) warn(format, std::forward<Args>(args)...);
  }

  // Creates (if needed) and checks a writable cache directory and its locks
  // subdirectory. Returns "" or why it cannot be used.
  static std::string prepare_writable(const std::string& d) {
    if (int e = make_dirs(d); e != 0) return fmt::format("cannot create it: {}", errno_text(e));
    if (std::string why = dir_problem(d, /*allow_root=*/false); !why.empty()) return why;
    // AT_EACCESS: judge with the effective ids, as open() will. Also catches
    // read-only mounts (EROFS).
    if (::faccessat(AT_FDCWD, d.c_str(), W_OK | X_OK, AT_EACCESS) != 0)
      return fmt::format("not writable: {}", errno_text(errno));
    std::string locks = join(d, kLockDirName);
    if (::mkdir(locks.c_str(), 0700) == 0) {
      ::chmod(locks.c_str(), 0700);
    } else if (errno != EEXIST) {
      return fmt::format("cannot create {}: {}", locks, errno_text(errno));
    }
    if (std::string why = dir_problem(locks, false); !why.empty()) return fmt::format("{}: {}", locks, why);
    return "";
  }

  struct SearchDir {
    const std::string* path;
    bool modifiable;  // damaged entries may be deleted, hits touched
  };
  std::vector<SearchDir> search_dirs() const {
    std::vector<SearchDir> out;
    if (!dir.empty()) out.push_back({&dir, writable});
    for (const std::string& d : readonly_dirs) out.push_back({&d, false});
    return out;
  }

  // Reports a damaged entry; deletes it when the directory is ours. The
  // inode check keeps us from deleting a good entry that another process
  // renamed into place after we opened the damaged one.
  void on_damage(const std::string& path, const struct stat& opened, bool modifiable, const std::string& why) {
    damaged.fetch_add(1, std::memory_order_relaxed);
    if (!modifiable) {
      warn("cache entry {} is damaged ({}); ignoring it (read-only directory)", path, why);
      return;
    }
    warn("cache entry {} is damaged ({}); removing it", path, why);
    struct stat now {};
    if (::stat(path.c_str(), &now) == 0 && same_file(now, opened)) {
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        debug("cannot remove damaged cache entry {}: {}", path, errno_text(errno));
    }
  }

  // Loads and verifies one file. nullopt for a missing, untrusted or
  // damaged file.
  std::optional<CacheEntry> load_file(const std::string& d, const Digest& key, int32_t version,
                                      bool modifiable) {
    std::string path = join(d, DiskStore::file_name(key, version));
    // O_NONBLOCK: a FIFO under an entry name must not hang the open (it is
    // then rejected as not a regular file); no effect on regular files.
    int fd = open_retry(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      if (errno != ENOENT && errno != ENOTDIR) debug("cannot open cache entry {}: {}", path, errno_text(errno));
      return std::nullopt;
    }
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};

    struct stat st {};
    if (::fstat(fd, &st) != 0) return std::nullopt;
    if (!file_trusted(st)) {
      debug("ignoring cache entry {}: not a regular file owned by us or root, or writable by others", path);
      return std::nullopt;
    }
    uint64_t size = uint64_t(st.st_size);
    if (size > kMaxEntryBytes) {
      on_damage(path, st, modifiable, fmt::format("{} bytes, larger than any entry", size));
      return std::nullopt;
    }
    std::vector<uint8_t> bytes(size);
    size_t got = 0;
    if (!read_exact(fd, bytes.data(), bytes.size(), 0, &got)) {
      debug("cannot read cache entry {}: {}", path, errno_text(errno));
      return std::nullopt;  // an I/O error is not proof of damage
    }
    std::string problem;
    std::optional<CacheEntry> e = DiskStore::parse(bytes.data(), got, &problem);
    if (!e) {
      on_damage(path, st, modifiable, problem);
      return std::nullopt;
    }
    // A valid entry under the wrong name (copied or renamed by hand) would
    // hand one kernel's code to another: the name is part of the key.
    if (e->base_key != key || e->nvrtc_version != version) {
      on_damage(path, st, modifiable,
                fmt::format("its header says {}", DiskStore::file_name(e->base_key, e->nvrtc_version)));
      return std::nullopt;
    }
    if (modifiable && now_unix() - int64_t(st.st_mtime) >= kTouchIntervalSec) {
      const struct timespec times[2] = {{0, UTIME_NOW}, {0, UTIME_NOW}};
      ::futimens(fd, times);  // best effort: LRU order only
    }
    return e;
  }

  struct FileInfo {
    std::string name;
    uint64_t bytes;
    struct timespec mtime;
  };
  // Entries of the primary directory, with size and mtime.
  std::vector<FileInfo> scan_entries() const {
    std::vector<FileInfo> out;
    if (dir.empty()) return out;
    for (std::string& n : read_dir_names(dir)) {
      Digest k;
      int32_t v;
      if (!parse_entry_name(n, &k, &v)) continue;
      struct stat st {};
      if (::lstat(join(dir, n).c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      out.push_back({std::move(n), uint64_t(st.st_size), st.st_mtim});
    }
    return out;
  }

  // Removes least-recently-used entries (never `keep`) until the primary
  // directory holds at most max_bytes. Returns the number removed.
  uint64_t evict(uint64_t max_bytes, const std::string& keep) {
    std::vector<FileInfo> files = scan_entries();
    uint64_t total = 0;
    for (const FileInfo& f : files) total += f.bytes;
    if (total <= max_bytes) return 0;
    std::sort(files.begin(), files.end(), [](const FileInfo& a, const FileInfo& b) {
      if (a.mtime.tv_sec != b.mtime.tv_sec) return a.mtime.tv_sec < b.mtime.tv_sec;
      if (a.mtime.tv_nsec != b.mtime.tv_nsec) return a.mtime.tv_nsec < b.mtime.tv_nsec;
      return a.name < b.name;
    });
    uint64_t removed = 0;
    for (const FileInfo& f : files) {
      if (total <= max_bytes) break;
      if (f.name == keep) continue;
      if (::unlink(join(dir, f.name).c_str()) == 0) {
        ++removed;
        total -= f.bytes;
      } else if (errno == ENOENT) {
        total -= f.bytes;  // another process evicted it first
      } else {
        debug("cannot evict cache entry {}: {}", join(dir, f.name), errno_text(errno));
      }
    }
    if (removed > 0) fsync_dir(dir);
    return removed;
  }
};

// ---------------------------------------------------------------------------
// DiskStore

DiskStore::DiskStore(Options options) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.opt = std::move(options);
  std::string want = normalize_dir(s.opt.dir);

  struct stat primary {};
  bool have_primary = false;
  if (!want.empty()) {
    if (s.opt.writable) {
      std::string why = Impl::prepare_writable(want);
      if (why.empty()) {
        s.dir = want;
        s.writable = true;
      } else {
        s.warn("cache directory {} is unusable ({}); kernels are cached in memory only", want, why);
      }
    } else {
      // READ_ONLY mode: the directory is read like an extra read-only one,
      // and never created.
      std::string why = dir_problem(want, /*allow_root=*/true);
      if (why.empty()) {
        s.dir = want;
      } else if (::access(want.c_str(), F_OK) != 0 && errno == ENOENT) {
        s.debug("read-only cache directory {} does not exist", want);
      } else {
        s.warn("cache directory {} is not used ({})", want, why);
      }
    }
    if (!s.dir.empty()) have_primary = ::stat(s.dir.c_str(), &primary) == 0;
  }

  std::vector<struct stat> seen;
  if (have_primary) seen.push_back(primary);
  for (const std::string& raw : s.opt.readonly_dirs) {
    std::string d = normalize_dir(raw);
    if (d.empty()) continue;
    struct stat st {};
    std::string why = dir_problem(d, /*allow_root=*/true, &st);
    if (!why.empty()) {
      s.warn("read-only cache directory {} is skipped ({})", d, why);
      continue;
    }
    // The same directory twice (e.g. the cache dir also listed in
    // $LOWBIT_CACHE_PATH) would only be searched twice.
    bool dup = std::any_of(seen.begin(), seen.end(), [&](const struct stat& o) { return same_file(o, st); });
    if (dup) continue;
    seen.push_back(st);
    s.readonly_dirs.push_back(d);
  }
}

DiskStore::~DiskStore() = default;

bool DiskStore::writable() const { return impl_->writable; }

const std::string& DiskStore::dir() const { return impl_->dir; }

std::optional<CacheEntry> DiskStore::load(const Digest& base_key, int32_t nvrtc_version) {
  Impl& s = *impl_;
  std::vector<Impl::SearchDir> dirs = s.search_dirs();
  if (nvrtc_version > 0) {
    for (const Impl::SearchDir& d : dirs)
      if (auto e = s.load_file(*d.path, base_key, nvrtc_version, d.modifiable)) return e;
    return std::nullopt;
  }
  // Any version: every "<hex>-*.lbk" of every directory, highest version
  // first (then directory order); the first one that verifies wins.
  struct Candidate {
    int32_t version;
    size_t dir_index;
  };
  std::vector<Candidate> cands;
  std::string hex = to_hex(base_key);
  for (size_t i = 0; i < dirs.size(); ++i) {
    for (const std::string& n : read_dir_names(*dirs[i].path)) {
      if (!starts_with(n, hex)) continue;
      Digest k;
      int32_t v;
      if (parse_entry_name(n, &k, &v)) cands.push_back({v, i});
    }
  }
  std::stable_sort(cands.begin(), cands.end(),
                   [](const Candidate& a, const Candidate& b) { return a.version > b.version; });
  for (const Candidate& c : cands)
    if (auto e = s.load_file(*dirs[c.dir_index].path, base_key, c.version, dirs[c.dir_index].modifiable)) return e;
  return std::nullopt;
}

void DiskStore::store(const CacheEntry& entry) {
  Impl& s = *impl_;
  if (!s.writable) return;
  if (entry.nvrtc_version < 0) {
    s.debug("not storing a cache entry with NVRTC version {}", entry.nvrtc_version);
    return;
  }
  std::vector<uint8_t> bytes = serialize(entry);
  if (bytes.size() > kMaxEntryBytes) {
    s.warn_write_once("cache entry of {} bytes exceeds the {} byte limit; not stored", bytes.size(), kMaxEntryBytes);
    return;
  }
  const std::string name = file_name(entry.base_key, entry.nvrtc_version);
  const std::string final_path = join(s.dir, name);

  auto make_temp = [&](std::string* path) {
    *path = join(s.dir, fmt::format("{}{}.XXXXXX", kTempPrefix, name));
    int fd;
    do fd = ::mkostemp(path->data(), O_CLOEXEC);  // created 0600
    while (fd < 0 && errno == EINTR);
    return fd;
  };
  std::string tmp;
  int fd = make_temp(&tmp);
  int open_err = fd < 0 ? errno : 0;
  if (fd < 0 && open_err == ENOENT) {
    // The directory was removed while we ran (rm -rf of the cache): make it
    // again, with the same checks as at construction, and retry once.
    if (Impl::prepare_writable(s.dir).empty()) {
      fd = make_temp(&tmp);
      open_err = fd < 0 ? errno : 0;
    }
  }
  if (fd < 0) {
    s.warn_write_once("cannot write to cache directory {} ({}); new kernels are not cached on disk", s.dir,
                      errno_text(open_err));
    return;
  }

  int err = write_all(fd, bytes.data(), bytes.size());
  if (err == 0 && ::fchmod(fd, 0600) != 0) err = errno;  // mkostemp made it 0600; make sure
  if (err == 0 && fsync_retry(fd) != 0) err = errno;
  // close() after a successful fsync can still report a deferred error (NFS).
  // On Linux the descriptor is gone even on EINTR, so it is never retried.
  if (::close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), final_path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());  // never leave a partial file behind
    s.warn_write_once("cannot write cache entry {} ({}); new kernels are not cached on disk", final_path,
                      errno_text(err));
    return;
  }
  fsync_dir(s.dir);
  s.evict(s.opt.max_bytes, name);
}

void DiskStore::remove(const Digest& base_key, int32_t nvrtc_version) {
  Impl& s = *impl_;
  if (!s.writable) return;
  std::string path = join(s.dir, file_name(base_key, nvrtc_version));
  if (::unlink(path.c_str()) != 0) {
    if (errno != ENOENT) s.debug("cannot remove cache entry {}: {}", path, errno_text(errno));
    return;
  }
  fsync_dir(s.dir);
}

DiskStore::KeyLock& DiskStore::KeyLock::operator=(KeyLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

DiskStore::KeyLock::~KeyLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
}

DiskStore::KeyLock DiskStore::lock(const Digest& base_key) {
  Impl& s = *impl_;
  if (!s.writable) return KeyLock();
  std::string locks = join(s.dir, kLockDirName);
  std::string path = join(locks, to_hex(base_key) + std::string(kLockSuffix));
  // gc/clear may unlink a lock file while we wait on it; then we hold a lock
  // on a file nobody else will open. So after flock, check that the path
  // still names our file, and start over if not. A few rounds is plenty.
  for (int attempt = 0; attempt < 16; ++attempt) {
    int fd = open_retry(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == ENOENT) {
      // The locks directory, or the whole cache directory, was removed while
      // we ran (rm -rf of the cache): make them again, with the checks of
      // construction, as store() does, so that the lock still excludes other
      // processes (and the one write warning is not spent on this).
      if (Impl::prepare_writable(s.dir).empty())
        fd = open_retry(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
      else
        errno = ENOENT;
    }
    if (fd < 0) {
      s.warn_write_once("cannot open cache lock file {} ({}); processes may compile the same kernel twice",
                        path, errno_text(errno));
      return KeyLock();
    }
    if (flock_retry(fd, LOCK_EX) != 0) {
      s.warn_write_once("cannot lock {} ({}); processes may compile the same kernel twice", path,
                        errno_text(errno));
      ::close(fd);
      return KeyLock();
    }
    struct stat held {}, named {};
    if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &named) == 0 && same_file(held, named)) return KeyLock(fd);
    ::close(fd);
  }
  return KeyLock();
}

std::vector<CacheEntryInfo> DiskStore::list(bool verify_checksums) const {
  const Impl& s = *impl_;
  std::vector<CacheEntryInfo> out;
  if (s.dir.empty()) return out;
  std::vector<std::string> names = read_dir_names(s.dir);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    CacheEntryInfo info;
    if (!parse_entry_name(n, &info.base_key, &info.nvrtc_version)) continue;
    info.path = join(s.dir, n);
    int fd = open_retry(info.path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      if (errno == ENOENT) continue;  // removed since readdir
      info.problem = fmt::format("cannot open: {}", errno_text(errno));
      out.push_back(std::move(info));
      continue;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      info.problem = fmt::format("cannot stat: {}", errno_text(errno));
      ::close(fd);
      out.push_back(std::move(info));
      continue;
    }
    info.file_bytes = uint64_t(st.st_size);
    info.last_used_unix = int64_t(st.st_mtime);

    // Why the entry is not valid, or "". Without verify_checksums only the
    // header and the metadata are read (`lowbit cache ls` on a big cache).
    auto inspect = [&]() -> std::string {
      if (!file_trusted(st)) return "not a regular file owned by us or root, or writable by others";
      if (info.file_bytes > kMaxEntryBytes) return fmt::format("{} bytes, larger than any entry", info.file_bytes);
      if (verify_checksums) {
        std::vector<uint8_t> bytes(size_t(info.file_bytes));
        size_t got = 0;
        if (!read_exact(fd, bytes.data(), bytes.size(), 0, &got)) return fmt::format("cannot read: {}", errno_text(errno));
        std::string problem;
        std::optional<CacheEntry> e = parse(bytes.data(), got, &problem);
        if (!e) return problem;
        if (e->base_key != info.base_key || e->nvrtc_version != info.nvrtc_version)
          return fmt::format("its header says {}", file_name(e->base_key, e->nvrtc_version));
        info.metadata = std::move(e->metadata);
        return "";
      }
      uint8_t head[kHeaderSize];
      size_t want = size_t(std::min<uint64_t>(info.file_bytes, kHeaderSize));
      size_t got = 0;
      if (!read_exact(fd, head, want, 0, &got)) return fmt::format("cannot read: {}", errno_text(errno));
      Header h;
      std::string problem;
      // A file that shrank below a header since fstat is judged by what is left.
      if (!parse_header(head, got < kHeaderSize ? got : info.file_bytes, &h, &problem)) return problem;
      if (h.key != info.base_key || h.nvrtc_version != info.nvrtc_version)
        return fmt::format("its header says {}", file_name(h.key, h.nvrtc_version));
      // metadata_len <= file_bytes - kHeaderSize <= kMaxEntryBytes: checked above.
      std::string meta(size_t(h.metadata_len), '\0');
      if (!read_exact(fd, reinterpret_cast<uint8_t*>(meta.data()), meta.size(), kHeaderSize, &got) ||
          got != meta.size())
        return "cannot read the metadata";
      info.metadata = std::move(meta);
      return "";
    };
    info.problem = inspect();
    info.valid = info.problem.empty();
    ::close(fd);
    out.push_back(std::move(info));
  }
  return out;
}

uint64_t DiskStore::gc(uint64_t max_bytes) {
  Impl& s = *impl_;
  if (!s.writable) return 0;
  // Temp files of crashed writers.
  int64_t now = now_unix();
  for (const std::string& n : read_dir_names(s.dir)) {
    if (!starts_with(n, kTempPrefix)) continue;
    std::string p = join(s.dir, n);
    struct stat st {};
    if (::lstat(p.c_str(), &st) == 0 && now - int64_t(st.st_mtime) > kStaleTempSec) ::unlink(p.c_str());
  }
  uint64_t removed = s.evict(max_bytes, "");

  // Lock files of keys that have no entry any more. Only a lock we can take
  // without waiting is removed (nobody is compiling that key); a process that
  // opened it before the unlink notices in lock() and retries.
  std::string locks = join(s.dir, kLockDirName);
  std::unordered_set<std::string> keys_with_entries;
  for (const std::string& e : read_dir_names(s.dir)) {
    Digest k;
    int32_t v;
    if (parse_entry_name(e, &k, &v)) keys_with_entries.insert(e.substr(0, 64));
  }
  for (const std::string& n : read_dir_names(locks)) {
    if (!ends_with(n, kLockSuffix)) continue;
    if (keys_with_entries.count(n.substr(0, n.size() - kLockSuffix.size())) != 0) continue;
    std::string p = join(locks, n);
    int fd = open_retry(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    if (flock_retry(fd, LOCK_EX | LOCK_NB) == 0) ::unlink(p.c_str());
    ::close(fd);
  }
  return removed;
}

uint64_t DiskStore::clear() {
  Impl& s = *impl_;
  if (!s.writable) return 0;
  uint64_t removed = 0;
  for (const std::string& n : read_dir_names(s.dir)) {
    Digest k;
    int32_t v;
    bool entry = parse_entry_name(n, &k, &v);
    if (!entry && !starts_with(n, kTempPrefix)) continue;  // not ours: leave it
    if (::unlink(join(s.dir, n).c_str()) == 0 && entry) ++removed;
  }
  std::string locks = join(s.dir, kLockDirName);
  for (const std::string& n : read_dir_names(locks))
    if (ends_with(n, kLockSuffix)) ::unlink(join(locks, n).c_str());
  fsync_dir(s.dir);
  return removed;
}

DiskUsage DiskStore::usage() const {
  DiskUsage u;
  for (const Impl::FileInfo& f : impl_->scan_entries()) {
    ++u.entries;
    u.bytes += f.bytes;
  }
  return u;
}

uint64_t DiskStore::damaged_count() const { return impl_->damaged.load(std::memory_order_relaxed); }

std::optional<CacheEntry> DiskStore::parse(const uint8_t* data, size_t size, std::string* problem) {
  Header h;
  if (!parse_header(data, data == nullptr ? 0 : size, &h, problem)) return std::nullopt;
  if (std::memcmp(entry_checksum(data, size).data(), data + kOffChecksum, 32) != 0) {
    if (problem != nullptr) *problem = "checksum mismatch";
    return std::nullopt;
  }
  CacheEntry e;
  e.base_key = h.key;
  e.nvrtc_version = h.nvrtc_version;
  e.kind = h.kind;
  const uint8_t* meta = data + kHeaderSize;
  e.metadata.assign(reinterpret_cast<const char*>(meta), size_t(h.metadata_len));
  const uint8_t* payload = meta + h.metadata_len;
  e.payload.assign(payload, payload + h.payload_len);
  return e;
}

std::vector<uint8_t> DiskStore::serialize(const CacheEntry& entry) {
  std::vector<uint8_t> out(kHeaderSize + entry.metadata.size() + entry.payload.size(), 0);
  uint8_t* p = out.data();
  std::memcpy(p, kMagic, sizeof(kMagic));
  put_u32(p + kOffFormat, kCacheFormatVersion);
  put_u32(p + kOffNvrtc, uint32_t(std::max<int32_t>(entry.nvrtc_version, 0)));
  std::memcpy(p + kOffKey, entry.base_key.data(), entry.base_key.size());
  put_u64(p + kOffMetaLen, entry.metadata.size());
  put_u64(p + kOffPayloadLen, entry.payload.size());
  p[kOffKind] = uint8_t(entry.kind);
  if (!entry.metadata.empty()) std::memcpy(p + kHeaderSize, entry.metadata.data(), entry.metadata.size());
  if (!entry.payload.empty())
    std::memcpy(p + kHeaderSize + entry.metadata.size(), entry.payload.data(), entry.payload.size());
  Digest sum = entry_checksum(p, out.size());
  std::memcpy(p + kOffChecksum, sum.data(), sum.size());
  return out;
}

std::string DiskStore::file_name(const Digest& base_key, int32_t nvrtc_version) {
  return fmt::format("{}-{}{}", to_hex(base_key), nvrtc_version, kEntrySuffix);
}

// ---------------------------------------------------------------------------
// Environment

std::string default_cache_dir() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v == nullptr ? std::string() : std::string(v);
  };
  if (std::string d = env("LOWBIT_CACHE_DIR"); !d.empty()) return d;
  // The XDG base-directory spec says to ignore a relative $XDG_CACHE_HOME.
  if (std::string x = env("XDG_CACHE_HOME"); !x.empty() && x[0] == '/') return normalize_dir(x) + "/lowbit";
  if (std::string h = env("HOME"); !h.empty()) return normalize_dir(h) + "/.cache/lowbit";
  return "";
}

std::vector<std::string> readonly_cache_dirs_from_env() {
  std::vector<std::string> dirs;
  const char* v = std::getenv("LOWBIT_CACHE_PATH");
  if (v == nullptr) return dirs;
  std::string_view rest = v;
  while (true) {
    size_t colon = rest.find(':');
    std::string_view part = rest.substr(0, colon);
    if (!part.empty()) dirs.emplace_back(part);
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return dirs;
}

}  // namespace lowbit
