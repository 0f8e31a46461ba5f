//! Register layouts and decoders against the specifications' bit positions and
//! against the ID values QEMU 10.0 documents for its models.

use core::mem::offset_of;

use iommu::drivers::smmuv3::regs::{
    self as smmu, Aidr, Idr0, Idr1, Idr3, Idr5, Iidr, SmmuPage1, SmmuRegisters, StallModel,
    TableFormats,
};
use iommu::drivers::vtd::regs::{
    self as vtd, Capability, ExtCapability, FaultRecordRegs, IotlbRegs, LargePages, Sagaw, Version,
    VtdRegisters,
};

#[test]
fn vtd_register_offsets_match_spec_table_11_1() {
    assert_eq!(offset_of!(VtdRegisters, ver), 0x00);
    assert_eq!(offset_of!(VtdRegisters, cap), 0x08);
    assert_eq!(offset_of!(VtdRegisters, ecap), 0x10);
    assert_eq!(offset_of!(VtdRegisters, gcmd), 0x18);
    assert_eq!(offset_of!(VtdRegisters, gsts), 0x1c);
    assert_eq!(offset_of!(VtdRegisters, rtaddr), 0x20);
    assert_eq!(offset_of!(VtdRegisters, ccmd), 0x28);
    assert_eq!(offset_of!(VtdRegisters, fsts), 0x34);
    assert_eq!(offset_of!(VtdRegisters, fectl), 0x38);
    assert_eq!(offset_of!(VtdRegisters, aflog), 0x58);
    assert_eq!(offset_of!(VtdRegisters, pmen), 0x64);
    assert_eq!(offset_of!(VtdRegisters, phmlimit), 0x78);
    assert_eq!(offset_of!(VtdRegisters, iqh), 0x80);
    assert_eq!(offset_of!(VtdRegisters, iqt), 0x88);
    assert_eq!(offset_of!(VtdRegisters, iqa), 0x90);
    assert_eq!(offset_of!(VtdRegisters, ics), 0x9c);
    assert_eq!(offset_of!(VtdRegisters, iqercd), 0xb0);
    assert_eq!(offset_of!(VtdRegisters, irta), 0xb8);
    assert_eq!(offset_of!(VtdRegisters, pqh), 0xc0);
    assert_eq!(offset_of!(VtdRegisters, pqa), 0xd0);
    assert_eq!(offset_of!(VtdRegisters, prs), 0xdc);
    assert_eq!(offset_of!(VtdRegisters, peuaddr), 0xec);
    assert_eq!(core::mem::size_of::<FaultRecordRegs>(), 16);
    assert_eq!(offset_of!(IotlbRegs, iotlb), 8);
}

#[test]
fn vtd_version() {
    assert_eq!(Version::decode(0x10), Version { major: 1, minor: 0 });
    assert_eq!(Version::decode(0x6_1), Version { major: 6, minor: 1 });
    assert_eq!(Version::decode(0xffff_ff00), Version { major: 0, minor: 0 });
}

/// QEMU 10.0 intel-iommu default CAP (docs: 0x00d2008c222f0606).
#[test]
fn vtd_cap_qemu_default() {
    let c = Capability::decode(0x00d2_008c_222f_0606);
    assert_eq!(c.domains, 1 << 16, "ND=6 -> 2^16 domains");
    assert_eq!(c.sagaw, Sagaw::AW39_3LEVEL | Sagaw::AW48_4LEVEL);
    assert_eq!(c.mgaw, 48);
    assert!(!c.caching_mode);
    assert!(!c.zero_length_read);
    assert_eq!(c.fault_record_offset, 0x220);
    assert_eq!(c.fault_records, 1);
    assert_eq!(c.sl_large_pages, LargePages::SIZE_2M | LargePages::SIZE_1G);
    assert!(c.page_selective_invalidation);
    assert_eq!(c.max_address_mask, 18);
    assert!(c.write_draining && c.read_draining);
    assert!(!c.fl_1g_pages && !c.posted_interrupts && !c.fl_5level);
}

/// Each CAP field alone, at the bit position VT-d 11.4.2 gives it.
#[test]
fn vtd_cap_single_fields() {
    let d = |raw| Capability::decode(raw);
    assert_eq!(d(2).domains, 256);
    assert!(d(1 << 3).advanced_fault_logging);
    assert!(d(1 << 4).required_write_buffer_flush);
    assert!(d(1 << 5).protected_low_mem);
    assert!(d(1 << 6).protected_high_mem);
    assert!(d(1 << 7).caching_mode);
    assert_eq!(d(0b1000 << 8).sagaw, Sagaw::AW57_5LEVEL);
    assert_eq!(d(56 << 16).mgaw, 57);
    assert!(d(1 << 22).zero_length_read);
    assert_eq!(d(0x3ff << 24).fault_record_offset, 0x3ff * 16);
    assert_eq!(d(0b10 << 34).sl_large_pages, LargePages::SIZE_1G);
    assert!(d(1 << 39).page_selective_invalidation);
    assert_eq!(d(0xff << 40).fault_records, 256);
    assert_eq!(d(0x3f << 48).max_address_mask, 63);
    assert!(d(1 << 54).write_draining);
    assert!(d(1 << 55).read_draining);
    assert!(d(1 << 56).fl_1g_pages);
    assert!(d(1 << 59).posted_interrupts);
    assert!(d(1 << 60).fl_5level);
    assert!(d(1 << 62).enhanced_sirtp);
    assert!(d(1 << 63).enhanced_srtp);
    // A bit between fields changes nothing decoded.
    assert_eq!(
        Capability {
            raw: 0,
            ..d(1 << 23)
        },
        Capability { raw: 0, ..d(0) }
    );
}

