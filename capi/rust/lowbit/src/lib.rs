//! Safe Rust bindings of lowbit: low-bit quantization kernels for NVIDIA GPUs,
//! specialized per problem, JIT-compiled with NVRTC and cached on disk.
//!
//! ```no_run
//! use lowbit::{Context, ContextOptions, QuantizeDesc, DType};
//! # fn main() -> lowbit::Result<()> {
//! let ctx = Context::offline("sm_90a", ContextOptions::new())?;   // no GPU needed
//! let desc = QuantizeDesc::new().x_dtype(DType::BF16).q_dtype(DType::S8).shape(&[64, 4096]);
//! let plan = ctx.quantize_plan(&desc)?;                             // compiles into the cache
//! println!("{}", plan.describe()?);
//! # Ok(()) }
//! ```
//!
//! * Every fallible call returns [`Result<T>`]; an [`Error`] carries the
//!   [`Status`] (its numeric `code()`) and lowbit's detailed message.
//! * [`Context`] and [`Plan`] free their handles on drop. Both are `Send` and
//!   `Sync`, as lowbit.h documents: a context may be shared between threads, a
//!   plan is immutable and may run from many threads at once. A plan keeps its
//!   context's internals alive, so the two may be dropped in any order.
//! * Device memory is a raw `u64` (a `CUdeviceptr`) and a stream a raw
//!   `*mut c_void` (a `CUstream`), so pointers from cudarc or any other CUDA
//!   crate pass straight through ([`Plan::run`] is `unsafe` for that reason).
//! * The raw declarations are re-exported as [`sys`].
use std::ffi::{c_char, c_void, CStr, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::Arc;

pub use lowbit_sys as sys;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A failure status of the C API (LOWBIT_OK is not one of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    Misaligned,
    InvalidProblem,
    Unsupported,
    WorkspaceTooSmall,
    InvalidArgument,
    NoDevice,
    NoCompiler,
    CompileFailed,
    CudaError,
    OutOfMemory,
    CacheIo,
    Internal,
    /// A code this binding does not know (from a newer library).
    Unknown(i32),
}

impl Status {
    /// The status of a C return code; `None` for LOWBIT_OK.
    pub fn from_code(code: i32) -> Option<Status> {
        Some(match code {
            sys::LOWBIT_OK => return None,
            sys::LOWBIT_MISALIGNED => Status::Misaligned,
            sys::LOWBIT_INVALID_PROBLEM => Status::InvalidProblem,
            sys::LOWBIT_UNSUPPORTED => Status::Unsupported,
            sys::LOWBIT_WORKSPACE_TOO_SMALL => Status::WorkspaceTooSmall,
            sys::LOWBIT_INVALID_ARGUMENT => Status::InvalidArgument,
            sys::LOWBIT_NO_DEVICE => Status::NoDevice,
            sys::LOWBIT_NO_COMPILER => Status::NoCompiler,
            sys::LOWBIT_COMPILE_FAILED => Status::CompileFailed,
            sys::LOWBIT_CUDA_ERROR => Status::CudaError,
            sys::LOWBIT_OUT_OF_MEMORY => Status::OutOfMemory,
            sys::LOWBIT_CACHE_IO => Status::CacheIo,
            sys::LOWBIT_INTERNAL => Status::Internal,
            other => Status::Unknown(other),
        })
    }

    /// The numeric LOWBIT_* code.
    pub fn code(self) -> i32 {
        match self {
            Status::Misaligned => sys::LOWBIT_MISALIGNED,
            Status::InvalidProblem => sys::LOWBIT_INVALID_PROBLEM,
            Status::Unsupported => sys::LOWBIT_UNSUPPORTED,
            Status::WorkspaceTooSmall => sys::LOWBIT_WORKSPACE_TOO_SMALL,
            Status::InvalidArgument => sys::LOWBIT_INVALID_ARGUMENT,
            Status::NoDevice => sys::LOWBIT_NO_DEVICE,
            Status::NoCompiler => sys::LOWBIT_NO_COMPILER,
            Status::CompileFailed => sys::LOWBIT_COMPILE_FAILED,
            Status::CudaError => sys::LOWBIT_CUDA_ERROR,
            Status::OutOfMemory => sys::LOWBIT_OUT_OF_MEMORY,
            Status::CacheIo => sys::LOWBIT_CACHE_IO,
            Status::Internal => sys::LOWBIT_INTERNAL,
            Status::Unknown(c) => c,
        }
    }

    /// lowbit's static description ("LOWBIT_NO_DEVICE: no CUDA driver ...").
    pub fn description(self) -> &'static str {
        status_string(self.code())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// A failed lowbit call: the status and the detailed message of that failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    /// An error with a given status and message.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Error { status, message: message.into() }
    }
    /// Captures the calling thread's last error message for `code`.
    fn last(code: i32) -> Self {
        let status = Status::from_code(code).unwrap_or(Status::Unknown(code));
        Error { status, message: last_error_message() }
    }
    pub fn status(&self) -> Status {
        self.status
    }
    /// The numeric LOWBIT_* code.
    pub fn code(&self) -> i32 {
        self.status.code()
    }
    /// lowbit's detailed message (the NVRTC log, the CUresult name, the bad field...).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.status)
        } else {
            write!(f, "{}: {}", self.status, self.message)
        }
    }
}

