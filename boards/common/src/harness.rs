//! On-target test harness.
//!
//! Tests are grouped in suites; each test is a function returning
//! [`TestResult`]. Every start and end is a defmt frame the host decodes
//! (protocol in `xtask/src/verdict.rs`):
//!
//! ```text
//! @@START suite::test          @@PASS suite::test
//! @@FAIL suite::test: file:line: message
//! @@SKIP suite::test: reason   @@PANIC suite::test: message at file:line
//! @@SUMMARY passed=N failed=N skipped=N
//! ```
//!
//! The run exits with code 0 only if nothing failed; a panic exits with
//! [`EXIT_PANIC`] after naming the test that was running. A hang is the host's
//! to catch: it knows the running test from the last `@@START`.

use core::fmt::Write;

use heapless::String;

use crate::BoardOps;
use crate::platform::Platform;

/// Exit code after a failed test.
pub const EXIT_FAILED: u8 = 1;
/// Exit code after firmware discovery failed before any test could run.
pub const EXIT_DISCOVERY: u8 = 2;
/// Exit code after a panic.
pub const EXIT_PANIC: u8 = 3;

/// Why a test did not pass.
#[derive(Debug)]
pub enum Failure {
    /// A check failed.
    Fail {
        /// Source file of the check.
        file: &'static str,
        /// Line of the check.
        line: u32,
        /// What went wrong.
        msg: String<192>,
    },
    /// The test does not apply here (e.g. no such IOMMU on this board).
    Skip(String<128>),
}

impl Failure {
    /// A failed check at `file:line`.
    pub fn fail(file: &'static str, line: u32, args: core::fmt::Arguments) -> Self {
        let mut msg = String::new();
        // A message longer than the buffer is cut; the check's location still names it.
        let _ = msg.write_fmt(args);
        Failure::Fail { file, line, msg }
    }

    /// A skipped test.
    pub fn skip(args: core::fmt::Arguments) -> Self {
        let mut msg = String::new();
        let _ = msg.write_fmt(args);
        Failure::Skip(msg)
    }
}

/// Result of one test.
pub type TestResult = Result<(), Failure>;

/// Fail the current test unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::harness::Failure::fail(file!(), line!(), format_args!($($fmt)+)));
        }
    };
}

/// Fail the current test unless `a == b`; the message shows both.
#[macro_export]
macro_rules! check_eq {
    ($a:expr, $b:expr, $($fmt:tt)+) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err($crate::harness::Failure::fail(
                file!(),
                line!(),
                format_args!("{}: {:?} != {:?}", format_args!($($fmt)+), a, b),
            ));
        }
    }};
}

/// Skip the current test with a reason.
#[macro_export]
macro_rules! skip {
    ($($fmt:tt)+) => {
        return Err($crate::harness::Failure::skip(format_args!($($fmt)+)))
    };
}

/// Turn any `Result<_, E: Debug>` into a test failure at the caller's line.
#[macro_export]
macro_rules! tryx {
    ($e:expr, $what:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => {
                return Err($crate::harness::Failure::fail(
                    file!(),
                    line!(),
                    format_args!("{}: {:?}", $what, err),
                ))
            }
        }
    };
}

/// What a test can look at.
pub struct Ctx<'a> {
    /// Firmware description.
    pub platform: &'a Platform,
    /// PCI devices found and configured.
    pub pci: &'a crate::pci::Topology,
    /// Board services (clock, exit).
    pub ops: BoardOps,
}

impl Ctx<'_> {
    /// `iommu.profile=` from the command line, if any.
    pub fn profile(&self) -> Option<&str> {
        crate::cmdline::get(&self.platform.cmdline, "iommu.profile")
    }
}

/// One named test.
pub struct Test {
    /// Name within its suite.
    pub name: &'static str,
    /// The test.
    pub run: fn(&Ctx) -> TestResult,
}

/// A named group of tests.
pub struct Suite {
    /// Suite name (first part of the test's full name).
    pub name: &'static str,
    /// Tests, run in order.
    pub tests: &'static [Test],
}

/// Pass/fail/skip counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: u32,
    /// Failed.
    pub failed: u32,
    /// Skipped.
    pub skipped: u32,
}

static CURRENT: spin::Mutex<Option<(&'static str, &'static str)>> = spin::Mutex::new(None);
static EXIT: spin::Once<fn(u8) -> !> = spin::Once::new();

fn set_current(v: Option<(&'static str, &'static str)>) {
    *CURRENT.lock() = v;
}

/// Run the suites in order and return the counts.
pub fn run_suites(ctx: &Ctx, suites: &[&Suite]) -> Counts {
    let mut c = Counts::default();
    for suite in suites {
        for test in suite.tests {
            set_current(Some((suite.name, test.name)));
            defmt::println!("@@START {=str}::{=str}", suite.name, test.name);
            match (test.run)(ctx) {
                Ok(()) => {
                    c.passed += 1;
                    defmt::println!("@@PASS {=str}::{=str}", suite.name, test.name);
                }
                Err(Failure::Fail { file, line, msg }) => {
                    c.failed += 1;
                    defmt::println!(
                        "@@FAIL {=str}::{=str}: {=str}:{=u32}: {=str}",
                        suite.name,
                        test.name,
                        file,
                        line,
                        msg.as_str()
                    );
                }
                Err(Failure::Skip(why)) => {
                    c.skipped += 1;
                    defmt::println!(
                        "@@SKIP {=str}::{=str}: {=str}",
                        suite.name,
                        test.name,
                        why.as_str()
                    );
                }
            }
            set_current(None);
        }
    }
    c
}

/// Entry from [`crate::board_main`]: bring up PCI, report, run every suite, exit.
pub fn main(platform: Platform, ops: BoardOps) -> ! {
    EXIT.call_once(|| ops.exit);
    let topology = crate::pci::bring_up(&platform);
    crate::suites::report(&platform, &topology);
    let ctx = Ctx {
        platform: &platform,
        pci: &topology,
        ops,
    };
    let counts = run_suites(&ctx, &crate::suites::all(&platform));
    defmt::println!(
        "@@SUMMARY passed={=u32} failed={=u32} skipped={=u32}",
        counts.passed,
        counts.failed,
        counts.skipped
    );
    (ops.exit)(if counts.failed == 0 { 0 } else { EXIT_FAILED })
}

/// Report a panic, naming the running test, and leave the machine.
pub fn on_panic(info: &core::panic::PanicInfo) -> ! {
    crate::console::reset_after_panic();
    let mut msg: String<256> = String::new();
    let _ = write!(msg, "{}", info.message());
    if let Some(loc) = info.location() {
        let _ = write!(msg, " at {}:{}", loc.file(), loc.line());
    }
    // try_lock: the lock is never held across a test, but a panic inside
    // `set_current` must not deadlock here.
    let current = CURRENT.try_lock().and_then(|g| *g);
    match current {
        Some((suite, test)) => {
            defmt::println!("@@PANIC {=str}::{=str}: {=str}", suite, test, msg.as_str())
        }
        None => defmt::println!("@@PANIC -: {=str}", msg.as_str()),
    }
    match EXIT.get() {
        Some(exit) => exit(EXIT_PANIC),
        None => loop {
            core::hint::spin_loop();
        },
    }
}

/// Let a board's early code (before [`main`]) name its exit routine for panics.
pub fn set_exit(exit: fn(u8) -> !) {
    EXIT.call_once(|| exit);
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    on_panic(info)
}
