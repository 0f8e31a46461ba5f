//! Host side of the on-target harness protocol.
//!
//! The target prints `@@`-prefixed defmt frames (see `boards/common/src/harness.rs`):
//!
//! ```text
//! @@START <test>
//! @@PASS <test>
//! @@FAIL <test>: <detail>
//! @@SKIP <test>: <reason>
//! @@PANIC <test or ->: <detail>
//! @@SUMMARY passed=<n> failed=<n> skipped=<n>
//! ```
//!
//! A run is trusted only if every started test ended, the summary exists and
//! agrees with the frames we counted, nothing panicked, no frame was
//! malformed, nothing timed out and QEMU's exit status is the one a passing
//! run produces.

use std::fmt;

/// How one on-target test ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
    /// Panicked, timed out, or never finished.
    Broken(String),
}

/// One test's result.
#[derive(Clone, Debug, PartialEq)]
pub struct TestResult {
    pub name: String,
    pub outcome: Outcome,
    /// Seconds between its START and its end frame, measured on the host.
    pub secs: f64,
}

/// Counts the target reported in its summary frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Summary {
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
}

/// Accumulates the frames of one QEMU run.
#[derive(Debug, Default)]
pub struct Run {
    pub results: Vec<TestResult>,
    pub running: Option<(String, f64)>,
    pub summary: Option<Summary>,
    pub panic: Option<String>,
    pub malformed: usize,
    pub protocol_errors: Vec<String>,
}

/// Why a run is not a pass, beyond individual test failures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    TimedOut { running: Option<String>, secs: u64 },
    Panicked(String),
    NoSummary,
    SummaryMismatch { reported: Summary, counted: Summary },
    Malformed(usize),
    Protocol(String),
    ExitStatus { got: Option<i32>, want: i32 },
    NoTests,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::TimedOut {
                running: Some(t),
                secs,
            } => {
                write!(f, "timed out after {secs} s while running {t}")
            }
            Problem::TimedOut {
                running: None,
                secs,
            } => {
                write!(f, "timed out after {secs} s outside any test")
            }
            Problem::Panicked(d) => write!(f, "panic: {d}"),
            Problem::NoSummary => write!(f, "the target never sent its summary frame"),
            Problem::SummaryMismatch { reported, counted } => write!(
                f,
                "summary says {}/{}/{} passed/failed/skipped but the frames say {}/{}/{}",
                reported.passed,
                reported.failed,
                reported.skipped,
                counted.passed,
                counted.failed,
                counted.skipped
            ),
            Problem::Malformed(n) => write!(f, "{n} malformed defmt frame(s)"),
            Problem::Protocol(m) => write!(f, "harness protocol error: {m}"),
            Problem::ExitStatus { got, want } => {
                write!(
                    f,
                    "QEMU exit status {got:?}, a passing run exits with {want}"
                )
            }
            Problem::NoTests => write!(f, "no test ran"),
        }
    }
}

fn parse_counts(rest: &str) -> Option<Summary> {
    let mut s = Summary::default();
    let mut seen = 0;
    for part in rest.split_whitespace() {
        let (k, v) = part.split_once('=')?;
        let v: u32 = v.parse().ok()?;
        match k {
            "passed" => s.passed = v,
            "failed" => s.failed = v,
            "skipped" => s.skipped = v,
            _ => return None,
        }
        seen += 1;
    }
    (seen == 3).then_some(s)
}