impl std::error::Error for Error {}

/// `Result<T, lowbit::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn check(code: sys::lowbit_status) -> Result<()> {
    if code == sys::LOWBIT_OK {
        Ok(())
    } else {
        Err(Error::last(code))
    }
}

unsafe fn static_str(p: *const c_char) -> &'static str {
    if p.is_null() {
        ""
    } else {
        CStr::from_ptr(p).to_str().unwrap_or("")
    }
}

fn c_array_string(a: &[c_char]) -> String {
    let bytes: Vec<u8> = a.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---------------------------------------------------------------------------
// Library-wide functions
// ---------------------------------------------------------------------------

/// The loaded library's version, MAJOR * 10000 + MINOR * 100 + PATCH.
pub fn version_number() -> u32 {
    unsafe { sys::lowbit_version_number() }
}

/// The loaded library's version, "MAJOR.MINOR.PATCH".
pub fn version_string() -> &'static str {
    unsafe { static_str(sys::lowbit_version_string()) }
}

/// The static description of any status code (including 0 and unknown codes).
pub fn status_string(code: i32) -> &'static str {
    unsafe { static_str(sys::lowbit_status_string(code)) }
}

/// The calling thread's last error message ("" if none). The binding already
/// puts it into every [`Error`]; this is for callers of [`sys`] functions.
pub fn last_error_message() -> String {
    unsafe {
        let n = sys::lowbit_copy_last_error_message(ptr::null_mut(), 0);
        let mut buf = vec![0u8; n + 1];
        sys::lowbit_copy_last_error_message(buf.as_mut_ptr().cast(), buf.len());
        buf.truncate(n);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

// ---------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------

/// Element types (LOWBIT_DTYPE_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum DType {
    F32 = sys::LOWBIT_DTYPE_F32,
    F64 = sys::LOWBIT_DTYPE_F64,
    F16 = sys::LOWBIT_DTYPE_F16,
    BF16 = sys::LOWBIT_DTYPE_BF16,
    S8 = sys::LOWBIT_DTYPE_S8,
    U8 = sys::LOWBIT_DTYPE_U8,
    /// Packed two per byte, element 2i in the low nibble.
    S4 = sys::LOWBIT_DTYPE_S4,
    U4 = sys::LOWBIT_DTYPE_U4,
    S32 = sys::LOWBIT_DTYPE_S32,
}

impl DType {
    /// lowbit's short name: "f32", "bf16", "s8", ...
    pub fn name(self) -> &'static str {
        unsafe { static_str(sys::lowbit_dtype_name(self as i32)) }
    }
}

/// Quantization ops (LOWBIT_QOP_*); see lowbit.h for each op's argument roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum QuantizeOp {
    Quantize = sys::LOWBIT_QOP_QUANTIZE,
    Dequantize = sys::LOWBIT_QOP_DEQUANTIZE,
    QuantizeBackward = sys::LOWBIT_QOP_QUANTIZE_BACKWARD,
    DequantizeBackward = sys::LOWBIT_QOP_DEQUANTIZE_BACKWARD,
    FakeQuantize = sys::LOWBIT_QOP_FAKE_QUANTIZE,
    FakeQuantizeBackward = sys::LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD,
    DynamicQuantize = sys::LOWBIT_QOP_DYNAMIC_QUANTIZE,
}

