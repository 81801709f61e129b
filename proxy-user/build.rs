//! Embeds the eBPF object into `weir` when `cargo xtask build` names it in
//! WEIR_EBPF_OBJECT. Without it (plain `cargo build`, `cargo clippy`) nothing
//! is embedded and the binary looks for the object at run time (see
//! `l4::loader::find_object`), so host builds work on machines without the
//! eBPF toolchain.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=WEIR_EBPF_OBJECT");
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("ebpf_object.rs");
    let code = match env::var("WEIR_EBPF_OBJECT") {
        Ok(path) if fs::metadata(&path).is_ok() => {
            println!("cargo:rerun-if-changed={path}");
            format!("pub const EMBEDDED_OBJECT: Option<&[u8]> = Some(aya::include_bytes_aligned!({path:?}));\n")
        }
        _ => "pub const EMBEDDED_OBJECT: Option<&[u8]> = None;\n".to_string(),
    };
    fs::write(&out, code).expect("write OUT_DIR/ebpf_object.rs");
}
