//! Hardware profiles: a board plus the QEMU configuration that makes it.

/// The edu device's default 28-bit DMA mask is silently applied to addresses; lift it.
const EDU_DMA_MASK: &str = "dma_mask=0xffffffffffffffff";

/// Which board image a profile boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    Q35,
    Virt,
}

impl Board {
    pub fn package(self) -> &'static str {
        match self {
            Board::Q35 => "iommu-q35",
            Board::Virt => "iommu-virt",
        }
    }
    pub fn target(self) -> &'static str {
        match self {
            Board::Q35 => "x86_64-unknown-none",
            Board::Virt => "aarch64-unknown-none",
        }
    }
    pub fn qemu(self) -> &'static str {
        match self {
            Board::Q35 => "qemu-system-x86_64",
            Board::Virt => "qemu-system-aarch64",
        }
    }
    /// QEMU's exit status when the target reports success: isa-debug-exit
    /// turns a written 0 into (0 << 1) | 1; semihosting SYS_EXIT passes 0 through.
    pub fn pass_status(self) -> i32 {
        match self {
            Board::Q35 => 1,
            Board::Virt => 0,
        }
    }
    /// Arguments common to every profile of the board: no display, no NIC, the
    /// debug channel on stdout, the exit device, `edus` DMA-capable edu devices
    /// on the root bus and one more behind a PCIe root port.
    pub fn base_args(self, elf: &str, memory: &str, edus: usize) -> Vec<String> {
        let mut a: Vec<String> = [
            "-accel",
            "tcg",
            "-m",
            memory,
            "-display",
            "none",
            "-nic",
            "none",
            "-serial",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
            "-kernel",
            elf,
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let board: &[&str] = match self {
            Board::Q35 => &[
                "-vga",
                "none",
                "-debugcon",
                "stdio",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ],
            Board::Virt => &[
                "-cpu",
                "max",
                "-semihosting-config",
                "enable=on,target=native",
            ],
        };
        a.extend(board.iter().map(|s| s.to_string()));
        for _ in 0..edus {
            a.push("-device".into());
            a.push(format!("edu,{EDU_DMA_MASK}"));
        }
        // One more behind a PCIe root port, so every run also exercises bridge
        // numbering, bridge windows and DMA forwarded through a bridge.
        for d in [
            "pcie-root-port,id=xtask-rp0,chassis=16,slot=0".to_string(),
            format!("edu,bus=xtask-rp0,{EDU_DMA_MASK}"),
        ] {
            a.push("-device".into());
            a.push(d);
        }
        a
    }
}

/// A named QEMU configuration.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    pub name: &'static str,
    pub board: Board,
    pub what: &'static str,
    args: &'static [&'static str],
    /// Words added to the target's command line.
    pub cmdline: &'static [&'static str],
}

impl Profile {
    pub fn machine_args(&self) -> Vec<String> {
        self.args.iter().map(|s| s.to_string()).collect()
    }
}

pub const PROFILES: &[Profile] = &[
    Profile {
        name: "q35-legacy",
        board: Board::Q35,
        what: "q35 + intel-iommu, legacy (root/context) mode",
        args: &["-machine", "q35", "-device", "intel-iommu"],
        cmdline: &[],
    },
    Profile {
        name: "q35-scalable",
        board: Board::Q35,
        what: "q35 + intel-iommu, scalable mode (second-level tables)",
        args: &[
            "-machine",
            "q35",
            "-device",
            "intel-iommu,x-scalable-mode=on,x-pasid-mode=on",
        ],
        cmdline: &[],
    },
    Profile {
        name: "q35-flts",
        board: Board::Q35,
        what: "q35 + intel-iommu, scalable mode with first-level tables only",
        args: &[
            "-machine",
            "q35",
            "-device",
            "intel-iommu,x-scalable-mode=on,x-flts=on,x-pasid-mode=on,aw-bits=48",
        ],
        cmdline: &[],
    },
    Profile {
        name: "q35-legacy-aw39-cm",
        board: Board::Q35,
        what: "q35-legacy with a 39-bit address width and caching mode",
        args: &[
            "-machine",
            "q35",
            "-device",
            "intel-iommu,aw-bits=39,caching-mode=on",
        ],
        cmdline: &[],
    },
    Profile {
        name: "q35-scalable-aw39-cm",
        board: Board::Q35,
        what: "q35-scalable with a 39-bit address width and caching mode",
        args: &[
            "-machine",
            "q35",
            "-device",
            "intel-iommu,x-scalable-mode=on,x-pasid-mode=on,aw-bits=39,caching-mode=on",
        ],
        cmdline: &[],
    },
    Profile {
        name: "virt-nested",
        board: Board::Virt,
        what: "virt + SMMUv3 with stage 1 and stage 2 (QEMU >= 9.2 default)",
        args: &["-machine", "virt,iommu=smmuv3"],
        cmdline: &[],
    },
    Profile {
        name: "virt-nested-linear",
        board: Board::Virt,
        what: "virt-nested with the driver told to use a linear stream table",
        args: &["-machine", "virt,iommu=smmuv3"],
        cmdline: &["iommu.smmu-strtab=linear"],
    },
    Profile {
        name: "virt-s1",
        board: Board::Virt,
        what: "virt-9.1 + SMMUv3, stage 1 only",
        args: &["-machine", "virt-9.1,iommu=smmuv3"],
        cmdline: &[],
    },
];

pub fn find(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().find(|p| p.name == name)
}

/// The profiles `run` boots when none is named: one per board, each the
/// one where the tour's every step can run (SVA needs first-level tables on
/// VT-d; nesting needs both SMMUv3 stages).
pub const DEFAULT_RUN: &[&str] = &["q35-flts", "virt-nested"];
