//! `cargo xtask bench [NAME] [-- ARGS]`: host benchmarks of the root crate,
//! built in release (`cargo bench -p iommu --bench NAME`) with the cargo that
//! runs xtask.

use std::process::Command;

use crate::{Result, fail, sh, workspace_root};

/// The benches and what they measure: `benches/NAME.rs` (`harness = false`)
/// run by `cargo bench`, except `size`, which xtask runs itself.
pub const BENCHES: &[(&str, &str)] = &[
    (
        "pgtable",
        "page-table map/unmap vs aarch64-paging and x86_64 (ns/op, ratio, targets)",
    ),
    (
        "size",
        "the minimal embedder's sections on both targets, the core's size (-- --check)",
    ),
    (
        "invalidate",
        "on target: descriptors, waits and pages invalidated per unmap+sync, vs Linux's policy",
    ),
];

/// The profiles `bench invalidate` boots: one per way each driver
/// invalidates (VT-d second level legacy / scalable, first level; SMMUv3
/// on an SMMU with both stages and with stage 1 only).
const INVALIDATE_PROFILES: &[&str] = &[
    "q35-legacy",
    "q35-scalable",
    "q35-flts",
    "virt-nested",
    "virt-s1",
];

/// `bench invalidate`: boot each profile with `iommu.bench=invalidate` and
/// print the rows the target measured.
fn invalidate() -> Result<bool> {
    let opts = crate::Options {
        profiles: INVALIDATE_PROFILES.iter().map(|s| s.to_string()).collect(),
        qemu_args: vec![],
        timeout: 300,
        memory: "256M".into(),
        edus: 1,
        host: false,
        cmdline_extra: vec!["iommu.bench=invalidate".into()],
        log: false,
    };
    let chosen: Vec<_> = INVALIDATE_PROFILES
        .iter()
        .filter_map(|n| crate::profiles::find(n))
        .collect();
    let elves = crate::runner::build_for(&chosen)?;
    println!("== bench invalidate (per unmap + sync; over = pages invalidated / pages unmapped)");
    let mut ok = true;
    for p in chosen {
        let pr = crate::runner::run_profile(
            p,
            crate::runner::elf_of(&elves, p.board),
            &opts,
            crate::runner::View::Tests,
        )?;
        for row in &pr.rows {
            println!("{row}");
        }
        if !pr.passed() || pr.rows.is_empty() {
            for problem in &pr.problems {
                println!("bench invalidate: {}: {problem}", p.name);
            }
            println!("bench invalidate: {} did not run to the end", p.name);
            ok = false;
        }
    }
    Ok(ok)
}

/// Which benches to run and the arguments for the bench binary.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub names: Vec<&'static str>,
    pub args: Vec<String>,
}

/// `[NAME] [-- ARGS...]`; no name runs every bench.
pub fn parse(args: &[String]) -> Result<Plan> {
    let (ours, pass) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], args[i + 1..].to_vec()),
        None => (args, vec![]),
    };
    let mut names = vec![];
    for a in ours {
        match BENCHES.iter().find(|(n, _)| n == a) {
            Some((n, _)) => names.push(*n),
            None => {
                let known: Vec<_> = BENCHES.iter().map(|(n, _)| *n).collect();
                return fail(format!(
                    "unknown bench {a}; benches: {} (arguments for the bench go after --)",
                    known.join(", ")
                ));
            }
        }
    }
    if names.is_empty() {
        names = BENCHES.iter().map(|(n, _)| *n).collect();
    }
    Ok(Plan { names, args: pass })
}

/// The cargo command for one bench.
pub fn command(name: &str, args: &[String]) -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root())
        .args(["bench", "-p", "iommu", "--bench", name]);
    if !args.is_empty() {
        c.arg("--").args(args);
    }
    c
}

/// Run the benches. A missed performance target is reported by the bench,
/// not turned into a failure; only a build or run error fails.
pub fn run(args: &[String]) -> Result<bool> {
    let plan = parse(args)?;
    for name in plan.names {
        if name == "size" {
            crate::size::run(plan.args.iter().any(|a| a == "--check"))?;
            continue;
        }
        if name == "invalidate" {
            crate::ensure_setup()?;
            if !invalidate()? {
                return Ok(false);
            }
            continue;
        }
        println!("== bench {name}");
        sh(&mut command(name, &plan.args))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names_and_passthrough() {
        let p = parse(&s(&["pgtable", "--", "--bench", "x"])).unwrap();
        assert_eq!(p.names, vec!["pgtable"]);
        assert_eq!(p.args, s(&["--bench", "x"]));
        let all = parse(&[]).unwrap();
        assert_eq!(all.names.len(), BENCHES.len());
        assert!(all.args.is_empty());
        assert!(parse(&s(&["nope"])).is_err());
    }

    #[test]
    fn runs_cargo_bench_on_the_root_crate() {
        let c = command("pgtable", &s(&["-x"]));
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            s(&["bench", "-p", "iommu", "--bench", "pgtable", "--", "-x"])
        );
    }
}
