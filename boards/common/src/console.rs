//! defmt global logger over a byte sink the board provides.
//!
//! Each frame is encoded (rzcobs, defmt's default) into a buffer and handed to
//! the sink in one call on release, so slow transports (a semihosting trap per
//! call) see one write per log line. The boards run single-core with
//! interrupts off; re-entrance (a log from inside the sink, or from a panic
//! raised while a frame is open) is detected and the inner frame is dropped
//! rather than corrupting the stream.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Where encoded bytes go: the board's debug port.
pub type Sink = fn(&[u8]);

static SINK: AtomicUsize = AtomicUsize::new(0);
/// Nesting depth of `acquire`: only the outermost frame is emitted.
static DEPTH: AtomicUsize = AtomicUsize::new(0);

const BUF_LEN: usize = 1024;

struct Buffer {
    bytes: [u8; BUF_LEN],
    len: usize,
}

impl Buffer {
    fn flush(&mut self) {
        if self.len > 0 {
            if let Some(s) = sink() {
                s(&self.bytes[..self.len]);
            }
            self.len = 0;
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(BUF_LEN) {
            if self.len + chunk.len() > BUF_LEN {
                self.flush();
            }
            self.bytes[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
    }
}

struct State {
    encoder: defmt::Encoder,
    out: Buffer,
}

struct Shared(UnsafeCell<State>);
// SAFETY: access is serialised by `TAKEN` (acquire/release below); the boards
// are single-core.
unsafe impl Sync for Shared {}

static STATE: Shared = Shared(UnsafeCell::new(State {
    encoder: defmt::Encoder::new(),
    out: Buffer {
        bytes: [0; BUF_LEN],
        len: 0,
    },
}));

/// Install the sink. Frames logged before this are dropped.
pub fn init(sink: Sink) {
    SINK.store(sink as usize, Ordering::Release);
}

fn sink() -> Option<Sink> {
    let raw = SINK.load(Ordering::Acquire);
    if raw == 0 {
        None
    } else {
        // SAFETY: the only non-zero value ever stored is a `Sink` fn pointer (see `init`).
        Some(unsafe { core::mem::transmute::<usize, Sink>(raw) })
    }
}

fn outermost() -> bool {
    DEPTH.load(Ordering::Relaxed) == 1
}

#[defmt::global_logger]
struct Logger;

// SAFETY: frames are serialised by `DEPTH`: only the outermost acquire starts a
// frame and only its release ends it. A nested acquire (a log from inside the
// sink, or a panic raised while a frame is open) is counted and its writes are
// dropped, so the outer frame stays intact.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        if DEPTH.fetch_add(1, Ordering::Acquire) != 0 {
            return;
        }
        // SAFETY: depth was 0, so nothing else holds the state until `release`.
        let st = unsafe { &mut *STATE.0.get() };
        let State { encoder, out } = st;
        encoder.start_frame(|b| out.push(b));
    }

    unsafe fn flush() {
        if !outermost() {
            return;
        }
        // SAFETY: the outermost frame owns the state between acquire and release.
        let st = unsafe { &mut *STATE.0.get() };
        st.out.flush();
    }

    unsafe fn release() {
        if DEPTH.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // SAFETY: the outermost frame owns the state between acquire and release.
        let st = unsafe { &mut *STATE.0.get() };
        let State { encoder, out } = st;
        encoder.end_frame(|b| out.push(b));
        out.flush();
    }

    unsafe fn write(bytes: &[u8]) {
        if !outermost() {
            return;
        }
        // SAFETY: the outermost frame owns the state between acquire and release.
        let st = unsafe { &mut *STATE.0.get() };
        let State { encoder, out } = st;
        encoder.write(bytes, |b| out.push(b));
    }
}

/// After a panic: close any frame the panic interrupted so the panic report
/// is emitted as a frame of its own (the interrupted frame ends early and the
/// host counts it as malformed, which fails the run as it should).
pub fn reset_after_panic() {
    if DEPTH.swap(0, Ordering::AcqRel) != 0 {
        // SAFETY: single core; the interrupted frame will never resume (we are
        // in the panic handler and do not return).
        let st = unsafe { &mut *STATE.0.get() };
        let State { encoder, out } = st;
        encoder.end_frame(|b| out.push(b));
        out.flush();
    }
}
