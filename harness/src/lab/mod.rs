//! Fixtures and measurement on the host side of a scenario: what the host is, its filesystem and
//! mount tables, the network lab, cgroup accounting, and containers that burn CPU to be measured.

pub mod burn;
pub mod cgroups;
pub mod host;
pub mod hostfs;
pub mod netlab;
