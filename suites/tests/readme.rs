//! The README's scenario table is generated from the scenarios themselves; this keeps it current.

#[test]
fn readme_lists_every_scenario_with_its_control() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let table = palisade_suites::scenario_table();
    assert!(
        readme.contains(&table),
        "README.md's scenario table is out of date; regenerate it with `palisade list --markdown`:\n{table}"
    );
}
