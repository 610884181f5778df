/*
 * lowbit.h - the C ABI of lowbit: low-bit quantization kernels for LLM
 * inference on NVIDIA GPUs, specialized per request, compiled at run time with
 * NVRTC, cached on disk as cubins and launched through the CUDA Driver API.
 *
 * Conventions (see DESIGN.md section 3):
 *  - Every exported symbol starts with `lowbit_`. Every fallible call returns a
 *    lowbit_status (0 = LOWBIT_OK); results go in out-parameters.
 *  - On failure, lowbit_last_error_message() returns the detailed reason for
 *    the calling thread (the NVRTC log, the CUresult name, which field was
 *    wrong). It stays valid until the same thread's next lowbit call.
 *  - Parameter structs start with `uint32_t struct_size` and have an `_init`
 *    function that fills defaults. Always call it before setting fields, so a
 *    program built against an older header keeps working with a newer library.
 *  - Device memory is a uint64_t (a CUdeviceptr, e.g. torch's data_ptr());
 *    streams are a void* (a CUstream / cudaStream_t; NULL is the legacy
 *    default stream).
 *  - Handles are opaque; every create has a destroy, and destroy(NULL) is a
 *    no-op. No C++ exception ever crosses this boundary.
 *
 * Thread safety: a lowbit_context may be shared between threads. A lowbit_plan
 * is immutable after creation: any number of threads may run it at the same
 * time on different streams (or the same one). Destroying an object while
 * another thread uses it is the caller's error, as with free().
 */
#ifndef LOWBIT_H
#define LOWBIT_H

#include <stddef.h>
#include <stdint.h>

#include "lowbit/version.h"

#if defined(_WIN32)
#  define LOWBIT_API __declspec(dllexport)
#elif defined(__GNUC__)
#  define LOWBIT_API __attribute__((visibility("default")))
#else
#  define LOWBIT_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Status codes. Values are permanent; new ones are only appended.          */
/* ------------------------------------------------------------------------ */

typedef int32_t lowbit_status;

#define LOWBIT_OK                    0  /* success */
#define LOWBIT_MISALIGNED            1  /* a pointer or stride breaks the plan's alignment */
#define LOWBIT_INVALID_PROBLEM       2  /* the problem is ill-formed (shapes, ranges, group size) */
#define LOWBIT_UNSUPPORTED           3  /* well-formed, but this combination is not implemented */
#define LOWBIT_WORKSPACE_TOO_SMALL   4  /* the workspace passed to run is smaller than required */
#define LOWBIT_INVALID_ARGUMENT      5  /* NULL handle/pointer, bad struct_size, unknown enum value */
#define LOWBIT_NO_DEVICE             6  /* no CUDA driver, no GPU, or an offline context asked to run */
#define LOWBIT_NO_COMPILER           7  /* a kernel is not cached and NVRTC could not be loaded */
#define LOWBIT_COMPILE_FAILED        8  /* NVRTC rejected the generated source (log in the message) */
#define LOWBIT_CUDA_ERROR            9  /* a CUDA driver call failed (CUresult name in the message) */
#define LOWBIT_OUT_OF_MEMORY        10  /* host or device allocation failed */
#define LOWBIT_CACHE_IO             11  /* the on-disk cache could not be read or written */
#define LOWBIT_INTERNAL             12  /* a bug in lowbit; please report the message */

/* A static, never-NULL English name for a status ("LOWBIT_MISALIGNED: ...").
 * Unknown codes give "unknown lowbit status". Thread-safe. */
LOWBIT_API const char* lowbit_status_string(lowbit_status status);

/* The detailed message of the calling thread's most recent failed call
 * (successful calls leave it alone, so read it right after a failure).
 * Never NULL ("" if none). Owned by lowbit; valid until this thread's next
 * lowbit call. */
LOWBIT_API const char* lowbit_last_error_message(void);

/* Copies the calling thread's last error message into buf (always
 * NUL-terminated when capacity > 0, truncated if needed) and returns the full
 * length of the message without the NUL, so a caller can size a buffer with
 * lowbit_copy_last_error_message(NULL, 0) + 1. For FFI callers that cannot
 * hold a borrowed pointer. Thread-safe. */
LOWBIT_API size_t lowbit_copy_last_error_message(char* buf, size_t capacity);

/* ------------------------------------------------------------------------ */
/* Version. The macros (lowbit/version.h) are the header's version; these    */
/* functions are the loaded library's.                                       */
/* ------------------------------------------------------------------------ */

