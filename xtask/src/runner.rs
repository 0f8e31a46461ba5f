//! Building the boards, launching QEMU, decoding defmt, judging runs.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use defmt_decoder::{DecodeError, Table};

use crate::profiles::{self, Board, Profile};
use crate::setup::{self, Toolchain};
use crate::verdict::{Outcome, Run};
use crate::{Options, Result, fail, workspace_root};

/// Build one board image (release, defmt level `info` unless DEFMT_LOG is set) and return its ELF.
pub fn build(board: Board) -> Result<PathBuf> {
    let mut cmd = match setup::toolchain() {
        Toolchain::Rustup => {
            let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            c.args(["build", "--release"]);
            c
        }
        Toolchain::DebianWeb => {
            let mut c = Command::new("/usr/bin/cargo");
            c.env_remove("RUSTUP_TOOLCHAIN")
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTC_BOOTSTRAP", "1")
                .env(
                    format!(
                        "CARGO_TARGET_{}_LINKER",
                        board.target().to_uppercase().replace('-', "_")
                    ),
                    "ld.lld-22",
                )
                .args(["build", "--release", "-Zbuild-std=core,alloc"]);
            c
        }
    };
    cmd.current_dir(workspace_root())
        .args(["-p", board.package(), "--target", board.target()]);
    if std::env::var_os("DEFMT_LOG").is_none() {
        cmd.env("DEFMT_LOG", "info");
    }
    crate::sh(&mut cmd)?;
    Ok(crate::target_dir()
        .join(board.target())
        .join("release")
        .join(board.package()))
}

/// What one QEMU run produced.
pub struct ProfileRun {
    pub run: Run,
    /// Benchmark rows the target printed (`@@ROW ...`), without the tag.
    pub rows: Vec<String>,
    pub problems: Vec<crate::verdict::Problem>,
    pub log_tail: VecDeque<String>,
    pub stderr: String,
}

impl ProfileRun {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
            && self
                .run
                .results
                .iter()
                .all(|r| matches!(r.outcome, Outcome::Pass | Outcome::Skip(_)))
    }
}

fn count_edus(args: &[String]) -> usize {
    args.windows(2)
        .filter(|w| w[0] == "-device" && (w[1] == "edu" || w[1].starts_with("edu,")))
        .count()
}

/// The kernel command line the target reads its instructions from.
fn cmdline(profile: &Profile, edus: usize, custom: bool, extra: &[String]) -> String {
    let mut c = format!("iommu.profile={} iommu.edus={edus}", profile.name);
    for w in profile
        .cmdline
        .iter()
        .copied()
        .chain(extra.iter().map(|s| s.as_str()))
    {
        c.push(' ');
        c.push_str(w);
    }
    if custom {
        c.push_str(" iommu.custom-qemu");
    }
    if let Ok(v) = std::env::var("IOMMU_SELFTEST") {
        if !v.is_empty() {
            c.push_str(&format!(" iommu.selftest={v}"));
        }
    }
    c
}

/// What a run prints while it goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// One line per finished test (`test`, `bench`).
    Tests,
    /// Every decoded frame (`run --log`).
    Log,
    /// The tour: its `tour:` lines, what the steps logged, each step's
    /// verdict (`run`).
    Tour,
}

