//! What the hardware models (VT-d, SMMUv3) share besides their Hal: a
//! register block in ordinary memory that the driver is given, the emulated
//! hardware behind it (stepped by a thread of its own and by the driver's
//! clock reads), and the check, when the unit goes, that the driver broke
//! none of the hardware's rules.

use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::hal::{Attached, ModelHal};

/// The emulated hardware behind a register block.
pub trait Emulator: Send + 'static {
    /// What the hardware did, as its log records it.
    type Event: Clone;
    /// React to what the driver wrote since the last step; whether anything
    /// happened.
    fn step(&mut self) -> bool;
    /// The log of what the hardware did.
    fn log(&mut self) -> &mut Vec<Self::Event>;
    /// The rules the driver broke so far.
    fn violations(&self) -> &[String];
    /// The driver made its writes to `[addr, addr + len)` visible.
    fn flushed(&mut self, addr: u64, len: u64) {
        let _ = (addr, len);
    }
    /// Pages at `[addr, addr + len)` went back to the Hal.
    fn freed(&mut self, addr: u64, len: u64) {
        let _ = (addr, len);
    }
}

/// The register block's memory: its base and size in bytes.
#[derive(Clone, Copy)]
pub struct Regs(pub *mut u8, pub usize);

// SAFETY: the block is heap memory owned by `Shared` for as long as any
// `Regs` is used; all access is atomic.
unsafe impl Send for Regs {}

impl Regs {
    pub fn r32(&self, off: usize) -> &AtomicU32 {
        assert!(
            off + 4 <= self.1 && off.is_multiple_of(4),
            "register {off:#x}"
        );
        // SAFETY: `off` lies in the block, 4-byte aligned.
        unsafe { AtomicU32::from_ptr(self.0.add(off).cast()) }
    }

    pub fn r64(&self, off: usize) -> &AtomicU64 {
        assert!(
            off + 8 <= self.1 && off.is_multiple_of(8),
            "register {off:#x}"
        );
        // SAFETY: as above, 8-byte aligned.
        unsafe { AtomicU64::from_ptr(self.0.add(off).cast()) }
    }

    pub fn get32(&self, off: usize) -> u32 {
        self.r32(off).load(Ordering::SeqCst)
    }

    pub fn set32(&self, off: usize, v: u32) {
        self.r32(off).store(v, Ordering::SeqCst)
    }

    pub fn get64(&self, off: usize) -> u64 {
        self.r64(off).load(Ordering::SeqCst)
    }

    fn layout(&self) -> Layout {
        Layout::from_size_align(self.1, 4096).unwrap()
    }
}

/// What the emulator thread, the Hal and the test share.
pub struct Shared<E> {
    pub regs: Regs,
    pub st: Mutex<E>,
    pub stop: AtomicBool,
}

// SAFETY: `regs` is only used atomically; the state is behind the mutex.
unsafe impl<E: Send> Sync for Shared<E> {}

impl<E: Emulator> Shared<E> {
    /// The state, a panicked holder notwithstanding.
    pub fn lock(&self) -> MutexGuard<'_, E> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Step unless someone else is stepping (then they are); whether
    /// anything happened.
    pub fn try_step(&self) -> bool {
        match self.st.try_lock() {
            Ok(mut st) => st.step(),
            Err(TryLockError::Poisoned(e)) => e.into_inner().step(),
            Err(TryLockError::WouldBlock) => false,
        }
    }
}

impl<E: Emulator> Attached for Shared<E> {
    fn try_step(&self) -> bool {
        Shared::try_step(self)
    }

    fn flushed(&self, addr: u64, len: u64) {
        self.lock().flushed(addr, len);
    }

    fn freed(&self, addr: u64, len: u64) {
        self.lock().freed(addr, len);
    }
}

impl<E> Drop for Shared<E> {
    fn drop(&mut self) {
        // SAFETY: allocated in `Unit::new` with this layout; the thread is
        // joined and the driver no longer uses the block.
        unsafe { std::alloc::dealloc(self.regs.0, self.regs.layout()) };
    }
}

/// A register block with its emulator running. Dropping it stops and
/// joins the thread, then fails the test if the model saw the driver break
/// a rule (unless the test checks them itself).
pub struct Unit<E: Emulator> {
    shared: Arc<Shared<E>>,
    thread: Option<JoinHandle<()>>,
    allow_violations: bool,
}

impl<E: Emulator + Send> Unit<E> {
    /// A zeroed block of `size` bytes, the hardware `make` builds over it,
    /// attached to `hal` and run by a thread that yields while idle, then
    /// polls every 50 µs.
    pub fn new(hal: &ModelHal, size: usize, make: impl FnOnce(Regs) -> E) -> Self {
        let mut regs = Regs(std::ptr::null_mut(), size);
        // SAFETY: non-zero size; freed by `Shared`'s drop.
        regs.0 = unsafe { std::alloc::alloc_zeroed(regs.layout()) };
        assert!(!regs.0.is_null());
        let shared = Arc::new(Shared {
            regs,
            st: Mutex::new(make(regs)),
            stop: AtomicBool::new(false),
        });
        let unit: Arc<dyn Attached> = shared.clone();
        hal.attach(Arc::downgrade(&unit));
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let mut idle = 0u32;
            while !s.stop.load(Ordering::SeqCst) {
                if s.try_step() {
                    idle = 0;
                } else {
                    idle += 1;
                    if idle < 64 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
            }
        });
        Unit {
            shared,
            thread: Some(thread),
            allow_violations: false,
        }
    }

    /// The register block, for the driver.
    pub fn base(&self) -> NonNull<u8> {
        NonNull::new(self.shared.regs.0).unwrap()
    }

    pub fn regs(&self) -> Regs {
        self.shared.regs
    }

    /// A 32-bit register, as the driver sees it.
    pub fn r32(&self, off: usize) -> &AtomicU32 {
        self.shared.regs.r32(off)
    }

    /// A 64-bit register, as the driver sees it.
    pub fn r64(&self, off: usize) -> &AtomicU64 {
        self.shared.regs.r64(off)
    }

    pub fn lock(&self) -> MutexGuard<'_, E> {
        self.shared.lock()
    }

    /// What the thread shares, for a helper thread of a test.
    pub fn shared(&self) -> Arc<Shared<E>> {
        self.shared.clone()
    }

    /// Let the hardware catch up with everything the driver wrote.
    pub fn settle(&self) {
        let mut st = self.lock();
        while st.step() {}
    }

    /// The log, after the hardware caught up.
    pub fn log(&self) -> Vec<E::Event> {
        self.settle();
        self.lock().log().clone()
    }

    /// The log so far, emptied.
    pub fn take_log(&self) -> Vec<E::Event> {
        self.settle();
        std::mem::take(self.lock().log())
    }

    /// The test checks violations itself.
    pub fn allow_violations(&mut self) {
        self.allow_violations = true;
    }
}

impl<E: Emulator> Drop for Unit<E> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let joined = self.thread.take().map(|t| t.join());
        if std::thread::panicking() {
            return;
        }
        assert!(
            matches!(joined, Some(Ok(()))),
            "the emulator thread panicked"
        );
        if !self.allow_violations {
            let v = self.lock().violations().to_vec();
            assert!(
                v.is_empty(),
                "the driver broke the hardware's rules: {v:#?}"
            );
        }
    }
}