/* MAJOR * 10000 + MINOR * 100 + PATCH, like LOWBIT_VERSION_NUMBER. */
LOWBIT_API uint32_t lowbit_version_number(void);
/* "MAJOR.MINOR.PATCH"; static storage. */
LOWBIT_API const char* lowbit_version_string(void);

/* ------------------------------------------------------------------------ */
/* Data types                                                                */
/* ------------------------------------------------------------------------ */

typedef int32_t lowbit_dtype;
#define LOWBIT_DTYPE_F32   1
#define LOWBIT_DTYPE_F64   2
#define LOWBIT_DTYPE_F16   3
#define LOWBIT_DTYPE_BF16  4
#define LOWBIT_DTYPE_S8    5
#define LOWBIT_DTYPE_U8    6
#define LOWBIT_DTYPE_S4    7  /* packed two per byte: element 2i in the low nibble, 2i+1 in the high */
#define LOWBIT_DTYPE_U4    8  /* packed like S4 */
#define LOWBIT_DTYPE_S32   9

/* Short lowercase name ("bf16", "s8", ...), or NULL for an unknown value. */
LOWBIT_API const char* lowbit_dtype_name(lowbit_dtype dtype);

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

/* A context binds lowbit to one device (or, offline, to one target
 * architecture) and owns the kernel cache for it. Thread-safe. */
typedef struct lowbit_context lowbit_context;

#define LOWBIT_LOG_ERROR 0
#define LOWBIT_LOG_WARN  1
#define LOWBIT_LOG_INFO  2  /* cold compiles are logged at this level */
#define LOWBIT_LOG_DEBUG 3

/* Receives log lines (no trailing newline). May be called from any thread
 * that uses the context, concurrently; `message` is valid during the call. */
typedef void (*lowbit_log_callback)(void* user_data, int32_t level, const char* message);

#define LOWBIT_CACHE_READ_WRITE 0  /* the default: load from and store to the disk cache */
#define LOWBIT_CACHE_READ_ONLY  1  /* load from disk, never write */
#define LOWBIT_CACHE_MEMORY     2  /* no disk at all: compile into memory only */

typedef struct lowbit_context_options {
  uint32_t struct_size;      /* sizeof(lowbit_context_options) */
  /* Cache directory, copied. NULL: $LOWBIT_CACHE_DIR, else
   * $XDG_CACHE_HOME/lowbit, else $HOME/.cache/lowbit. Extra read-only
   * directories come from $LOWBIT_CACHE_PATH (colon-separated). */
  const char* cache_dir;
  int32_t cache_mode;        /* LOWBIT_CACHE_*; default READ_WRITE */
  uint64_t cache_max_bytes;  /* LRU size cap of the disk cache; 0 = default (4 GiB) */
  /* Log sink. NULL: lines at or below log_level go to stderr, prefixed
   * "lowbit: ". $LOWBIT_LOG (error|warn|info|debug) overrides log_level. */
  lowbit_log_callback log_callback;
  void* log_user_data;
  int32_t log_level;         /* default LOWBIT_LOG_WARN */
} lowbit_context_options;

/* Fills defaults. `options` must not be NULL. */
LOWBIT_API void lowbit_context_options_init(lowbit_context_options* options);

/* Context on device `ordinal`, using its primary context (retained until
 * destroy). options may be NULL for defaults. NO_DEVICE without a driver or
 * with no such GPU. The new handle is owned by the caller. */
LOWBIT_API lowbit_status lowbit_context_create_device(int32_t ordinal,
                                                      const lowbit_context_options* options,
                                                      lowbit_context** out);

/* Context on the calling thread's current CUDA context (e.g. the one PyTorch
 * made current). NO_DEVICE if the thread has no current context. */
LOWBIT_API lowbit_status lowbit_context_create_current(const lowbit_context_options* options,
                                                       lowbit_context** out);

/* Offline context for a named target ("sm_80", "sm_86", "sm_89", "sm_90",
 * "sm_90a", ...), needing no GPU or driver: plans can be created, which
 * compiles their kernels into the cache, but not run (run returns NO_DEVICE).
 * This is how kernels are prewarmed on a build machine. */
LOWBIT_API lowbit_status lowbit_context_create_offline(const char* arch,
                                                       const lowbit_context_options* options,
                                                       lowbit_context** out);

/* Releases the context. Plans made from it keep it alive until they are
 * destroyed too. NULL is a no-op. */
LOWBIT_API void lowbit_context_destroy(lowbit_context* context);

