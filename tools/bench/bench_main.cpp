// The bench's entry point, shared by `lowbit-bench` (main.cpp) and `lowbit
// bench` (tools/lowbit/cmd_bench.cpp): options, the suite table, the device,
// the ceilings, a table per suite and the JSON document.
//
// Adding a suite: declare its function below and add one line to kSuites.
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/json.hpp"
#include "cuda/driver.hpp"
#include "harness.hpp"

namespace lowbit::bench {
void suite_quantize(const Options& o);
void suite_jit(const Options& o);
void suite_wq(const Options& o);
void suite_wq_prefill(const Options& o);
void suite_cublas(const Options& o);
int jit_child_disk_hit(const char* cache_dir);

namespace {

struct Suite {
  const char* name;
  void (*run)(const Options&);  // nullptr: not in this build yet
  const char* what;
};

// In the order they run by default (--suite picks and orders).
constexpr Suite kSuites[] = {
    {"quantize", &suite_quantize, "elementwise quantize / dequantize, against the copy ceiling"},
    {"wq-decode", &suite_wq, "weight-only W4 matmul at decode M, against the read ceiling and cuBLAS"},
    {"wq-prefill", &suite_wq_prefill, "weight-only W4 matmul at prefill M (tensor-core GEMM), against cuBLAS and the decode path"},
    {"cublas", &suite_cublas, "the cuBLAS f16/bf16 GEMM baseline itself on the model shapes, against the read ceiling"},
    {"jit", &suite_jit, "the JIT itself: cold compile, cache hits, launch overhead, prewarm -j 1 / -j N"},
};

const Suite* find_suite(std::string_view name) {
  for (const Suite& s : kSuites)
    if (name == s.name) return &s;
  return nullptr;
}

std::string g_self_command, g_cli;

void usage(std::FILE* out) {
  std::fprintf(out,
               "usage: lowbit bench [--suite NAME]... [--shapes 8b|70b|all] [--m 1,2,4,...] [--json FILE]\n"
               "                    [--quick] [--min-runs N] [--min-ms MS] [--list]\n"
               "       (also the standalone `lowbit-bench` with the same options)\n"
               "\n"
               "Runs benchmark suites on GPU 0: each point is timed with CUDA events (warm-up, then the\n"
               "median of at least --min-runs runs and --min-ms milliseconds, inputs rotated or L2 flushed\n"
               "so that L2 does not hold them, random data) and reported against the ceiling that bounds it,\n"
               "measured in the same run: a device-to-device copy (bytes read + written per second), a\n"
               "streaming read (bytes read per second), cuBLAS GEMM on the same shape (dlopen'ed).\n"
               "Prints a table after each suite; --json writes every point (rewritten after each suite).\n"
               "\n"
               "  --suite NAME    run this suite (repeatable, or comma-separated); default: all of them\n"
               "  --shapes WHICH  GEMM shapes: 8b (Llama-3-8B), 70b (Llama-3-70B), all (default)\n"
               "  --m LIST        M values, comma-separated (default: the suite's, e.g. 1,2,4,8 for decode)\n"
               "  --json FILE     write the JSON document\n"
               "  --quick         fewer shapes and runs (a smoke run)\n"
               "  --min-runs N    timed runs per point, at least (default 50; --quick 20)\n"
               "  --min-ms MS     timed milliseconds per point, at least (default 200; --quick 50)\n"
               "  --list          list the suites\n"
               "\n"
               "suites:\n");
  for (const Suite& s : kSuites) std::fprintf(out, "  %-11s %s%s\n", s.name, s.what, s.run ? "" : " [absent]");
  std::fprintf(out,
               "\n"
               "Exit status: 0 every suite ran, 1 a suite failed (the others still run; the JSON says which),\n"
               "2 bad usage or no GPU.\n");
}

std::string exe_path() {
  char buf[PATH_MAX] = {};
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

bool is_executable_file(const std::string& p) {
  struct stat st{};
  return !p.empty() && stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(p.c_str(), X_OK) == 0;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

bool parse_int_list(const std::string& text, std::vector<int64_t>* out) {
  out->clear();
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(pos, end - pos);
    char* stop = nullptr;
    const long long v = std::strtoll(item.c_str(), &stop, 10);
    if (item.empty() || *stop != 0 || v < 1 || v > (1ll << 31)) return false;
    out->push_back(v);
    pos = end + 1;
  }
  return !out->empty();
}

bool write_json(const std::string& path, const std::string& command, const Options& o,
                const std::vector<std::string>& requested, const std::vector<std::string>& ran,
                const std::vector<std::pair<std::string, std::string>>& failed, const std::vector<std::string>& absent) {
  auto list = [](const std::vector<std::string>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) s += ',';
      s += json_escape(v[i]);
    }
    return s + "]";
  };
  std::string failures = "{";
  for (size_t i = 0; i < failed.size(); ++i) {
    if (i) failures += ',';
    failures += json_escape(failed[i].first) + ":" + json_escape(failed[i].second);
  }
  failures += "}";
  std::string ms = "[";
  for (size_t i = 0; i < o.m_values.size(); ++i) {
    if (i) ms += ',';
    ms += std::to_string(o.m_values[i]);
  }
  ms += "]";
  const std::string options = JsonObject()
                                  .add("min_runs", int64_t(o.min_runs))
                                  .add("min_ms", o.min_ms)
                                  .add("warmup", int64_t(o.warmup))
                                  .add("shapes", o.shapes)
                                  .raw("m", ms)
                                  .add("quick", o.quick)
                                  .str();
  const std::string suites = JsonObject()
                                 .raw("requested", list(requested))
                                 .raw("ran", list(ran))
                                 .raw("failed", failures)
                                 .raw("absent", list(absent))
                                 .str();
  const std::string doc = JsonObject()
                              .add("schema", "lowbit-bench/1")
                              .add("command", command)
                              .raw("environment", environment_json())
                              .raw("ceilings", ceilings(o).json)
                              .raw("options", options)
                              .raw("suites", suites)
                              .raw("records", records_json())
                              .str();
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    std::perror(tmp.c_str());
    return false;
  }
  const bool ok = std::fwrite(doc.data(), 1, doc.size(), f) == doc.size() && std::fputc('\n', f) != EOF;
  if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::perror(path.c_str());
    return false;
  }
  return true;
}

}  // namespace

