//! The PVH `hvm_start_info` (xen/include/public/arch-x86/hvm/start_info.h).

use iommu_board::acpi::PhysMem;
use iommu_board::platform::{MAX_ENTRIES, Region};

/// `hvm_start_info.magic`.
pub const MAGIC: u32 = 0x336e_c578;
/// Bytes of the structure up to and including the version 1 fields.
const LEN_V1: usize = 56;
/// Bytes of the version 0 structure.
const LEN_V0: usize = 40;
/// Bytes per memory-map entry: addr u64, size u64, type u32, reserved u32.
const MEMMAP_ENTRY: usize = 24;
/// Memory-map type of usable RAM.
const MEMMAP_RAM: u32 = 1;
/// Longest command line read before giving up on finding its NUL.
const CMDLINE_MAX: usize = 4096;

/// Why the start info cannot be used.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub enum Error {
    /// Bytes at this address are not mapped.
    Unmapped(u64),
    /// The magic is not [`MAGIC`].
    BadMagic(u32),
    /// Version 0: no memory map.
    NoMemmap(u32),
}

/// The fields the board uses.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub struct StartInfo {
    /// Structure version (1 has the memory map).
    pub version: u32,
    /// Physical address of the NUL-terminated command line, 0 if none.
    pub cmdline_paddr: u64,
    /// Physical address of the ACPI RSDP, 0 if none.
    pub rsdp_paddr: u64,
    /// Physical address of the memory map.
    pub memmap_paddr: u64,
    /// Entries in the memory map.
    pub memmap_entries: u32,
}

fn le<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}

/// Read the start info at `addr`.
pub fn read<M: PhysMem>(mem: &M, addr: u64) -> Result<StartInfo, Error> {
    let head = mem.bytes(addr, LEN_V0).ok_or(Error::Unmapped(addr))?;
    let magic = u32::from_le_bytes(le(head, 0));
    if magic != MAGIC {
        return Err(Error::BadMagic(magic));
    }
    let version = u32::from_le_bytes(le(head, 4));
    if version < 1 {
        return Err(Error::NoMemmap(version));
    }
    let b = mem.bytes(addr, LEN_V1).ok_or(Error::Unmapped(addr))?;
    Ok(StartInfo {
        version,
        cmdline_paddr: u64::from_le_bytes(le(b, 24)),
        rsdp_paddr: u64::from_le_bytes(le(b, 32)),
        memmap_paddr: u64::from_le_bytes(le(b, 40)),
        memmap_entries: u32::from_le_bytes(le(b, 48)),
    })
}

/// Copy the command line into `out`, cut to its capacity (at a character
/// boundary; invalid UTF-8 ends it).
pub fn cmdline<M: PhysMem, const N: usize>(
    mem: &M,
    info: &StartInfo,
    out: &mut heapless::String<N>,
) -> Result<(), Error> {
    out.clear();
    if info.cmdline_paddr == 0 {
        return Ok(());
    }
    let mut len = 0;
    while len < CMDLINE_MAX.min(N) {
        let addr = info.cmdline_paddr + len as u64;
        let b = mem.bytes(addr, 1).ok_or(Error::Unmapped(addr))?;
        if b[0] == 0 {
            break;
        }
        len += 1;
    }
    let bytes = mem
        .bytes(info.cmdline_paddr, len)
        .ok_or(Error::Unmapped(info.cmdline_paddr))?;
    let text = match core::str::from_utf8(bytes) {
        Ok(s) => s,
        // SAFETY: `valid_up_to` bytes were just checked to be UTF-8.
        Err(e) => unsafe { core::str::from_utf8_unchecked(&bytes[..e.valid_up_to()]) },
    };
    // Fits: at most N bytes.
    let _ = out.push_str(text);
    Ok(())
}

/// Usable RAM from the memory map, without `[0, reserved_end)` (low memory
/// and the loaded image). Entries beyond the output's capacity are dropped
/// and counted in the return value.
pub fn ram<M: PhysMem>(
    mem: &M,
    info: &StartInfo,
    reserved_end: u64,
    out: &mut heapless::Vec<Region, MAX_ENTRIES>,
) -> Result<usize, Error> {
    let len = info.memmap_entries as usize * MEMMAP_ENTRY;
    let map = mem
        .bytes(info.memmap_paddr, len)
        .ok_or(Error::Unmapped(info.memmap_paddr))?;
    let mut dropped = 0;
    for e in map.chunks_exact(MEMMAP_ENTRY) {
        let base = u64::from_le_bytes(le(e, 0));
        let size = u64::from_le_bytes(le(e, 8));
        let kind = u32::from_le_bytes(le(e, 16));
        if kind != MEMMAP_RAM {
            continue;
        }
        let end = base.saturating_add(size);
        let base = base.max(reserved_end);
        if end <= base {
            continue;
        }
        if out
            .push(Region {
                base,
                size: end - base,
            })
            .is_err()
        {
            dropped += 1;
        }
    }
    Ok(dropped)
}