typedef struct lowbit_device_info {
  uint32_t struct_size;          /* sizeof(lowbit_device_info) */
  int32_t offline;               /* 1 for an offline context */
  int32_t ordinal;               /* device ordinal, -1 offline */
  char name[128];                /* "NVIDIA H100 80GB HBM3"; "" offline */
  char arch[16];                 /* compile target, e.g. "sm_90a" */
  int32_t compute_capability;    /* 90 for sm_90 */
  int32_t sm_count;              /* 0 offline */
  int32_t driver_version;        /* e.g. 13000; 0 offline without driver */
  int32_t nvrtc_version;         /* e.g. 13000; 0 if NVRTC is not loadable */
  uint64_t global_memory_bytes;  /* 0 offline */
  uint64_t l2_cache_bytes;       /* 0 offline */
  char cache_dir[512];           /* the writable cache directory in use; "" if memory-only */
} lowbit_device_info;

/* Describes the context's device and compiler. `info->struct_size` must be
 * set (use sizeof). */
LOWBIT_API lowbit_status lowbit_context_get_info(const lowbit_context* context,
                                                 lowbit_device_info* info);

/* ------------------------------------------------------------------------ */
/* Kernel cache                                                              */
/* ------------------------------------------------------------------------ */

typedef struct lowbit_cache_stats {
  uint32_t struct_size;      /* sizeof(lowbit_cache_stats) */
  uint64_t memory_hits;      /* kernels found already loaded in this process */
  uint64_t disk_hits;        /* kernels loaded from a cache file */
  uint64_t misses;           /* kernels that had to be compiled */
  uint64_t compiles;         /* NVRTC compilations this process ran (misses that compiled) */
  uint64_t compile_failures; /* compilations that failed */
  uint64_t damaged_entries;  /* cache files found damaged, removed and recompiled */
  double compile_ms;         /* total NVRTC time of this process */
  uint64_t disk_entries;     /* entries in the writable cache directory */
  uint64_t disk_bytes;       /* their total size */
} lowbit_cache_stats;

/* Cache counters of this context since creation, and the disk usage now. */
LOWBIT_API lowbit_status lowbit_context_cache_stats(const lowbit_context* context,
                                                    lowbit_cache_stats* stats);

/* ------------------------------------------------------------------------ */
/* Plans                                                                     */
/* ------------------------------------------------------------------------ */

/* A plan is a validated problem with its kernel(s) selected, compiled and
 * loaded. Immutable: safe to run from many threads at once. Running it never
 * compiles, allocates or synchronizes, so it may be captured in a CUDA graph. */
typedef struct lowbit_plan lowbit_plan;

/* Argument roles for lowbit_plan_run (oneDNN-style role-tagged arguments).
 * Each op documents which roles it reads and writes. */
typedef int32_t lowbit_arg_role;
#define LOWBIT_ARG_X           1  /* floating-point input (quantize), output (dequantize) */
#define LOWBIT_ARG_Q           2  /* quantized tensor: output of quantize, input of dequantize */
#define LOWBIT_ARG_SCALE       3  /* scale(s) */
#define LOWBIT_ARG_ZERO_POINT  4  /* zero point(s), int32 */
#define LOWBIT_ARG_DY          5  /* upstream gradient (backward ops) */
#define LOWBIT_ARG_DX          6  /* gradient output (backward ops) */
#define LOWBIT_ARG_Y           7  /* output of fake_quantize */
/* Weight-only matmul (family 2; see its section for each op's roles): */
#define LOWBIT_ARG_W           8  /* packed quantized weights (qweight / q) */
#define LOWBIT_ARG_W_SCALE     9  /* weight scales */
#define LOWBIT_ARG_W_ZERO     10  /* packed weight zero points (qzeros / zeros) */
#define LOWBIT_ARG_G_IDX      11  /* int32 [K]: group of each input row (GPTQ act-order) */
#define LOWBIT_ARG_BIAS       12  /* bias [N], activation dtype */
#define LOWBIT_ARG_W_NATIVE   13  /* lowbit's native weight buffer (output of repack) */
/* Not an address: `ptr` holds a row count (family 2: rows of X/Y this run
 * computes, 1..desc.m; absent or 0 = desc.m). */
#define LOWBIT_ARG_ROWS       14

typedef struct lowbit_arg {
  lowbit_arg_role role;
  int32_t reserved;  /* must be 0 */
  uint64_t ptr;      /* device address (CUdeviceptr) */
} lowbit_arg;

/* A descriptor of any op family, for calls that take several families
 * (prewarm). `desc` points to that family's descriptor struct. */
typedef int32_t lowbit_op_family;
#define LOWBIT_FAMILY_QUANTIZE 1  /* desc is a lowbit_quantize_desc* */
#define LOWBIT_FAMILY_WEIGHT_MATMUL 2  /* desc is a lowbit_wq_matmul_desc* */

