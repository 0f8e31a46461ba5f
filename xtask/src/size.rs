//! `cargo xtask bench size [--check]`: what the crate costs an embedder.
//!
//! Builds the README's minimal embedder (`examples/minimal`) for both
//! bare-metal targets with one architecture's feature each, in the `size`
//! profile (opt-level "s", fat LTO, one codegen unit, panic = abort), in three
//! variants: the paging-only driver, the same driver with fault handling
//! compiled in, and a baseline that links the program without calling the
//! crate. Prints .text/.rodata/.data/.bss of each, the crate's part (variant
//! minus baseline), where the core's static landed and its size, and
//! `size_of` the core at two capacity sets. With `--check`, fails unless the
//! targets hold: the crate's .text at most 16 KiB (paging-only), the core at
//! 8 domains / 8 devices / no PASIDs at most 16 KiB and all of it in .bss,
//! and no .data from the crate.
//!
//! Then the same for the porting guide's example (`examples/porting`): the
//! real VT-d driver on x86-64, the real SMMUv3 driver on AArch64, each minus
//! its own baseline, its core static, and `size_of` the real-driver cores
//! and drivers (reported, no target).

use std::path::{Path, PathBuf};
use std::process::Command;

use object::{Object, ObjectSection, ObjectSymbol};

use crate::{Result, fail, sh, workspace_root};

/// One build to measure.
struct Build {
    package: &'static str,
    target: &'static str,
    arch: &'static str,
    variant: &'static str,
    features: String,
}

/// Sizes read from one ELF.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sections {
    pub text: u64,
    pub rodata: u64,
    pub data: u64,
    pub bss: u64,
}

/// The core static's size and section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreSymbol {
    pub size: u64,
    pub section: String,
}

const TARGETS: [(&str, &str); 2] = [
    ("x86_64-unknown-none", "vtd"),
    ("aarch64-unknown-none", "smmuv3"),
];

/// Targets (bytes).
pub const TEXT_TARGET: u64 = 16 * 1024;
pub const CORE_TARGET: u64 = 16 * 1024;

fn builds() -> Vec<Build> {
    let mut v = vec![];
    for (target, arch) in TARGETS {
        for (variant, extra) in [
            ("paging-only", ""),
            ("with faults", ",faults"),
            ("baseline", ",baseline"),
        ] {
            v.push(Build {
                package: "iommu-minimal",
                target,
                arch,
                variant,
                features: format!("{arch}{extra}"),
            });
        }
    }
    v
}

/// The porting example's builds: the real driver, and its baseline.
fn porting_builds() -> Vec<Build> {
    let mut v = vec![];
    for (target, arch) in TARGETS {
        for (variant, extra) in [("real driver", ""), ("baseline", ",baseline")] {
            v.push(Build {
                package: "iommu-porting",
                target,
                arch,
                variant,
                features: format!("{arch}{extra}"),
            });
        }
    }
    v
}

fn target_dir() -> PathBuf {
    crate::target_dir().join("size")
}

fn build(b: &Build) -> Result<PathBuf> {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root())
        .args(["build", "-q", "-p", b.package, "--profile", "size"])
        .args(["--target", b.target, "--no-default-features", "--features"])
        .arg(&b.features)
        .arg("--target-dir")
        .arg(target_dir());
    sh(&mut c)?;
    let out = target_dir().join(b.target).join("size").join(b.package);
    // Each variant overwrites the last: keep a copy by name.
    let keep = target_dir().join(format!(
        "{}-{}-{}",
        b.package,
        b.target,
        b.variant.replace(' ', "-")
    ));
    std::fs::copy(&out, &keep).map_err(|e| format!("copy {}: {e}", out.display()))?;
    Ok(keep)
}

/// Mangled-name parts of the core statics: the minimal example's `CORE`,
/// the porting example's `VTD` and `SMMU`.
const CORE_SYMBOLS: [&str; 3] = [
    "13iommu_minimal4CORE",
    "13iommu_porting3VTD",
    "13iommu_porting4SMMU",
];

/// Section sizes and the core static of an ELF image.
pub fn measure(path: &Path) -> Result<(Sections, Option<CoreSymbol>)> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let file =
        object::File::parse(&*bytes).map_err(|e| format!("parse {}: {e}", path.display()))?;
    let mut s = Sections::default();
    for sec in file.sections() {
        let name = sec.name().unwrap_or("");
        let slot = if name.starts_with(".text") {
            &mut s.text
        } else if name.starts_with(".rodata") {
            &mut s.rodata
        } else if name.starts_with(".data") {
            &mut s.data
        } else if name.starts_with(".bss") {
            &mut s.bss
        } else {
            continue;
        };
        *slot += sec.size();
    }
    let core = file
        .symbols()
        .find(|sym| {
            sym.name()
                .is_ok_and(|n| CORE_SYMBOLS.iter().any(|c| n.contains(c)) || n == "CORE")
        })
        .and_then(|sym| {
            let sec = file.section_by_index(sym.section_index()?).ok()?;
            Some(CoreSymbol {
                size: sym.size(),
                section: sec.name().unwrap_or("?").to_string(),
            })
        });
    Ok((s, core))
}

fn kib(b: u64) -> String {
    format!("{:.1} KiB", b as f64 / 1024.0)
}

/// What one build measured.
type Measured = (Build, Sections, Option<CoreSymbol>);

/// Build and measure each of `builds`.
fn measure_all(builds: Vec<Build>) -> Result<Vec<Measured>> {
    let mut results = vec![];
    for b in builds {
        let path = build(&b)?;
        let (s, core) = measure(&path)?;
        results.push((b, s, core));
    }
    Ok(results)
}

