//! The example as a program: on a bare-metal target it is linked (for
//! `cargo xtask bench size`, not booted: it needs the hardware) with its own
//! entry point; on the host there is nothing to drive, and it says so.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod bare {
    /// The entry point a loader jumps to.
    #[unsafe(no_mangle)]
    pub extern "C" fn _start() -> ! {
        #[cfg(all(feature = "vtd", not(feature = "baseline")))]
        core::hint::black_box(iommu_porting::run_vtd().is_ok());
        #[cfg(all(feature = "smmuv3", not(feature = "baseline")))]
        core::hint::black_box(iommu_porting::run_smmu().is_ok());
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
    println!(
        "the porting example drives real IOMMU registers: build it for \
         x86_64-unknown-none (--features vtd) or aarch64-unknown-none \
         (--features smmuv3); `cargo test -p iommu-porting` runs its VT-d half \
         against the crate's VT-d model"
    );
}
