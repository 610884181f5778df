//! Raw declarations of lowbit's C API, `include/lowbit/lowbit.h`.
//!
//! Everything here mirrors the header one to one (names, field order, types);
//! the unit tests parse the header and fail if anything differs. For a safe
//! interface use the `lowbit` crate.
//!
//! Linking: build.rs finds liblowbit.so through `$LOWBIT_LIB_DIR` or
//! `pkg-config lowbit`.
//!
//! Thread safety (from the header): a `lowbit_context` may be shared between
//! threads; a `lowbit_plan` is immutable and may run from many threads at
//! once. `lowbit_last_error_message()` is per thread.
#![allow(non_camel_case_types)]
#![cfg_attr(not(test), no_std)]

use core::ffi::{c_char, c_void};
use core::marker::{PhantomData, PhantomPinned};

// ---------------------------------------------------------------------------
// Status codes
// ---------------------------------------------------------------------------

pub type lowbit_status = i32;

pub const LOWBIT_OK: lowbit_status = 0;
pub const LOWBIT_MISALIGNED: lowbit_status = 1;
pub const LOWBIT_INVALID_PROBLEM: lowbit_status = 2;
pub const LOWBIT_UNSUPPORTED: lowbit_status = 3;
pub const LOWBIT_WORKSPACE_TOO_SMALL: lowbit_status = 4;
pub const LOWBIT_INVALID_ARGUMENT: lowbit_status = 5;
pub const LOWBIT_NO_DEVICE: lowbit_status = 6;
pub const LOWBIT_NO_COMPILER: lowbit_status = 7;
pub const LOWBIT_COMPILE_FAILED: lowbit_status = 8;
pub const LOWBIT_CUDA_ERROR: lowbit_status = 9;
pub const LOWBIT_OUT_OF_MEMORY: lowbit_status = 10;
pub const LOWBIT_CACHE_IO: lowbit_status = 11;
pub const LOWBIT_INTERNAL: lowbit_status = 12;

// ---------------------------------------------------------------------------
// Data types
// ---------------------------------------------------------------------------

pub type lowbit_dtype = i32;
pub const LOWBIT_DTYPE_F32: lowbit_dtype = 1;
pub const LOWBIT_DTYPE_F64: lowbit_dtype = 2;
pub const LOWBIT_DTYPE_F16: lowbit_dtype = 3;
pub const LOWBIT_DTYPE_BF16: lowbit_dtype = 4;
pub const LOWBIT_DTYPE_S8: lowbit_dtype = 5;
pub const LOWBIT_DTYPE_U8: lowbit_dtype = 6;
pub const LOWBIT_DTYPE_S4: lowbit_dtype = 7;
pub const LOWBIT_DTYPE_U4: lowbit_dtype = 8;
pub const LOWBIT_DTYPE_S32: lowbit_dtype = 9;

// ---------------------------------------------------------------------------
// Context
// ---------------------------------------------------------------------------

