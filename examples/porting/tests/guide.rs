//! The porting guide shows the example whole: what `docs/porting.md` shows
//! is what CI builds for both bare-metal targets.

#[test]
fn the_guide_shows_the_example_verbatim() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
    let guide = std::fs::read_to_string(dir.join("../../docs/porting.md")).unwrap();
    let begin = "<!-- examples/porting/src/lib.rs -->\n```rust\n";
    let start = guide
        .find(begin)
        .expect("the guide has the example's block")
        + begin.len();
    let end = start + guide[start..].find("```\n").expect("the block ends");
    assert_eq!(
        &guide[start..end],
        lib,
        "docs/porting.md's example differs from examples/porting/src/lib.rs"
    );
}