/// Scale granularity (LOWBIT_SCOPE_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Scope {
    PerTensor = sys::LOWBIT_SCOPE_PER_TENSOR,
    PerChannel = sys::LOWBIT_SCOPE_PER_CHANNEL,
    PerToken = sys::LOWBIT_SCOPE_PER_TOKEN,
    PerGroup = sys::LOWBIT_SCOPE_PER_GROUP,
}

/// Argument roles of [`Plan::run`] (LOWBIT_ARG_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ArgRole {
    X = sys::LOWBIT_ARG_X,
    Q = sys::LOWBIT_ARG_Q,
    Scale = sys::LOWBIT_ARG_SCALE,
    ZeroPoint = sys::LOWBIT_ARG_ZERO_POINT,
    Dy = sys::LOWBIT_ARG_DY,
    Dx = sys::LOWBIT_ARG_DX,
    Y = sys::LOWBIT_ARG_Y,
    /// Family 2 (weight-only matmul) roles; that family has no safe wrapper yet.
    W = sys::LOWBIT_ARG_W,
    WScale = sys::LOWBIT_ARG_W_SCALE,
    WZero = sys::LOWBIT_ARG_W_ZERO,
    GIdx = sys::LOWBIT_ARG_G_IDX,
    Bias = sys::LOWBIT_ARG_BIAS,
    WNative = sys::LOWBIT_ARG_W_NATIVE,
    /// Not an address: `ptr` holds a row count.
    Rows = sys::LOWBIT_ARG_ROWS,
}

/// Disk cache behaviour (LOWBIT_CACHE_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(i32)]
pub enum CacheMode {
    #[default]
    ReadWrite = sys::LOWBIT_CACHE_READ_WRITE,
    ReadOnly = sys::LOWBIT_CACHE_READ_ONLY,
    Memory = sys::LOWBIT_CACHE_MEMORY,
}

/// Log levels (LOWBIT_LOG_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum LogLevel {
    Error = sys::LOWBIT_LOG_ERROR,
    Warn = sys::LOWBIT_LOG_WARN,
    /// Cold compiles are logged at this level.
    Info = sys::LOWBIT_LOG_INFO,
    Debug = sys::LOWBIT_LOG_DEBUG,
}

impl LogLevel {
    fn from_raw(level: i32) -> LogLevel {
        match level {
            sys::LOWBIT_LOG_ERROR => LogLevel::Error,
            sys::LOWBIT_LOG_WARN => LogLevel::Warn,
            sys::LOWBIT_LOG_INFO => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }
}

// ---------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------

type LogFn = dyn Fn(LogLevel, &str) + Send + Sync + 'static;

/// The log sink, shared by a context and its plans (lowbit may call it until
/// the last of them is gone).
struct Logger(Box<LogFn>);

unsafe extern "C" fn log_trampoline(user_data: *mut c_void, level: i32, message: *const c_char) {
    if user_data.is_null() || message.is_null() {
        return;
    }
    let logger = &*(user_data as *const Logger);
    let text = CStr::from_ptr(message).to_string_lossy();
    // A panic must not unwind into C.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (logger.0)(LogLevel::from_raw(level), &text)));
}

/// Options of a new [`Context`] (lowbit_context_options); unset fields keep
/// lowbit's defaults.
#[derive(Default)]
pub struct ContextOptions {
    cache_dir: Option<PathBuf>,
    cache_mode: Option<CacheMode>,
    cache_max_bytes: Option<u64>,
    log_level: Option<LogLevel>,
    logger: Option<Arc<Logger>>,
}

impl fmt::Debug for ContextOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextOptions")
            .field("cache_dir", &self.cache_dir)
            .field("cache_mode", &self.cache_mode)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("log_level", &self.log_level)
            .field("logger", &self.logger.is_some())
            .finish()
    }
}

