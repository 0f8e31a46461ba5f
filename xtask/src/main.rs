//! Project automation: `cargo xtask <command>`.
//!
//! - `setup`: install the bare-metal targets and QEMU >= 10.0 (Debian, as root).
//! - `build`: build both board images.
//! - `run [--profile P]... [--log]`: the guided tour: boot one machine per
//!   board and walk through what the crate does, each step checked; exits
//!   non-zero unless every step went as expected. `--log` instead runs the
//!   test suites and prints the whole decoded defmt log.
//! - `test [--profile P]...`: host tests, then every profile (or those named);
//!   one line per test and `N passed, M failed` last.
//! - `bench [NAME] [-- ARGS]`: host benchmarks in release (`pgtable`) and the
//!   embedder's cost on both bare-metal targets (`size`).
//!
//! Options for run/test: `--profile NAME` (repeatable), `--qemu-arg ARG`
//! (repeatable, appended to QEMU's command line), `--timeout SECS` (per QEMU
//! run, default 180), `--memory SIZE` (default 256M), `--edus N` (default 3),
//! `--no-host` (test: skip host tests). `IOMMU_SELFTEST=fail|panic|hang` makes
//! the target add a deliberately broken test, to prove the harness catches it.

mod bench;
mod profiles;
mod runner;
mod setup;
mod size;
mod verdict;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

pub type Result<T> = std::result::Result<T, String>;

pub fn fail<T>(msg: impl Into<String>) -> Result<T> {
    Err(msg.into())
}

/// Run a command, failing if it cannot start or exits non-zero.
pub fn sh(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().map_err(|e| format!("{cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        fail(format!("{cmd:?} failed: {status}"))
    }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

#[derive(Debug, Clone)]
pub struct Options {
    pub profiles: Vec<String>,
    pub qemu_args: Vec<String>,
    pub timeout: u64,
    pub memory: String,
    pub edus: usize,
    pub host: bool,
    /// Words added to the target's command line.
    pub cmdline_extra: Vec<String>,
    /// `run`: print the suites' whole log instead of the tour.
    pub log: bool,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        profiles: vec![],
        qemu_args: vec![],
        timeout: 180,
        memory: "256M".into(),
        edus: 3,
        host: true,
        cmdline_extra: vec![],
        log: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it.next().cloned().ok_or(format!("{name} needs a value")),
            }
        };
        match flag {
            "--profile" => o.profiles.push(value(flag)?),
            "--qemu-arg" => o.qemu_args.push(value(flag)?),
            "--timeout" => {
                o.timeout = value(flag)?
                    .parse()
                    .map_err(|_| "--timeout takes whole seconds")?
            }
            "--memory" => o.memory = value(flag)?,
            "--edus" => o.edus = value(flag)?.parse().map_err(|_| "--edus takes a number")?,
            "--no-host" => o.host = false,
            "--log" => o.log = true,
            other => return fail(format!("unknown option {other}; see `cargo xtask help`")),
        }
    }
    for p in &o.profiles {
        if profiles::find(p).is_none() {
            let names: Vec<_> = profiles::PROFILES.iter().map(|p| p.name).collect();
            return fail(format!(
                "unknown profile {p}; profiles: {}",
                names.join(", ")
            ));
        }
    }
    Ok(o)
}

fn help() {
    println!("usage: cargo xtask <setup|build|run|test|bench> [options]\n");
    println!("  setup                 install rustup targets and QEMU >= 10.0 (Debian, root)");
    println!("  build                 build both board images");
    println!(
        "  run   [options]       the guided tour on {} (--log: the suites' whole log)",
        profiles::DEFAULT_RUN.join(", ")
    );
    println!("  test  [options]       host tests + every profile (or those named)");
    println!("  bench [NAME] [-- ARGS] host benchmarks in release (default: all):");
    for (name, what) in bench::BENCHES {
        println!("          {name:<14} {what}");
    }
    println!();
    println!("options: --profile NAME (repeatable)  --qemu-arg ARG (repeatable)  --timeout SECS");
    println!("         --memory SIZE  --edus N  --no-host  --log\n");
    println!("profiles:");
    for p in profiles::PROFILES {
        println!("  {:<14} {}", p.name, p.what);
    }
}

pub fn ensure_setup() -> Result<()> {
    if !setup::ready() {
        println!("xtask: something is missing, running setup");
        setup::setup()?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match cmd {
        "setup" => setup::setup().map(|_| true),
        "build" => ensure_setup()
            .and_then(|_| runner::build(profiles::Board::Q35))
            .and_then(|_| runner::build(profiles::Board::Virt))
            .map(|_| true),
        "run" => parse_options(rest).and_then(|o| {
            ensure_setup()?;
            runner::run(&o)
        }),
        "test" => parse_options(rest).and_then(|o| {
            ensure_setup()?;
            runner::test(&o)
        }),
        "bench" => bench::run(rest),
        "help" | "--help" | "-h" => {
            help();
            Ok(true)
        }
        other => fail(format!("unknown command {other}; see `cargo xtask help`")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_accept_both_spellings() {
        let o = parse_options(&s(&[
            "--profile",
            "virt-nested",
            "--qemu-arg=-machine",
            "--qemu-arg=highmem-ecam=off",
            "--timeout=30",
            "--edus",
            "3",
        ]))
        .unwrap();
        assert_eq!(o.profiles, vec!["virt-nested"]);
        assert_eq!(o.qemu_args, vec!["-machine", "highmem-ecam=off"]);
        assert_eq!((o.timeout, o.edus), (30, 3));
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(parse_options(&s(&["--profile", "nope"])).is_err());
        assert!(parse_options(&s(&["--timeout", "x"])).is_err());
        assert!(parse_options(&s(&["--bogus"])).is_err());
        assert!(parse_options(&s(&["--profile"])).is_err());
    }
}