typedef struct lowbit_op_desc {
  lowbit_op_family family;
  int32_t reserved;  /* must be 0 */
  const void* desc;
} lowbit_op_desc;

/* Creates a plan for any family: validates the descriptor, selects a kernel,
 * and loads it from the cache or compiles it (the first time only: seconds at
 * worst, logged). The new plan is owned by the caller; it holds a reference to
 * the context. */
LOWBIT_API lowbit_status lowbit_plan_create(lowbit_context* context, const lowbit_op_desc* op,
                                            lowbit_plan** out);

/* Releases a plan. NULL is a no-op. */
LOWBIT_API void lowbit_plan_destroy(lowbit_plan* plan);

/* Bytes of device workspace lowbit_plan_run needs (0 for most ops). */
LOWBIT_API lowbit_status lowbit_plan_workspace_size(const lowbit_plan* plan, size_t* bytes);

/* Launches the plan on `stream` (a CUstream; NULL for the default stream)
 * with the caller's device pointers. Asynchronous: returns once enqueued.
 * Checks roles, NULLs and alignment (MISALIGNED); never compiles, allocates or
 * synchronizes. The context's CUDA context is made current for the launch if
 * the calling thread has another one. NO_DEVICE on an offline context. */
LOWBIT_API lowbit_status lowbit_plan_run(const lowbit_plan* plan, const lowbit_arg* args,
                                         size_t num_args, uint64_t workspace,
                                         size_t workspace_bytes, void* stream);

/* Describes the plan as one JSON object: op, kernel template, parameters, cache
 * key, registers, spills, launch shape, where the kernel came from. Copies at
 * most `capacity` bytes (NUL-terminated) into buf and stores the full length
 * (without NUL) in *length if length is not NULL. buf may be NULL to query. */
LOWBIT_API lowbit_status lowbit_plan_describe(const lowbit_plan* plan, char* buf, size_t capacity,
                                              size_t* length);

/* Prewarm: creates (and thereby compiles and caches) the plan of every
 * descriptor, on up to `threads` threads (0 = number of CPUs), then destroys
 * them. `results` may be NULL or point to `count` statuses, one per item.
 * Returns OK if every item succeeded, else the first failure's status (its
 * message names the item). */
LOWBIT_API lowbit_status lowbit_prewarm(lowbit_context* context, const lowbit_op_desc* ops,
                                        size_t count, uint32_t threads, lowbit_status* results);

/* ------------------------------------------------------------------------ */
/* Family 1: elementwise quantization                                        */
/* ------------------------------------------------------------------------ */

/* Numerics, identical in the kernels and in lowbit_reference_run:
 *  - Arithmetic is IEEE f32 for f32, f16 and bf16 tensors (16-bit values and
 *    scales are widened to f32 exactly) and f64 for f64 tensors; X / scale is
 *    the correctly rounded quotient, rounding to integers is half to even, and
 *    float results are rounded once to the tensor type (to nearest even).
 *  - Zero points are clamped into [-2^21, 2^21] before use.
 *  - Quantize: NaN gives clamp(zero_point, qmin, qmax), +inf qmax, -inf qmin;
 *    nothing overflows for any input.
 *  - Float outputs that are NaN are the canonical quiet NaN (f32 0x7fffffff,
 *    f64 0x7fffffffffffffff, f16 and bf16 0x7fff), except FAKE_QUANTIZE_BACKWARD,
 *    which copies DY's bits.
 *  - Scales live in device memory and are used as stored: a zero, negative,
 *    NaN or infinite scale is not an error (the kernel cannot report one); the
 *    arithmetic above applies (e.g. x / 0 = +-inf -> qmax / qmin, 0 / 0 = NaN
 *    -> the zero point). Pass positive finite scales.
 * Outputs must not overlap inputs. */
typedef int32_t lowbit_quantize_op;
/* Q = clamp(round_half_even(X / scale) + zero_point, qmin, qmax).
 * Reads X, SCALE, ZERO_POINT (optional: 0); writes Q. */
#define LOWBIT_QOP_QUANTIZE             1
/* X = (Q - zero_point) * scale, computed in f32 (f64 for f64) and rounded to
 * the X type to nearest even. Reads Q, SCALE, ZERO_POINT (optional); writes X. */
#define LOWBIT_QOP_DEQUANTIZE           2
/* STE backward of quantize: DX = DY / scale where qmin < q < qmax (strictly),
 * +0 elsewhere, with q recomputed from X exactly as QUANTIZE does. Reads X, DY,
 * SCALE, ZERO_POINT (optional); writes DX. */
