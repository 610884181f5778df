package lowbit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// cacheDir is a fresh directory under $LOWBIT_CACHE_DIR (or the temp dir).
func cacheDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("LOWBIT_CACHE_DIR")
	if base == "" {
		base = os.TempDir()
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(base, "lowbit-go-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func offline(t *testing.T, opts ...Option) *Context {
	t.Helper()
	ctx, err := NewOfflineContext("sm_90a", append([]Option{WithCacheDir(cacheDir(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctx.Close() })
	return ctx
}

func wantStatus(t *testing.T, err error, want Status) *Error {
	t.Helper()
	var lerr *Error
	if !errors.As(err, &lerr) {
		t.Fatalf("want a *lowbit.Error with %v, got %v", want, err)
	}
	if lerr.Status != want || !errors.Is(err, want) {
		t.Fatalf("want status %d, got %d (%v)", want, lerr.Status, err)
	}
	return lerr
}

func TestVersion(t *testing.T) {
	s := VersionString()
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		t.Fatalf("version %q", s)
	}
	n := uint32(0)
	for _, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil {
			t.Fatal(err)
		}
		n = n*100 + uint32(v)
	}
	if n != VersionNumber() {
		t.Fatalf("VersionNumber %d, VersionString %s", VersionNumber(), s)
	}
}

func TestStatusStrings(t *testing.T) {
	if !strings.HasPrefix(OK.String(), "LOWBIT_OK") || !strings.HasPrefix(NoDevice.String(), "LOWBIT_NO_DEVICE") {
		t.Fatal(OK.String(), NoDevice.String())
	}
	if Status(4242).String() != "unknown lowbit status" {
		t.Fatal(Status(4242).String())
	}
	if BF16.Name() != "bf16" || S8.Name() != "s8" || DType(99).Name() != "" {
		t.Fatal(BF16.Name(), S8.Name())
	}
}

func TestOfflineContextPlanPrewarm(t *testing.T) {
	dir := cacheDir(t)
	var mu sync.Mutex
	var lines []string
	ctx, err := NewOfflineContext("sm_90a", WithCacheDir(dir), WithLogLevel(LogInfo),
		WithLogger(func(level LogLevel, msg string) {
			mu.Lock()
			lines = append(lines, msg)
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	info, err := ctx.Info()
	if err != nil {
		t.Fatal(err)
	}
	if !info.Offline || info.Arch != "sm_90a" || info.ComputeCapability != 90 || info.Ordinal != -1 {
		t.Fatalf("info %+v", info)
	}
	if a, _ := filepath.EvalSymlinks(info.CacheDir); a != mustEval(t, dir) {
		t.Fatalf("cache dir %q, want %q", info.CacheDir, dir)
	}

	desc := NewQuantizeDesc(4096)
	plan, err := ctx.NewQuantizePlan(desc)
	if err != nil {
		t.Fatal(err)
	}
	js, err := plan.Describe()
	if err != nil || !strings.Contains(js, `"family":"quantize"`) || !strings.Contains(js, "sm_90a") {
		t.Fatalf("describe: %v %s", err, js)
	}
	if ws, err := plan.WorkspaceSize(); err != nil || ws != 0 {
		t.Fatal(ws, err)
	}
	st, err := ctx.CacheStats()
	if err != nil || st.Misses != 1 || st.Compiles != 1 || st.DiskEntries < 1 {
		t.Fatalf("stats %+v %v", st, err)
	}
	mu.Lock()
	logged := len(lines)
	mu.Unlock()
	if logged == 0 {
		t.Fatal("a cold compile is logged at info level")
	}
	// Plans outlive their context; Close is idempotent.
	ctx.Close()
	ctx.Close()
	if _, err := plan.Describe(); err != nil {
		t.Fatal(err)
	}
	plan.Close()
	plan.Close()
	if _, err := plan.Describe(); err == nil {
		t.Fatal("describe of a closed plan should fail")
	}

	// A new context on the same directory loads from disk.
	again, err := NewOfflineContext("sm_90a", WithCacheDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	p2, err := again.NewPlan(desc)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	st, _ = again.CacheStats()
	if st.DiskHits != 1 || st.Compiles != 0 {
		t.Fatalf("stats %+v", st)
	}

	// Prewarm: one cached item, one bad one.
	bad := NewQuantizeDesc(1, 2, 3, 4, 5)
	statuses, err := again.Prewarm([]OpDesc{desc, bad}, 2)
	lerr := wantStatus(t, err, InvalidProblem)
	if !strings.Contains(lerr.Message, "item 1") || len(statuses) != 2 || statuses[0] != OK || statuses[1] != InvalidProblem {
		t.Fatalf("prewarm: %v %v", statuses, err)
	}
	if _, err := again.Prewarm([]OpDesc{desc}, 0); err != nil {
		t.Fatal(err)
	}
	if st, _ = again.CacheStats(); st.Compiles != 0 {
		t.Fatalf("prewarm of a cached plan compiled: %+v", st)
	}
}

// lowbit's prewarm workers are C threads: their log lines reach Go through cgo.
func TestLoggerFromPrewarmThreads(t *testing.T) {
	var mu sync.Mutex
	lines := 0
	ctx := offline(t, WithCacheMode(CacheMemory), WithLogLevel(LogInfo), WithLogger(func(LogLevel, string) {
		mu.Lock()
		lines++
		mu.Unlock()
	}))
	a, b := NewQuantizeDesc(8, 512), NewQuantizeDesc(8, 512)
	b.QDType = U8
	if _, err := ctx.Prewarm([]OpDesc{a, b}, 2); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if lines < 2 {
		t.Fatalf("%d log lines from two cold compiles", lines)
	}
}

func mustEval(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestErrors(t *testing.T) {
	_, err := NewOfflineContext("sm_1")
	lerr := wantStatus(t, err, InvalidArgument)
	if !strings.Contains(lerr.Message, "sm_1") || lerr.Code() != 5 || !strings.HasPrefix(err.Error(), "LOWBIT_INVALID_ARGUMENT") {
		t.Fatal(err)
	}
	_, err = NewOfflineContext("sm_90a", WithCacheMode(CacheMode(42)))
	wantStatus(t, err, InvalidArgument)

	ctx := offline(t)
	_, err = ctx.NewQuantizePlan(NewQuantizeDesc())
	if lerr := wantStatus(t, err, InvalidProblem); !strings.Contains(lerr.Message, "rank") {
		t.Fatal(err)
	}
	d := NewQuantizeDesc(16)
	d.XDType = S8 // well-formed but not a float input: Unsupported by design
	_, err = ctx.NewQuantizePlan(d)
	wantStatus(t, err, Unsupported)
	d = NewQuantizeDesc(16)
	d.XDType = DType(77)
	_, err = ctx.NewQuantizePlan(d)
	wantStatus(t, err, InvalidArgument)
	d = NewQuantizeDesc(16)
	d.QMin, d.QMax = 10, -10
	_, err = ctx.NewQuantizePlan(d)
	wantStatus(t, err, InvalidProblem)
	var zero QuantizeDesc // not from NewQuantizeDesc: op 0 is rejected, not guessed
	zero.Dims = []int64{16}
	_, err = ctx.NewQuantizePlan(&zero)
	wantStatus(t, err, InvalidArgument)

	var closed *Context
	if _, err := closed.NewQuantizePlan(NewQuantizeDesc(16)); err == nil {
		t.Fatal("nil context should fail")
	}
}

func TestNoDevice(t *testing.T) {
	ctx := offline(t)
	plan, err := ctx.NewQuantizePlan(NewQuantizeDesc(4096))
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()
	// An offline plan never runs; these pointers are never touched.
	err = plan.Run([]Arg{{Role: ArgX, Ptr: 256}, {Role: ArgQ, Ptr: 512}, {Role: ArgScale, Ptr: 1024}}, 0)
	if lerr := wantStatus(t, err, NoDevice); lerr.Message == "" {
		t.Fatal("no message")
	}

	dev, err := NewDeviceContext(0)
	if err == nil {
		dev.Close()
		t.Skip("a GPU is present; NoDevice is checked on CPU-only machines")
	}
	wantStatus(t, err, NoDevice)
	_, err = NewCurrentContext()
	wantStatus(t, err, NoDevice)
}

func TestConcurrentUse(t *testing.T) {
	ctx := offline(t)
	plan, err := ctx.NewQuantizePlan(NewQuantizeDesc(1024))
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if js, err := plan.Describe(); err != nil || !strings.Contains(js, "quantize") {
				errs <- fmt.Errorf("describe: %v", err)
				return
			}
			// Each failure carries its own message, whatever other goroutines do.
			_, err := ctx.NewQuantizePlan(NewQuantizeDesc(int64(-1 - i)))
			var lerr *Error
			if !errors.As(err, &lerr) || !strings.Contains(lerr.Message, strconv.Itoa(-1-i)) {
				errs <- fmt.Errorf("goroutine %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestReference(t *testing.T) {
	x := []float32{1.0, 0.25, 0.75, -100, 100, -0.25}
	q := make([]int8, 6)
	err := ReferenceRun(NewQuantizeDesc(6), []HostArg{
		{ArgX, x}, {ArgQ, q}, {ArgScale, []float32{0.5}}, {ArgZeroPoint, []int32{0}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(q) != fmt.Sprint([]int8{2, 0, 2, -128, 127, 0}) { // round half to even, clamp
		t.Fatal(q)
	}
	err = ReferenceRun(NewQuantizeDesc(6), []HostArg{{ArgX, x}})
	wantStatus(t, err, InvalidArgument)
	err = ReferenceRun(NewQuantizeDesc(6), []HostArg{{ArgX, "not a slice"}})
	wantStatus(t, err, InvalidArgument)
}

// ---------------------------------------------------------------------------
// Consistency with include/lowbit/lowbit.h (the source of truth)
// ---------------------------------------------------------------------------

// Functions of the header this package deliberately does not call.
var notWrapped = map[string]string{
	"lowbit_last_error_message": "returns a borrowed per-thread pointer; the package uses lowbit_copy_last_error_message",
	// Family 2 (weight-only matmul): constants only so far.
	"lowbit_wq_matmul_desc_init":   "family 2 is not wrapped yet",
	"lowbit_wq_matmul_plan_create": "family 2 is not wrapped yet",
	"lowbit_wq_native_bytes":       "family 2 is not wrapped yet",
}

// Every #define of the header and the Go constant that spells it.
var goConstants = map[string]int64{
	"LOWBIT_OK": int64(OK), "LOWBIT_MISALIGNED": int64(Misaligned), "LOWBIT_INVALID_PROBLEM": int64(InvalidProblem),
	"LOWBIT_UNSUPPORTED": int64(Unsupported), "LOWBIT_WORKSPACE_TOO_SMALL": int64(WorkspaceTooSmall),
	"LOWBIT_INVALID_ARGUMENT": int64(InvalidArgument), "LOWBIT_NO_DEVICE": int64(NoDevice),
	"LOWBIT_NO_COMPILER": int64(NoCompiler), "LOWBIT_COMPILE_FAILED": int64(CompileFailed),
	"LOWBIT_CUDA_ERROR": int64(CudaError), "LOWBIT_OUT_OF_MEMORY": int64(OutOfMemory),
	"LOWBIT_CACHE_IO": int64(CacheIO), "LOWBIT_INTERNAL": int64(Internal),
	"LOWBIT_DTYPE_F32": int64(F32), "LOWBIT_DTYPE_F64": int64(F64), "LOWBIT_DTYPE_F16": int64(F16),
	"LOWBIT_DTYPE_BF16": int64(BF16), "LOWBIT_DTYPE_S8": int64(S8), "LOWBIT_DTYPE_U8": int64(U8),
	"LOWBIT_DTYPE_S4": int64(S4), "LOWBIT_DTYPE_U4": int64(U4), "LOWBIT_DTYPE_S32": int64(S32),
	"LOWBIT_LOG_ERROR": int64(LogError), "LOWBIT_LOG_WARN": int64(LogWarn), "LOWBIT_LOG_INFO": int64(LogInfo),
	"LOWBIT_LOG_DEBUG":        int64(LogDebug),
	"LOWBIT_CACHE_READ_WRITE": int64(CacheReadWrite), "LOWBIT_CACHE_READ_ONLY": int64(CacheReadOnly),
	"LOWBIT_CACHE_MEMORY": int64(CacheMemory),
	"LOWBIT_ARG_X":        int64(ArgX), "LOWBIT_ARG_Q": int64(ArgQ), "LOWBIT_ARG_SCALE": int64(ArgScale),
	"LOWBIT_ARG_ZERO_POINT": int64(ArgZeroPoint), "LOWBIT_ARG_DY": int64(ArgDY), "LOWBIT_ARG_DX": int64(ArgDX),
	"LOWBIT_ARG_Y": int64(ArgY), "LOWBIT_ARG_W": int64(ArgW), "LOWBIT_ARG_W_SCALE": int64(ArgWScale),
	"LOWBIT_ARG_W_ZERO": int64(ArgWZero), "LOWBIT_ARG_G_IDX": int64(ArgGIdx), "LOWBIT_ARG_BIAS": int64(ArgBias),
	"LOWBIT_ARG_W_NATIVE": int64(ArgWNative), "LOWBIT_ARG_ROWS": int64(ArgRows),
	"LOWBIT_FAMILY_QUANTIZE": int64(FamilyQuantize), "LOWBIT_FAMILY_WEIGHT_MATMUL": int64(FamilyWeightMatmul),
	"LOWBIT_WQ_OP_MATMUL": int64(WqOpMatmul), "LOWBIT_WQ_OP_REPACK": int64(WqOpRepack),
	"LOWBIT_WQ_FORMAT_AWQ": int64(WqFormatAWQ), "LOWBIT_WQ_FORMAT_GPTQ": int64(WqFormatGPTQ),
	"LOWBIT_WQ_FORMAT_GPTQ_V1": int64(WqFormatGPTQV1), "LOWBIT_WQ_FORMAT_NATIVE": int64(WqFormatNative),
	"LOWBIT_WQ_FORMAT_PLAIN": int64(WqFormatPlain),
	"LOWBIT_QOP_QUANTIZE":    int64(OpQuantize), "LOWBIT_QOP_DEQUANTIZE": int64(OpDequantize),
	"LOWBIT_QOP_QUANTIZE_BACKWARD": int64(OpQuantizeBackward), "LOWBIT_QOP_DEQUANTIZE_BACKWARD": int64(OpDequantizeBackward),
	"LOWBIT_QOP_FAKE_QUANTIZE": int64(OpFakeQuantize), "LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD": int64(OpFakeQuantizeBackward),
	"LOWBIT_QOP_DYNAMIC_QUANTIZE": int64(OpDynamicQuantize),
	"LOWBIT_SCOPE_PER_TENSOR":     int64(PerTensor), "LOWBIT_SCOPE_PER_CHANNEL": int64(PerChannel),
	"LOWBIT_SCOPE_PER_TOKEN": int64(PerToken), "LOWBIT_SCOPE_PER_GROUP": int64(PerGroup),
}

type header struct {
	functions []string
	defines   map[string]int64
	structs   map[string][]string // field names
}

func readHeader(t *testing.T) header {
	t.Helper()
	path := os.Getenv("LOWBIT_HEADER")
	if path == "" {
		path = filepath.Join("..", "..", "include", "lowbit", "lowbit.h")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the C header (set LOWBIT_HEADER): %v", err)
	}
	src := regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(string(raw), " ")
	h := header{defines: map[string]int64{}, structs: map[string][]string{}}
	for _, m := range regexp.MustCompile(`(?m)^\s*#\s*define\s+(LOWBIT_\w+)\s+(-?\d+)\s*$`).FindAllStringSubmatch(src, -1) {
		v, _ := strconv.ParseInt(m[2], 10, 64)
		h.defines[m[1]] = v
	}
	for _, m := range regexp.MustCompile(`(?m)^LOWBIT_API\s+[^;(]*?\b(lowbit_\w+)\s*\(`).FindAllStringSubmatch(src, -1) {
		h.functions = append(h.functions, m[1])
	}
	for _, m := range regexp.MustCompile(`(?s)typedef struct (\w+) \{(.*?)\} (\w+);`).FindAllStringSubmatch(src, -1) {
		for _, field := range strings.Split(m[2], ";") {
			field = strings.TrimSpace(field)
			if field == "" {
				continue
			}
			name := regexp.MustCompile(`(\w+)(\[\d+\])?$`).FindStringSubmatch(field)[1]
			h.structs[m[1]] = append(h.structs[m[1]], name)
		}
	}
	if len(h.functions) < 20 || len(h.defines) < 40 || len(h.structs) < 5 {
		t.Fatalf("header parse looks wrong: %d functions, %d defines, %d structs", len(h.functions), len(h.defines), len(h.structs))
	}
	return h
}

func packageSource(t *testing.T) string {
	t.Helper()
	files, _ := filepath.Glob("*.go")
	var b strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

func TestHeaderSync(t *testing.T) {
	h := readHeader(t)
	src := packageSource(t)
	for _, fn := range h.functions {
		_, skip := notWrapped[fn]
		called := strings.Contains(src, "C."+fn+"(") || strings.Contains(src, " "+fn+"(")
		if !called && !skip {
			t.Errorf("%s is in lowbit.h but neither wrapped nor listed in notWrapped", fn)
		}
		if called && skip {
			t.Errorf("%s is listed in notWrapped but used", fn)
		}
	}
	var missing, extra []string
	for name, v := range h.defines {
		got, ok := goConstants[name]
		if !ok {
			missing = append(missing, name)
		} else if got != v {
			t.Errorf("%s = %d in lowbit.h, %d in Go", name, v, got)
		}
	}
	for name := range goConstants {
		if _, ok := h.defines[name]; !ok {
			extra = append(extra, name)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 || len(extra) > 0 {
		t.Errorf("constants: missing in Go %v, not in lowbit.h %v", missing, extra)
	}
	// Every field of the structs the package converts is handled by name.
	for _, s := range []string{"lowbit_context_options", "lowbit_device_info", "lowbit_cache_stats", "lowbit_quantize_desc", "lowbit_arg", "lowbit_op_desc"} {
		fields, ok := h.structs[s]
		if !ok {
			t.Errorf("struct %s not in lowbit.h", s)
		}
		for _, f := range fields {
			if f == "struct_size" && s == "lowbit_quantize_desc" || f == "struct_size" && s == "lowbit_context_options" {
				continue // filled by the _init functions
			}
			if !strings.Contains(src, "."+f) && !strings.Contains(src, "->"+f) {
				t.Errorf("field %s.%s is not handled by the Go binding", s, f)
			}
		}
	}
}