/// QEMU 10.0 default ECAP under TCG (docs: 0xf00f4a): QI, IR, PT, IRO 0xf0.
#[test]
fn vtd_ecap_qemu_default() {
    let e = ExtCapability::decode(0xf0_0f4a);
    assert!(e.queued_invalidation && e.interrupt_remapping && e.pass_through);
    assert!(!e.coherent && !e.device_tlb && !e.extended_interrupt_mode && !e.snoop_control);
    assert_eq!(e.iotlb_offset, 0xf0);
    assert_eq!(e.max_handle_mask, 0xf);
    assert!(!e.scalable_mode && !e.first_level && !e.second_level && !e.pasid);
    assert_eq!(e.pasid_bits, 0);
}

#[test]
fn vtd_ecap_single_fields() {
    let d = |raw| ExtCapability::decode(raw);
    assert!(d(1).coherent);
    assert!(d(1 << 2).device_tlb);
    assert!(d(1 << 4).extended_interrupt_mode);
    assert!(d(1 << 7).snoop_control);
    assert!(d(1 << 26).nested);
    assert!(d(1 << 29).page_requests);
    assert!(d(1 << 30).execute_requests);
    assert!(d(1 << 31).supervisor_requests);
    // PSS counts only with the PASID bit.
    assert_eq!(d(19 << 35).pasid_bits, 0);
    assert_eq!(d(19 << 35 | 1 << 40).pasid_bits, 20);
    assert!(d(1 << 43).scalable_mode);
    assert!(d(1 << 45).sl_access_dirty);
    assert!(d(1 << 46).second_level);
    assert!(d(1 << 47).first_level);
    assert!(d(1 << 48).sm_coherent);
    assert!(d(1 << 49).rid_pasid);
    assert!(d(1 << 50).abort_dma_mode);
}

#[test]
fn vtd_register_span_covers_fault_and_iotlb_registers() {
    let id = vtd::Identity::decode(0x10, 0x00d2_008c_222f_0606, 0xf0_0f4a);
    // FRO 0x220 + 1 record of 16 bytes; IOTLB at 0xf0 + 16.
    assert_eq!(id.register_span(), 0x230);
}

#[test]
fn smmu_register_offsets_match_spec() {
    assert_eq!(offset_of!(SmmuRegisters, idr0), 0x00);
    assert_eq!(offset_of!(SmmuRegisters, idr5), 0x14);
    assert_eq!(offset_of!(SmmuRegisters, iidr), 0x18);
    assert_eq!(offset_of!(SmmuRegisters, aidr), 0x1c);
    assert_eq!(offset_of!(SmmuRegisters, cr0), 0x20);
    assert_eq!(offset_of!(SmmuRegisters, cr0ack), 0x24);
    assert_eq!(offset_of!(SmmuRegisters, cr2), 0x2c);
    assert_eq!(offset_of!(SmmuRegisters, statusr), 0x40);
    assert_eq!(offset_of!(SmmuRegisters, gbpa), 0x44);
    assert_eq!(offset_of!(SmmuRegisters, irq_ctrl), 0x50);
    assert_eq!(offset_of!(SmmuRegisters, gerror), 0x60);
    assert_eq!(offset_of!(SmmuRegisters, gerrorn), 0x64);
    assert_eq!(offset_of!(SmmuRegisters, gerror_irq_cfg0), 0x68);
    assert_eq!(offset_of!(SmmuRegisters, strtab_base), 0x80);
    assert_eq!(offset_of!(SmmuRegisters, strtab_base_cfg), 0x88);
    assert_eq!(offset_of!(SmmuRegisters, cmdq_base), 0x90);
    assert_eq!(offset_of!(SmmuRegisters, cmdq_prod), 0x98);
    assert_eq!(offset_of!(SmmuRegisters, cmdq_cons), 0x9c);
    assert_eq!(offset_of!(SmmuRegisters, eventq_base), 0xa0);
    assert_eq!(offset_of!(SmmuRegisters, priq_base), 0xc0);
    assert_eq!(offset_of!(SmmuPage1, eventq_prod), 0xa8);
    assert_eq!(offset_of!(SmmuPage1, eventq_cons), 0xac);
    assert_eq!(offset_of!(SmmuPage1, priq_prod), 0xc8);
    assert_eq!(offset_of!(SmmuPage1, priq_cons), 0xcc);
    assert_eq!(smmu::PAGE1_OFFSET, 0x10000);
}

