/*
 * Loads liblowbit.so with dlopen by path and calls it: no link-time
 * dependency on lowbit, only its header for the types. This is how a plugin
 * host or another language runtime can use lowbit.
 *
 *   cc -I<prefix>/include dlopen_example.c -ldl -o dlopen_example
 *   ./dlopen_example /path/to/liblowbit.so [cache_dir]
 *
 * The path defaults to $LOWBIT_LIBRARY, then "liblowbit.so.0" (the system
 * search path). The cache directory defaults to $LOWBIT_CACHE_DIR, else
 * lowbit's own default. It creates an offline sm_90a context, compiles one
 * quantize plan into the cache, checks the errors of bad input, and prints
 * "N passed, N failed, N skipped".
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit/lowbit.h"

/* The entry points used here, looked up by name. */
struct lowbit_api {
  uint32_t (*version_number)(void);
  const char* (*version_string)(void);
  const char* (*status_string)(lowbit_status);
  size_t (*copy_last_error_message)(char*, size_t);
  void (*context_options_init)(lowbit_context_options*);
  lowbit_status (*context_create_offline)(const char*, const lowbit_context_options*, lowbit_context**);
  lowbit_status (*context_create_device)(int32_t, const lowbit_context_options*, lowbit_context**);
  void (*context_destroy)(lowbit_context*);
  void (*quantize_desc_init)(lowbit_quantize_desc*);
  lowbit_status (*quantize_plan_create)(lowbit_context*, const lowbit_quantize_desc*, lowbit_plan**);
  lowbit_status (*plan_describe)(const lowbit_plan*, char*, size_t, size_t*);
  lowbit_status (*plan_run)(const lowbit_plan*, const lowbit_arg*, size_t, uint64_t, size_t, void*);
  void (*plan_destroy)(lowbit_plan*);
};

static int passed, failed, skipped;

static void check(int ok, const char* what) {
  printf("%s %s\n", ok ? "ok     " : "FAILED ", what);
  if (ok)
    ++passed;
  else
    ++failed;
}

/* dlsym into a function pointer without the object/function pointer cast warning. */
static int load(void* lib, const char* name, void* slot, size_t size) {
  void* sym = dlsym(lib, name);
  if (sym == NULL) {
    fprintf(stderr, "dlopen_example: %s is missing: %s\n", name, dlerror());
    return 0;
  }
  memcpy(slot, &sym, size);
  return 1;
}
#define LOAD(field) ok &= load(lib, "lowbit_" #field, &api->field, sizeof api->field)

static int load_api(void* lib, struct lowbit_api* api) {
  int ok = 1;
  LOAD(version_number);
  LOAD(version_string);
  LOAD(status_string);
  LOAD(copy_last_error_message);
  LOAD(context_options_init);
  LOAD(context_create_offline);
  LOAD(context_create_device);
  LOAD(context_destroy);
  LOAD(quantize_desc_init);
  LOAD(quantize_plan_create);
  LOAD(plan_describe);
  LOAD(plan_run);
  LOAD(plan_destroy);
  return ok;
}