/// The baseline measured beside `b` (same package and target).
fn baseline_of(results: &[Measured], b: &Build) -> Sections {
    results
        .iter()
        .find(|(o, _, _)| o.package == b.package && o.target == b.target && o.variant == "baseline")
        .map(|(_, s, _)| *s)
        .unwrap_or_default()
}

fn print_header() {
    println!(
        "{:<22} {:<12} {:>8} {:>8} {:>6} {:>8} {:>12} {:>18}",
        "target", "variant", ".text", ".rodata", ".data", ".bss", "crate .text", "core static"
    );
}

/// Print one row; returns the crate's .text (the variant minus baseline).
fn print_row(results: &[Measured], (b, s, core): &Measured) -> u64 {
    let crate_text = s.text.saturating_sub(baseline_of(results, b).text);
    let core_txt = core
        .as_ref()
        .map(|c| format!("{} in {}", c.size, c.section))
        .unwrap_or_else(|| "-".into());
    println!(
        "{:<22} {:<12} {:>8} {:>8} {:>6} {:>8} {:>12} {:>18}",
        b.target, b.variant, s.text, s.rodata, s.data, s.bss, crate_text, core_txt
    );
    crate_text
}

/// Build, measure, print; with `check`, fail when a target is missed.
pub fn run(check: bool) -> Result<bool> {
    println!("== bench size: the minimal embedder (examples/minimal), profile `size`");
    println!("   (opt-level \"s\", fat LTO, codegen-units 1, panic = abort)\n");
    let results = measure_all(builds())?;
    print_header();
    let mut ok = true;
    for m in &results {
        let crate_text = print_row(&results, m);
        let (b, s, core) = m;
        if b.variant == "paging-only" {
            let base = baseline_of(&results, b);
            let mut miss = |what: String| {
                println!("   MISSED ({} {}): {what}", b.target, b.arch);
                ok = false;
            };
            if crate_text > TEXT_TARGET {
                miss(format!(
                    "crate .text {} > {}",
                    kib(crate_text),
                    kib(TEXT_TARGET)
                ));
            }
            match core {
                None => miss("no CORE symbol found".into()),
                Some(c) if c.size > CORE_TARGET => {
                    miss(format!("core {} > {}", kib(c.size), kib(CORE_TARGET)))
                }
                Some(c) if !c.section.starts_with(".bss") => {
                    miss(format!("core in {}, not .bss", c.section))
                }
                _ => {}
            }
            if s.data > base.data {
                miss(format!("{} bytes of .data", s.data - base.data));
            }
        }
    }
    use iommu::core::Caps;
    use iommu_minimal::CoreWith;
    let small = size_of::<CoreWith<Caps<8, 8>>>();
    let big = size_of::<CoreWith<Caps<64, 64, 16384>>>();
    println!();
    println!("size_of the core (host, same layout on both targets):");
    println!("  Caps<8, 8> (8 domains, 8 devices, no PASIDs):          {small:>7} bytes");
    println!("  Caps<64, 64, 16384> (64, 64, the whole PASID space):   {big:>7} bytes");
    println!();
    println!(
        "targets: crate .text <= {} (paging-only), core <= {} at 8/8/no PASIDs, all in .bss: {}",
        kib(TEXT_TARGET),
        kib(CORE_TARGET),
        if ok { "met" } else { "MISSED" }
    );
    porting()?;
    if check && !ok {
        return fail("size targets missed".to_string());
    }
    Ok(true)
}

/// The porting example: the real drivers (reported; no target).
fn porting() -> Result<()> {
    println!();
    println!("== bench size: the real drivers (examples/porting), profile `size`");
    println!(
        "   (x86_64: Vtd, VT-d second level + x86-64 tables; aarch64: Smmu, Arm stage 1 + stage 2;"
    );
    println!("    the core at Caps<16, 16>, the example's pool of 64 pages in .bss)\n");
    let results = measure_all(porting_builds())?;
    print_header();
    for m in &results {
        print_row(&results, m);
    }
    use iommu::core::{Caps, Iommu};
    use iommu::drivers::smmuv3::driver::Smmu;
    use iommu::drivers::vtd::driver::Vtd;
    use iommu_porting::PortHal as H;
    type V<C> = Iommu<Vtd<H>, H, C>;
    type S<C> = Iommu<Smmu<H>, H, C>;
    println!();
    println!("size_of with the real drivers (host, zero-sized Hal; bytes):");
    println!("  {:<44} {:>9} {:>9}", "", "Vtd<H>", "Smmu<H>");
    let rows = [
        (
            "the driver alone (4 VT-d units / 2 SMMUs)",
            size_of::<Vtd<H>>(),
            size_of::<Smmu<H>>(),
        ),
        (
            "core, Caps<8, 8>",
            size_of::<V<Caps<8, 8>>>(),
            size_of::<S<Caps<8, 8>>>(),
        ),
        (
            "core, Caps<16, 16> (the example)",
            size_of::<V<Caps<16, 16>>>(),
            size_of::<S<Caps<16, 16>>>(),
        ),
        (
            "core, Caps<64, 64, 16384>",
            size_of::<V<Caps<64, 64, 16384>>>(),
            size_of::<S<Caps<64, 64, 16384>>>(),
        ),
    ];
    for (what, v, s) in rows {
        println!("  {what:<44} {v:>9} {s:>9}");
    }
    Ok(())
}