/// Boot `profile` once, printing as `view` says.
pub fn run_profile(
    profile: &Profile,
    elf: &PathBuf,
    opts: &Options,
    view: View,
) -> Result<ProfileRun> {
    let echo = view == View::Log;
    let elf_bytes = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let table = Table::parse(&elf_bytes)
        .map_err(|e| format!("defmt table of {}: {e}", elf.display()))?
        .ok_or_else(|| format!("{} has no defmt table", elf.display()))?;
    let mut decoder = table.new_stream_decoder();

    let mut args = profile
        .board
        .base_args(&elf.to_string_lossy(), &opts.memory, opts.edus);
    args.extend(profile.machine_args());
    args.extend(opts.qemu_args.iter().cloned());
    let edus = count_edus(&args);
    args.push("-append".into());
    args.push(cmdline(
        profile,
        edus,
        !opts.qemu_args.is_empty(),
        &opts.cmdline_extra,
    ));

    let qemu = profile.board.qemu();
    if view != View::Tests {
        println!("[{}] {qemu} {}", profile.name, args.join(" "));
    }
    let mut child = Command::new(qemu)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {qemu}: {e}"))?;

    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let stderr = child.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            s.push_str(&line);
            s.push('\n');
        }
        s
    });

    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.timeout);
    let mut run = Run::default();
    let mut log_tail = VecDeque::new();
    let mut rows = vec![];
    let mut printed = 0;
    let mut timed_out = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = Some(opts.timeout);
            let _ = child.kill();
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(bytes) => {
                decoder.received(&bytes);
                loop {
                    match decoder.decode() {
                        Ok(frame) => {
                            let msg = frame.display_message().to_string();
                            if let Some(row) = msg.strip_prefix("@@ROW ") {
                                rows.push(row.to_string());
                            }
                            let t = start.elapsed().as_secs_f64();
                            let in_step = run.running.is_some();
                            let harness = run.feed(&msg, t);
                            if view == View::Tour {
                                tour_line(profile.name, &msg, in_step && !harness);
                                // Each verdict right under its step's lines.
                                for r in &run.results[printed..] {
                                    print_result(profile.name, r, view);
                                }
                                printed = run.results.len();
                            }
                            if echo {
                                // println! frames carry no level; show levels only where present.
                                match frame.level() {
                                    Some(l) => println!(
                                        "[{}] {t:7.3} {:<5} {msg}",
                                        profile.name,
                                        l.as_str().to_uppercase()
                                    ),
                                    None => println!("[{}] {t:7.3} {msg}", profile.name),
                                }
                            }
                            if !echo && !harness {
                                log_tail.push_back(msg);
                                if log_tail.len() > 40 {
                                    log_tail.pop_front();
                                }
                            }
                        }
                        Err(DecodeError::UnexpectedEof) => break,
                        Err(DecodeError::Malformed) => run.malformed += 1,
                    }
                }
                if !echo {
                    for r in &run.results[printed..] {
                        print_result(profile.name, r, view);
                    }
                    printed = run.results.len();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {qemu}: {e}"))?;
    let _ = reader.join();
    let stderr = err_reader.join().unwrap_or_default();
    let exit = if timed_out.is_some() {
        None
    } else {
        status.code()
    };
    let problems = run.finish(timed_out, exit, profile.board.pass_status());
    if !echo {
        for r in &run.results[printed..] {
            print_result(profile.name, r, view);
        }
    }
    Ok(ProfileRun {
        run,
        rows,
        problems,
        log_tail,
        stderr,
    })
}

/// A tour frame: the step's own words (`tour: ...`) as they are, anything
/// else a step logged indented beneath them.
fn tour_line(profile: &str, msg: &str, in_step: bool) {
    if let Some(words) = msg.strip_prefix("tour: ") {
        if words.starts_with("Step ") {
            println!();
        }
        println!("[{profile}] {words}");
    } else if in_step {
        println!("[{profile}]       | {msg}");
    }
}

fn print_result(profile: &str, r: &crate::verdict::TestResult, view: View) {
    if view == View::Tour {
        match &r.outcome {
            Outcome::Pass => println!("[{profile}]   => as expected ({:.2} s)", r.secs),
            Outcome::Skip(why) => {
                println!("[{profile}]   => NOT as expected: it could not run: {why}")
            }
            Outcome::Fail(why) | Outcome::Broken(why) => {
                println!("[{profile}]   => NOT as expected: {why}")
            }
        }
        return;
    }
    let (tag, detail) = match &r.outcome {
        Outcome::Pass => ("PASS", String::new()),
        Outcome::Skip(why) => ("SKIP", format!(" -- {why}")),
        Outcome::Fail(why) => ("FAIL", format!(" -- {why}")),
        Outcome::Broken(why) => ("FAIL", format!(" -- {why}")),
    };
    println!("{tag:<4} [{profile}] {} ({:.2} s){detail}", r.name, r.secs);
}

fn report_problems(profile: &str, pr: &ProfileRun, show_log: bool) {
    for p in &pr.problems {
        println!("FAIL [{profile}] run: {p}");
    }
    if show_log && !pr.passed() {
        if !pr.log_tail.is_empty() {
            println!("---- [{profile}] last log lines ----");
            for l in &pr.log_tail {
                println!("  {l}");
            }
        }
        if !pr.stderr.trim().is_empty() {
            println!("---- [{profile}] QEMU stderr ----");
            for l in pr.stderr.lines().take(40) {
                println!("  {l}");
            }
        }
    }
}

fn selected(opts: &Options, default: &[&str]) -> Vec<&'static Profile> {
    if opts.profiles.is_empty() {
        default.iter().filter_map(|n| profiles::find(n)).collect()
    } else {
        opts.profiles
            .iter()
            .filter_map(|n| profiles::find(n))
            .collect()
    }
}