/// Opaque; shareable between threads.
#[repr(C)]
pub struct lowbit_context {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

pub const LOWBIT_LOG_ERROR: i32 = 0;
pub const LOWBIT_LOG_WARN: i32 = 1;
pub const LOWBIT_LOG_INFO: i32 = 2;
pub const LOWBIT_LOG_DEBUG: i32 = 3;

pub type lowbit_log_callback = Option<unsafe extern "C" fn(user_data: *mut c_void, level: i32, message: *const c_char)>;

pub const LOWBIT_CACHE_READ_WRITE: i32 = 0;
pub const LOWBIT_CACHE_READ_ONLY: i32 = 1;
pub const LOWBIT_CACHE_MEMORY: i32 = 2;

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct lowbit_context_options {
    pub struct_size: u32,
    pub cache_dir: *const c_char,
    pub cache_mode: i32,
    pub cache_max_bytes: u64,
    pub log_callback: lowbit_log_callback,
    pub log_user_data: *mut c_void,
    pub log_level: i32,
}

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct lowbit_device_info {
    pub struct_size: u32,
    pub offline: i32,
    pub ordinal: i32,
    pub name: [c_char; 128],
    pub arch: [c_char; 16],
    pub compute_capability: i32,
    pub sm_count: i32,
    pub driver_version: i32,
    pub nvrtc_version: i32,
    pub global_memory_bytes: u64,
    pub l2_cache_bytes: u64,
    pub cache_dir: [c_char; 512],
}

// ---------------------------------------------------------------------------
// Kernel cache
// ---------------------------------------------------------------------------

#[repr(C)]
#[derive(Debug, Copy, Clone, Default)]
pub struct lowbit_cache_stats {
    pub struct_size: u32,
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
// Plans
// ---------------------------------------------------------------------------

/// Opaque; immutable, may run from many threads at once.
#[repr(C)]
pub struct lowbit_plan {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

pub type lowbit_arg_role = i32;
pub const LOWBIT_ARG_X: lowbit_arg_role = 1;
pub const LOWBIT_ARG_Q: lowbit_arg_role = 2;
pub const LOWBIT_ARG_SCALE: lowbit_arg_role = 3;
pub const LOWBIT_ARG_ZERO_POINT: lowbit_arg_role = 4;
pub const LOWBIT_ARG_DY: lowbit_arg_role = 5;
pub const LOWBIT_ARG_DX: lowbit_arg_role = 6;
pub const LOWBIT_ARG_Y: lowbit_arg_role = 7;
pub const LOWBIT_ARG_W: lowbit_arg_role = 8;
pub const LOWBIT_ARG_W_SCALE: lowbit_arg_role = 9;
pub const LOWBIT_ARG_W_ZERO: lowbit_arg_role = 10;
pub const LOWBIT_ARG_G_IDX: lowbit_arg_role = 11;
pub const LOWBIT_ARG_BIAS: lowbit_arg_role = 12;
pub const LOWBIT_ARG_W_NATIVE: lowbit_arg_role = 13;
/// Not an address: `ptr` holds a row count (family 2).
pub const LOWBIT_ARG_ROWS: lowbit_arg_role = 14;

#[repr(C)]
#[derive(Debug, Copy, Clone, Default, PartialEq, Eq)]
pub struct lowbit_arg {
    pub role: lowbit_arg_role,
    pub reserved: i32,
    pub ptr: u64,
}

pub type lowbit_op_family = i32;
pub const LOWBIT_FAMILY_QUANTIZE: lowbit_op_family = 1;
pub const LOWBIT_FAMILY_WEIGHT_MATMUL: lowbit_op_family = 2;

#[repr(C)]
#[derive(Debug, Copy, Clone)]
pub struct lowbit_op_desc {
    pub family: lowbit_op_family,
    pub reserved: i32,
    pub desc: *const c_void,
}

// ---------------------------------------------------------------------------
// Family 1: elementwise quantization
// ---------------------------------------------------------------------------

pub type lowbit_quantize_op = i32;
pub const LOWBIT_QOP_QUANTIZE: lowbit_quantize_op = 1;
pub const LOWBIT_QOP_DEQUANTIZE: lowbit_quantize_op = 2;
pub const LOWBIT_QOP_QUANTIZE_BACKWARD: lowbit_quantize_op = 3;
pub const LOWBIT_QOP_DEQUANTIZE_BACKWARD: lowbit_quantize_op = 4;
pub const LOWBIT_QOP_FAKE_QUANTIZE: lowbit_quantize_op = 5;
pub const LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD: lowbit_quantize_op = 6;
pub const LOWBIT_QOP_DYNAMIC_QUANTIZE: lowbit_quantize_op = 7;

pub type lowbit_quantize_scope = i32;
pub const LOWBIT_SCOPE_PER_TENSOR: lowbit_quantize_scope = 1;
pub const LOWBIT_SCOPE_PER_CHANNEL: lowbit_quantize_scope = 2;
pub const LOWBIT_SCOPE_PER_TOKEN: lowbit_quantize_scope = 3;
pub const LOWBIT_SCOPE_PER_GROUP: lowbit_quantize_scope = 4;

#[repr(C)]
#[derive(Debug, Copy, Clone, Default, PartialEq, Eq)]
pub struct lowbit_quantize_desc {
    pub struct_size: u32,
    pub op: lowbit_quantize_op,
    pub scope: lowbit_quantize_scope,
    pub x_dtype: lowbit_dtype,
    pub q_dtype: lowbit_dtype,
    pub scale_dtype: lowbit_dtype,
    pub rank: i32,
    pub dims: [i64; 4],
    pub x_row_stride: i64,
    pub axis: i32,
    pub group_size: i64,
    pub qmin: i32,
    pub qmax: i32,
    pub symmetric: i32,
    pub alignment: i32,
}

// ---------------------------------------------------------------------------
// Family 2: weight-only quantized matmul
// ---------------------------------------------------------------------------

pub type lowbit_wq_op = i32;
pub const LOWBIT_WQ_OP_MATMUL: lowbit_wq_op = 1;
pub const LOWBIT_WQ_OP_REPACK: lowbit_wq_op = 2;

pub type lowbit_wq_format = i32;
pub const LOWBIT_WQ_FORMAT_AWQ: lowbit_wq_format = 1;
pub const LOWBIT_WQ_FORMAT_GPTQ: lowbit_wq_format = 2;
pub const LOWBIT_WQ_FORMAT_GPTQ_V1: lowbit_wq_format = 3;
pub const LOWBIT_WQ_FORMAT_NATIVE: lowbit_wq_format = 4;
pub const LOWBIT_WQ_FORMAT_PLAIN: lowbit_wq_format = 5;

#[repr(C)]
#[derive(Debug, Copy, Clone, Default, PartialEq, Eq)]
pub struct lowbit_wq_matmul_desc {
    pub struct_size: u32,
    pub op: lowbit_wq_op,
    pub format: lowbit_wq_format,
    pub weight_bits: i32,
    pub symmetric: i32,
    pub act_order: i32,
    pub group_size: i64,
    pub m: i64,
    pub n: i64,
    pub k: i64,
    pub act_dtype: lowbit_dtype,
    pub scale_dtype: lowbit_dtype,
    pub has_bias: i32,
    pub alignment: i32,
    pub x_row_stride: i64,
    pub y_row_stride: i64,
    pub programmatic_launch: i32,
}

// ---------------------------------------------------------------------------
// Functions (in header order)
// ---------------------------------------------------------------------------

extern "C" {
    pub fn lowbit_status_string(status: lowbit_status) -> *const c_char;
    pub fn lowbit_last_error_message() -> *const c_char;
    pub fn lowbit_copy_last_error_message(buf: *mut c_char, capacity: usize) -> usize;
    pub fn lowbit_version_number() -> u32;
    pub fn lowbit_version_string() -> *const c_char;
    pub fn lowbit_dtype_name(dtype: lowbit_dtype) -> *const c_char;
    pub fn lowbit_context_options_init(options: *mut lowbit_context_options);
    pub fn lowbit_context_create_device(
        ordinal: i32,
        options: *const lowbit_context_options,
        out: *mut *mut lowbit_context,
    ) -> lowbit_status;
    pub fn lowbit_context_create_current(
        options: *const lowbit_context_options,
        out: *mut *mut lowbit_context,
    ) -> lowbit_status;
    pub fn lowbit_context_create_offline(
        arch: *const c_char,
        options: *const lowbit_context_options,
        out: *mut *mut lowbit_context,
    ) -> lowbit_status;
    pub fn lowbit_context_destroy(context: *mut lowbit_context);
    pub fn lowbit_context_get_info(context: *const lowbit_context, info: *mut lowbit_device_info) -> lowbit_status;
    pub fn lowbit_context_cache_stats(context: *const lowbit_context, stats: *mut lowbit_cache_stats) -> lowbit_status;
    pub fn lowbit_plan_create(
        context: *mut lowbit_context,
        op: *const lowbit_op_desc,
        out: *mut *mut lowbit_plan,
    ) -> lowbit_status;
    pub fn lowbit_plan_destroy(plan: *mut lowbit_plan);
    pub fn lowbit_plan_workspace_size(plan: *const lowbit_plan, bytes: *mut usize) -> lowbit_status;
    pub fn lowbit_plan_run(
        plan: *const lowbit_plan,
        args: *const lowbit_arg,
        num_args: usize,
        workspace: u64,
        workspace_bytes: usize,
        stream: *mut c_void,
    ) -> lowbit_status;
    pub fn lowbit_plan_describe(
        plan: *const lowbit_plan,
        buf: *mut c_char,
        capacity: usize,
        length: *mut usize,
    ) -> lowbit_status;
    pub fn lowbit_prewarm(
        context: *mut lowbit_context,
        ops: *const lowbit_op_desc,
        count: usize,
        threads: u32,
        results: *mut lowbit_status,
    ) -> lowbit_status;
    pub fn lowbit_quantize_desc_init(desc: *mut lowbit_quantize_desc);
    pub fn lowbit_quantize_plan_create(
        context: *mut lowbit_context,
        desc: *const lowbit_quantize_desc,
        out: *mut *mut lowbit_plan,
    ) -> lowbit_status;
    pub fn lowbit_wq_matmul_desc_init(desc: *mut lowbit_wq_matmul_desc);
    pub fn lowbit_wq_matmul_plan_create(
        context: *mut lowbit_context,
        desc: *const lowbit_wq_matmul_desc,
        out: *mut *mut lowbit_plan,
    ) -> lowbit_status;
    pub fn lowbit_wq_native_bytes(desc: *const lowbit_wq_matmul_desc, bytes: *mut u64) -> lowbit_status;
    pub fn lowbit_reference_run(op: *const lowbit_op_desc, args: *const lowbit_arg, num_args: usize) -> lowbit_status;
}

#[cfg(test)]
mod header_sync;
