//! The README's "use a method crate in your own training loop" block is this crate's `unimatch_mim` example,
//! verbatim after its doc comment, so the README shows code that compiles and runs (`cargo test` runs the example).

#[test]
fn readme_block_is_the_unimatch_mim_example() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{dir}/../../README.md")).expect("README.md readable");
    let example = std::fs::read_to_string(format!("{dir}/examples/unimatch_mim.rs")).expect("example readable");
    let body = &example[example.find("use aux_mim").expect("the example's first `use`")..];
    let block = readme
        .split("```rust\n")
        .find(|b| b.starts_with("use aux_mim"))
        .and_then(|b| b.split("\n```").next())
        .expect("a ```rust block starting with `use aux_mim` in README.md");
    let (block, body): (Vec<&str>, Vec<&str>) = (block.trim_end().lines().collect(), body.trim_end().lines().collect());
    let first = block.iter().zip(&body).position(|(a, b)| a != b).unwrap_or(block.len().min(body.len()));
    assert!(
        block == body,
        "README block and examples/unimatch_mim.rs differ from the example's line {}: {:?} vs {:?}",
        first + 1,
        block.get(first),
        body.get(first)
    );
}
