//! Link the q35 image with `link/q35.ld` (fixed 1 MiB load address, PVH note
//! in a PT_NOTE segment) and defmt's section script.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let script = manifest.join("../../link/q35.ld");
    let script = script.canonicalize().unwrap_or(script);
    println!("cargo:rustc-link-arg=-T{}", script.display());
    println!("cargo:rustc-link-arg=-Tdefmt.x");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
}
