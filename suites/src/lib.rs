//! Palisade scenarios.
