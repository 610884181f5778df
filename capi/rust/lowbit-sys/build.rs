//! Finds liblowbit.so: $LOWBIT_LIB_DIR if set, else `pkg-config lowbit`,
//! else the linker's default search path. No crates needed. The headers
//! (only for this crate's layout test) come from $LOWBIT_INCLUDE_DIR or
//! `pkg-config --cflags lowbit`.
//!
//! Exports to dependents (through `links = "lowbit"`): DEP_LOWBIT_LIB_DIR and
//! DEP_LOWBIT_INCLUDE (when known), and to this crate's tests the C flags in
//! LOWBIT_SYS_CFLAGS (used by the layout test to compile a C probe).
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Option<String> {
    let exe = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
    let out = Command::new(exe).args(args).arg("lowbit").output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    for var in [
        "LOWBIT_LIB_DIR",
        "LOWBIT_INCLUDE_DIR",
        "PKG_CONFIG",
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_LIBDIR",
        "PKG_CONFIG_SYSROOT_DIR",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let mut lib_dirs: Vec<PathBuf> = Vec::new();
    let mut cflags = String::new();
    if let Ok(dir) = env::var("LOWBIT_LIB_DIR") {
        if !dir.is_empty() {
            lib_dirs.push(PathBuf::from(dir));
        }
    }
    if let Ok(dir) = env::var("LOWBIT_INCLUDE_DIR") {
        if !dir.is_empty() {
            cflags = format!("-I{dir}");
        }
    }
    if cflags.is_empty() {
        if let Some(flags) = pkg_config(&["--cflags"]) {
            cflags = flags;
        }
    }
    if lib_dirs.is_empty() {
        match pkg_config(&["--libs-only-L"]) {
            Some(flags) => {
                for flag in flags.split_whitespace() {
                    if let Some(dir) = flag.strip_prefix("-L") {
                        lib_dirs.push(PathBuf::from(dir));
                    }
                }
            }
            None => println!(
                "cargo:warning=lowbit-sys: neither LOWBIT_LIB_DIR nor `pkg-config lowbit` found liblowbit; \
                 relying on the linker's default search path"
            ),
        }
    }

    for dir in &lib_dirs {
        println!("cargo:rustc-link-search=native={}", dir.display());
        // This crate's own test binaries find the library without LD_LIBRARY_PATH.
        if env::var("CARGO_CFG_UNIX").is_ok() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
    println!("cargo:rustc-link-lib=dylib=lowbit");
    if let Some(dir) = lib_dirs.first() {
        println!("cargo:lib_dir={}", dir.display());
    }
    if let Some(inc) = cflags.split_whitespace().find_map(|f| f.strip_prefix("-I")) {
        println!("cargo:include={inc}");
    }
    println!("cargo:rustc-env=LOWBIT_SYS_CFLAGS={cflags}");
}
