// Package lowbit is the Go binding of lowbit: low-bit quantization kernels
// for NVIDIA GPUs, specialized per problem, JIT-compiled with NVRTC and
// cached on disk. It wraps the C API of include/lowbit/lowbit.h through cgo
// (pkg-config: lowbit).
//
// Errors are *Error values carrying the Status and lowbit's detailed message;
// errors.Is(err, lowbit.NoDevice) tests the status. Contexts and plans hold C
// handles: Close them when done (a finalizer frees a forgotten one, late).
// As lowbit.h documents, a Context may be used from many goroutines at once
// and a Plan may run concurrently; closing one while it is in use is the
// caller's error.
//
// Device memory is a uint64 (a CUdeviceptr) and a stream a uintptr (a
// CUstream, 0 for the default stream), as other Go CUDA packages hold them.
package lowbit

/*
#cgo pkg-config: lowbit
#include <stdint.h>
#include <stdlib.h>
#include "lowbit/lowbit.h"

// The log callback: lowbitGoLog is exported from log.go.
extern void lowbitGoLog(void* user_data, int32_t level, char* message);
static void lowbit_go_log_trampoline(void* user_data, int32_t level, const char* message) {
	lowbitGoLog(user_data, level, (char*)message);
}
static void lowbit_go_set_logger(lowbit_context_options* o, void* user_data) {
	o->log_callback = lowbit_go_log_trampoline;
	o->log_user_data = user_data;
}

// Streams arrive as integers; the cast to void* happens here, not in Go.
static lowbit_status lowbit_go_plan_run(const lowbit_plan* plan, const lowbit_arg* args, size_t num_args,
                                        uint64_t workspace, size_t workspace_bytes, uintptr_t stream) {
	return lowbit_plan_run(plan, args, num_args, workspace, workspace_bytes, (void*)stream);
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"runtime/cgo"
	"sync/atomic"
	"unsafe"
)

// Error is a failed lowbit call: its status and lowbit's detailed message
// (the NVRTC log, the CUresult name, the field that was wrong...).
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Status.String()
	}
	return e.Status.String() + ": " + e.Message
}

// Unwrap returns the Status, for errors.Is(err, lowbit.NoDevice).
func (e *Error) Unwrap() error { return e.Status }

// Code is the numeric LOWBIT_* value.
func (e *Error) Code() int32 { return int32(e.Status) }

// String is lowbit's static description ("LOWBIT_NO_DEVICE: no CUDA driver ...").
func (s Status) String() string { return C.GoString(C.lowbit_status_string(C.lowbit_status(s))) }

// Error makes a Status usable as an error and as an errors.Is target.
func (s Status) Error() string { return s.String() }

// lastError captures the calling thread's message; the caller must have
// locked the OS thread across the failed call and this one.
func lastError(code C.lowbit_status) error {
	if code == 0 {
		return nil
	}
	return &Error{Status: Status(code), Message: LastErrorMessage()}
}

// call runs a C call and captures its error on the same OS thread (lowbit's
// last-error message is per thread).
func call(f func() C.lowbit_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return lastError(f())
}

// LastErrorMessage is the calling OS thread's last lowbit error message. The
// errors of this package already carry it.
func LastErrorMessage() string {
	n := C.lowbit_copy_last_error_message(nil, 0)
	buf := C.malloc(n + 1)
	defer C.free(buf)
	C.lowbit_copy_last_error_message((*C.char)(buf), n+1)
	return C.GoStringN((*C.char)(buf), C.int(n))
}

// VersionNumber is the loaded library's MAJOR*10000 + MINOR*100 + PATCH.
func VersionNumber() uint32 { return uint32(C.lowbit_version_number()) }

// VersionString is the loaded library's "MAJOR.MINOR.PATCH".
func VersionString() string { return C.GoString(C.lowbit_version_string()) }

// Name is lowbit's short name of the type ("bf16", "s8"), "" if unknown.
func (t DType) Name() string {
	p := C.lowbit_dtype_name(C.lowbit_dtype(t))
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// ---------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------

// Option configures a new Context.
type Option func(*options)

type options struct {
	cacheDir      *string
	cacheMode     *CacheMode
	cacheMaxBytes *uint64
	logLevel      *LogLevel
	logger        func(LogLevel, string)
}

// WithCacheDir sets the kernel cache directory (default: $LOWBIT_CACHE_DIR,
// $XDG_CACHE_HOME/lowbit, ~/.cache/lowbit).
func WithCacheDir(dir string) Option { return func(o *options) { o.cacheDir = &dir } }

// WithCacheMode sets whether the disk cache is read and written.
func WithCacheMode(m CacheMode) Option { return func(o *options) { o.cacheMode = &m } }

// WithCacheMaxBytes caps the disk cache (0: lowbit's default).
func WithCacheMaxBytes(n uint64) Option { return func(o *options) { o.cacheMaxBytes = &n } }

// WithLogLevel sets the most detailed level logged.
func WithLogLevel(l LogLevel) Option { return func(o *options) { o.logLevel = &l } }

// WithLogger sends lowbit's log lines to f instead of stderr. f may be called
// from any thread using the context, concurrently.
func WithLogger(f func(level LogLevel, message string)) Option {
	return func(o *options) { o.logger = f }
}

// logger is the callback state shared by a context and its plans (lowbit may
// log until the last of them is closed).
type logger struct {
	f      func(LogLevel, string)
	handle cgo.Handle
	cell   unsafe.Pointer // C memory holding the handle: the callback's user_data
	refs   int32
}

func newLogger(f func(LogLevel, string)) *logger {
	l := &logger{f: f, refs: 1}
	l.handle = cgo.NewHandle(l)
	l.cell = C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0))))
	*(*C.uintptr_t)(l.cell) = C.uintptr_t(l.handle)
	return l
}

func (l *logger) retain() *logger {
	if l != nil {
		atomic.AddInt32(&l.refs, 1)
	}
	return l
}

func (l *logger) release() {
	if l != nil && atomic.AddInt32(&l.refs, -1) == 0 {
		l.handle.Delete()
		C.free(l.cell)
	}
}

// Context binds lowbit to one device (or, offline, to a target architecture)
// and owns its kernel cache. Safe for concurrent use.
type Context struct {
	ptr    *C.lowbit_context
	logger *logger
}

func newContext(opts []Option, create func(*C.lowbit_context_options, **C.lowbit_context) C.lowbit_status) (*Context, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	var raw C.lowbit_context_options
	C.lowbit_context_options_init(&raw)
	if o.cacheDir != nil {
		dir := C.CString(*o.cacheDir)
		defer C.free(unsafe.Pointer(dir))
		raw.cache_dir = dir
	}
	if o.cacheMode != nil {
		raw.cache_mode = C.int32_t(*o.cacheMode)
	}
	if o.cacheMaxBytes != nil {
		raw.cache_max_bytes = C.uint64_t(*o.cacheMaxBytes)
	}
	if o.logLevel != nil {
		raw.log_level = C.int32_t(*o.logLevel)
	}
	var lg *logger
	if o.logger != nil {
		lg = newLogger(o.logger)
		C.lowbit_go_set_logger(&raw, lg.cell)
	}
	var out *C.lowbit_context
	if err := call(func() C.lowbit_status { return create(&raw, &out) }); err != nil {
		lg.release()
		return nil, err
	}
	c := &Context{ptr: out, logger: lg}
	runtime.SetFinalizer(c, (*Context).Close)
	return c, nil
}

// NewDeviceContext makes a context on GPU `ordinal` (its primary context).
// The error is NoDevice without a driver or such a GPU.
func NewDeviceContext(ordinal int, opts ...Option) (*Context, error) {
	return newContext(opts, func(o *C.lowbit_context_options, out **C.lowbit_context) C.lowbit_status {
		return C.lowbit_context_create_device(C.int32_t(ordinal), o, out)
	})
}

// NewCurrentContext makes a context on the calling thread's current CUDA
// context. Call it with the OS thread locked (runtime.LockOSThread) after
// making that context current; NoDevice if there is none.
func NewCurrentContext(opts ...Option) (*Context, error) {
	return newContext(opts, func(o *C.lowbit_context_options, out **C.lowbit_context) C.lowbit_status {
		return C.lowbit_context_create_current(o, out)
	})
}

// NewOfflineContext makes a context for a target such as "sm_90a" that needs
// no GPU: plans compile into the cache but cannot run (NoDevice).
func NewOfflineContext(arch string, opts ...Option) (*Context, error) {
	carch := C.CString(arch)
	defer C.free(unsafe.Pointer(carch))
	return newContext(opts, func(o *C.lowbit_context_options, out **C.lowbit_context) C.lowbit_status {
		return C.lowbit_context_create_offline(carch, o, out)
	})
}

var errClosed = &Error{Status: InvalidArgument, Message: "lowbit: use of a closed handle"}

// Close releases the context; plans made from it stay valid until they are
// closed too. Closing twice is a no-op.
func (c *Context) Close() error {
	if c == nil || c.ptr == nil {
		return nil
	}
	C.lowbit_context_destroy(c.ptr)
	c.ptr = nil
	c.logger.release()
	c.logger = nil
	runtime.SetFinalizer(c, nil)
	return nil
}

// DeviceInfo describes a context's device and compiler.
type DeviceInfo struct {
	Offline           bool
	Ordinal           int    // -1 offline
	Name              string // "" offline
	Arch              string // compile target, e.g. "sm_90a"
	ComputeCapability int
	SMCount           int
	DriverVersion     int
	NVRTCVersion      int
	GlobalMemoryBytes uint64
	L2CacheBytes      uint64
	CacheDir          string // "" if memory-only
}

// Info reports the context's device and compiler.
func (c *Context) Info() (DeviceInfo, error) {
	if c == nil || c.ptr == nil {
		return DeviceInfo{}, errClosed
	}
	var raw C.lowbit_device_info
	raw.struct_size = C.uint32_t(unsafe.Sizeof(raw))
	err := call(func() C.lowbit_status { return C.lowbit_context_get_info(c.ptr, &raw) })
	runtime.KeepAlive(c)
	if err != nil {
		return DeviceInfo{}, err
	}
	return DeviceInfo{
		Offline:           raw.offline != 0,
		Ordinal:           int(raw.ordinal),
		Name:              C.GoString(&raw.name[0]),
		Arch:              C.GoString(&raw.arch[0]),
		ComputeCapability: int(raw.compute_capability),
		SMCount:           int(raw.sm_count),
		DriverVersion:     int(raw.driver_version),
		NVRTCVersion:      int(raw.nvrtc_version),
		GlobalMemoryBytes: uint64(raw.global_memory_bytes),
		L2CacheBytes:      uint64(raw.l2_cache_bytes),
		CacheDir:          C.GoString(&raw.cache_dir[0]),
	}, nil
}

// CacheStats are a context's cache counters since creation and the disk usage now.
type CacheStats struct {
	MemoryHits, DiskHits, Misses, Compiles, CompileFailures, DamagedEntries uint64
	CompileMs                                                               float64
	DiskEntries, DiskBytes                                                  uint64
}

// CacheStats reports the context's cache counters.
func (c *Context) CacheStats() (CacheStats, error) {
	if c == nil || c.ptr == nil {
		return CacheStats{}, errClosed
	}
	var raw C.lowbit_cache_stats
	raw.struct_size = C.uint32_t(unsafe.Sizeof(raw))
	err := call(func() C.lowbit_status { return C.lowbit_context_cache_stats(c.ptr, &raw) })
	runtime.KeepAlive(c)
	if err != nil {
		return CacheStats{}, err
	}
	return CacheStats{
		MemoryHits: uint64(raw.memory_hits), DiskHits: uint64(raw.disk_hits), Misses: uint64(raw.misses),
		Compiles: uint64(raw.compiles), CompileFailures: uint64(raw.compile_failures),
		DamagedEntries: uint64(raw.damaged_entries), CompileMs: float64(raw.compile_ms),
		DiskEntries: uint64(raw.disk_entries), DiskBytes: uint64(raw.disk_bytes),
	}, nil
}

// ---------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------

// OpDesc is a descriptor of any op family (today *QuantizeDesc).
type OpDesc interface {
	// family and fill write the C descriptor into C memory at p.
	family() C.lowbit_op_family
	size() uintptr
	fill(p unsafe.Pointer)
}

// QuantizeDesc is an elementwise quantization problem. Start from
// NewQuantizeDesc, which fills lowbit's defaults: quantize, per tensor,
// f32 -> s8, alignment 16, symmetric.
type QuantizeDesc struct {
	Op         QuantizeOp
	Scope      Scope
	XDType     DType
	QDType     DType
	ScaleDType DType
	Dims       []int64 // row-major, 1..4 dims
	XRowStride int64   // elements between rows of X; 0 = contiguous
	Axis       int32   // per-channel axis
	GroupSize  int64   // per-group size
	QMin, QMax int32   // clamp range; 0, 0 = the q type's full range
	Symmetric  bool    // dynamic quantize: absmax (true) or min/max
	Alignment  int32   // bytes promised for every pointer: 1, 2, 4, 8 or 16
}

// NewQuantizeDesc returns lowbit's defaults with the given shape.
func NewQuantizeDesc(dims ...int64) *QuantizeDesc {
	var raw C.lowbit_quantize_desc
	C.lowbit_quantize_desc_init(&raw)
	return &QuantizeDesc{
		Op: QuantizeOp(raw.op), Scope: Scope(raw.scope), XDType: DType(raw.x_dtype), QDType: DType(raw.q_dtype),
		ScaleDType: DType(raw.scale_dtype), Dims: append([]int64(nil), dims...), XRowStride: int64(raw.x_row_stride),
		Axis: int32(raw.axis), GroupSize: int64(raw.group_size), QMin: int32(raw.qmin), QMax: int32(raw.qmax),
		Symmetric: raw.symmetric != 0, Alignment: int32(raw.alignment),
	}
}

func (d *QuantizeDesc) toC(raw *C.lowbit_quantize_desc) {
	C.lowbit_quantize_desc_init(raw) // fields this binding does not know keep their defaults
	raw.op = C.lowbit_quantize_op(d.Op)
	raw.scope = C.lowbit_quantize_scope(d.Scope)
	raw.x_dtype = C.lowbit_dtype(d.XDType)
	raw.q_dtype = C.lowbit_dtype(d.QDType)
	raw.scale_dtype = C.lowbit_dtype(d.ScaleDType)
	raw.rank = C.int32_t(len(d.Dims))
	for i := 0; i < len(d.Dims) && i < 4; i++ {
		raw.dims[i] = C.int64_t(d.Dims[i])
	}
	raw.x_row_stride = C.int64_t(d.XRowStride)
	raw.axis = C.int32_t(d.Axis)
	raw.group_size = C.int64_t(d.GroupSize)
	raw.qmin = C.int32_t(d.QMin)
	raw.qmax = C.int32_t(d.QMax)
	raw.symmetric = 0
	if d.Symmetric {
		raw.symmetric = 1
	}
	raw.alignment = C.int32_t(d.Alignment)
}

func (d *QuantizeDesc) family() C.lowbit_op_family { return C.LOWBIT_FAMILY_QUANTIZE }
func (d *QuantizeDesc) size() uintptr              { return unsafe.Sizeof(C.lowbit_quantize_desc{}) }
func (d *QuantizeDesc) fill(p unsafe.Pointer)      { d.toC((*C.lowbit_quantize_desc)(p)) }

// cOps lays out op descriptors in C memory (they hold pointers, so they may
// not live in Go memory); free the result with C.free.
func cOps(ops []OpDesc) (*C.lowbit_op_desc, unsafe.Pointer) {
	n := uintptr(len(ops))
	head := n * unsafe.Sizeof(C.lowbit_op_desc{})
	total := head
	for _, op := range ops {
		total += (op.size() + 15) &^ 15
	}
	mem := C.calloc(1, C.size_t(total+16))
	arr := unsafe.Slice((*C.lowbit_op_desc)(mem), len(ops))
	off := (head + 15) &^ 15
	for i, op := range ops {
		p := unsafe.Add(mem, off)
		op.fill(p)
		arr[i].family = op.family()
		arr[i].reserved = 0
		arr[i].desc = p
		off += (op.size() + 15) &^ 15
	}
	return (*C.lowbit_op_desc)(mem), mem
}

// ---------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------

// Arg is one role-tagged device pointer (layout-identical to lowbit_arg).
type Arg struct {
	Role ArgRole
	_    int32
	Ptr  uint64
}

// Arg must match lowbit_arg exactly: it is passed to C without copying.
var _ = [1]struct{}{}[unsafe.Sizeof(Arg{})-unsafe.Sizeof(C.lowbit_arg{})]
var _ = [1]struct{}{}[unsafe.Offsetof(Arg{}.Ptr)-unsafe.Offsetof(C.lowbit_arg{}.ptr)]

// Plan is a validated problem with its kernel compiled and loaded.
// Immutable; safe to run from many goroutines at once.
type Plan struct {
	ptr    *C.lowbit_plan
	logger *logger
}

func newPlan(c *Context, create func(**C.lowbit_plan) C.lowbit_status) (*Plan, error) {
	if c == nil || c.ptr == nil {
		return nil, errClosed
	}
	var out *C.lowbit_plan
	err := call(func() C.lowbit_status { return create(&out) })
	runtime.KeepAlive(c)
	if err != nil {
		return nil, err
	}
	p := &Plan{ptr: out, logger: c.logger.retain()}
	runtime.SetFinalizer(p, (*Plan).Close)
	return p, nil
}

// NewQuantizePlan validates d, selects a kernel and loads it from the cache
// or compiles it (the first time only).
func (c *Context) NewQuantizePlan(d *QuantizeDesc) (*Plan, error) {
	var raw C.lowbit_quantize_desc
	d.toC(&raw)
	return newPlan(c, func(out **C.lowbit_plan) C.lowbit_status {
		return C.lowbit_quantize_plan_create(c.ptr, &raw, out)
	})
}

// NewPlan is NewQuantizePlan for a descriptor of any family.
func (c *Context) NewPlan(op OpDesc) (*Plan, error) {
	arr, mem := cOps([]OpDesc{op})
	defer C.free(mem)
	return newPlan(c, func(out **C.lowbit_plan) C.lowbit_status { return C.lowbit_plan_create(c.ptr, arr, out) })
}

// Prewarm compiles and caches the plans of all descriptors on up to
// `threads` threads (0: all CPUs). It returns each item's status and, if any
// failed, the first failure's error (its message names the item).
func (c *Context) Prewarm(ops []OpDesc, threads int) ([]Status, error) {
	if c == nil || c.ptr == nil {
		return nil, errClosed
	}
	arr, mem := cOps(ops)
	defer C.free(mem)
	results := make([]C.lowbit_status, len(ops)+1) // +1: never a zero-length slice
	err := call(func() C.lowbit_status {
		return C.lowbit_prewarm(c.ptr, arr, C.size_t(len(ops)), C.uint32_t(threads), &results[0])
	})
	runtime.KeepAlive(c)
	statuses := make([]Status, len(ops))
	for i := range statuses {
		statuses[i] = Status(results[i])
	}
	return statuses, err
}

// Close releases the plan. Closing twice is a no-op.
func (p *Plan) Close() error {
	if p == nil || p.ptr == nil {
		return nil
	}
	C.lowbit_plan_destroy(p.ptr)
	p.ptr = nil
	p.logger.release()
	p.logger = nil
	runtime.SetFinalizer(p, nil)
	return nil
}

// WorkspaceSize is the device workspace, in bytes, RunWithWorkspace needs.
func (p *Plan) WorkspaceSize() (int, error) {
	if p == nil || p.ptr == nil {
		return 0, errClosed
	}
	var n C.size_t
	err := call(func() C.lowbit_status { return C.lowbit_plan_workspace_size(p.ptr, &n) })
	runtime.KeepAlive(p)
	return int(n), err
}

// Describe returns the plan (op, kernel, parameters, cache key...) as JSON.
func (p *Plan) Describe() (string, error) {
	if p == nil || p.ptr == nil {
		return "", errClosed
	}
	defer runtime.KeepAlive(p)
	var n C.size_t
	if err := call(func() C.lowbit_status { return C.lowbit_plan_describe(p.ptr, nil, 0, &n) }); err != nil {
		return "", err
	}
	buf := C.malloc(n + 1)
	defer C.free(buf)
	if err := call(func() C.lowbit_status { return C.lowbit_plan_describe(p.ptr, (*C.char)(buf), n+1, &n) }); err != nil {
		return "", err
	}
	return C.GoStringN((*C.char)(buf), C.int(n)), nil
}

// Run enqueues the plan on stream (a CUstream; 0 for the default stream)
// with device pointers. Asynchronous: returns once enqueued.
func (p *Plan) Run(args []Arg, stream uintptr) error {
	return p.RunWithWorkspace(args, 0, 0, stream)
}

// RunWithWorkspace is Run with a device workspace of workspaceBytes bytes.
func (p *Plan) RunWithWorkspace(args []Arg, workspace uint64, workspaceBytes int, stream uintptr) error {
	if p == nil || p.ptr == nil {
		return errClosed
	}
	var a *C.lowbit_arg
	if len(args) > 0 {
		a = (*C.lowbit_arg)(unsafe.Pointer(&args[0]))
	}
	err := call(func() C.lowbit_status {
		return C.lowbit_go_plan_run(p.ptr, a, C.size_t(len(args)), C.uint64_t(workspace), C.size_t(workspaceBytes),
			C.uintptr_t(stream))
	})
	runtime.KeepAlive(p)
	runtime.KeepAlive(args)
	return err
}

// ---------------------------------------------------------------------------
// CPU reference
// ---------------------------------------------------------------------------

// HostArg is one role-tagged host buffer for ReferenceRun. Data is a slice of
// float32, float64, uint16 (f16/bf16 bits), int8, uint8 or int32.
type HostArg struct {
	Role ArgRole
	Data interface{}
}

func hostBytes(data interface{}) ([]byte, error) {
	view := func(p unsafe.Pointer, n, size int) []byte { return unsafe.Slice((*byte)(p), n*size) }
	switch s := data.(type) {
	case []float32:
		if len(s) > 0 {
			return view(unsafe.Pointer(&s[0]), len(s), 4), nil
		}
	case []float64:
		if len(s) > 0 {
			return view(unsafe.Pointer(&s[0]), len(s), 8), nil
		}
	case []uint16:
		if len(s) > 0 {
			return view(unsafe.Pointer(&s[0]), len(s), 2), nil
		}
	case []int8:
		if len(s) > 0 {
			return view(unsafe.Pointer(&s[0]), len(s), 1), nil
		}
	case []uint8:
		return s, nil
	case []int32:
		if len(s) > 0 {
			return view(unsafe.Pointer(&s[0]), len(s), 4), nil
		}
	default:
		return nil, &Error{Status: InvalidArgument, Message: fmt.Sprintf("lowbit: unsupported host buffer type %T", data)}
	}
	return nil, nil
}

// ReferenceRun runs lowbit's CPU reference of op on host buffers (the oracle
// its GPU kernels are tested against). The buffers are copied to C memory
// and back, so Go's pointer rules hold.
func ReferenceRun(op OpDesc, args []HostArg) error {
	views := make([][]byte, len(args))
	total := uintptr(0)
	for i, a := range args {
		b, err := hostBytes(a.Data)
		if err != nil {
			return err
		}
		views[i] = b
		total += (uintptr(len(b)) + 15) &^ 15
	}
	carr, opmem := cOps([]OpDesc{op})
	defer C.free(opmem)
	mem := C.calloc(1, C.size_t(total+16))
	defer C.free(mem)
	cargs := (*C.lowbit_arg)(C.calloc(C.size_t(len(args)+1), C.sizeof_lowbit_arg))
	defer C.free(unsafe.Pointer(cargs))
	argv := unsafe.Slice(cargs, len(args)+1)
	off := uintptr(0)
	for i, a := range args {
		p := unsafe.Add(mem, off)
		copy(unsafe.Slice((*byte)(p), len(views[i])), views[i])
		argv[i].role = C.lowbit_arg_role(a.Role)
		if len(views[i]) > 0 {
			argv[i].ptr = C.uint64_t(uintptr(p))
		}
		off += (uintptr(len(views[i])) + 15) &^ 15
	}
	err := call(func() C.lowbit_status { return C.lowbit_reference_run(carr, cargs, C.size_t(len(args))) })
	off = 0
	for i := range args {
		copy(views[i], unsafe.Slice((*byte)(unsafe.Add(mem, off)), len(views[i])))
		off += (uintptr(len(views[i])) + 15) &^ 15
	}
	return err
}
