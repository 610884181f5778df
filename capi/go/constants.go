package lowbit

// The values of lowbit.h's #defines, spelled out so that they show in the
// documentation; TestHeaderSync checks every one against the header.

// Status is a lowbit_status code. It implements error, so that
// errors.Is(err, lowbit.NoDevice) works on the *Error values this package
// returns.
type Status int32

const (
	OK                Status = 0
	Misaligned        Status = 1
	InvalidProblem    Status = 2
	Unsupported       Status = 3
	WorkspaceTooSmall Status = 4
	InvalidArgument   Status = 5
	NoDevice          Status = 6
	NoCompiler        Status = 7
	CompileFailed     Status = 8
	CudaError         Status = 9
	OutOfMemory       Status = 10
	CacheIO           Status = 11
	Internal          Status = 12
)

// DType is a lowbit_dtype element type.
type DType int32

const (
	F32  DType = 1
	F64  DType = 2
	F16  DType = 3
	BF16 DType = 4
	S8   DType = 5
	U8   DType = 6
	S4   DType = 7 // packed two per byte, element 2i in the low nibble
	U4   DType = 8
	S32  DType = 9
)

// LogLevel is a LOWBIT_LOG_* level.
type LogLevel int32

const (
	LogError LogLevel = 0
	LogWarn  LogLevel = 1
	LogInfo  LogLevel = 2 // cold compiles are logged at this level
	LogDebug LogLevel = 3
)

// CacheMode is a LOWBIT_CACHE_* mode.
type CacheMode int32

const (
	CacheReadWrite CacheMode = 0
	CacheReadOnly  CacheMode = 1
	CacheMemory    CacheMode = 2
)

// ArgRole is a lowbit_arg_role.
type ArgRole int32

const (
	ArgX         ArgRole = 1
	ArgQ         ArgRole = 2
	ArgScale     ArgRole = 3
	ArgZeroPoint ArgRole = 4
	ArgDY        ArgRole = 5
	ArgDX        ArgRole = 6
	ArgY         ArgRole = 7
	// Family 2 (weight-only matmul); that family has no Go wrapper yet.
	ArgW       ArgRole = 8
	ArgWScale  ArgRole = 9
	ArgWZero   ArgRole = 10
	ArgGIdx    ArgRole = 11
	ArgBias    ArgRole = 12
	ArgWNative ArgRole = 13
	ArgRows    ArgRole = 14 // not an address: Ptr holds a row count
)

// OpFamily is a lowbit_op_family.
type OpFamily int32

const (
	FamilyQuantize     OpFamily = 1
	FamilyWeightMatmul OpFamily = 2
)

// QuantizeOp is a LOWBIT_QOP_* op; lowbit.h documents each op's roles.
type QuantizeOp int32

const (
	OpQuantize             QuantizeOp = 1
	OpDequantize           QuantizeOp = 2
	OpQuantizeBackward     QuantizeOp = 3
	OpDequantizeBackward   QuantizeOp = 4
	OpFakeQuantize         QuantizeOp = 5
	OpFakeQuantizeBackward QuantizeOp = 6
	OpDynamicQuantize      QuantizeOp = 7
)

// Scope is a LOWBIT_SCOPE_* scale granularity.
type Scope int32

const (
	PerTensor  Scope = 1
	PerChannel Scope = 2
	PerToken   Scope = 3
	PerGroup   Scope = 4
)

// WqOp is a LOWBIT_WQ_OP_* op of family 2 (weight-only matmul).
type WqOp int32

const (
	WqOpMatmul WqOp = 1
	WqOpRepack WqOp = 2
)

// WqFormat is a LOWBIT_WQ_FORMAT_* weight storage format of family 2.
type WqFormat int32

const (
	WqFormatAWQ    WqFormat = 1
	WqFormatGPTQ   WqFormat = 2
	WqFormatGPTQV1 WqFormat = 3
	WqFormatNative WqFormat = 4
	WqFormatPlain  WqFormat = 5
)
