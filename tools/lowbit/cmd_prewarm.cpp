// `lowbit prewarm`: creates the plan of every manifest line, which compiles
// its kernels into the disk cache, on N threads.
//
// Counting (the summary line): each manifest line is one "kernel" request. A
// line is "compiled" if creating its plan compiled at least one kernel, else
// "already cached": its kernels came from the disk cache, from an earlier
// line of the same run (the plan's describe JSON says "memory"), or it needs
// none (a zero-sized problem). So over any number of concurrent runs on one
// cache directory, the "compiled" counts add up to the distinct kernels.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "json_read.hpp"
#include "manifest.hpp"
#include "progress.hpp"

namespace lowbit::cli {

namespace {

constexpr size_t kMaxManifestBytes = 256u << 20;

// Reads a manifest: a file, "-" for stdin, "" for the built-in default.
bool read_manifest(const std::string& path, std::string* text, std::string* error) {
  if (path.empty()) {
    *text = default_manifest_text();
    return true;
  }
  std::istream* in = &std::cin;
  std::ifstream file;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) {
      *error = fmt::format("cannot open manifest {}", path);
      return false;
    }
    in = &file;
  }
  char buf[65536];
  while (in->read(buf, sizeof(buf)) || in->gcount() > 0) {
    text->append(buf, size_t(in->gcount()));
    if (text->size() > kMaxManifestBytes) {
      *error = fmt::format("manifest {} is larger than {} bytes", path == "-" ? "<stdin>" : path, kMaxManifestBytes);
      return false;
    }
  }
  if (in->bad()) {
    *error = fmt::format("cannot read manifest {}", path == "-" ? "<stdin>" : path);
    return false;
  }
  return true;
}

struct KernelUse {
  std::string name;
  std::string cache;  // "compiled" | "disk" | "memory"
};

struct Outcome {
  Progress::Result result = Progress::Result::Failed;
  double ms = 0;
  std::vector<KernelUse> kernels;
  lowbit_status status = LOWBIT_OK;
  std::string message;
};

// The kernels of a plan and where each came from, from lowbit_plan_describe.
bool describe_kernels(const lowbit_plan* plan, std::vector<KernelUse>* out, std::string* error) {
  size_t length = 0;
  lowbit_status s = lowbit_plan_describe(plan, nullptr, 0, &length);
  std::string text(length + 1, '\0');
  if (s == LOWBIT_OK) s = lowbit_plan_describe(plan, text.data(), text.size(), &length);
  if (s != LOWBIT_OK) {
    *error = last_error(s);
    return false;
  }
  text.resize(length);
  JsonValue doc;
  if (!parse_json(text, &doc, error)) return false;
  const JsonValue* kernels = doc.get("kernels");
  if (kernels == nullptr || kernels->type != JsonValue::Type::Array) {
    *error = "the plan description has no kernels array";
    return false;
  }
  for (const JsonValue& k : kernels->items) out->push_back({k.get_string("name", "?"), k.get_string("cache", "?")});
  return true;
}

Outcome prewarm_one(lowbit_context* ctx, const ManifestItem& item) {
  Outcome o;
  const auto start = std::chrono::steady_clock::now();
  const lowbit_op_desc op = item.op();
  lowbit_plan* plan = nullptr;
  o.status = lowbit_plan_create(ctx, &op, &plan);
  o.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  if (o.status != LOWBIT_OK) {
    o.message = lowbit_last_error_message();
    return o;
  }
  std::string error;
  if (!describe_kernels(plan, &o.kernels, &error)) {
    o.status = LOWBIT_INTERNAL;
    o.message = "cannot read the plan description: " + error;
  } else {
    bool compiled = false;
    for (const KernelUse& k : o.kernels) compiled = compiled || k.cache == "compiled";
    o.result = compiled ? Progress::Result::Compiled : Progress::Result::Cached;
  }
  lowbit_plan_destroy(plan);
  return o;
}

std::string label_of(const ManifestItem& item, const Outcome& o) {
  if (o.result == Progress::Result::Failed || o.kernels.empty()) return fmt::format("line {}", item.line);
  std::string names;
  for (const KernelUse& k : o.kernels) names += (names.empty() ? "" : ", ") + k.name;
  return names;
}