impl ContextOptions {
    pub fn new() -> Self {
        Self::default()
    }
    /// Cache directory (default: $LOWBIT_CACHE_DIR, $XDG_CACHE_HOME/lowbit, ~/.cache/lowbit).
    pub fn cache_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cache_dir = Some(dir.as_ref().to_path_buf());
        self
    }
    pub fn cache_mode(mut self, mode: CacheMode) -> Self {
        self.cache_mode = Some(mode);
        self
    }
    /// LRU size cap of the disk cache (0: lowbit's default).
    pub fn cache_max_bytes(mut self, bytes: u64) -> Self {
        self.cache_max_bytes = Some(bytes);
        self
    }
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = Some(level);
        self
    }
    /// Receives lowbit's log lines instead of stderr. May be called from any
    /// thread that uses the context, concurrently.
    pub fn logger(mut self, f: impl Fn(LogLevel, &str) + Send + Sync + 'static) -> Self {
        self.logger = Some(Arc::new(Logger(Box::new(f))));
        self
    }

    fn with_raw<T>(&self, f: impl FnOnce(*const sys::lowbit_context_options) -> T) -> Result<T> {
        let mut raw = std::mem::MaybeUninit::<sys::lowbit_context_options>::zeroed();
        unsafe { sys::lowbit_context_options_init(raw.as_mut_ptr()) };
        let mut raw = unsafe { raw.assume_init() };
        let dir = match &self.cache_dir {
            Some(d) => Some(path_cstring(d)?),
            None => None,
        };
        raw.cache_dir = dir.as_ref().map_or(ptr::null(), |d| d.as_ptr());
        if let Some(m) = self.cache_mode {
            raw.cache_mode = m as i32;
        }
        if let Some(b) = self.cache_max_bytes {
            raw.cache_max_bytes = b;
        }
        if let Some(l) = self.log_level {
            raw.log_level = l as i32;
        }
        if let Some(logger) = &self.logger {
            raw.log_callback = Some(log_trampoline);
            raw.log_user_data = Arc::as_ptr(logger) as *mut c_void;
        }
        Ok(f(&raw))
    }
}

fn path_cstring(p: &Path) -> Result<CString> {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt;
        p.as_os_str().as_bytes().to_vec()
    };
    #[cfg(not(unix))]
    let bytes = p.to_string_lossy().into_owned().into_bytes();
    CString::new(bytes).map_err(|_| Error::new(Status::InvalidArgument, "path contains a NUL byte"))
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::new(Status::InvalidArgument, format!("{what} contains a NUL byte")))
}

/// A lowbit context: one device (or, offline, one target architecture) and
/// its kernel cache. Shareable between threads (`Send + Sync`).
pub struct Context {
    raw: NonNull<sys::lowbit_context>,
    logger: Option<Arc<Logger>>,
}

// lowbit.h: "a lowbit_context may be shared between threads".
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("raw", &self.raw).finish()
    }
}

