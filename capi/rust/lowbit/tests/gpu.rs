// One per-tensor quantize plan end to end on a GPU, compared bit-exactly with
// lowbit's CPU reference. Device memory comes from libcuda through dlopen (no
// CUDA crate needed); pointers are plain u64 as with cudarc. Without a GPU
// (or libcuda) the test reports SKIPPED.
mod common;

use common::{skip, TempDir};
use lowbit::{reference_run, Arg, ArgRole, Context, ContextOptions, QuantizeDesc, Status};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}
const RTLD_NOW: c_int = 2;

type CuResult = c_int;

/// The few driver entry points the test needs.
struct Cuda {
    init: unsafe extern "C" fn(c_uint) -> CuResult,
    device_get: unsafe extern "C" fn(*mut c_int, c_int) -> CuResult,
    primary_ctx_retain: unsafe extern "C" fn(*mut *mut c_void, c_int) -> CuResult,
    primary_ctx_release: unsafe extern "C" fn(c_int) -> CuResult,
    ctx_set_current: unsafe extern "C" fn(*mut c_void) -> CuResult,
    mem_alloc: unsafe extern "C" fn(*mut u64, usize) -> CuResult,
    mem_free: unsafe extern "C" fn(u64) -> CuResult,
    memcpy_htod: unsafe extern "C" fn(u64, *const c_void, usize) -> CuResult,
    memcpy_dtoh: unsafe extern "C" fn(*mut c_void, u64, usize) -> CuResult,
    ctx_synchronize: unsafe extern "C" fn() -> CuResult,
}

impl Cuda {
    fn load() -> Option<Cuda> {
        unsafe {
            let lib = dlopen(c"libcuda.so.1".as_ptr(), RTLD_NOW);
            if lib.is_null() {
                return None;
            }
            let sym = |name: &CStr| {
                let p = dlsym(lib, name.as_ptr());
                assert!(!p.is_null(), "libcuda lacks {name:?}");
                p
            };
            Some(Cuda {
                init: fnptr(sym(c"cuInit")),
                device_get: fnptr(sym(c"cuDeviceGet")),
                primary_ctx_retain: fnptr(sym(c"cuDevicePrimaryCtxRetain")),
                primary_ctx_release: fnptr(sym(c"cuDevicePrimaryCtxRelease_v2")),
                ctx_set_current: fnptr(sym(c"cuCtxSetCurrent")),
                mem_alloc: fnptr(sym(c"cuMemAlloc_v2")),
                mem_free: fnptr(sym(c"cuMemFree_v2")),
                memcpy_htod: fnptr(sym(c"cuMemcpyHtoD_v2")),
                memcpy_dtoh: fnptr(sym(c"cuMemcpyDtoH_v2")),
                ctx_synchronize: fnptr(sym(c"cuCtxSynchronize")),
            })
        }
    }
}

/// A dlsym result as a function pointer of type F.
unsafe fn fnptr<F: Copy>(p: *mut c_void) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    std::mem::transmute_copy::<*mut c_void, F>(&p)
}

fn cu(rc: CuResult, what: &str) {
    assert_eq!(rc, 0, "{what} failed with CUresult {rc}");
}

#[test]
fn gpu_quantize_matches_reference() {
    let dir = TempDir::new("gpu");
    let ctx = match Context::device(0, ContextOptions::new().cache_dir(dir.path())) {
        Ok(ctx) => ctx,
        Err(e) if e.status() == Status::NoDevice => {
            return skip("gpu_quantize_matches_reference", &format!("no GPU: {}", e.message()));
        }
        Err(e) => panic!("device context: {e}"),
    };
    let Some(cuda) = Cuda::load() else {
        return skip("gpu_quantize_matches_reference", "libcuda.so.1 cannot be loaded");
    };

    let n = 1usize << 20;
    let x: Vec<f32> = (0..n).map(|i| 4.0 * (0.001 * i as f32).sin() + 0.37 * (i % 7) as f32).collect();
    let scale = [0.037f32];
    let zp = [3i32];
    let desc = QuantizeDesc::new().shape(&[n as i64]);
    let plan = ctx.quantize_plan(&desc).unwrap();

    let mut got = vec![0i8; n];
    unsafe {
        cu((cuda.init)(0), "cuInit");
        let mut dev = 0;
        let mut pctx = std::ptr::null_mut();
        cu((cuda.device_get)(&mut dev, 0), "cuDeviceGet");
        cu((cuda.primary_ctx_retain)(&mut pctx, dev), "cuDevicePrimaryCtxRetain");
        cu((cuda.ctx_set_current)(pctx), "cuCtxSetCurrent");
        let (mut dx, mut dq, mut ds, mut dz) = (0u64, 0u64, 0u64, 0u64);
        cu((cuda.mem_alloc)(&mut dx, n * 4), "cuMemAlloc");
        cu((cuda.mem_alloc)(&mut dq, n), "cuMemAlloc");
        cu((cuda.mem_alloc)(&mut ds, 4), "cuMemAlloc");
        cu((cuda.mem_alloc)(&mut dz, 4), "cuMemAlloc");
        cu((cuda.memcpy_htod)(dx, x.as_ptr().cast(), n * 4), "cuMemcpyHtoD");
        cu((cuda.memcpy_htod)(ds, scale.as_ptr().cast(), 4), "cuMemcpyHtoD");
        cu((cuda.memcpy_htod)(dz, zp.as_ptr().cast(), 4), "cuMemcpyHtoD");
        plan.run(&[Arg::x(dx), Arg::q(dq), Arg::scale(ds), Arg::zero_point(dz)], std::ptr::null_mut()).unwrap();
        cu((cuda.ctx_synchronize)(), "cuCtxSynchronize");
        cu((cuda.memcpy_dtoh)(got.as_mut_ptr().cast(), dq, n), "cuMemcpyDtoH");
        for p in [dx, dq, ds, dz] {
            (cuda.mem_free)(p);
        }
        (cuda.primary_ctx_release)(dev);
    }

    let mut want = vec![0i8; n];
    unsafe {
        reference_run(
            (&desc).into(),
            &[
                Arg::host(ArgRole::X, &x),
                Arg::host_mut(ArgRole::Q, &mut want),
                Arg::host(ArgRole::Scale, &scale),
                Arg::host(ArgRole::ZeroPoint, &zp),
            ],
        )
        .unwrap();
    }
    let mismatches = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(mismatches, 0, "{mismatches} of {n} elements differ from the reference");
    eprintln!("lowbit-test: gpu quantize of {n} elements matches the reference bit-exactly");
}
