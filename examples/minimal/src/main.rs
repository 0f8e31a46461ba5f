//! The example as a program: on a bare-metal target it is linked (for
//! `cargo xtask bench size`, not booted) with its own entry point; on the
//! host it simply runs [`iommu_minimal::run`].

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod bare {
    /// The entry point a loader jumps to.
    #[unsafe(no_mangle)]
    pub extern "C" fn _start() -> ! {
        #[cfg(not(feature = "baseline"))]
        let ok = iommu_minimal::run().is_ok();
        #[cfg(feature = "baseline")]
        let ok = true;
        core::hint::black_box(ok);
        loop {
            core::hint::spin_loop();
        }
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo) -> ! {
        loop {
            core::hint::spin_loop();
        }
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    match iommu_minimal::run() {
        Ok(phys) => println!("IOVA 0x1000 translated to {phys:#x}"),
        Err(e) => {
            eprintln!("example failed: {e}");
            std::process::exit(1);
        }
    }
}