int main(int argc, char** argv) {
  const char* path = argc > 1 ? argv[1] : getenv("LOWBIT_LIBRARY");
  if (path == NULL || *path == '\0') path = "liblowbit.so.0";
  const char* cache_dir = argc > 2 ? argv[2] : NULL; /* NULL: $LOWBIT_CACHE_DIR or the default */

  /* --- snippet begin --- */
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) {
    fprintf(stderr, "dlopen_example: cannot load %s: %s\n", path, dlerror());
    return 2;
  }
  struct lowbit_api api;
  if (!load_api(lib, &api)) return 2;

  /* Version: the loaded library against the header we were compiled with. */
  printf("loaded %s: lowbit %s\n", path, api.version_string());
  check(api.version_number() == LOWBIT_VERSION_NUMBER, "version_number matches the header");
  check(strcmp(api.version_string(), LOWBIT_VERSION_STRING) == 0, "version_string matches the header");
  check(strncmp(api.status_string(LOWBIT_NO_DEVICE), "LOWBIT_NO_DEVICE", 16) == 0, "status_string");

  /* An offline context for sm_90a: no GPU needed. */
  lowbit_context_options options;
  api.context_options_init(&options);
  options.cache_dir = cache_dir;
  lowbit_context* ctx = NULL;
  lowbit_status s = api.context_create_offline("sm_90a", &options, &ctx);
  check(s == LOWBIT_OK && ctx != NULL, "offline context for sm_90a");

  /* One per-tensor quantize plan: compiled with NVRTC into the cache. */
  lowbit_quantize_desc desc;
  api.quantize_desc_init(&desc);
  desc.x_dtype = LOWBIT_DTYPE_BF16;
  desc.q_dtype = LOWBIT_DTYPE_S8;
  desc.rank = 2;
  desc.dims[0] = 64;
  desc.dims[1] = 4096;
  lowbit_plan* plan = NULL;
  s = api.quantize_plan_create(ctx, &desc, &plan);
  if (s != LOWBIT_OK) {
    char msg[1024];
    api.copy_last_error_message(msg, sizeof msg);
    fprintf(stderr, "plan: %s: %s\n", api.status_string(s), msg);
  }
  check(s == LOWBIT_OK && plan != NULL, "quantize plan (bf16 -> s8, per tensor)");
  /* --- snippet end --- */
  if (plan != NULL) {
    size_t length = 0;
    s = api.plan_describe(plan, NULL, 0, &length);
    char* json = malloc(length + 1);
    s = s == LOWBIT_OK && json != NULL ? api.plan_describe(plan, json, length + 1, NULL) : s;
    check(s == LOWBIT_OK && json != NULL && strstr(json, "\"quantize\"") != NULL, "plan_describe");
    if (json != NULL) printf("plan: %.120s...\n", json);
    free(json);

    /* Running needs a GPU: an offline plan says NO_DEVICE. */
    lowbit_arg args[3] = {{LOWBIT_ARG_X, 0, 256}, {LOWBIT_ARG_Q, 0, 512}, {LOWBIT_ARG_SCALE, 0, 1024}};
    check(api.plan_run(plan, args, 3, 0, 0, NULL) == LOWBIT_NO_DEVICE, "run on an offline plan is NO_DEVICE");
  }

  /* Bad input is an error with a message, never a crash. */
  desc.rank = 0;
  lowbit_plan* bad = NULL;
  s = api.quantize_plan_create(ctx, &desc, &bad);
  char msg[256];
  size_t full = api.copy_last_error_message(msg, sizeof msg);
  check(s == LOWBIT_INVALID_PROBLEM && bad == NULL && full > 0 && strstr(msg, "rank") != NULL,
        "rank 0 is INVALID_PROBLEM with a message");
  lowbit_context* none = NULL;
  check(api.context_create_offline(NULL, NULL, &none) == LOWBIT_INVALID_ARGUMENT && none == NULL,
        "NULL arch is INVALID_ARGUMENT");

  /* A device context: NO_DEVICE on a machine without a GPU. */
  lowbit_context* dev = NULL;
  s = api.context_create_device(0, NULL, &dev);
  if (s == LOWBIT_OK) {
    printf("SKIPPED no_device: a GPU is present\n");
    ++skipped;
    api.context_destroy(dev);
  } else {
    check(s == LOWBIT_NO_DEVICE, "device context without a GPU is NO_DEVICE");
  }

  api.plan_destroy(plan);
  api.context_destroy(ctx);
  api.plan_destroy(NULL); /* no-ops */
  api.context_destroy(NULL);
  dlclose(lib);

  printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
  /* Under `meson test`, tools/run_tests.sh totals these lines. */
  const char* summary = getenv("LOWBIT_TEST_SUMMARY");
  FILE* f = summary != NULL && *summary != '\0' ? fopen(summary, "a") : NULL;
  if (f != NULL) {
    fprintf(f, "bindings-c: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    fclose(f);
  }
  return failed == 0 ? 0 : 1;
}
