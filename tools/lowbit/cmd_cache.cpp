// `lowbit cache ls|verify|gc|clear`: maintenance of the on-disk kernel cache
// through DiskStore (src/cache/disk_store.hpp). Read-only actions (ls,
// verify) never create or change the directory.
#include <sys/stat.h>

#include <cstdio>
#include <ctime>
#include <string>

#include <fmt/format.h>

#include "cache/disk_store.hpp"
#include "commands.hpp"
#include "common/json.hpp"
#include "common/log.hpp"
#include "json_read.hpp"

namespace lowbit::cli {

namespace {

bool dir_exists(const std::string& dir) {
  struct stat st {};
  return ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string format_time(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  char buf[32] = "?";
  if (::localtime_r(&t, &tm) != nullptr) std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string entry_key(const CacheEntryInfo& e) {
  return fmt::format("{}-{}", to_hex(e.base_key), e.nvrtc_version);
}

// A store on `dir`. Writable stores create the directory; their warnings
// (an untrusted or unwritable directory) go to stderr.
DiskStore open_store(const std::string& dir, bool writable, const Logger& logger) {
  DiskStore::Options o;
  o.dir = dir;
  o.writable = writable;
  o.max_bytes = UINT64_MAX;  // never evict as a side effect
  o.logger = &logger;
  return DiskStore(std::move(o));
}

// A store that exists but was refused (owned by another user, writable by
// others) must not pass for an empty cache.
bool refused(const DiskStore& store, const std::string& dir) {
  if (!store.dir().empty() || !dir_exists(dir)) return false;
  print_error(kCacheCommand, fmt::format("cannot use {} (see the warning above)", dir));
  return true;
}

int cache_ls(const std::string& dir, bool json) {
  const Logger logger;
  DiskStore store = open_store(dir, false, logger);
  if (refused(store, dir)) return kExitFailed;
  const std::vector<CacheEntryInfo> entries = store.list(false);
  uint64_t bytes = 0;
  for (const CacheEntryInfo& e : entries) bytes += e.file_bytes;
  if (json) {
    std::string out = "[";
    for (size_t i = 0; i < entries.size(); ++i) {
      const CacheEntryInfo& e = entries[i];
      JsonValue meta;
      std::string ignored;
      const bool meta_ok = e.valid && parse_json(e.metadata, &meta, &ignored);
      JsonObject o;
      o.add("key", entry_key(e))
          .add("path", e.path)
          .add("bytes", e.file_bytes)
          .add("last_used", e.last_used_unix)
          .add("valid", e.valid)
          .add("problem", e.problem)
          .add("kernel", meta_ok ? meta.get_string("kernel") : std::string())
          .add("arch", meta_ok ? meta.get_string("arch") : std::string())
          .raw("metadata", meta_ok ? e.metadata : std::string("null"));
      if (i > 0) out += ',';
      out += o.str();
    }
    std::printf("%s]\n", out.c_str());
    return kExitOk;
  }
  if (!entries.empty()) std::printf("%-16s  %10s  %-19s  %-7s  %s\n", "KEY", "SIZE", "LAST USED", "ARCH", "KERNEL");
  for (const CacheEntryInfo& e : entries) {
    JsonValue meta;
    std::string ignored;
    std::string kernel = "-", arch = "-";
    if (!e.valid) kernel = "damaged: " + e.problem;
    else if (parse_json(e.metadata, &meta, &ignored)) {
      kernel = meta.get_string("kernel", "?");
      arch = meta.get_string("arch", "?");
    }
    std::printf("%-16s  %10s  %-19s  %-7s  %s\n", to_hex(e.base_key).substr(0, 16).c_str(),
                format_bytes(e.file_bytes).c_str(), format_time(e.last_used_unix).c_str(), arch.c_str(),
                kernel.c_str());
  }
  std::printf("ls: %zu entries, %s in %s\n", entries.size(), format_bytes(bytes).c_str(), dir.c_str());
  return kExitOk;
}

int cache_verify(const std::string& dir, bool remove) {
  const Logger logger;
  const bool exists = dir_exists(dir);
  DiskStore store = open_store(dir, remove && exists, logger);
  if (refused(store, dir)) return kExitFailed;
  const std::vector<CacheEntryInfo> entries = store.list(true);
  size_t damaged = 0;
  for (const CacheEntryInfo& e : entries) {
    if (e.valid) continue;
    ++damaged;
    if (remove) store.remove(e.base_key, e.nvrtc_version);
    std::printf("damaged: %s: %s%s\n", e.path.c_str(), e.problem.c_str(), remove ? " (removed)" : "");
  }
  std::printf("verify: %zu entries, %zu damaged%s\n", entries.size(), damaged,
              remove && damaged > 0 ? fmt::format(", {} removed", damaged).c_str() : "");
  return damaged > 0 ? kExitFailed : kExitOk;
}

int cache_gc(const std::string& dir, uint64_t max_bytes) {
  if (!dir_exists(dir)) {
    std::printf("gc: removed 0 entries; %s does not exist\n", dir.c_str());
    return kExitOk;
  }
  const Logger logger;
  DiskStore store = open_store(dir, true, logger);
  if (!store.writable()) {
    print_error(kCacheCommand, fmt::format("cannot modify {} (see the warning above)", dir));
    return kExitFailed;
  }
  const DiskUsage before = store.usage();
  const uint64_t removed = store.gc(max_bytes);
  const DiskUsage after = store.usage();
  std::printf("gc: removed %llu entries (%s); cache now %llu entries, %s (limit %s)\n",
              static_cast<unsigned long long>(removed),
              format_bytes(before.bytes > after.bytes ? before.bytes - after.bytes : 0).c_str(),
              static_cast<unsigned long long>(after.entries), format_bytes(after.bytes).c_str(),
              format_bytes(max_bytes).c_str());
  return kExitOk;
}

int cache_clear(const std::string& dir) {
  if (!dir_exists(dir)) {
    std::printf("clear: removed 0 entries; %s does not exist\n", dir.c_str());
    return kExitOk;
  }
  const Logger logger;
  DiskStore store = open_store(dir, true, logger);
  if (!store.writable()) {
    print_error(kCacheCommand, fmt::format("cannot modify {} (see the warning above)", dir));
    return kExitFailed;
  }
  const uint64_t removed = store.clear();
  std::printf("clear: removed %llu entries from %s\n", static_cast<unsigned long long>(removed), dir.c_str());
  return kExitOk;
}

int run_cache(Args& args) {
  std::string action, cache_dir, max_bytes_text;
  bool json = false, remove = false, have_max = false;
  while (!args.done()) {
    if (args.flag("--json")) json = true;
    else if (args.flag("--remove")) remove = true;
    else if (args.option("--cache-dir", &cache_dir)) {}
    else if (args.option("--max-bytes", &max_bytes_text)) have_max = true;
    else if (args.at_option()) return usage_error(kCacheCommand, "unknown option " + args.current());
    else if (!action.empty()) return usage_error(kCacheCommand, "unexpected argument " + args.current());
    else action = args.take();
  }
  if (!args.error().empty()) return usage_error(kCacheCommand, args.error());
  if (action.empty()) return usage_error(kCacheCommand, "missing action (ls, verify, gc or clear)");
  if (action != "ls" && action != "verify" && action != "gc" && action != "clear")
    return usage_error(kCacheCommand, fmt::format("unknown action '{}'", action));
  if (json && action != "ls") return usage_error(kCacheCommand, "--json applies to ls only");
  if (remove && action != "verify") return usage_error(kCacheCommand, "--remove applies to verify only");
  if (have_max && action != "gc") return usage_error(kCacheCommand, "--max-bytes applies to gc only");
  uint64_t max_bytes = 0;
  if (action == "gc") {
    if (!have_max) return usage_error(kCacheCommand, "gc needs --max-bytes SIZE (e.g. 512M, 2G)");
    if (!parse_size(max_bytes_text, &max_bytes))
      return usage_error(kCacheCommand, fmt::format("--max-bytes {}: expected a size like 1048576, 512M or 2G",
                                                    max_bytes_text));
  }
  const std::string dir = resolve_cache_dir(cache_dir);
  if (dir.empty()) {
    print_error(kCacheCommand, "no cache directory: pass --cache-dir DIR, or set LOWBIT_CACHE_DIR or HOME");
    return kExitFailed;
  }
  if (action == "ls") return cache_ls(dir, json);
  if (action == "verify") return cache_verify(dir, remove);
  if (action == "gc") return cache_gc(dir, max_bytes);
  return cache_clear(dir);
}

}  // namespace

const Command kCacheCommand = {
    "cache",
    "list, verify, shrink or clear the kernel cache",
    "usage: lowbit cache ls [--json] [--cache-dir DIR]\n"
    "       lowbit cache verify [--remove] [--cache-dir DIR]\n"
    "       lowbit cache gc --max-bytes SIZE [--cache-dir DIR]\n"
    "       lowbit cache clear [--cache-dir DIR]\n"
    "\n"
    "  ls       list the entries: key, size, last use, target arch, kernel\n"
    "  verify   check every entry's checksum: \"verify: N entries, M damaged\";\n"
    "           exit 1 if any is damaged (--remove also deletes them)\n"
    "  gc       evict least-recently-used entries until the cache holds at most\n"
    "           SIZE bytes (suffixes K, M, G, T: powers of 1024; e.g. 512M, 2G)\n"
    "  clear    remove every entry\n"
    "\n"
    "  --cache-dir DIR  the cache directory (default: $LOWBIT_CACHE_DIR, else\n"
    "                   $XDG_CACHE_HOME/lowbit, else ~/.cache/lowbit)\n",
    &run_cache,
};

}  // namespace lowbit::cli