impl Context {
    fn create(
        options: ContextOptions,
        make: impl FnOnce(*const sys::lowbit_context_options, *mut *mut sys::lowbit_context) -> i32,
    ) -> Result<Context> {
        let mut out: *mut sys::lowbit_context = ptr::null_mut();
        let code = options.with_raw(|raw| make(raw, &mut out))?;
        check(code)?;
        let raw = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "lowbit returned a NULL context"))?;
        Ok(Context { raw, logger: options.logger })
    }

    /// A context on device `ordinal` (its primary CUDA context). NoDevice
    /// without a driver or GPU.
    pub fn device(ordinal: i32, options: ContextOptions) -> Result<Context> {
        Self::create(options, |o, out| unsafe { sys::lowbit_context_create_device(ordinal, o, out) })
    }

    /// A context on the calling thread's current CUDA context (e.g. one that
    /// cudarc made current). NoDevice if there is none.
    pub fn current(options: ContextOptions) -> Result<Context> {
        Self::create(options, |o, out| unsafe { sys::lowbit_context_create_current(o, out) })
    }

    /// An offline context for a target such as "sm_90a": plans compile into
    /// the cache but cannot run. Needs no GPU or driver.
    pub fn offline(arch: &str, options: ContextOptions) -> Result<Context> {
        let arch = cstring(arch, "arch")?;
        Self::create(options, |o, out| unsafe { sys::lowbit_context_create_offline(arch.as_ptr(), o, out) })
    }

    /// The raw handle (still owned by this object).
    pub fn as_raw(&self) -> *mut sys::lowbit_context {
        self.raw.as_ptr()
    }

    /// The device and compiler of this context.
    pub fn info(&self) -> Result<DeviceInfo> {
        let mut raw = std::mem::MaybeUninit::<sys::lowbit_device_info>::zeroed();
        unsafe {
            (*raw.as_mut_ptr()).struct_size = std::mem::size_of::<sys::lowbit_device_info>() as u32;
            check(sys::lowbit_context_get_info(self.raw.as_ptr(), raw.as_mut_ptr()))?;
        }
        let raw = unsafe { raw.assume_init() };
        let cache_dir = c_array_string(&raw.cache_dir);
        Ok(DeviceInfo {
            offline: raw.offline != 0,
            ordinal: raw.ordinal,
            name: c_array_string(&raw.name),
            arch: c_array_string(&raw.arch),
            compute_capability: raw.compute_capability,
            sm_count: raw.sm_count,
            driver_version: raw.driver_version,
            nvrtc_version: raw.nvrtc_version,
            global_memory_bytes: raw.global_memory_bytes,
            l2_cache_bytes: raw.l2_cache_bytes,
            cache_dir: if cache_dir.is_empty() { None } else { Some(PathBuf::from(cache_dir)) },
        })
    }

    /// Cache counters since creation, and the disk usage now.
    pub fn cache_stats(&self) -> Result<CacheStats> {
        let mut s = sys::lowbit_cache_stats {
            struct_size: std::mem::size_of::<sys::lowbit_cache_stats>() as u32,
            ..Default::default()
        };
        check(unsafe { sys::lowbit_context_cache_stats(self.raw.as_ptr(), &mut s) })?;
        Ok(CacheStats {
            memory_hits: s.memory_hits,
            disk_hits: s.disk_hits,
            misses: s.misses,
            compiles: s.compiles,
            compile_failures: s.compile_failures,
            damaged_entries: s.damaged_entries,
            compile_ms: s.compile_ms,
            disk_entries: s.disk_entries,
            disk_bytes: s.disk_bytes,
        })
    }

    /// Creates a plan for any op family: validates, selects, and loads or
    /// compiles the kernel (the first time only).
    pub fn plan(&self, op: OpDesc<'_>) -> Result<Plan> {
        let raw_op = op.to_raw();
        let mut out: *mut sys::lowbit_plan = ptr::null_mut();
        check(unsafe { sys::lowbit_plan_create(self.raw.as_ptr(), &raw_op, &mut out) })?;
        let raw = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "lowbit returned a NULL plan"))?;
        Ok(Plan { raw, _logger: self.logger.clone() })
    }

    /// Shorthand for `plan(OpDesc::Quantize(desc))`.
    pub fn quantize_plan(&self, desc: &QuantizeDesc) -> Result<Plan> {
        self.plan(OpDesc::Quantize(desc))
    }

    /// Compiles and caches the plan of every descriptor on up to `threads`
    /// threads (0: all CPUs). The error is the first failure's, its message
    /// naming the item.
    pub fn prewarm(&self, ops: &[OpDesc<'_>], threads: u32) -> Result<()> {
        self.prewarm_with_statuses(ops, threads).0
    }

    /// Like [`prewarm`](Self::prewarm), also returning each item's outcome
    /// (`None` for success).
    pub fn prewarm_with_statuses(&self, ops: &[OpDesc<'_>], threads: u32) -> (Result<()>, Vec<Option<Status>>) {
        let raw: Vec<sys::lowbit_op_desc> = ops.iter().map(|o| o.to_raw()).collect();
        let mut results = vec![sys::LOWBIT_OK; raw.len()];
        let code =
            unsafe { sys::lowbit_prewarm(self.raw.as_ptr(), raw.as_ptr(), raw.len(), threads, results.as_mut_ptr()) };
        (check(code), results.into_iter().map(Status::from_code).collect())
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        unsafe { sys::lowbit_context_destroy(self.raw.as_ptr()) }
    }
}

/// What [`Context::info`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub offline: bool,
    /// -1 offline.
    pub ordinal: i32,
    /// "" offline.
    pub name: String,
    /// Compile target, e.g. "sm_90a".
    pub arch: String,
    pub compute_capability: i32,
    pub sm_count: i32,
    pub driver_version: i32,
    pub nvrtc_version: i32,
    pub global_memory_bytes: u64,
    pub l2_cache_bytes: u64,
    /// The writable cache directory; `None` if memory-only.
    pub cache_dir: Option<PathBuf>,
}

/// What [`Context::cache_stats`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct CacheStats {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub misses: u64,
    pub compiles: u64,
    pub compile_failures: u64,
    pub damaged_entries: u64,
    pub compile_ms: f64,
    pub disk_entries: u64,
    pub disk_bytes: u64,
}

// ---------------------------------------------------------------------------
// Descriptors
// ---------------------------------------------------------------------------

/// A descriptor of any op family.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum OpDesc<'a> {
    Quantize(&'a QuantizeDesc),
}

