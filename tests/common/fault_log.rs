//! The fault handler of the hardware-model tests: it records every group
//! the core hands it (per test thread) and answers by its cookie's last
//! digit: 0 Success, 1 Invalid, anything else Failure.

use std::cell::RefCell;

use iommu::core::{DomainId, Fault, FaultHandler, FaultTarget, Response};

/// A group as the handler saw it: (cookie, domain, faults).
pub type Seen = (usize, DomainId, Vec<Fault>);

thread_local! {
    static SEEN: RefCell<Vec<Seen>> = const { RefCell::new(Vec::new()) };
}

fn handler(cookie: usize, domain: DomainId, group: &[Fault]) -> Response {
    SEEN.with(|s| s.borrow_mut().push((cookie, domain, group.to_vec())));
    match cookie % 10 {
        0 => Response::Success,
        1 => Response::Invalid,
        _ => Response::Failure,
    }
}

/// The recording handler with `cookie`.
pub fn target(cookie: usize) -> FaultTarget {
    FaultTarget::Handler(FaultHandler {
        func: handler,
        cookie,
    })
}

/// The groups seen since the last call.
pub fn seen() -> Vec<Seen> {
    SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()))
}