#define LOWBIT_QOP_QUANTIZE_BACKWARD    3
/* Straight-through backward of dequantize: DX = DY * scale (in the X type).
 * Reads DY, SCALE; writes DX. */
#define LOWBIT_QOP_DEQUANTIZE_BACKWARD  4
/* Y = dequantize(quantize(X)) = (q - zero_point) * scale in one pass. Reads X,
 * SCALE, ZERO_POINT (optional); writes Y. */
#define LOWBIT_QOP_FAKE_QUANTIZE        5
/* DX = DY where qmin <= round_half_even(X / scale) + zero_point <= qmax (the
 * unclamped value; false for NaN), +0 elsewhere; DY's bits are copied
 * unchanged. Reads X, DY, SCALE, ZERO_POINT (optional); writes DX. */
#define LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD 6
/* Computes each scale (and zero point) from the data, writes them to SCALE
 * (in scale_dtype) and ZERO_POINT, and quantizes X into Q with them, for the
 * per-tensor, per-token and per-group scopes (per-channel: UNSUPPORTED).
 * With mn = min(0, min X) and mx = max(0, max X), NaN ignored, in the compute
 * type:
 *   symmetric:  scale = RN_scale_dtype(max|X| / min(-qmin, qmax)), zero point 0
 *               (needs qmin < 0 < qmax: INVALID_PROBLEM otherwise);
 *   asymmetric: scale = RN_scale_dtype((mx - mn) / (qmax - qmin)),
 *               zero point = qmin - clamp(round_half_even(mn / scale), qmin - qmax, 0)
 *               (NaN -> 0), which lies in [qmin, qmax].
 * A scale that rounds to 0 is replaced by 1. Q is then quantized with the
 * scale as stored. Reads X; writes Q, SCALE and ZERO_POINT (required when
 * asymmetric; optional when symmetric, then written as 0). Per-token and
 * per-group run in one launch (each row or group read once, any number of
 * rows); per-tensor runs two launches and needs the plan's workspace
 * (lowbit_plan_workspace_size). Packed output with per-group needs an even
 * group_size unless the group is the whole row (UNSUPPORTED otherwise). */
#define LOWBIT_QOP_DYNAMIC_QUANTIZE     7

/* Scopes and the shapes of the SCALE (scale_dtype) and ZERO_POINT (int32)
 * arrays; a tensor of dims [d0, .., dL] is seen as [rows, cols] with cols = dL
 * and rows = d0 * .. * d(L-1). */
typedef int32_t lowbit_quantize_scope;
#define LOWBIT_SCOPE_PER_TENSOR  1  /* one scale / zero point: arrays of 1 */
#define LOWBIT_SCOPE_PER_CHANNEL 2  /* one per index along `axis` (any axis; negative counts from
                                       the end): arrays of dims[axis] */
#define LOWBIT_SCOPE_PER_TOKEN   3  /* one per row: arrays of rows */
#define LOWBIT_SCOPE_PER_GROUP   4  /* one per `group_size` consecutive elements of a row (G must
                                       divide cols): row-major arrays [rows, cols / G] */

typedef struct lowbit_quantize_desc {
  uint32_t struct_size;        /* sizeof(lowbit_quantize_desc) */
  lowbit_quantize_op op;       /* LOWBIT_QOP_*; default QUANTIZE */
  lowbit_quantize_scope scope; /* LOWBIT_SCOPE_*; default PER_TENSOR */
  lowbit_dtype x_dtype;        /* f32, f64, f16, bf16; default F32 */
  /* s8, u8, or packed s4 / u4: each row of Q is ceil(cols / 2) bytes, element
   * 2i of the row in the low nibble of byte i and 2i + 1 in the high nibble;
   * an odd row's last high nibble is written as 0 and ignored when read.
   * Default S8. */
  lowbit_dtype q_dtype;
  lowbit_dtype scale_dtype;    /* f32 or x_dtype; default F32 */
  /* Problem shape: `rank` dims (1..4), row-major. Per-token / per-group see it
   * as [rows, cols] with cols = the last dim. Zero-sized dims are a no-op. */
  int32_t rank;
  int64_t dims[4];
  /* Elements between consecutive rows of X (and DY/DX/Y); 0 = contiguous
   * (= the last dim). Q is always contiguous. */
  int64_t x_row_stride;
  int32_t axis;                /* per-channel axis; default 0 */
  int64_t group_size;          /* per-group size G (divides the last dim) */
  /* Clamp range. qmin == qmax == 0 (the default) means the full range of
   * q_dtype; otherwise qmin <= qmax inside that range (e.g. [-127, 127]). */
  int32_t qmin;
  int32_t qmax;
  int32_t symmetric;           /* dynamic quantize: 1 absmax (zp 0), 0 min/max; default 1 */
  /* Alignment in bytes the caller promises for the tensor pointers X, Q, DY,
   * DX and Y (1, 2, 4, 8 or 16, at least the X element size; default 16,
   * which torch allocations satisfy). SCALE and ZERO_POINT need only their
   * element's natural alignment. The plan picks its vector width from it and
   * from the row layout, narrowing it where rows would start off a vector
   * (describe: vector_elements, x_vector_bytes, q_vector_bytes,
   * vector_narrowed); run returns MISALIGNED for a pointer that breaks the
   * width chosen. On sm_90+ a plan may stage its input stream in shared
   * memory by bulk copies (describe: "kernel":"staged_elementwise"; chosen
   * only when alignment is 16 and rows keep 16-byte tiles): its input must
   * then be 16-byte aligned, as promised. Empty tensors (a zero dim) are a
   * no-op: run reads and writes nothing and accepts NULL pointers. */
  int32_t alignment;
} lowbit_quantize_desc;

