//! The probe: the agent Palisade places inside every container.
//!
//! [`protocol`] holds the typed requests and replies the harness and the probe exchange (one JSON
//! object per line); [`agent`] is the program that runs inside the container and answers them.
#![deny(unsafe_code)]

pub mod agent;
pub mod net;
pub mod protocol;
mod sys;

pub use protocol::{Facts, Reply, Request, Response};
