// The Rust snippet of README.md, run by `cargo test`.
mod common;

#[test]
fn readme_snippet() -> lowbit::Result<()> {
    let dir = common::TempDir::new("snippet");
    let cache_dir = dir.path();
    // --- snippet begin ---
    use lowbit::{Context, ContextOptions, DType, QuantizeDesc, Status};

    // An offline context compiles kernels for sm_90a without a GPU.
    let ctx = Context::offline("sm_90a", ContextOptions::new().cache_dir(cache_dir))?;
    let desc = QuantizeDesc::new().x_dtype(DType::BF16).q_dtype(DType::S8).shape(&[64, 4096]);
    let plan = ctx.quantize_plan(&desc)?; // compiled with NVRTC, stored in the cache
    println!("lowbit {}: {}", lowbit::version_string(), plan.describe()?);

    // Errors carry the status and lowbit's message.
    match ctx.quantize_plan(&desc.shape(&[])) {
        Err(e) if e.status() == Status::InvalidProblem => println!("rejected: {}", e.message()),
        other => panic!("expected InvalidProblem, got {other:?}"),
    }

    // On a GPU: Context::device(0, ...) and, with device pointers as u64 (from
    // cudarc or any CUDA crate) and a CUstream as *mut c_void:
    //   unsafe { plan.run(&[Arg::x(x), Arg::q(q), Arg::scale(s)], stream)? };
    // --- snippet end ---
    Ok(())
}
