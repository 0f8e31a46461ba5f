//! On-target test harness (in progress).
use crate::BoardOps;
use crate::platform::Platform;

/// Entry from [`crate::board_main`].
pub fn main(platform: Platform, ops: BoardOps) -> ! {
    defmt::println!("board {=str} up, cmdline {=str}", platform.board, platform.cmdline.as_str());
    (ops.exit)(0)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = info;
    defmt::println!("panic");
    loop {
        core::hint::spin_loop();
    }
}