/* Fills defaults (see each field). `desc` must not be NULL. */
LOWBIT_API void lowbit_quantize_desc_init(lowbit_quantize_desc* desc);

/* Shorthand for lowbit_plan_create with LOWBIT_FAMILY_QUANTIZE. */
LOWBIT_API lowbit_status lowbit_quantize_plan_create(lowbit_context* context,
                                                     const lowbit_quantize_desc* desc,
                                                     lowbit_plan** out);

/* ------------------------------------------------------------------------ */
/* Family 2: weight-only quantized matmul (W4A16, W8A16)                     */
/* ------------------------------------------------------------------------ */

/* LOWBIT_WQ_OP_MATMUL computes
 *
 *   Y[m, n] = sum_k X[m, k] * w[k, n]  (+ bias[n]),   w[k, n] = (q[k, n] - z[g, n]) * s[g, n]
 *
 * with X, Y and bias in act_dtype (f16 or bf16), q the stored 4- or 8-bit
 * weight, g = k / group_size (g = g_idx[k] with act-order; g = 0 for
 * per-channel), s the scale and z the zero point (2^(bits-1) when symmetric).
 * Two paths, chosen from desc.m alone (so a plan's arithmetic never depends
 * on the GPU):
 *  - decode (m <= 8): a tensor-core GEMV (one MMA serves every M <= 8). The
 *    products of the exact (q - z) with X are accumulated in f32, the scale
 *    is applied in f32 per group. One exception to "exact weights": GPTQ
 *    act-order read directly rounds each w to act_dtype before the product.
 *  - prefill (m >= 9): a tensor-core GEMM (mma.sync on sm_80+, the warpgroup
 *    MMA on sm_90a) that dequantizes in registers; each weight is rounded
 *    once to act_dtype, w = round((q - z) * s) (the arithmetic of the AWQ and
 *    GPTQ reference "dequantize to fp16, then matmul"), the products summed
 *    in f32. AWQ and GPTQ weights are not read directly on this path: the
 *    plan repacks them into the native layout inside the caller's workspace
 *    on its first run and again only when the W / W_SCALE / W_ZERO / G_IDX
 *    pointers or the workspace change (so weights changed in place under the
 *    same pointers need a new plan, or another workspace). The repack runs on
 *    the run's stream; runs on other streams must be ordered after it.
 *    lowbit_plan_describe names the path and the chosen tile, stages and
 *    split-K.
 * Y is rounded once to act_dtype (nearest even). Deterministic: split-K
 * partial sums are reduced in a fixed order, never with atomics, by a
 * second kernel or (prefill on sm_90, where describe says "cluster") inside
 * the GEMM: the splits of a tile run as one thread block cluster and add
 * their partials through distributed shared memory (the same bits).
 * Prefill plans whose describe says "stream-K" run one grid of as many CTAs
 * as the GPU holds, each taking an equal share of all tiles' k-chunks; the
 * CTA holding a tile's last chunks adds the other shares (left in the
 * workspace) in a fixed order, so a plan's results still do not vary from
 * run to run (for a given row count). The workspace then also holds one
 * flag per CTA, which every run leaves cleared: the workspace may be shared
 * between plans run one after another, as for split-K.
 *
 * Storage formats (q, z, s as real checkpoints hold them). Shapes are in
 * elements, row-major; NG = K / group_size (1 for per-channel):
 *
 * LOWBIT_WQ_FORMAT_AWQ: AutoAWQ "GEMM" packing (awq/modules/linear/gemm.py,
 *   WQLinear_GEMM.from_linear; vLLM's AWQ loader reads the same), 4-bit only.
 *   W: int32 [K, N/8] (qweight): columns 8j..8j+7 of row k in one int32, the
 *     nibble at bits 4p holding column 8j + AWQ_ORDER[p], AWQ_ORDER =
 *     {0, 2, 4, 6, 1, 3, 5, 7} (equivalently column 8j + c sits at nibble
 *     AWQ_REVERSE_ORDER[c] = {0, 4, 1, 5, 2, 6, 3, 7}[c]).
 *   W_ZERO: int32 [NG, N/8] (qzeros), packed the same way; z = stored value.
 *   W_SCALE: [NG, N] (scales).
 * LOWBIT_WQ_FORMAT_GPTQ: GPTQ packing as GPTQModel's internal "gptq_v2"
 *   checkpoint_format (zeros stored as is). 4-bit: W int32 [K/8, N] (qweight),
 *   row k = 8i + j of column n at bits 4j of W[i, n]; W_ZERO int32 [NG, N/8]
 *   (qzeros), z of column n = 8i + j at bits 4j of W_ZERO[g, i]. 8-bit: four
 *   per int32 the same ways (W [K/4, N], bits 8j; W_ZERO [NG, N/4]).
 *   W_SCALE [NG, N]. Optional act-order (desc_act): G_IDX int32 [K] gives the
 *   group of each row; it must give every group exactly group_size rows, as
 *   GPTQ's act-order does (g_idx[perm[i]] = i / group_size).
 * LOWBIT_WQ_FORMAT_GPTQ_V1: the same, with AutoGPTQ's v1 convention (the
 *   checkpoint_format "gptq" of most published GPTQ checkpoints): the stored
 *   zero is z - 1, so z = (stored + 1) mod 2^bits.
 * LOWBIT_WQ_FORMAT_PLAIN: what lowbit's quantize family writes for a per-group
 *   quantization of the [N, K] (out x in) weight along K: W [N, K] with K
 *   contiguous, 4-bit packed two per byte (even k in the low nibble, as
 *   LOWBIT_DTYPE_U4 / S4), 8-bit one per byte; W_SCALE [N, NG]; W_ZERO int32
 *   [N, NG], each in [0, 2^bits - 1]. Symmetric PLAIN stores signed q
 *   (S4 / S8 two's complement) and w = q * s. Repack source only.
 * LOWBIT_WQ_FORMAT_NATIVE: lowbit's own layout, made by LOWBIT_WQ_OP_REPACK
 *   from any of the above: one buffer (LOWBIT_ARG_W_NATIVE) of
 *   lowbit_wq_native_bytes() bytes holding the weights in the order the
 *   kernel's tensor-core fragments want them (each thread's 16-byte load is 32
 *   weights, a warp's load 512 contiguous bytes, and dequantization a few bit
 *   operations), then the scales, the zeros, and with act-order the row
 *   permutation (the K order sorted by group, so each group is contiguous and
 *   X is permuted instead). Byte layout: kernel_templates/wq_layout.h.
 * Symmetric (symmetric = 1): z = 2^(bits-1) for every group; W_ZERO is not
 * read (GPTQ checkpoints of symmetric models store that constant anyway).
 *
 * Roles of LOWBIT_WQ_OP_MATMUL: reads X [M, K] (rows x_row_stride apart), W,
 * W_SCALE, W_ZERO (asymmetric), G_IDX (GPTQ act-order), BIAS (has_bias), or
 * W_NATIVE alone for the native format; writes Y [M, N] (rows y_row_stride
 * apart). ROWS optionally runs fewer rows than desc.m with the same plan
 * (decode batches vary; one plan per layer serves every M <= desc.m, and the
 * kernel is specialized on the M tile 1, 2, 4 or 8 that covers desc.m).
 * Workspace: split-K partials, the permuted X of an act-order plan, and on
 * the prefill path the repacked AWQ/GPTQ weights; query
 * lowbit_plan_workspace_size.
 * Roles of LOWBIT_WQ_OP_REPACK: reads W, W_SCALE, W_ZERO (asymmetric), G_IDX
 * (act_order) in `format`; writes W_NATIVE (lowbit_wq_native_bytes of the
 * same descriptor). Deterministic, bit-exact against the CPU reference. */