std::string detail_of(const Outcome& o) {
  if (o.result == Progress::Result::Failed) return "failed: " + status_name(o.status);
  if (o.kernels.empty()) return "nothing to compile";
  if (o.result == Progress::Result::Compiled) return fmt::format("compiled {:.0f} ms", o.ms);
  bool disk = false;
  for (const KernelUse& k : o.kernels) disk = disk || k.cache == "disk";
  return fmt::format("cached ({}) {:.0f} ms", disk ? "disk" : "memory", o.ms);
}

void log_to_progress(void* user, int32_t level, const char* message) {
  static constexpr const char* kLevels[] = {"error", "warn", "info", "debug"};
  const char* name = level >= 0 && level <= 3 ? kLevels[level] : "log";
  static_cast<Progress*>(user)->message(fmt::format("lowbit: {}: {}", name, message));
}

// Creates the context to compile in: the --arch target offline, else GPU 0.
lowbit_status make_context(const std::string& arch, const std::string& cache_dir, Progress* progress,
                           lowbit_context** ctx) {
  lowbit_context_options o;
  lowbit_context_options_init(&o);
  o.cache_dir = cache_dir.empty() ? nullptr : cache_dir.c_str();
  o.log_callback = &log_to_progress;
  o.log_user_data = progress;
  if (!arch.empty()) return lowbit_context_create_offline(arch.c_str(), &o, ctx);
  return lowbit_context_create_device(0, &o, ctx);
}

int run_prewarm(Args& args) {
  std::string manifest_path, arch, cache_dir, jobs_text;
  bool quiet = false, print_default = false, have_manifest = false;
  while (!args.done()) {
    if (args.flag("--quiet") || args.flag("-q")) quiet = true;
    else if (args.flag("--print-default")) print_default = true;
    else if (args.option("--arch", &arch)) {}
    else if (args.option("--cache-dir", &cache_dir)) {}
    else if (args.option("--jobs", &jobs_text) || args.option("-j", &jobs_text)) {}
    else if (args.at_option()) return usage_error(kPrewarmCommand, "unknown option " + args.current());
    else if (have_manifest) return usage_error(kPrewarmCommand, "more than one manifest given: " + args.current());
    else {
      manifest_path = args.take();
      have_manifest = true;
    }
  }
  if (!args.error().empty()) return usage_error(kPrewarmCommand, args.error());
  if (have_manifest && manifest_path.empty()) return usage_error(kPrewarmCommand, "empty manifest path");
  uint64_t jobs = 0;
  if (!jobs_text.empty() && !parse_uint(jobs_text, 0, 1024, &jobs))
    return usage_error(kPrewarmCommand, fmt::format("-j {}: expected a number of threads from 1 to 1024", jobs_text));
  if (jobs == 0) jobs = std::max(1u, std::thread::hardware_concurrency());

  if (print_default) {
    std::fputs(default_manifest_text().c_str(), stdout);
    return kExitOk;
  }

  std::string text, error;
  if (!read_manifest(manifest_path, &text, &error)) {
    print_error(kPrewarmCommand, error);
    return kExitFailed;
  }
  std::vector<ManifestItem> items;
  if (!parse_manifest(text, &items, &error)) {
    const std::string source = manifest_path.empty() ? "<default manifest>" : manifest_path == "-" ? "<stdin>" : manifest_path;
    print_error(kPrewarmCommand, fmt::format("{}: {}", source, error));
    return kExitFailed;
  }

  Progress progress(items.size(), Progress::detect(quiet));
  lowbit_context* ctx = nullptr;
  lowbit_status s = make_context(arch, cache_dir, &progress, &ctx);
  if (s != LOWBIT_OK) {
    progress.finish();
    if (arch.empty() && s == LOWBIT_NO_DEVICE)
      print_error(kPrewarmCommand, fmt::format("no CUDA GPU to compile for ({}).\nPass --arch with the target "
                                               "architecture to compile offline, e.g. --arch sm_90a (H100/H200), "
                                               "--arch sm_89 (L4/L40), --arch sm_80 (A100).",
                                               lowbit_last_error_message()));
    else
      print_error(kPrewarmCommand, last_error(s));
    return s == LOWBIT_INVALID_ARGUMENT || s == LOWBIT_UNSUPPORTED ? kExitUsage : kExitFailed;
  }
  lowbit_device_info info{};
  info.struct_size = sizeof(info);
  if (lowbit_context_get_info(ctx, &info) == LOWBIT_OK && info.cache_dir[0] == '\0') {
    progress.finish();
    print_error(kPrewarmCommand, "no usable cache directory (see the warning above): compiled kernels would not be "
                                 "saved. Pass --cache-dir DIR or set LOWBIT_CACHE_DIR.");
    lowbit_context_destroy(ctx);
    return kExitFailed;
  }

  const auto start = std::chrono::steady_clock::now();
  std::vector<Outcome> outcomes(items.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < items.size(); i = next++) {
      try {
        outcomes[i] = prewarm_one(ctx, items[i]);
      } catch (const std::exception& e) {  // host allocation failures in the tool itself
        outcomes[i].status = LOWBIT_OUT_OF_MEMORY;
        outcomes[i].message = e.what();
      }
      progress.item(outcomes[i].result, label_of(items[i], outcomes[i]), detail_of(outcomes[i]));
    }
  };
  const size_t threads = std::min<size_t>(jobs, std::max<size_t>(items.size(), 1));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (std::thread& t : pool) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  progress.finish();
  lowbit_context_destroy(ctx);

  size_t compiled = 0, cached = 0, failed = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const Outcome& o = outcomes[i];
    if (o.result == Progress::Result::Compiled) ++compiled;
    else if (o.result == Progress::Result::Cached) ++cached;
    else {
      ++failed;
      print_error(kPrewarmCommand, fmt::format("line {} ({}): {}: {}", items[i].line, items[i].text,
                                               status_name(o.status), o.message));
    }
  }
  std::printf("prewarm: %zu kernels: %zu compiled, %zu already cached, %zu failed in %.2f s\n", items.size(), compiled,
              cached, failed, seconds);
  return failed > 0 ? kExitFailed : kExitOk;
}

}  // namespace

