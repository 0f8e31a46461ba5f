//! What firmware told us about the machine.
//!
//! Each board fills a [`Platform`] from its firmware tables (ACPI on q35, the
//! device tree on virt). Nothing in the shared code assumes an address: every
//! base, window and IOMMU comes from here.

use heapless::{String, Vec};

/// Maximum number of entries per table kept in a [`Platform`].
pub const MAX_ENTRIES: usize = 16;
/// Maximum device scopes kept per DMAR remapping unit.
pub const MAX_SCOPES: usize = 64;

/// A range of physical memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Region {
    /// First byte.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Region {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }
}

/// A PCIe enhanced configuration (ECAM) window for one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Ecam {
    /// Physical base of the window (config space of `bus_start`).
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded.
    pub bus_end: u8,
}

/// What a host-bridge window decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum WindowKind {
    /// Memory below 4 GiB (32-bit BARs fit).
    Mem32,
    /// Memory that may lie above 4 GiB (64-bit BARs only).
    Mem64,
    /// Port I/O.
    Io,
}

/// A host-bridge window through which the CPU reaches PCI BARs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct PciWindow {
    /// What it decodes.
    pub kind: WindowKind,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// Address the CPU uses.
    pub cpu_base: u64,
    /// Address on the PCI bus (what a BAR is programmed with).
    pub pci_base: u64,
    /// Length in bytes.
    pub size: u64,
    /// Segment of the host bridge.
    pub segment: u16,
}

/// Which IOMMU architecture a unit implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum IommuKind {
    /// Intel VT-d remapping hardware unit (ACPI DMAR DRHD).
    Vtd,
    /// Arm SMMUv3 (device tree "arm,smmu-v3" or IORT).
    SmmuV3,
}

/// Kind of a DMAR device-scope entry (VT-d spec 8.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum ScopeKind {
    /// A PCI endpoint (type 1).
    Endpoint,
    /// A PCI-PCI bridge and everything below it (type 2).
    SubHierarchy,
    /// An I/O APIC (type 3).
    IoApic,
    /// An HPET MSI block (type 4).
    Hpet,
    /// An ACPI namespace device (type 5).
    Namespace,
    /// A type this parser does not know.
    Other(u8),
}

/// One DMAR device-scope entry: a path from `start_bus` through bridges.
#[derive(Clone, Debug, PartialEq, Eq, defmt::Format)]
pub struct DeviceScope {
    /// Kind of device named.
    pub kind: ScopeKind,
    /// I/O APIC / HPET / namespace enumeration ID.
    pub enumeration_id: u8,
    /// Bus where the path starts.
    pub start_bus: u8,
    /// (device, function) hops, the first on `start_bus`.
    pub path: Vec<(u8, u8), 8>,
}

/// One IOMMU the firmware describes.
#[derive(Clone, Debug, PartialEq, Eq, defmt::Format)]
pub struct IommuUnit {
    /// Architecture.
    pub kind: IommuKind,
    /// Physical base of the register block.
    pub base: u64,
    /// Size of the register block in bytes.
    pub size: u64,
    /// PCI segment it serves.
    pub segment: u16,
    /// VT-d INCLUDE_PCI_ALL: covers every device of the segment not claimed by another unit.
    pub include_all: bool,
    /// VT-d device scopes (empty for SMMUv3, which uses [`RidMap`]). Firmware
    /// may list every root-bus function separately (QEMU does), hence the room.
    pub scopes: Vec<DeviceScope, MAX_SCOPES>,
    /// Device-tree phandle (SMMUv3) so `iommu-map` can refer to it; 0 if none.
    pub phandle: u32,
}

/// A device-tree `iommu-map` entry: RIDs `rid_base..rid_base+len` of a host
/// bridge reach IOMMU `iommu` (index into [`Platform::iommus`]) as StreamIDs
/// starting at `sid_base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct RidMap {
    /// Segment of the host bridge the map belongs to.
    pub segment: u16,
    /// First requester ID.
    pub rid_base: u32,
    /// Index into [`Platform::iommus`].
    pub iommu: usize,
    /// StreamID of `rid_base`.
    pub sid_base: u32,
    /// Number of RIDs covered.
    pub len: u32,
}

/// A VT-d reserved memory region (DMAR RMRR): DMA the firmware expects to keep working.
#[derive(Clone, Debug, PartialEq, Eq, defmt::Format)]
pub struct Rmrr {
    /// Segment.
    pub segment: u16,
    /// First byte.
    pub base: u64,
    /// Last byte (inclusive, as in the table).
    pub limit: u64,
    /// Devices that use it.
    pub scopes: Vec<DeviceScope, 8>,
}

/// A VT-d root-port ATS capability report (DMAR ATSR).
#[derive(Clone, Debug, PartialEq, Eq, defmt::Format)]
pub struct Atsr {
    /// Segment.
    pub segment: u16,
    /// ALL_PORTS flag: every root port of the segment supports ATS.
    pub all_ports: bool,
    /// Root ports named, when not `all_ports`.
    pub scopes: Vec<DeviceScope, 8>,
}

/// Everything the shared code needs to know about the machine.
#[derive(Clone, Debug, Default)]
pub struct Platform {
    /// Board name ("q35", "virt").
    pub board: &'static str,
    /// Boot command line (PVH cmdline or /chosen/bootargs).
    pub cmdline: String<256>,
    /// RAM regions usable by the OS.
    pub ram: Vec<Region, MAX_ENTRIES>,
    /// ECAM windows.
    pub ecam: Vec<Ecam, 4>,
    /// Host-bridge windows.
    pub windows: Vec<PciWindow, 8>,
    /// IOMMUs.
    pub iommus: Vec<IommuUnit, 8>,
    /// RID → StreamID maps (device tree `iommu-map`).
    pub rid_maps: Vec<RidMap, 8>,
    /// VT-d reserved memory regions.
    pub rmrrs: Vec<Rmrr, 8>,
    /// VT-d ATS reporting structures.
    pub atsrs: Vec<Atsr, 4>,
    /// Host address width reported by the DMAR table (bits), 0 if not VT-d.
    pub dmar_haw: u8,
}
