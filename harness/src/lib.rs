//! Palisade's mechanism: runtime drivers, bundles, the probe protocol, host facts, cleanup and the
//! runner. Scenarios (the policy) live in the `palisade-suites` crate and use only what is here.

pub mod bundle;
pub mod cgroups;
pub mod cleanup;
pub mod container;
pub mod driver;
pub mod engine;
pub mod error;
pub mod exec;
pub mod host;
pub mod hostfs;
pub mod netlab;
pub mod report;
pub mod run;
pub mod runner;
pub mod scenario;
pub mod vm;

pub use bundle::ContainerSpec;
pub use container::Container;
pub use error::HarnessError;
pub use palisade_probe::{Facts, Reply, Request, Response};
pub use run::RunEnv;
pub use scenario::{Ctx, Failure, Outcome, Requirement, Scenario};