const Command kPrewarmCommand = {
    "prewarm",
    "compile the kernels of a manifest into the cache",
    "usage: lowbit prewarm [MANIFEST] [--arch sm_XX] [-j N] [--cache-dir DIR] [--quiet]\n"
    "       lowbit prewarm --print-default\n"
    "\n"
    "Creates the plan of every request in MANIFEST (a file, or - for stdin; default:\n"
    "the built-in manifest, Llama-3-8B linear layers across every op lowbit\n"
    "implements), compiling each kernel that is not cached yet into the cache.\n"
    "\n"
    "  --arch sm_XX     compile for this target offline (no GPU needed), e.g. sm_90a;\n"
    "                   default: GPU 0 (an error without a GPU)\n"
    "  -j, --jobs N     compile on N threads (default: the number of CPUs)\n"
    "  --cache-dir DIR  the cache directory (default: $LOWBIT_CACHE_DIR, else\n"
    "                   $XDG_CACHE_HOME/lowbit, else ~/.cache/lowbit)\n"
    "  -q, --quiet      no progress output (failures and the summary still print)\n"
    "  --print-default  print the built-in manifest and exit\n"
    "\n"
    "Manifest: one request per line, '#' comments, blank lines ignored. A request is a\n"
    "family name and key=value tokens; omitted keys keep the descriptor defaults:\n"
    "  quantize op=quantize scope=per_tensor x=bf16 q=s8 scale=f32 dims=4096x4096\n"
    "quantize keys: op scope x q scale dims stride axis group qmin qmax align symmetric.\n"
    "\n"
    "Progress goes to stderr (a bar on a terminal, else one line per request); the\n"
    "summary to stdout:\n"
    "  prewarm: N kernels: C compiled, D already cached, F failed in T.TT s\n"
    "Exit status: 0 all succeeded, 1 a request failed (each is listed) or the\n"
    "manifest is malformed, 2 bad usage.\n",
    &run_prewarm,
};

}  // namespace lowbit::cli