impl OpDesc<'_> {
    fn to_raw(self) -> sys::lowbit_op_desc {
        match self {
            OpDesc::Quantize(d) => sys::lowbit_op_desc {
                family: sys::LOWBIT_FAMILY_QUANTIZE,
                reserved: 0,
                desc: (&d.raw as *const sys::lowbit_quantize_desc).cast(),
            },
        }
    }
}

impl<'a> From<&'a QuantizeDesc> for OpDesc<'a> {
    fn from(d: &'a QuantizeDesc) -> Self {
        OpDesc::Quantize(d)
    }
}

/// An elementwise quantization problem (lowbit_quantize_desc), starting from
/// lowbit's defaults: quantize, per tensor, f32 -> s8, rank 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantizeDesc {
    raw: sys::lowbit_quantize_desc,
}

impl Default for QuantizeDesc {
    fn default() -> Self {
        Self::new()
    }
}

impl QuantizeDesc {
    pub fn new() -> Self {
        let mut raw = sys::lowbit_quantize_desc::default();
        unsafe { sys::lowbit_quantize_desc_init(&mut raw) };
        QuantizeDesc { raw }
    }
    pub fn op(mut self, op: QuantizeOp) -> Self {
        self.raw.op = op as i32;
        self
    }
    pub fn scope(mut self, scope: Scope) -> Self {
        self.raw.scope = scope as i32;
        self
    }
    pub fn x_dtype(mut self, t: DType) -> Self {
        self.raw.x_dtype = t as i32;
        self
    }
    pub fn q_dtype(mut self, t: DType) -> Self {
        self.raw.q_dtype = t as i32;
        self
    }
    pub fn scale_dtype(mut self, t: DType) -> Self {
        self.raw.scale_dtype = t as i32;
        self
    }
    /// Row-major dims (1..4 of them; more is reported as InvalidProblem by
    /// plan creation).
    pub fn shape(mut self, dims: &[i64]) -> Self {
        self.raw.rank = dims.len().min(i32::MAX as usize) as i32;
        self.raw.dims = [0; 4];
        for (slot, d) in self.raw.dims.iter_mut().zip(dims) {
            *slot = *d;
        }
        self
    }
    /// Elements between rows of X (0: contiguous).
    pub fn x_row_stride(mut self, stride: i64) -> Self {
        self.raw.x_row_stride = stride;
        self
    }
    pub fn axis(mut self, axis: i32) -> Self {
        self.raw.axis = axis;
        self
    }
    pub fn group_size(mut self, g: i64) -> Self {
        self.raw.group_size = g;
        self
    }
    /// Clamp range; (0, 0) means the full range of the q type.
    pub fn range(mut self, qmin: i32, qmax: i32) -> Self {
        self.raw.qmin = qmin;
        self.raw.qmax = qmax;
        self
    }
    pub fn symmetric(mut self, symmetric: bool) -> Self {
        self.raw.symmetric = symmetric as i32;
        self
    }
    /// Alignment in bytes promised for every pointer passed to run (1..16).
    pub fn alignment(mut self, bytes: i32) -> Self {
        self.raw.alignment = bytes;
        self
    }
    pub fn as_raw(&self) -> &sys::lowbit_quantize_desc {
        &self.raw
    }
    /// Direct access to every field of the C struct.
    pub fn as_raw_mut(&mut self) -> &mut sys::lowbit_quantize_desc {
        &mut self.raw
    }
}

// ---------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------

/// One role-tagged pointer for [`Plan::run`] (a device address) or
/// [`reference_run`] (a host address). Layout-compatible with lowbit_arg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub struct Arg(sys::lowbit_arg);

impl Arg {
    pub fn new(role: ArgRole, ptr: u64) -> Self {
        Arg(sys::lowbit_arg { role: role as i32, reserved: 0, ptr })
    }
    pub fn x(ptr: u64) -> Self {
        Self::new(ArgRole::X, ptr)
    }
    pub fn q(ptr: u64) -> Self {
        Self::new(ArgRole::Q, ptr)
    }
    pub fn scale(ptr: u64) -> Self {
        Self::new(ArgRole::Scale, ptr)
    }
    pub fn zero_point(ptr: u64) -> Self {
        Self::new(ArgRole::ZeroPoint, ptr)
    }
    pub fn dy(ptr: u64) -> Self {
        Self::new(ArgRole::Dy, ptr)
    }
    pub fn dx(ptr: u64) -> Self {
        Self::new(ArgRole::Dx, ptr)
    }
    pub fn y(ptr: u64) -> Self {
        Self::new(ArgRole::Y, ptr)
    }
    /// A host slice, for [`reference_run`].
    pub fn host<T>(role: ArgRole, data: &[T]) -> Self {
        Self::new(role, data.as_ptr() as usize as u64)
    }
    /// A writable host slice, for [`reference_run`].
    pub fn host_mut<T>(role: ArgRole, data: &mut [T]) -> Self {
        Self::new(role, data.as_mut_ptr() as usize as u64)
    }
    pub fn role(&self) -> i32 {
        self.0.role
    }
    pub fn ptr(&self) -> u64 {
        self.0.ptr
    }
}

