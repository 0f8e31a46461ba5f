//! The command queue of the real SMMUv3 driver against the model: command
//! errors (CERROR_ILL, CERROR_ABT, CERROR_ATC_INV_SYNC) reported as
//! `Error::QueueEntry` naming the error, the command and its index,
//! repaired, acknowledged in GERRORN, the queue working again; a CMD_SYNC
//! that never completes times out; a full queue waits for space and never
//! overwrites a command the SMMU has not consumed.

#[path = "common/smmu_model.rs"]
mod smmu_model;

use std::time::Duration;

use iommu::Error;
use iommu::drivers::smmuv3::cmd::{self as dcmd, Command};
use smmu_model::*;

fn sync(rig: &mut Rig) -> Result<(), Error> {
    let hal = rig.hal.clone();
    rig.smmu(0).sync(&hal)
}

fn submit(rig: &mut Rig, cmds: &[Command]) {
    rig.core.driver_mut().submit_raw(0, cmds).unwrap();
}

/// The StreamIDs of a log's CFGI_STEs, in order.
fn cfgi_sids(log: &[Event]) -> Vec<u32> {
    cmds(log)
        .into_iter()
        .filter_map(|c| match c {
            Cmd::CfgiSte { sid, .. } => Some(sid),
            _ => None,
        })
        .collect()
}

fn cmd_errors(log: &[Event]) -> Vec<(u32, u32)> {
    log.iter()
        .filter_map(|e| match e {
            Event::CmdError { index, code, .. } => Some((*index, *code)),
            _ => None,
        })
        .collect()
}

/// An illegal command between two good ones: the sync reports CERROR_ILL
/// naming the command and its slot; the driver replaced it with a
/// CMD_SYNC and acknowledged the error; the good command after it runs
/// once the queue restarts, and later syncs work.
#[test]
fn illegal_command_is_reported_repaired_and_acknowledged() {
    let mut rig = Rig::qemu();
    let first = rig.smmu(0).cmdq.as_ref().unwrap().stats.commands;
    rig.clear_logs();
    let bad = Command::from_words([dcmd::op::TLBI_NSNH_ALL | 1 << 40, 0]);
    submit(&mut rig, &[dcmd::cfgi_ste(1), bad, dcmd::cfgi_ste(2)]);
    let err = sync(&mut rig).unwrap_err();
    // Enable queued CFGI_ALL, two TLBIs and a CMD_SYNC: four slots.
    let index = 4 + 1;
    assert_eq!(
        err,
        Error::QueueEntry {
            register: "CMDQ_CONS.ERR = CERROR_ILL",
            entry: "TLBI_NSNH_ALL",
            index
        }
    );
    assert_eq!(first, 3);
    let u = rig.unit(0);
    assert_eq!(u.active_errors(), 0, "GERRORN acknowledged");
    // The queue resumed at the repaired slot.
    sync(&mut rig).unwrap();
    let log = rig.unit(0).take_log();
    assert_eq!(cmd_errors(&log), [(index, 1)]);
    assert_eq!(cfgi_sids(&log), [1, 2]);
    assert!(
        log.iter()
            .any(|e| matches!(e, Event::Cmd { index: i, cmd } if *i == index && cmd.is_sync()))
    );
    assert!(
        log.iter()
            .any(|e| matches!(e, Event::GerrorAck { bits } if *bits == spec::gerror::CMDQ_ERR))
    );
    assert_eq!(rig.smmu(0).cmdq.as_ref().unwrap().stats.errors, 1);
    // An unknown opcode is named as such.
    submit(&mut rig, &[Command::from_words([0x7f, 0])]);
    assert!(matches!(
        sync(&mut rig),
        Err(Error::QueueEntry {
            entry: "an unknown opcode",
            ..
        })
    ));
    sync(&mut rig).unwrap();
}

