//! Link the virt image with `link/virt.ld` (identity-mapped image at
//! 0x40200000, above the DTB QEMU puts at the start of RAM) and defmt's
//! section script.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let script = manifest.join("../../link/virt.ld");
    let script = script.canonicalize().unwrap_or(script);
    println!("cargo:rustc-link-arg=-T{}", script.display());
    println!("cargo:rustc-link-arg=-Tdefmt.x");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
}