/// A validated problem with its kernel compiled and loaded. Immutable; may
/// run from many threads at once (`Send + Sync`).
pub struct Plan {
    raw: NonNull<sys::lowbit_plan>,
    _logger: Option<Arc<Logger>>,
}

// lowbit.h: "A lowbit_plan is immutable after creation: any number of threads
// may run it at the same time".
unsafe impl Send for Plan {}
unsafe impl Sync for Plan {}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan").field("raw", &self.raw).finish()
    }
}

impl Plan {
    pub fn as_raw(&self) -> *mut sys::lowbit_plan {
        self.raw.as_ptr()
    }

    /// Bytes of device workspace [`run_with_workspace`](Self::run_with_workspace) needs.
    pub fn workspace_size(&self) -> Result<usize> {
        let mut bytes = 0usize;
        check(unsafe { sys::lowbit_plan_workspace_size(self.raw.as_ptr(), &mut bytes) })?;
        Ok(bytes)
    }

    /// The chosen kernel(s) as JSON text.
    pub fn describe(&self) -> Result<String> {
        let mut len = 0usize;
        check(unsafe { sys::lowbit_plan_describe(self.raw.as_ptr(), ptr::null_mut(), 0, &mut len) })?;
        let mut buf = vec![0u8; len + 1];
        check(unsafe { sys::lowbit_plan_describe(self.raw.as_ptr(), buf.as_mut_ptr().cast(), buf.len(), &mut len) })?;
        buf.truncate(len.min(buf.len() - 1));
        String::from_utf8(buf).map_err(|_| Error::new(Status::Internal, "describe returned invalid UTF-8"))
    }

    /// Enqueues the plan on `stream` (a CUstream, null for the default stream)
    /// with no workspace. Asynchronous.
    ///
    /// # Safety
    /// Every pointer must be a live device allocation of the size and type the
    /// plan's descriptor implies, usable by the stream, until the kernel has
    /// finished; lowbit checks roles, NULLs and alignment but not extents.
    pub unsafe fn run(&self, args: &[Arg], stream: *mut c_void) -> Result<()> {
        self.run_with_workspace(args, 0, 0, stream)
    }

    /// [`run`](Self::run) with a device workspace of `workspace_bytes` bytes.
    ///
    /// # Safety
    /// As for [`run`](Self::run); the workspace too must stay valid until the
    /// kernel has finished.
    pub unsafe fn run_with_workspace(
        &self,
        args: &[Arg],
        workspace: u64,
        workspace_bytes: usize,
        stream: *mut c_void,
    ) -> Result<()> {
        check(sys::lowbit_plan_run(
            self.raw.as_ptr(),
            args.as_ptr().cast(),
            args.len(),
            workspace,
            workspace_bytes,
            stream,
        ))
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        unsafe { sys::lowbit_plan_destroy(self.raw.as_ptr()) }
    }
}

/// Runs lowbit's CPU reference of `op` on host memory (the oracle its GPU
/// kernels are tested against).
///
/// # Safety
/// Every pointer must be a host buffer of the size and type the descriptor
/// implies ([`Arg::host`] / [`Arg::host_mut`] make them from slices).
pub unsafe fn reference_run(op: OpDesc<'_>, args: &[Arg]) -> Result<()> {
    let raw = op.to_raw();
    check(sys::lowbit_reference_run(&raw, args.as_ptr().cast(), args.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_are_send_and_sync() {
        assert_send_sync::<Context>();
        assert_send_sync::<Plan>();
        assert_send_sync::<Error>();
    }

    #[test]
    fn status_round_trips() {
        for code in 1..=12 {
            assert_eq!(Status::from_code(code).unwrap().code(), code);
        }
        assert_eq!(Status::from_code(0), None);
        assert_eq!(Status::from_code(99), Some(Status::Unknown(99)));
    }
}