pub fn build_for(profiles: &[&Profile]) -> Result<Vec<(Board, PathBuf)>> {
    let mut elves: Vec<(Board, PathBuf)> = vec![];
    for p in profiles {
        if !elves.iter().any(|(b, _)| *b == p.board) {
            elves.push((p.board, build(p.board)?));
        }
    }
    Ok(elves)
}

pub fn elf_of(elves: &[(Board, PathBuf)], board: Board) -> &PathBuf {
    &elves
        .iter()
        .find(|(b, _)| *b == board)
        .expect("built above")
        .1
}

/// `cargo xtask run`: the tour on one machine per board (or the suites'
/// whole log with `--log`). A tour passes only if every step ran and went
/// as expected.
pub fn run(opts: &Options) -> Result<bool> {
    let chosen = selected(opts, profiles::DEFAULT_RUN);
    let elves = build_for(&chosen)?;
    let mut ok = true;
    let (view, opts) = if opts.log {
        (View::Log, opts.clone())
    } else {
        let mut o = opts.clone();
        o.cmdline_extra.push("iommu.tour".into());
        (View::Tour, o)
    };
    for p in chosen {
        let pr = run_profile(p, elf_of(&elves, p.board), &opts, view)?;
        report_problems(p.name, &pr, true);
        let c = pr.run.counted();
        if view == View::Tour {
            let steps = pr.run.results.len();
            let good = pr.passed() && c.skipped == 0 && steps > 0;
            println!();
            if good {
                println!("[{}] tour: all {steps} steps went as expected", p.name);
            } else {
                println!(
                    "[{}] tour: FAILED: {} of {steps} steps as expected",
                    p.name, c.passed
                );
            }
            ok &= good;
            continue;
        }
        println!(
            "[{}] {}: {} passed, {} failed, {} skipped",
            p.name,
            if pr.passed() { "ok" } else { "FAILED" },
            c.passed,
            c.failed,
            c.skipped
        );
        ok &= pr.passed();
    }
    Ok(ok)
}

/// Host tests through `cargo test`; returns (passed, failed).
fn host_tests() -> Result<(u32, u32)> {
    println!("== host tests (cargo test)");
    let mut child = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args([
            "test",
            "--workspace",
            "--exclude",
            "iommu-q35",
            "--exclude",
            "iommu-virt",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo test: {e}"))?;
    let out = child.stdout.take().expect("piped");
    let (mut passed, mut failed) = (0, 0);
    for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
        println!("{line}");
        if let Some((p, f)) = parse_cargo_result(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() && failed == 0 {
        println!("FAIL host: cargo test exited with {status} (build error?)");
        failed += 1;
    }
    Ok((passed, failed))
}

/// `test result: ok. 12 passed; 0 failed; ...` → (12, 0).
pub fn parse_cargo_result(line: &str) -> Option<(u32, u32)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let num = |key: &str| -> Option<u32> {
        rest.split(';')
            .find_map(|part| {
                part.trim()
                    .trim_start_matches("ok. ")
                    .trim_start_matches("FAILED. ")
                    .strip_suffix(key)
            })
            .and_then(|n| n.trim().parse().ok())
    };
    Some((num(" passed")?, num(" failed")?))
}

/// `cargo xtask test`: host tests, then every profile (or the ones named).
pub fn test(opts: &Options) -> Result<bool> {
    let all: Vec<&str> = profiles::PROFILES.iter().map(|p| p.name).collect();
    let chosen = selected(opts, &all);
    let (mut passed, mut failed) = if opts.host && opts.profiles.is_empty() {
        host_tests()?
    } else {
        (0, 0)
    };
    let elves = build_for(&chosen)?;
    for p in chosen {
        println!("== {} ({})", p.name, p.what);
        let pr = run_profile(p, elf_of(&elves, p.board), opts, View::Tests)?;
        report_problems(p.name, &pr, true);
        let c = pr.run.counted();
        passed += c.passed;
        failed += c.failed;
        // A run-level problem with no failed test to carry it still counts once.
        if !pr.problems.is_empty() && c.failed == 0 {
            failed += 1;
        }
    }
    if passed + failed == 0 {
        return fail("no test ran");
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_result_lines() {
        assert_eq!(
            parse_cargo_result(
                "test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some((12, 0))
        );
        assert_eq!(
            parse_cargo_result("test result: FAILED. 3 passed; 2 failed; 0 ignored"),
            Some((3, 2))
        );
        assert_eq!(parse_cargo_result("running 3 tests"), None);
    }

    #[test]
    fn edu_devices_are_counted_from_the_final_arguments() {
        let a: Vec<String> = [
            "-device",
            "edu,dma_mask=1",
            "-device",
            "intel-iommu",
            "-device",
            "edu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(count_edus(&a), 2);
    }
}
