//! Palisade's mechanism. Scenarios (the policy) live in the `palisade-suites` crate and use only
//! what is here.
//!
//! - [`driver`]: what runs containers — the [`Driver`] trait, the OCI command-line driver, the
//!   container spec a scenario edits, and the handle on a created container.
//! - [`lab`]: fixtures and measurement on the host side — host facts, host filesystem, the
//!   network lab, cgroup accounting and CPU burners.
//! - [`run`]: one run of the suite — its environment, scenarios, the runner that turns them into
//!   trials, the orchestration from preflight to exit code, and cleanup.
//! - [`report`]: JUnit, TAP, JSON and Markdown reports of a run.
//! - [`vm`]: the suite in a throwaway QEMU guest.
//! - [`engine`]: container engines (Docker, Podman) in lab hosts Palisade owns, and the engine
//!   driver that runs the suite through them.

pub mod driver;
pub mod engine;
pub mod error;
pub mod exec;
pub mod lab;
pub mod report;
pub mod run;
pub mod vm;

pub use driver::bundle::ContainerSpec;
pub use driver::container::Container;
pub use driver::{Driver, RuntimeInfo};
pub use error::HarnessError;
pub use palisade_probe::{Facts, Reply, Request, Response};
pub use run::env::RunEnv;
pub use run::scenario::{Ctx, Failure, Outcome, Requirement, Scenario};
