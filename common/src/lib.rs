//! What Palisade's crates must agree on, in one place: the test-only annotations the bundled
//! runtime understands, and the names of capabilities and namespaces as each crate spells them.

pub mod annotations;
pub mod capabilities;
pub mod namespaces;
