//! One run of the suite: its environment ([`env`]), the scenarios and the context they run in
//! ([`scenario`]), the runner that turns them into trials ([`runner`]), the orchestration from
//! preflight to exit code ([`orchestrate`]), and removing what a run made ([`cleanup`]).

pub mod cleanup;
pub mod control;
pub mod env;
pub mod interrupt;
pub mod live;
pub mod orchestrate;
pub mod runner;
pub mod scenario;

pub use env::{
    PREFIX, RECORD_FILE, RUN_ID_LEN, RunEnv, RunRecord, RunSetupError, RuntimeRecord, new_run_id,
    run_tag_of, runtime_timeout, scenario_timeout, start_time,
};