/// QEMU 10.0 virt ≥ 9.2 (stage=nested) IDR0 0x0d44101b.
#[test]
fn smmu_idr0_qemu_nested() {
    let i = Idr0::decode(0x0d44_101b);
    assert!(i.stage1 && i.stage2);
    assert_eq!(i.table_formats, TableFormats::AArch64);
    assert!(i.coherent && i.asid16 && i.vmid16 && i.term_model && i.two_level_stream_table);
    assert!(!i.btm && !i.httu_access && !i.ats && !i.pri && !i.msi && !i.sev && !i.cd2l);
    assert_eq!(i.stall_model, StallModel::TerminateOnly);
    assert_eq!(i.tt_endian, 2);
}

#[test]
fn smmu_idr0_single_fields() {
    let d = Idr0::decode;
    assert!(d(1 << 5).btm);
    let h = d(2 << 6);
    assert!(h.httu_access && h.httu_dirty);
    let h = d(1 << 6);
    assert!(h.httu_access && !h.httu_dirty);
    assert!(d(1 << 9).hyp);
    assert!(d(1 << 10).ats);
    assert!(d(1 << 13).msi);
    assert!(d(1 << 14).sev);
    assert!(d(1 << 15).atos);
    assert!(d(1 << 16).pri);
    assert!(d(1 << 19).cd2l);
    assert_eq!(d(0).stall_model, StallModel::StallAndTerminate);
    assert_eq!(d(2 << 24).stall_model, StallModel::StallForced);
    assert_eq!(d(3 << 2).table_formats, TableFormats::Both);
    assert_eq!(d(1 << 2).table_formats, TableFormats::AArch32);
    assert!(!d(2 << 27).two_level_stream_table);
}

/// QEMU IDR1 0x02730010: SIDSIZE 16, SSIDSIZE 0, EVENTQS 19, CMDQS 19.
#[test]
fn smmu_idr1_qemu() {
    let i = Idr1::decode(0x0273_0010);
    assert_eq!(i.sid_bits, 16);
    assert_eq!(i.ssid_bits, 0);
    assert_eq!(i.priq_log2, 0);
    assert_eq!(i.eventq_log2, 19);
    assert_eq!(i.cmdq_log2, 19);
    assert!(!i.relative_bases && !i.queues_preset && !i.tables_preset);
    assert_eq!(Idr1::decode(20 << 6).ssid_bits, 20);
    assert_eq!(Idr1::decode(0x1f << 11).priq_log2, 31);
    assert!(Idr1::decode(1 << 28).relative_bases);
}

#[test]
fn smmu_idr3_idr5_iidr_aidr() {
    let i3 = Idr3::decode(1 << 10 | 1 << 11);
    assert!(i3.ril);
    assert_eq!(i3.bbml, 1);
    assert!(Idr3::decode(1 << 8).fwb);
    // OAS 44 bits (encoding 4), all three granules.
    let i5 = Idr5::decode(0x74);
    assert_eq!(i5.oas_bits, 44);
    assert!(i5.gran_4k && i5.gran_16k && i5.gran_64k && !i5.va_52);
    for (enc, bits) in [
        (0, 32),
        (1, 36),
        (2, 40),
        (3, 42),
        (4, 44),
        (5, 48),
        (6, 52),
    ] {
        assert_eq!(smmu::oas_bits(enc), bits);
    }
    assert!(Idr5::decode(1 << 10).va_52);
    assert_eq!(Idr5::decode(0xffff_0000).stall_max, 0xffff);
    let ii = Iidr::decode(0x4b23_143b);
    assert_eq!(ii.implementer, 0x43b, "Arm's JEP106 code");
    assert_eq!((ii.revision, ii.variant, ii.product_id), (1, 3, 0x4b2));
    let a = Aidr::decode(0x02);
    assert_eq!((a.major, a.minor), (0, 2));
}

#[test]
fn nesting_caps_come_from_the_capability_bits() {
    // VT-d: CAP.FL5LP is bit 60, ECAP.SRS bit 31, ECAP.EAFS bit 34.
    let none = vtd::Identity::decode(0x10, 0, 0).nested_caps(48);
    assert!(!none.five_level && !none.sre && !none.eafe);
    assert_eq!(none.max_pa_bits, 48);
    let all = vtd::Identity::decode(0x10, 1 << 60, (1 << 31) | (1 << 34)).nested_caps(39);
    assert!(all.five_level && all.sre && all.eafe);
    assert_eq!(all.max_pa_bits, 39);
    // SMMUv3: IDR0.CD2L is bit 19, IDR1.SSIDSIZE bits 10:6, IDR5.OAS bits
    // 2:0 (0b101 = 48 bits).
    let s = smmu::Identity::decode([1 << 19, 20 << 6, 0, 0, 0, 0b101, 0, 0]).nested_caps();
    assert_eq!((s.ssid_bits, s.oas_bits, s.two_level_cd), (20, 48, true));
    let s = smmu::Identity::decode([0, 0, 0, 0, 0, 0, 0, 0]).nested_caps();
    assert_eq!((s.ssid_bits, s.oas_bits, s.two_level_cd), (0, 32, false));
}
