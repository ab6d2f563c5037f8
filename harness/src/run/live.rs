//! The containers that exist right now, and which trial made each: so the runner can stop what a
//! hung trial left running, and an interrupted run can remove every container it has.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::driver::Driver;

/// One created container, as the registry knows it.
#[derive(Clone)]
struct Entry {
    trial: String,
    runtime: Arc<dyn Driver>,
}

/// Live containers by id.
#[derive(Default)]
pub struct Live {
    containers: Mutex<BTreeMap<String, Entry>>,
}

impl Live {
    pub fn add(&self, id: &str, trial: &str, runtime: Arc<dyn Driver>) {
        if let Ok(mut all) = self.containers.lock() {
            all.insert(
                id.to_owned(),
                Entry {
                    trial: trial.to_owned(),
                    runtime,
                },
            );
        }
    }

    pub fn remove(&self, id: &str) {
        if let Ok(mut all) = self.containers.lock() {
            all.remove(id);
        }
    }

    pub fn count(&self) -> usize {
        self.containers.lock().map(|all| all.len()).unwrap_or(0)
    }

    /// Kills and force-deletes every container of `trial` (all of them with `None`) through its
    /// runtime; returns the ids it removed. The owning scenario thread may still hold the
    /// handles: their own later delete finds nothing, which is harmless.
    pub fn stop(&self, trial: Option<&str>) -> Vec<String> {
        let chosen: Vec<(String, Entry)> = match self.containers.lock() {
            Ok(mut all) => {
                let ids: Vec<String> = all
                    .iter()
                    .filter(|(_, e)| trial.is_none_or(|t| e.trial == t))
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.into_iter()
                    .filter_map(|id| all.remove(&id).map(|e| (id, e)))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        let mut stopped = Vec::new();
        for (id, entry) in chosen {
            let _ = entry.runtime.kill(&id, "KILL");
            if entry.runtime.delete(&id, true).is_ok() {
                stopped.push(id);
            }
        }
        stopped
    }
}
