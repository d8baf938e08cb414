//! The README shows `examples/examples/protected_route.rs` as it is: the file compiles (cargo
//! builds examples for `cargo test`), so the README's 29-line route does too.

#[test]
fn the_readme_shows_the_protected_route_example_verbatim() {
    let readme = include_str!("../../README.md");
    let example = include_str!("../examples/protected_route.rs");
    let code: String = example
        .lines()
        .filter(|line| !line.starts_with("//!"))
        .map(|line| format!("{line}\n"))
        .collect();
    let block = format!("```rust,ignore\n{code}```");
    assert!(
        readme.contains(&block),
        "README.md's protected-route block differs from examples/examples/protected_route.rs; \
         paste the file (without its `//!` line) into the README"
    );
    assert!(
        code.lines().count() < 30,
        "the README promises a protected route in under 30 lines"
    );
}
