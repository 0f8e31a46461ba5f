//! The example does what the README says, and the README shows it whole.

/// It maps, attaches and cleans up, leaving the core and the pool as it
/// found them.
#[test]
fn the_example_maps_attaches_and_cleans_up() {
    assert_eq!(iommu_minimal::run(), Ok(0x8000_0000));
    assert_eq!(
        iommu_minimal::pool_pages_in_use(),
        0,
        "every table page went back"
    );
    let core = iommu_minimal::CORE.lock();
    assert_eq!(
        core.driver().roots[iommu_minimal::DEV.id as usize],
        0,
        "detached"
    );
    assert!(
        core.driver().invalidations >= 1,
        "the unmap was invalidated"
    );
}

/// The README's embedding example is this crate's `src/lib.rs`, verbatim:
/// what the README shows is what CI builds for both bare-metal targets and
/// runs.
#[test]
fn the_readme_shows_the_example_verbatim() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    let readme = std::fs::read_to_string(dir.join("../../README.md")).unwrap();
    let begin = "<!-- examples/minimal/src/lib.rs -->\n```rust\n";
    let start = readme
        .find(begin)
        .expect("the README has the example's block")
        + begin.len();
    let end = start + readme[start..].find("```\n").expect("the block ends");
    assert_eq!(
        &readme[start..end],
        lib,
        "README.md's example differs from examples/minimal/src/lib.rs"
    );
}