typedef int32_t lowbit_wq_op;
#define LOWBIT_WQ_OP_MATMUL  1  /* Y = X * dequant(W) (+ bias) */
#define LOWBIT_WQ_OP_REPACK  2  /* W (format) -> W_NATIVE */

typedef int32_t lowbit_wq_format;
#define LOWBIT_WQ_FORMAT_AWQ      1  /* AutoAWQ GEMM packing */
#define LOWBIT_WQ_FORMAT_GPTQ     2  /* GPTQ packing, zeros stored as is (GPTQModel v2) */
#define LOWBIT_WQ_FORMAT_GPTQ_V1  3  /* GPTQ packing, stored zero = z - 1 (AutoGPTQ) */
#define LOWBIT_WQ_FORMAT_NATIVE   4  /* lowbit's repacked layout */
#define LOWBIT_WQ_FORMAT_PLAIN    5  /* [N, K] q, [N, NG] scales and zeros (repack source) */

typedef struct lowbit_wq_matmul_desc {
  uint32_t struct_size;      /* sizeof(lowbit_wq_matmul_desc) */
  lowbit_wq_op op;           /* LOWBIT_WQ_OP_*; default MATMUL */
  lowbit_wq_format format;   /* weight format read (repack: the source); default NATIVE */
  int32_t weight_bits;       /* 4 or 8 (AWQ: 4 only); default 4 */
  int32_t symmetric;         /* 1: no zero points, z = 2^(bits-1); default 0 */
  int32_t act_order;         /* 1: GPTQ G_IDX given (native: the buffer holds the permutation); default 0 */
  int64_t group_size;        /* 32, 64, 128 or 256 rows of K per scale, or -1 per-channel; default 128 */
  int64_t m;                 /* rows of X and Y (the most a run may use, see LOWBIT_ARG_ROWS); default 1 */
  int64_t n;                 /* output features: a multiple of 8 */
  int64_t k;                 /* input features: a multiple of 8 and of group_size */
  lowbit_dtype act_dtype;    /* X, Y and bias: F16 or BF16; default F16 */
  lowbit_dtype scale_dtype;  /* W_SCALE: F16 or BF16; default F16 */
  int32_t has_bias;          /* 1: add BIAS [N]; default 0 */
  /* Alignment in bytes the caller promises for every pointer passed to run;
   * the kernels use 16-byte loads and need 16 (the default). */
  int32_t alignment;
  int64_t x_row_stride;      /* elements between rows of X; 0 = k. A multiple of 8 */
  int64_t y_row_stride;      /* elements between rows of Y; 0 = n */
  /* 1: programmatic dependent launch (decode path, sm_90 and newer; ignored
   * elsewhere). The decode kernel is launched so that it may start while the
   * kernel before it in the stream is still finishing: it reads its weights,
   * scales and zeros (W_NATIVE, W, W_SCALE, W_ZERO, G_IDX) at once and waits
   * for that kernel to complete before it reads X or BIAS or writes Y or the
   * workspace. Back-to-back decode layers then overlap one kernel's launch
   * and first loads with the previous one's tail. Set it only when no kernel
   * still running in the stream writes those weight buffers (true of a model
   * whose weights are loaded and synchronized before decoding). Default 0.
   * (Every decode kernel on sm_90+ also lets the kernel after it launch early
   * if that kernel asked for programmatic launch; that needs no flag.) */
  int32_t programmatic_launch;
} lowbit_wq_matmul_desc;

