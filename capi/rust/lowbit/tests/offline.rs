// The safe crate against the real liblowbit.so on any machine: version,
// status strings, an offline sm_90a context, plan creation and prewarm into a
// temporary cache, errors of bad input, and NoDevice where a GPU is needed.
mod common;

use common::{skip, TempDir};
use lowbit::{
    reference_run, Arg, ArgRole, CacheMode, Context, ContextOptions, DType, LogLevel, OpDesc, QuantizeDesc, Status,
};
use std::sync::{Arc, Mutex};

fn offline(dir: &TempDir) -> Context {
    Context::offline("sm_90a", ContextOptions::new().cache_dir(dir.path())).expect("offline context")
}

#[test]
fn version_matches_sys_and_is_sane() {
    let n = lowbit::version_number();
    let s = lowbit::version_string();
    let parts: Vec<u32> = s.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(parts.len(), 3, "version string {s}");
    assert_eq!(n, parts[0] * 10000 + parts[1] * 100 + parts[2]);
    // The crates follow the library's MAJOR.MINOR (the API they declare).
    let crate_mm: Vec<&str> = env!("CARGO_PKG_VERSION").split('.').take(2).collect();
    let lib_mm: Vec<String> = parts.iter().take(2).map(|p| p.to_string()).collect();
    assert_eq!(crate_mm, lib_mm, "crate {} vs library {s}", env!("CARGO_PKG_VERSION"));
}

#[test]
fn status_strings() {
    assert!(lowbit::status_string(0).starts_with("LOWBIT_OK"));
    assert!(Status::NoDevice.description().starts_with("LOWBIT_NO_DEVICE"));
    assert!(Status::Misaligned.to_string().starts_with("LOWBIT_MISALIGNED"));
    assert_eq!(lowbit::status_string(4242), "unknown lowbit status");
    assert_eq!(Status::NoDevice.code(), lowbit::sys::LOWBIT_NO_DEVICE);
    assert_eq!(DType::BF16.name(), "bf16");
    assert_eq!(DType::S8.name(), "s8");
}

#[test]
fn offline_context_info() {
    let dir = TempDir::new("info");
    let ctx = offline(&dir);
    let info = ctx.info().unwrap();
    assert!(info.offline);
    assert_eq!(info.ordinal, -1);
    assert_eq!(info.arch, "sm_90a");
    assert_eq!(info.compute_capability, 90);
    assert!(info.nvrtc_version > 0, "NVRTC should be loadable here");
    let cache = info.cache_dir.expect("a writable cache dir");
    assert_eq!(cache.canonicalize().unwrap(), dir.path().canonicalize().unwrap());
}

#[test]
fn plan_compiles_into_the_cache_and_is_reused() {
    let dir = TempDir::new("plan");
    let lines = Arc::new(Mutex::new(Vec::<(LogLevel, String)>::new()));
    let sink = lines.clone();
    let ctx = Context::offline(
        "sm_90a",
        ContextOptions::new()
            .cache_dir(dir.path())
            .log_level(LogLevel::Info)
            .logger(move |level, msg| sink.lock().unwrap().push((level, msg.to_string()))),
    )
    .unwrap();
    let desc = QuantizeDesc::new().shape(&[4096]);
    let plan = ctx.quantize_plan(&desc).unwrap();
    assert_eq!(plan.workspace_size().unwrap(), 0);
    let json = plan.describe().unwrap();
    assert!(json.contains("\"family\":\"quantize\""), "{json}");
    assert!(json.contains("sm_90a"), "{json}");
    let stats = ctx.cache_stats().unwrap();
    assert_eq!((stats.misses, stats.compiles), (1, 1));
    assert!(stats.disk_entries >= 1);
    assert!(!lines.lock().unwrap().is_empty(), "a cold compile is logged at info level");

    // Plans outlive their context (lowbit keeps it alive), in either drop order.
    drop(ctx);
    assert!(plan.describe().is_ok());
    drop(plan);

    // A new context on the same directory loads from disk; prewarm hits memory.
    let again = offline(&dir);
    let _plan = again.quantize_plan(&desc).unwrap();
    let stats = again.cache_stats().unwrap();
    assert_eq!((stats.disk_hits, stats.compiles), (1, 0));
    again.prewarm(&[OpDesc::Quantize(&desc), (&desc).into()], 2).unwrap();
    assert_eq!(again.cache_stats().unwrap().compiles, 0);
}

#[test]
fn prewarm_reports_each_item() {
    let dir = TempDir::new("prewarm");
    let ctx =
        Context::offline("sm_90a", ContextOptions::new().cache_dir(dir.path()).cache_mode(CacheMode::Memory)).unwrap();
    let good = QuantizeDesc::new().x_dtype(DType::F16).q_dtype(DType::U8).shape(&[8, 256]);
    let bad = QuantizeDesc::new().shape(&[1, 2, 3, 4, 5]);
    let (result, statuses) = ctx.prewarm_with_statuses(&[(&good).into(), (&bad).into()], 0);
    let err = result.unwrap_err();
    assert_eq!(err.status(), Status::InvalidProblem);
    assert!(err.message().contains("item 1"), "{}", err.message());
    assert_eq!(statuses, vec![None, Some(Status::InvalidProblem)]);
    assert!(ctx.info().unwrap().cache_dir.is_none(), "memory-only cache");
}