impl Run {
    /// Feed one decoded message, received `now` seconds into the run.
    /// Returns true when it was a harness frame.
    pub fn feed(&mut self, msg: &str, now: f64) -> bool {
        let Some(rest) = msg.strip_prefix("@@") else {
            return false;
        };
        let (tag, body) = rest.split_once(' ').unwrap_or((rest, ""));
        let (name, detail) = match body.split_once(": ") {
            Some((n, d)) => (n.trim(), d.to_string()),
            None => (body.trim(), String::new()),
        };
        match tag {
            "START" => {
                if let Some((prev, _)) = self.running.take() {
                    self.protocol_errors
                        .push(format!("{name} started while {prev} was still running"));
                }
                self.running = Some((name.to_string(), now));
            }
            "PASS" | "FAIL" | "SKIP" => {
                let started = match self.running.take() {
                    Some((n, t)) if n == name => t,
                    other => {
                        self.protocol_errors.push(format!(
                            "{tag} for {name} but the running test was {:?}",
                            other.map(|(n, _)| n)
                        ));
                        self.running = None;
                        now
                    }
                };
                let outcome = match tag {
                    "PASS" => Outcome::Pass,
                    "FAIL" => Outcome::Fail(detail),
                    _ => Outcome::Skip(detail),
                };
                self.results.push(TestResult {
                    name: name.to_string(),
                    outcome,
                    secs: now - started,
                });
            }
            "PANIC" => {
                let started = self.running.take().map(|(_, t)| t).unwrap_or(now);
                let who = if name == "-" {
                    "outside any test"
                } else {
                    name
                };
                self.panic = Some(format!("{who}: {detail}"));
                if name != "-" {
                    self.results.push(TestResult {
                        name: name.to_string(),
                        outcome: Outcome::Broken(format!("panicked: {detail}")),
                        secs: now - started,
                    });
                }
            }
            // A benchmark's measurement: the bench collects it.
            "ROW" => {}
            "SUMMARY" => match parse_counts(body) {
                Some(s) => self.summary = Some(s),
                None => self
                    .protocol_errors
                    .push(format!("unreadable summary {body:?}")),
            },
            _ => self.protocol_errors.push(format!("unknown frame @@{tag}")),
        }
        true
    }

    /// What the frames themselves counted.
    pub fn counted(&self) -> Summary {
        let mut s = Summary::default();
        for r in &self.results {
            match r.outcome {
                Outcome::Pass => s.passed += 1,
                Outcome::Fail(_) | Outcome::Broken(_) => s.failed += 1,
                Outcome::Skip(_) => s.skipped += 1,
            }
        }
        s
    }