/// A command fetch that aborts (CERROR_ABT): reported naming the command,
/// which is retried as it stands and runs once.
#[test]
fn fetch_abort_is_retried() {
    let mut rig = Rig::qemu();
    rig.clear_logs();
    rig.unit(0).knobs(|k| k.abort_fetches = 1);
    submit(&mut rig, &[dcmd::cfgi_ste(9)]);
    assert!(matches!(
        sync(&mut rig),
        Err(Error::QueueEntry {
            register: "CMDQ_CONS.ERR = CERROR_ABT",
            entry: "CFGI_STE",
            ..
        })
    ));
    assert_eq!(rig.unit(0).active_errors(), 0);
    sync(&mut rig).unwrap();
    let log = rig.unit(0).take_log();
    assert_eq!(cfgi_sids(&log), [9]);
    assert_eq!(cmd_errors(&log).len(), 1);
}

/// An ATC invalidation that times out fails the CMD_SYNC after it
/// (CERROR_ATC_INV_SYNC): reported naming the CMD_SYNC; retried, it
/// completes.
#[test]
fn atc_invalidation_timeout_fails_the_sync() {
    let mut rig = Rig::new(&[SmmuConfig::qemu().ats(true)]);
    rig.clear_logs();
    rig.unit(0).knobs(|k| k.atc_sync_errors = 1);
    submit(&mut rig, &[dcmd::atc_inv(3, None, 0, 52)]);
    assert!(matches!(
        sync(&mut rig),
        Err(Error::QueueEntry {
            register: "CMDQ_CONS.ERR = CERROR_ATC_INV_SYNC",
            entry: "CMD_SYNC",
            ..
        })
    ));
    assert_eq!(rig.unit(0).active_errors(), 0);
    sync(&mut rig).unwrap();
    let log = rig.unit(0).take_log();
    assert_eq!(count(&log, "ATC_INV"), 1);
    assert_eq!(
        cmd_errors(&log).iter().map(|e| e.1).collect::<Vec<_>>(),
        [3]
    );
}

/// A CMD_SYNC the SMMU never completes: `Timeout` naming it; once the SMMU
/// moves again the queue works.
#[test]
fn sync_never_completing_times_out() {
    let mut rig = Rig::qemu();
    rig.unit(0).knobs(|k| k.hold_syncs = true);
    submit(&mut rig, &[dcmd::cfgi_ste(4)]);
    assert_eq!(
        sync(&mut rig),
        Err(Error::Timeout {
            what: "SMMUv3 CMD_SYNC"
        })
    );
    rig.unit(0).knobs(|k| k.hold_syncs = false);
    sync(&mut rig).unwrap();
}

/// A queue of 8 commands the SMMU is not consuming: the driver publishes
/// and waits for space instead of overwriting; once the SMMU consumes
/// again, all 20 commands run once each, in order, across the wrap.
/// Never released, the wait times out naming the queue space.
#[test]
fn full_queue_waits_for_space() {
    let mut rig = Rig::new(&[SmmuConfig::qemu().cmdq_log2(3)]);
    rig.clear_logs();
    rig.unit(0).knobs(|k| k.hold_cmdq = true);
    rig.unit(0)
        .knobs_after(Duration::from_millis(50), |k| k.hold_cmdq = false);
    let sids: Vec<u32> = (100..120).collect();
    let cmds: Vec<Command> = sids.iter().map(|s| dcmd::cfgi_ste(*s)).collect();
    submit(&mut rig, &cmds);
    sync(&mut rig).unwrap();
    let log = rig.unit(0).take_log();
    assert_eq!(cfgi_sids(&log), sids);
    assert_eq!(cmd_errors(&log), []);

    rig.unit(0).knobs(|k| k.hold_cmdq = true);
    let more: Vec<Command> = (0..9).map(dcmd::cfgi_ste).collect();
    assert_eq!(
        rig.core.driver_mut().submit_raw(0, &more),
        Err(Error::Timeout {
            what: "SMMUv3 command queue space"
        })
    );
    rig.unit(0).knobs(|k| k.hold_cmdq = false);
    sync(&mut rig).unwrap();
    assert_eq!(
        cfgi_sids(&rig.unit(0).take_log()),
        (0..8).collect::<Vec<_>>()
    );
}