/* Fills defaults (see each field). `desc` must not be NULL. */
LOWBIT_API void lowbit_wq_matmul_desc_init(lowbit_wq_matmul_desc* desc);

/* Shorthand for lowbit_plan_create with LOWBIT_FAMILY_WEIGHT_MATMUL. */
LOWBIT_API lowbit_status lowbit_wq_matmul_plan_create(lowbit_context* context,
                                                      const lowbit_wq_matmul_desc* desc,
                                                      lowbit_plan** out);

/* Size in bytes of the native weight buffer for the descriptor's weight shape
 * (n, k, weight_bits, group_size, symmetric, act_order, scale_dtype; the op,
 * format and activation fields are ignored). Validates those fields. */
LOWBIT_API lowbit_status lowbit_wq_native_bytes(const lowbit_wq_matmul_desc* desc, uint64_t* bytes);

/* ------------------------------------------------------------------------ */
/* CPU reference                                                             */
/* ------------------------------------------------------------------------ */

/* Runs the CPU reference of an op on host memory: the same descriptor and
 * roles as lowbit_plan_run, with `ptr` holding host addresses. This is the
 * oracle lowbit's tests compare the GPU with, exposed so users can check
 * results too. Single-threaded; thread-safe. */
LOWBIT_API lowbit_status lowbit_reference_run(const lowbit_op_desc* op, const lowbit_arg* args,
                                              size_t num_args);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LOWBIT_H */