    /// Close the run: record a timeout or an unfinished test, then list every problem.
    pub fn finish(
        &mut self,
        timed_out: Option<u64>,
        exit: Option<i32>,
        want_exit: i32,
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(secs) = timed_out {
            let running = self.running.take();
            if let Some((n, started)) = &running {
                self.results.push(TestResult {
                    name: n.clone(),
                    outcome: Outcome::Broken(format!("timed out after {secs} s")),
                    secs: secs as f64 - started,
                });
            }
            let running = running.map(|(n, _)| n);
            problems.push(Problem::TimedOut { running, secs });
        } else if let Some((n, _)) = self.running.take() {
            self.results.push(TestResult {
                name: n.clone(),
                outcome: Outcome::Broken("the target stopped during this test".into()),
                secs: 0.0,
            });
        }
        if let Some(p) = &self.panic {
            problems.push(Problem::Panicked(p.clone()));
        }
        match self.summary {
            None => problems.push(Problem::NoSummary),
            Some(reported) => {
                let counted = self.counted();
                if reported != counted {
                    problems.push(Problem::SummaryMismatch { reported, counted });
                }
            }
        }
        if self.malformed > 0 {
            problems.push(Problem::Malformed(self.malformed));
        }
        for e in &self.protocol_errors {
            problems.push(Problem::Protocol(e.clone()));
        }
        // A run whose frames say "all passed" must also exit as a passing run does;
        // a run that already failed is not reported twice.
        if problems.is_empty() && self.counted().failed == 0 && exit != Some(want_exit) {
            problems.push(Problem::ExitStatus {
                got: exit,
                want: want_exit,
            });
        }
        if self.results.is_empty() {
            problems.push(Problem::NoTests);
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(run: &mut Run, lines: &[&str]) {
        for (i, l) in lines.iter().enumerate() {
            run.feed(l, i as f64);
        }
    }

    #[test]
    fn clean_run_has_no_problems() {
        let mut r = Run::default();
        feed_all(
            &mut r,
            &[
                "@@START a::x",
                "some log",
                "@@PASS a::x",
                "@@START a::y",
                "@@SKIP a::y: no hardware",
                "@@SUMMARY passed=1 failed=0 skipped=1",
            ],
        );
        assert_eq!(r.finish(None, Some(0), 0), vec![]);
        assert_eq!(r.results.len(), 2);
    }

    #[test]
    fn failure_is_recorded_with_detail() {
        let mut r = Run::default();
        feed_all(
            &mut r,
            &[
                "@@START a::x",
                "@@FAIL a::x: src/x.rs:3: 1 != 2",
                "@@SUMMARY passed=0 failed=1 skipped=0",
            ],
        );
        // The failed test carries the verdict; the failing exit status is expected.
        assert_eq!(r.finish(None, Some(1), 0), vec![]);
        assert_eq!(r.counted().failed, 1);
        assert_eq!(
            r.results[0].outcome,
            Outcome::Fail("src/x.rs:3: 1 != 2".into())
        );
    }

    #[test]
    fn timeout_names_the_running_test() {
        let mut r = Run::default();
        feed_all(&mut r, &["@@START a::hang"]);
        let p = r.finish(Some(20), None, 0);
        assert!(p.contains(&Problem::TimedOut {
            running: Some("a::hang".into()),
            secs: 20
        }));
        assert!(p.contains(&Problem::NoSummary));
        assert!(matches!(r.results[0].outcome, Outcome::Broken(_)));
    }

    #[test]
    fn panic_names_the_test() {
        let mut r = Run::default();
        feed_all(&mut r, &["@@START a::p", "@@PANIC a::p: boom at x.rs:1"]);
        let p = r.finish(None, Some(3), 0);
        assert!(p.contains(&Problem::Panicked("a::p: boom at x.rs:1".into())));
        assert_eq!(r.results[0].name, "a::p");
    }

    #[test]
    fn clean_frames_with_a_failing_exit_status_are_a_problem() {
        let mut r = Run::default();
        feed_all(
            &mut r,
            &[
                "@@START a",
                "@@PASS a",
                "@@SUMMARY passed=1 failed=0 skipped=0",
            ],
        );
        assert_eq!(
            r.finish(None, Some(3), 0),
            vec![Problem::ExitStatus {
                got: Some(3),
                want: 0
            }]
        );
    }

    #[test]
    fn lying_summary_is_caught() {
        let mut r = Run::default();
        feed_all(
            &mut r,
            &[
                "@@START a::x",
                "@@FAIL a::x: no",
                "@@SUMMARY passed=1 failed=0 skipped=0",
            ],
        );
        let p = r.finish(None, Some(0), 0);
        assert!(matches!(p[0], Problem::SummaryMismatch { .. }));
    }

    #[test]
    fn missing_summary_and_no_tests_are_problems() {
        let mut r = Run::default();
        let p = r.finish(None, Some(0), 0);
        assert!(p.contains(&Problem::NoSummary));
        assert!(p.contains(&Problem::NoTests));
    }

    #[test]
    fn out_of_order_frames_are_protocol_errors() {
        let mut r = Run::default();
        feed_all(
            &mut r,
            &[
                "@@START a",
                "@@START b",
                "@@PASS a",
                "@@SUMMARY passed=1 failed=0 skipped=0",
            ],
        );
        let p = r.finish(None, Some(0), 0);
        assert!(p.iter().any(|p| matches!(p, Problem::Protocol(_))));
    }

    #[test]
    fn malformed_frames_fail_the_run() {
        let mut r = Run::default();
        feed_all(
            &mut r,
            &[
                "@@START a",
                "@@PASS a",
                "@@SUMMARY passed=1 failed=0 skipped=0",
            ],
        );
        r.malformed = 2;
        assert_eq!(r.finish(None, Some(0), 0), vec![Problem::Malformed(2)]);
    }
}
