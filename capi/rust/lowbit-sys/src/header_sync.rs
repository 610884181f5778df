//! Keeps lib.rs in sync with include/lowbit/lowbit.h, the source of truth:
//! parses the header and this crate's source and compares every LOWBIT_API
//! function (name, parameter names and types, return type), every integer
//! #define, every typedef and every struct field; then compiles a small C
//! probe of the header to compare struct sizes and field offsets.
//!
//! The header is found at $LOWBIT_HEADER, else ../../../include/lowbit/lowbit.h
//! relative to this crate (capi/rust/lowbit-sys in the lowbit source tree).
use std::collections::BTreeMap;
use std::path::PathBuf;

const RUST_SOURCE: &str = include_str!("lib.rs");

fn header_path() -> PathBuf {
    match std::env::var("LOWBIT_HEADER") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../include/lowbit/lowbit.h"),
    }
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn strip_c_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'*' {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
            out.push(' ');
        } else if b[i] == b'/' && i + 1 < b.len() && b[i + 1] == b'/' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Splits at ';' outside braces.
fn statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = (depth - 1).max(0),
            _ => {}
        }
        if c == ';' && depth == 0 {
            out.push(collapse(&cur));
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    out
}

fn split_params(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    for c in s.chars() {
        match c {
            '(' | '<' | '[' => depth += 1,
            ')' | '>' | ']' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            out.push(cur.trim().to_string());
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn rust_scalar(c: &str) -> String {
    match c {
        "int32_t" => "i32",
        "uint32_t" => "u32",
        "int64_t" => "i64",
        "uint64_t" => "u64",
        "size_t" => "usize",
        "double" => "f64",
        "float" => "f32",
        "char" => "c_char",
        "void" => "c_void",
        other => other,
    }
    .to_string()
}

/// A C type (tokens, no name) in Rust spelling.
fn rust_type(c_type: &str) -> String {
    let spaced = c_type.replace('*', " * ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let base_const = tokens.first() == Some(&"const");
    let base = tokens.iter().find(|t| **t != "const" && **t != "*").copied().unwrap_or("?");
    let pointers = tokens.iter().filter(|t| **t == "*").count();
    let mut ty = rust_scalar(base);
    for level in 0..pointers {
        ty = if level == 0 && base_const { format!("*const {ty}") } else { format!("*mut {ty}") };
    }
    ty
}

/// "const char* arch" -> ("arch", "*const c_char"); "char name[128]" -> ("name", "[c_char; 128]").
fn rust_decl(c_decl: &str) -> (String, String) {
    let d = c_decl.replace('*', "* ");
    let d = collapse(&d);
    let (rest, name) = d.rsplit_once(' ').expect("declaration with a name");
    if let Some((n, len)) = name.split_once('[') {
        let len = len.trim_end_matches(']');
        return (n.to_string(), format!("[{}; {}]", rust_type(rest), len));
    }
    (name.to_string(), rust_type(rest))
}

#[derive(Debug, PartialEq)]
struct Function {
    params: Vec<(String, String)>,
    ret: Option<String>,
}

#[derive(Default, Debug)]
struct Decls {
    consts: BTreeMap<String, i64>,
    functions: BTreeMap<String, Function>,
    structs: BTreeMap<String, Vec<(String, String)>>,
    opaque: Vec<String>,
    aliases: BTreeMap<String, String>,
}

fn parse_header(src: &str) -> Decls {
    let mut d = Decls::default();
    let text = strip_c_comments(src);
    let mut body = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix('#') {
            let toks: Vec<&str> = rest.split_whitespace().collect();
            if toks.len() == 3 && toks[0] == "define" && toks[1].starts_with("LOWBIT_") {
                if let Ok(v) = toks[2].parse::<i64>() {
                    d.consts.insert(toks[1].to_string(), v);
                }
            }
            continue;
        }
        body.push_str(line);
        body.push('\n');
    }
    let body = body.replace("extern \"C\" {", " ");
    for st in statements(&body) {
        let st = st.trim_start_matches('}').trim().to_string();
        if st.is_empty() {
            continue;
        }
        if let Some(rest) = st.strip_prefix("LOWBIT_API ") {
            let open = rest.find('(').unwrap();
            let (head, params) = (&rest[..open], &rest[open + 1..rest.rfind(')').unwrap()]);
            let head = head.trim();
            let name = head.rsplit([' ', '*']).next().unwrap();
            let ret_c = &head[..head.len() - name.len()];
            let ret = if ret_c.trim() == "void" { None } else { Some(rust_type(ret_c)) };
            let params = if params.trim() == "void" {
                vec![]
            } else {
                split_params(params).iter().map(|p| rust_decl(p)).collect()
            };
            d.functions.insert(name.to_string(), Function { params, ret });
        } else if let Some(rest) = st.strip_prefix("typedef struct ") {
            if let Some(open) = rest.find('{') {
                let name = rest[..open].trim().to_string();
                let close = rest.rfind('}').unwrap();
                let fields =
                    rest[open + 1..close].split(';').map(str::trim).filter(|f| !f.is_empty()).map(rust_decl).collect();
                d.structs.insert(name, fields);
            } else {
                d.opaque.push(rest.split_whitespace().next().unwrap().to_string());
            }
        } else if let Some(rest) = st.strip_prefix("typedef ") {
            if let Some(star) = rest.find("(*") {
                // typedef RET (*NAME)(PARAMS)
                let ret = rest[..star].trim();
                let after = &rest[star + 2..];
                let close = after.find(')').unwrap();
                let name = after[..close].trim();
                let params = &after[close + 1..];
                let params = &params[params.find('(').unwrap() + 1..params.rfind(')').unwrap()];
                let ps: Vec<String> = split_params(params)
                    .iter()
                    .map(|p| {
                        let (n, t) = rust_decl(p);
                        format!("{n}: {t}")
                    })
                    .collect();
                let ret = if ret == "void" { String::new() } else { format!(" -> {}", rust_type(ret)) };
                d.aliases.insert(name.to_string(), format!("Option<unsafe extern \"C\" fn({}){}>", ps.join(", "), ret));
            } else {
                let (ty, name) = rest.trim().rsplit_once(' ').unwrap();
                d.aliases.insert(name.to_string(), rust_type(ty));
            }
        } else {
            panic!("lowbit.h: unrecognized declaration: {st}");
        }
    }
    d
}

fn parse_rust(src: &str) -> Decls {
    let mut d = Decls::default();
    // Drop the test module declaration and comments.
    let text: String = src
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = text.as_str();
    while let Some(i) = rest.find("pub ") {
        rest = &rest[i + 4..];
        if let Some(r) = rest.strip_prefix("const ") {
            let end = r.find(';').unwrap();
            let st = collapse(&r[..end]);
            let (lhs, value) = st.split_once(" = ").unwrap();
            let name = lhs.split(':').next().unwrap().trim();
            d.consts.insert(name.to_string(), value.trim().parse().unwrap());
        } else if let Some(r) = rest.strip_prefix("type ") {
            let end = r.find(';').unwrap();
            let st = collapse(&r[..end]).replace("( ", "(").replace(", )", ")").replace(",)", ")");
            let (name, ty) = st.split_once(" = ").unwrap();
            d.aliases.insert(name.trim().to_string(), ty.trim().to_string());
        } else if let Some(r) = rest.strip_prefix("struct ") {
            let open = r.find('{').unwrap();
            let close = r.find('}').unwrap();
            let name = r[..open].trim().to_string();
            let body = &r[open + 1..close];
            if body.trim_start().starts_with("_data") {
                d.opaque.push(name);
            } else {
                let fields = split_params(body)
                    .iter()
                    .map(|f| {
                        let f = f.trim().trim_start_matches("pub ");
                        let (n, t) = f.split_once(':').unwrap();
                        (n.trim().to_string(), collapse(t))
                    })
                    .collect();
                d.structs.insert(name, fields);
            }
        } else if let Some(r) = rest.strip_prefix("fn lowbit_") {
            let end = r.find(';').unwrap();
            let st = collapse(&format!("lowbit_{}", &r[..end]));
            let open = st.find('(').unwrap();
            let close = st.rfind(')').unwrap();
            let name = st[..open].to_string();
            let params = split_params(&st[open + 1..close])
                .iter()
                .map(|p| {
                    let (n, t) = p.split_once(':').unwrap();
                    (n.trim().to_string(), collapse(t))
                })
                .collect();
            let ret = st[close + 1..].trim().strip_prefix("->").map(|r| r.trim().to_string());
            d.functions.insert(name, Function { params, ret });
        }
    }
    d
}

fn header() -> Decls {
    let path = header_path();
    let src = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the C header {}: {e} (set LOWBIT_HEADER)", path.display()));
    parse_header(&src)
}

fn keys<V>(m: &BTreeMap<String, V>) -> Vec<&String> {
    m.keys().collect()
}

#[test]
fn header_parses_to_something() {
    let c = header();
    assert!(c.functions.len() >= 22, "only {} functions parsed", c.functions.len());
    assert!(c.consts.len() >= 40, "only {} constants parsed", c.consts.len());
    assert!(c.structs.contains_key("lowbit_quantize_desc"));
}

#[test]
fn functions_match_header() {
    let c = header();
    let r = parse_rust(RUST_SOURCE);
    assert_eq!(keys(&c.functions), keys(&r.functions), "LOWBIT_API functions differ between lowbit.h and lib.rs");
    for (name, cf) in &c.functions {
        assert_eq!(Some(cf), r.functions.get(name), "signature of {name} differs (left: lowbit.h, right: lib.rs)");
    }
}

#[test]
fn constants_match_header() {
    let c = header();
    let r = parse_rust(RUST_SOURCE);
    assert_eq!(c.consts, r.consts, "#define constants differ (left: lowbit.h, right: lib.rs)");
}

#[test]
fn types_match_header() {
    let c = header();
    let r = parse_rust(RUST_SOURCE);
    assert_eq!(c.structs, r.structs, "struct fields differ (left: lowbit.h, right: lib.rs)");
    let (mut co, mut ro) = (c.opaque.clone(), r.opaque.clone());
    co.sort();
    ro.sort();
    assert_eq!(co, ro, "opaque handle types differ");
    assert_eq!(c.aliases, r.aliases, "typedefs differ (left: lowbit.h, right: lib.rs)");
}

/// Size and field offsets of every struct, from the Rust side.
macro_rules! rust_layout {
    ($($s:ident { $($f:ident),* $(,)? })*) => {{
        let mut m: BTreeMap<String, (usize, Vec<(String, usize)>)> = BTreeMap::new();
        $(
            m.insert(stringify!($s).to_string(), (core::mem::size_of::<crate::$s>(),
                vec![$((stringify!($f).to_string(), core::mem::offset_of!(crate::$s, $f))),*]));
        )*
        m
    }};
}

#[test]
fn layout_matches_c_compiler() {
    let rust = rust_layout! {
        lowbit_context_options { struct_size, cache_dir, cache_mode, cache_max_bytes, log_callback, log_user_data, log_level }
        lowbit_device_info { struct_size, offline, ordinal, name, arch, compute_capability, sm_count, driver_version,
                             nvrtc_version, global_memory_bytes, l2_cache_bytes, cache_dir }
        lowbit_cache_stats { struct_size, memory_hits, disk_hits, misses, compiles, compile_failures, damaged_entries,
                             compile_ms, disk_entries, disk_bytes }
        lowbit_arg { role, reserved, ptr }
        lowbit_op_desc { family, reserved, desc }
        lowbit_quantize_desc { struct_size, op, scope, x_dtype, q_dtype, scale_dtype, rank, dims, x_row_stride, axis,
                               group_size, qmin, qmax, symmetric, alignment }
        lowbit_wq_matmul_desc { struct_size, op, format, weight_bits, symmetric, act_order, group_size, m, n, k,
                                act_dtype, scale_dtype, has_bias, alignment, x_row_stride, y_row_stride,
                                programmatic_launch }
    };
    let c = header();
    // The list above names every field of every struct.
    let listed: BTreeMap<String, Vec<String>> =
        rust.iter().map(|(k, (_, f))| (k.clone(), f.iter().map(|x| x.0.clone()).collect())).collect();
    let declared: BTreeMap<String, Vec<String>> =
        c.structs.iter().map(|(k, f)| (k.clone(), f.iter().map(|x| x.0.clone()).collect())).collect();
    assert_eq!(declared, listed, "update rust_layout! in header_sync.rs");

    // A C probe printing the same numbers.
    let mut probe =
        String::from("#include <stddef.h>\n#include <stdio.h>\n#include \"lowbit/lowbit.h\"\nint main(void) {\n");
    for (s, fields) in &c.structs {
        probe += &format!("  printf(\"{s} sizeof %zu\\n\", sizeof({s}));\n");
        for (f, _) in fields {
            probe += &format!("  printf(\"{s} {f} %zu\\n\", offsetof({s}, {f}));\n");
        }
    }
    probe += "  return 0;\n}\n";
    let dir = std::env::temp_dir().join(format!("lowbit-sys-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if env!("LOWBIT_SYS_CFLAGS").trim().is_empty() {
        // lowbit/version.h is generated at build time: the installed (or
        // build) include directory is needed, not only the source header.
        println!(
            "lowbit-test: SKIPPED layout_matches_c_compiler: no include directory \
             (set LOWBIT_INCLUDE_DIR or make `pkg-config lowbit` find lowbit.pc)"
        );
        return;
    }
    let (src, exe) = (dir.join("probe.c"), dir.join("probe"));
    std::fs::write(&src, probe).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let header_dir = header_path().parent().unwrap().parent().unwrap().to_path_buf();
    let mut cmd = std::process::Command::new(&cc);
    // The installed include dir (from pkg-config) has version.h; the source header wins.
    cmd.arg(format!("-I{}", header_dir.display()));
    for flag in env!("LOWBIT_SYS_CFLAGS").split_whitespace() {
        cmd.arg(flag);
    }
    cmd.arg(&src).arg("-o").arg(&exe);
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) => {
            println!("lowbit-test: SKIPPED layout_matches_c_compiler: no C compiler ({cc}: {e})");
            return;
        }
    };
    assert!(status.success(), "compiling the layout probe failed (flags: {})", env!("LOWBIT_SYS_CFLAGS"));
    let out = std::process::Command::new(&exe).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8(out.stdout).unwrap();
    let mut from_c: BTreeMap<String, (usize, Vec<(String, usize)>)> = BTreeMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let entry = from_c.entry(parts[0].to_string()).or_default();
        let v: usize = parts[2].parse().unwrap();
        if parts[1] == "sizeof" {
            entry.0 = v;
        } else {
            entry.1.push((parts[1].to_string(), v));
        }
    }
    assert_eq!(from_c, rust, "struct layouts differ (left: C compiler, right: Rust)");
}

#[test]
fn parser_self_check() {
    assert_eq!(rust_decl("const char* arch"), ("arch".to_string(), "*const c_char".to_string()));
    assert_eq!(rust_decl("lowbit_context** out"), ("out".to_string(), "*mut *mut lowbit_context".to_string()));
    assert_eq!(rust_decl("char name[128]"), ("name".to_string(), "[c_char; 128]".to_string()));
    assert_eq!(rust_decl("int64_t dims[4]"), ("dims".to_string(), "[i64; 4]".to_string()));
    assert_eq!(rust_type("void*"), "*mut c_void");
}