#[test]
fn logger_receives_lines_from_prewarm_threads() {
    let dir = TempDir::new("logger");
    let lines = Arc::new(Mutex::new(0usize));
    let sink = lines.clone();
    let ctx = Context::offline(
        "sm_90a",
        ContextOptions::new()
            .cache_dir(dir.path())
            .cache_mode(CacheMode::Memory)
            .log_level(LogLevel::Info)
            .logger(move |_, _| *sink.lock().unwrap() += 1),
    )
    .unwrap();
    let a = QuantizeDesc::new().shape(&[8, 512]);
    let b = a.q_dtype(DType::U8);
    ctx.prewarm(&[(&a).into(), (&b).into()], 2).unwrap();
    assert!(*lines.lock().unwrap() >= 2, "two cold compiles are logged");
}

#[test]
fn errors_carry_status_and_message() {
    let err = Context::offline("sm_1", ContextOptions::new()).unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
    assert_eq!(err.code(), 5);
    assert!(err.message().contains("sm_1"), "{}", err.message());
    assert!(err.to_string().starts_with("LOWBIT_INVALID_ARGUMENT"));
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err); // works with `?` into Box<dyn Error>
    assert!(!boxed.to_string().is_empty());

    assert_eq!(Context::offline("sm\0_90", ContextOptions::new()).unwrap_err().status(), Status::InvalidArgument);

    let dir = TempDir::new("errors");
    let ctx = offline(&dir);
    let e = ctx.quantize_plan(&QuantizeDesc::new().shape(&[])).unwrap_err();
    assert_eq!(e.status(), Status::InvalidProblem);
    assert!(e.message().contains("rank"), "{}", e.message());
    // Well-formed but unsupported by design: a non-float input, a scale type
    // that is neither f32 nor the input's.
    let e = ctx.quantize_plan(&QuantizeDesc::new().x_dtype(DType::F16).scale_dtype(DType::BF16).shape(&[16]));
    assert_eq!(e.unwrap_err().status(), Status::Unsupported);
    let e = ctx.quantize_plan(&QuantizeDesc::new().x_dtype(DType::S8).shape(&[16]));
    assert_eq!(e.unwrap_err().status(), Status::Unsupported);
    let e = ctx.quantize_plan(&QuantizeDesc::new().range(10, -10).shape(&[16]));
    assert_eq!(e.unwrap_err().status(), Status::InvalidProblem);
    let mut raw = QuantizeDesc::new().shape(&[16]);
    raw.as_raw_mut().struct_size = 7;
    assert_eq!(ctx.quantize_plan(&raw).unwrap_err().status(), Status::InvalidArgument);
}

#[test]
fn no_device_where_a_gpu_is_needed() {
    let dir = TempDir::new("nodev");
    let ctx = offline(&dir);
    let plan = ctx.quantize_plan(&QuantizeDesc::new().shape(&[4096])).unwrap();
    // An offline plan never runs (and these pointers are never touched).
    let err = unsafe { plan.run(&[Arg::x(256), Arg::q(512), Arg::scale(1024)], std::ptr::null_mut()) }.unwrap_err();
    assert_eq!(err.status(), Status::NoDevice);
    assert!(!err.message().is_empty());

    match Context::device(0, ContextOptions::new()) {
        Ok(_) => skip("no_device_where_a_gpu_is_needed", "a GPU is present; NoDevice is checked on CPU-only machines"),
        Err(e) => {
            assert_eq!(e.status(), Status::NoDevice, "{e}");
            assert_eq!(Context::current(ContextOptions::new()).unwrap_err().status(), Status::NoDevice);
        }
    }
}

#[test]
fn context_and_plan_are_shared_between_threads() {
    let dir = TempDir::new("threads");
    let ctx = Arc::new(offline(&dir));
    let plan = Arc::new(ctx.quantize_plan(&QuantizeDesc::new().shape(&[1024])).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let (ctx, plan) = (ctx.clone(), plan.clone());
            std::thread::spawn(move || {
                assert!(plan.describe().unwrap().contains("quantize"));
                // Errors are per thread: each thread sees its own message.
                let e = ctx.quantize_plan(&QuantizeDesc::new().shape(&[-(i as i64) - 1])).unwrap_err();
                assert!(e.message().contains(&format!("{}", -(i as i64) - 1)), "{}", e.message());
                ctx.quantize_plan(&QuantizeDesc::new().shape(&[1024])).unwrap()
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn reference_quantizes_on_the_host() {
    let desc = QuantizeDesc::new().shape(&[6]);
    let x = [1.0f32, 0.25, 0.75, -100.0, 100.0, -0.25];
    let scale = [0.5f32];
    let zp = [0i32];
    let mut q = [0i8; 6];
    unsafe {
        reference_run(
            (&desc).into(),
            &[
                Arg::host(ArgRole::X, &x),
                Arg::host_mut(ArgRole::Q, &mut q),
                Arg::host(ArgRole::Scale, &scale),
                Arg::host(ArgRole::ZeroPoint, &zp),
            ],
        )
        .unwrap();
    }
    assert_eq!(q, [2, 0, 2, -128, 127, 0]); // round half to even, clamp
    let err = unsafe { reference_run((&desc).into(), &[Arg::host(ArgRole::X, &x)]) }.unwrap_err();
    assert_eq!(err.status(), Status::InvalidArgument);
}
