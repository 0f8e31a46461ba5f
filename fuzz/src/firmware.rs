//! Input layouts of the firmware-table targets (`fdt`, `acpi`), which read
//! `iommu_board`'s device-tree and ACPI readers. Like the others, every
//! decoder is total: a short input reads as if padded with zeros.

/// `fdt`: one flag byte, then the blob.
///
/// Flag bit 0 set: the header's `totalsize` (bytes 4..8) is replaced by the
/// blob's length, so mutations that change the length still reach the
/// structure walk. Clear: the blob is read exactly as given.
pub mod fdt {
    /// The blob to read, `totalsize` patched when the flag asks for it.
    pub fn decode(data: &[u8]) -> Vec<u8> {
        let flags = data.first().copied().unwrap_or(0);
        let mut blob = data.get(1..).unwrap_or(&[]).to_vec();
        if flags & 1 != 0 && blob.len() >= 8 {
            let len = u32::try_from(blob.len()).unwrap_or(u32::MAX);
            blob[4..8].copy_from_slice(&len.to_be_bytes());
        }
        blob
    }

    /// The input that decodes to `blob` (flag bit 0 as `patch_size`).
    pub fn encode(patch_size: bool, blob: &[u8]) -> Vec<u8> {
        let mut v = vec![u8::from(patch_size)];
        v.extend_from_slice(blob);
        v
    }
}

/// `acpi`: one flag byte, then four tables' bodies (what follows the
/// 36-byte header), each a little-endian `u16` length and that many bytes
/// (the last one cut short by the input's end): MCFG, DMAR, FACP, DSDT.
///
/// The target lays them out as physical memory from address 0: the RSDP at
/// 0, the root table (RSDT, or XSDT with flag bit 0) at [`acpi::ROOT`]
/// listing the four tables, then the tables, each 16-byte aligned. Each
/// header gets its signature, length and revision; the checksums are fixed
/// unless flag bit 1 is set; the FADT's `DSDT` and `X_DSDT` (where the body
/// is long enough) point at the DSDT unless flag bit 2 is set.
pub mod acpi {
    /// Signatures of the four tables, in input order.
    pub const SIGS: [[u8; 4]; 4] = [*b"MCFG", *b"DMAR", *b"FACP", *b"DSDT"];
    /// Physical address of the root table.
    pub const ROOT: usize = 0x40;
    /// Length of an SDT header.
    pub const HEADER: usize = 36;

    /// The decoded input: flags and the four bodies.
    pub struct Input<'a> {
        /// Flag byte.
        pub flags: u8,
        /// MCFG, DMAR, FACP, DSDT bodies.
        pub bodies: [&'a [u8]; 4],
    }

    /// Splits the input.
    pub fn decode(data: &[u8]) -> Input<'_> {
        let flags = data.first().copied().unwrap_or(0);
        let mut rest = data.get(1..).unwrap_or(&[]);
        let mut bodies: [&[u8]; 4] = [&[]; 4];
        for b in &mut bodies {
            let len = match rest {
                [lo, hi, ..] => usize::from(u16::from_le_bytes([*lo, *hi])),
                _ => 0,
            };
            rest = rest.get(2..).unwrap_or(&[]);
            let (body, tail) = rest.split_at(len.min(rest.len()));
            *b = body;
            rest = tail;
        }
        Input { flags, bodies }
    }

    /// The input that decodes to `flags` and `bodies` (each at most 65535 bytes).
    pub fn encode(flags: u8, bodies: [&[u8]; 4]) -> Vec<u8> {
        let mut v = vec![flags];
        for b in bodies {
            let len = u16::try_from(b.len()).expect("body fits a u16 length");
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(b);
        }
        v
    }

    /// A table: the header (signature, length, revision 1, checksum) and `body`.
    pub fn table(sig: [u8; 4], body: &[u8], fix_checksum: bool) -> Vec<u8> {
        let mut t = vec![0u8; HEADER];
        t[..4].copy_from_slice(&sig);
        let len = u32::try_from(HEADER + body.len()).unwrap_or(u32::MAX);
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t[8] = 1;
        t.extend_from_slice(body);
        if fix_checksum {
            set_checksum(&mut t, 9);
        }
        t
    }

    /// Sets byte `at` so that `b` sums to zero.
    pub fn set_checksum(b: &mut [u8], at: usize) {
        b[at] = 0;
        let sum = b.iter().fold(0u8, |s, &x| s.wrapping_add(x));
        b[at] = sum.wrapping_neg();
    }

    /// The physical memory image and the address of each table in it.
    pub fn image(input: &Input<'_>) -> (Vec<u8>, [usize; 4]) {
        let fix = input.flags & 2 == 0;
        let wide = input.flags & 1 != 0;
        let point_fadt = input.flags & 4 == 0;
        let entry = if wide { 8 } else { 4 };
        let align = |n: usize| (n + 15) & !15;
        // Table addresses, after the root table.
        let mut addrs = [0usize; 4];
        let mut at = align(ROOT + HEADER + 4 * entry);
        for (a, b) in addrs.iter_mut().zip(input.bodies) {
            *a = at;
            at = align(at + HEADER + b.len());
        }
        let mut mem = vec![0u8; at];
        // RSDP: revision 2 with the XSDT, else revision 0.
        let mut rsdp = [0u8; 36];
        rsdp[..8].copy_from_slice(b"RSD PTR ");
        rsdp[15] = if wide { 2 } else { 0 };
        rsdp[16..20].copy_from_slice(&(ROOT as u32).to_le_bytes());
        rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
        if wide {
            rsdp[24..32].copy_from_slice(&(ROOT as u64).to_le_bytes());
        }
        if fix {
            set_checksum(&mut rsdp[..20], 8);
            set_checksum(&mut rsdp, 32);
        }
        mem[..36].copy_from_slice(&rsdp);
        let mut entries = Vec::new();
        for a in addrs {
            if wide {
                entries.extend_from_slice(&(a as u64).to_le_bytes());
            } else {
                entries.extend_from_slice(&(a as u32).to_le_bytes());
            }
        }
        let root = table(if wide { *b"XSDT" } else { *b"RSDT" }, &entries, fix);
        mem[ROOT..ROOT + root.len()].copy_from_slice(&root);
        for (i, (&a, body)) in addrs.iter().zip(input.bodies).enumerate() {
            let mut body = body.to_vec();
            if i == 2 && point_fadt {
                let dsdt = addrs[3];
                // DSDT at 40, X_DSDT at 140 (table offsets).
                if let Some(f) = body.get_mut(40 - HEADER..44 - HEADER) {
                    f.copy_from_slice(&(dsdt as u32).to_le_bytes());
                }
                if let Some(f) = body.get_mut(140 - HEADER..148 - HEADER) {
                    f.copy_from_slice(&(dsdt as u64).to_le_bytes());
                }
            }
            let t = table(SIGS[i], &body, fix);
            mem[a..a + t.len()].copy_from_slice(&t);
        }
        (mem, addrs)
    }
}