const std::string& self_command() { return g_self_command; }
const std::string& cli_executable() { return g_cli; }

int bench_main(int argc, char** argv, bool from_cli) {
  const char* prog = from_cli ? "lowbit bench" : "lowbit-bench";
  const std::string exe = exe_path();
  g_self_command = shell_quote(exe) + (from_cli ? " bench" : "");
  if (from_cli) {
    g_cli = exe;
  } else {
    const std::string dir = exe.substr(0, exe.rfind('/') + 1);
    for (const std::string& c : {std::string(std::getenv("LOWBIT_CLI") ? std::getenv("LOWBIT_CLI") : ""),
                                 dir + "lowbit", dir + "../lowbit"})
      if (is_executable_file(c)) {
        g_cli = c;
        break;
      }
  }
  if (argc == 3 && std::strcmp(argv[1], "--jit-child") == 0) return jit_child_disk_hit(argv[2]);

  Options o;
  std::vector<std::string> requested;
  std::string json_path;
  bool runs_given = false, ms_given = false;
  std::string command = prog;
  for (int i = 1; i < argc; ++i) command += " " + std::string(argv[i]);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i], value;
    const size_t eq = a.find('=');
    const bool has_eq = a.rfind("--", 0) == 0 && eq != std::string::npos;
    if (has_eq) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    }
    auto take = [&](std::string* out) {
      if (has_eq) {
        *out = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    auto bad = [&](const std::string& msg) {
      std::fprintf(stderr, "%s: %s (see %s --help)\n", prog, msg.c_str(), prog);
      return 2;
    };
    if (a == "--help" || a == "-h") {
      usage(stdout);
      return 0;
    } else if (a == "--list") {
      for (const Suite& s : kSuites) std::printf("%-11s %s%s\n", s.name, s.what, s.run ? "" : " [absent]");
      return 0;
    } else if (a == "--quick" && !has_eq) {
      o.quick = true;
    } else if (a == "--suite") {
      std::string v;
      if (!take(&v)) return bad("--suite needs a name");
      size_t pos = 0;
      while (pos <= v.size()) {
        size_t end = v.find(',', pos);
        if (end == std::string::npos) end = v.size();
        const std::string name = v.substr(pos, end - pos);
        if (!find_suite(name)) return bad("unknown suite '" + name + "'");
        requested.push_back(name);
        pos = end + 1;
      }
    } else if (a == "--shapes") {
      if (!take(&o.shapes) || (o.shapes != "8b" && o.shapes != "70b" && o.shapes != "all"))
        return bad("--shapes takes 8b, 70b or all");
    } else if (a == "--m") {
      std::string v;
      if (!take(&v) || !parse_int_list(v, &o.m_values)) return bad("--m takes positive integers, e.g. 1,2,4,8");
    } else if (a == "--json") {
      if (!take(&json_path) || json_path.empty()) return bad("--json needs a file name");
    } else if (a == "--min-runs") {
      std::string v;
      char* stop = nullptr;
      if (!take(&v) || (o.min_runs = int(std::strtol(v.c_str(), &stop, 10))) < 1 || *stop != 0 || v.empty())
        return bad("--min-runs takes a positive integer");
      runs_given = true;
    } else if (a == "--min-ms") {
      std::string v;
      char* stop = nullptr;
      if (!take(&v) || (o.min_ms = std::strtod(v.c_str(), &stop)) < 0 || *stop != 0 || v.empty())
        return bad("--min-ms takes a number of milliseconds");
      ms_given = true;
    } else {
      return bad("unknown option " + std::string(argv[i]));
    }
  }
  if (o.quick && !runs_given) o.min_runs = 20;
  if (o.quick && !ms_given) o.min_ms = 50;
  if (requested.empty())
    for (const Suite& s : kSuites)
      if (s.run) requested.push_back(s.name);

  std::vector<std::string> ran, absent;
  std::vector<std::pair<std::string, std::string>> failed;
  try {
    const DriverApi& api = require_driver();
    Device& d = device();
    cu_check(api.DeviceGet(&d.device, 0), "cuDeviceGet");
    cu_check(api.DevicePrimaryCtxRetain(&d.context, d.device), "cuDevicePrimaryCtxRetain");
    cu_check(api.CtxSetCurrent(d.context), "cuCtxSetCurrent");
    cu_check(api.StreamCreate(&d.stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    api.DeviceGetAttribute(&d.sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, d.device);
    int l2 = 0;
    api.DeviceGetAttribute(&l2, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, d.device);
    d.l2_bytes = size_t(l2);
    char name[256] = {};
    api.DeviceGetName(name, 255, d.device);
    d.name = name;
    note_start();
    std::printf("%s on %s (%d SMs, L2 %.0f MiB), CUDA driver %d, lowbit %s\n", prog, name, d.sm_count,
                d.l2_bytes / 1048576.0, api.version, lowbit_version_string());
    ceilings(o);
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", prog, e.what());
    return e.status() == LOWBIT_NO_DEVICE ? 2 : 1;
  }
  for (const std::string& name : requested) {
    const Suite* s = find_suite(name);
    if (s->run == nullptr) {
      std::printf("\n[%s: absent from this build (not implemented yet); skipped]\n", name.c_str());
      absent.push_back(name);
      continue;
    }
    std::printf("\n=== suite %s: %s ===\n", s->name, s->what);
    std::fflush(stdout);
    try {
      s->run(o);
      ran.push_back(name);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: suite %s failed: %s\n", prog, name.c_str(), e.what());
      failed.emplace_back(name, e.what());
    }
    print_table(name);
    if (!json_path.empty()) write_json(json_path, command, o, requested, ran, failed, absent);
  }
  if (!json_path.empty()) {
    if (!write_json(json_path, command, o, requested, ran, failed, absent)) return 1;
    std::printf("\nwrote %zu records to %s\n", record_count(), json_path.c_str());
  }
  return failed.empty() ? 0 : 1;
}

}  // namespace lowbit::bench
