//! No import circles between sticky-test-support's modules: the check is
//! `sticky_test_support::module_graph` (`docs/architecture.md`).
//!
//! Re-check, printing the graph: `cargo test -p sticky-test-support --test module_graph
//! -- --nocapture`.

use sticky_test_support::module_graph;

#[test]
fn no_import_circles_between_modules() {
    module_graph::assert_no_cycles(concat!(env!("CARGO_MANIFEST_DIR"), "/src"));
}
