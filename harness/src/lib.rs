//! Palisade mechanism.
