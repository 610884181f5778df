//! lowbit-sys finds and links liblowbit.so; this only lets the crate's own
//! tests find it at run time (an rpath to the directory
//! lowbit-sys found). Programs using the crate rely on the system's loader
//! path or LD_LIBRARY_PATH, as for any shared library.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_LOWBIT_LIB_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    if let Ok(dir) = std::env::var("DEP_LOWBIT_LIB_DIR") {
        if std::env::var("CARGO_CFG_UNIX").is_ok() {
            println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{dir}");
        }
    }
}
