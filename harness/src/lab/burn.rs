//! Containers that burn CPU so their cgroup's accounting can be measured: the probe protocol side
//! of the cgroup scenarios and benches. Which trials may burn at the same time is the runner's
//! rule ([`crate::run::scenario::Schedule::CpuAlone`]), not a lock taken here.

use std::time::Duration;

use palisade_probe::{Reply, Request};

use crate::driver::bundle::ContainerSpec;
use crate::driver::container::Container;
use crate::error::HarnessError;
use crate::lab::cgroups::{CgroupError, CgroupVersion, CpuCounters, CpuWindow, WINDOW, measure};
use crate::run::scenario::Ctx;

/// A container whose probe is burning CPU, with its cgroup's counters.
pub struct Burner {
    pub container: Container,
    pub counters: CpuCounters,
}

/// Burning containers; dropping them kills them.
pub struct Burners {
    pub burners: Vec<Burner>,
}

/// Launches every spec, then asks each probe to burn `threads` CPUs, returning once every probe
/// says its threads spin: the event measurements wait for. Containers are all created before any
/// burns, so no runtime command competes with the burners.
pub fn start_burners(
    cx: &Ctx,
    cgroups: &dyn CgroupVersion,
    specs: Vec<ContainerSpec>,
    threads: u32,
) -> Result<Burners, HarnessError> {
    let mut launched = Vec::with_capacity(specs.len());
    for spec in specs {
        let container = cx.launch(spec)?;
        let counters = cgroups.cpu_counters(container.host_pid()?)?;
        launched.push(Burner {
            container,
            counters,
        });
    }
    for burner in &mut launched {
        match burner.container.ask(&Request::BurnCpu { threads })? {
            Reply::Burning { .. } => {}
            other => {
                return Err(HarnessError::ProbeFailed {
                    op: "burn-cpu".into(),
                    message: format!("unexpected reply {other:?}"),
                });
            }
        }
    }
    Ok(Burners { burners: launched })
}

impl Burners {
    /// Measures every burner over the same [`WINDOW`], in launch order.
    pub fn measure(&self) -> Result<Vec<CpuWindow>, CgroupError> {
        self.measure_over(WINDOW)
    }

    pub fn measure_over(&self, window: Duration) -> Result<Vec<CpuWindow>, CgroupError> {
        let counters: Vec<&CpuCounters> = self.burners.iter().map(|b| &b.counters).collect();
        measure(&counters, window)
    }
}
