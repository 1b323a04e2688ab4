//! How `livora serve`'s background work shares the CPU with requests (`[scheduling]`).
//!
//! Requests run on the async runtime's workers at normal priority. The background work runs on
//! threads of its own ([`Priority::apply`]), below them:
//!
//! - `idle` (`SCHED_IDLE`, at nice 10): the thread runs only on CPU time no normal thread
//!   wants, and a request woken on its core preempts it at once. For bulk work whose input is
//!   already durable (the lake writer reads the event log; the prediction writer's queue holds
//!   requests back when full): under a burst it falls behind and catches up afterwards. A
//!   thread starved for seconds on end runs at nice 10 until it has caught up ([`guard`]).
//! - `low` (nice 10): a small but certain share of a busy machine (about a tenth of a core
//!   against a nice-0 thread). For work whose delay is a promise (stream features fresh within
//!   a second).
//! - `normal`: no change.
//!
//! A priority is the whole machine's, not the process's: an `idle` thread also waits for other
//! programs' busy threads (a compiler, a database on the same host). The starvation guard
//! ([`guard`]) lifts it when that wait lasts; it needs `CAP_SYS_NICE` to, and says so when it
//! does not have it — set the key `low` then, where the machine is shared with CPU-bound work
//! that never pauses.

use serde::{Deserialize, Serialize};

pub(crate) mod guard;

/// A background thread's CPU priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// `SCHED_IDLE` (at nice 10, what the starvation guard lifts it to): only CPU time nothing
    /// else wants.
    Idle,
    /// Nice 10.
    Low,
    /// The caller's own priority.
    Normal,
}

impl Priority {
    /// Applies to the calling thread; threads it starts later inherit it. On failure (a
    /// platform without these policies) the thread keeps its priority, with a warning naming
    /// `what`.
    pub fn apply(self, what: &str) {
        let applied = match self {
            Self::Normal => return,
            // Nice 10 first, which the thread keeps under `SCHED_IDLE` and runs at if the
            // starvation guard lifts it; `SCHED_IDLE` even if the nice value was refused (a
            // thread already above 10 may not lower it unprivileged).
            Self::Idle => {
                let nice = nice_10();
                guard::set_policy(0, guard::SCHED_IDLE).and(nice)
            }
            Self::Low => nice_10(),
        };
        if let Err(e) = applied {
            tracing::warn!(error = %e, priority = ?self, "could not lower the priority of {what}; it competes with requests");
        }
    }
}

/// Sets the calling thread's nice value to 10, keeping its policy; a thread already nicer (a
/// server started with `nice -n 15`) keeps its own. On Linux, `setpriority` of thread id 0 is the
/// calling thread's.
fn nice_10() -> std::io::Result<()> {
    let os = |e: uapi::Errno| std::io::Error::from_raw_os_error(e.0);
    let which = uapi::c::PRIO_PROCESS.cast_signed();
    if uapi::getpriority(which, 0).map_err(os)? >= 10 {
        return Ok(());
    }
    uapi::setpriority(which, 0, 10).map_err(os)
}

/// `[scheduling]`: the priority of each kind of background work of `livora serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulingConfig {
    /// The lake writer and its dedupe store. Default `idle`.
    pub lake: Priority,
    /// The stream aggregator and its checkpoints. Default `low`.
    pub stream: Priority,
    /// The prediction writer (the prediction view online, the prediction log). Default `idle`.
    pub predictions: Priority,
}

impl SchedulingConfig {
    /// Whether any background work runs at `SCHED_IDLE` (and so wants the starvation guard).
    pub fn any_idle(&self) -> bool {
        [self.lake, self.stream, self.predictions].contains(&Priority::Idle)
    }
}

impl Default for SchedulingConfig {
    fn default() -> Self {
        Self { lake: Priority::Idle, stream: Priority::Low, predictions: Priority::Idle }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::Priority;

    /// The calling thread's (policy, nice), from `/proc/thread-self/stat`.
    pub(crate) fn scheduling() -> (i64, i64) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let field = |n| super::guard::stat_field(&stat, n).unwrap().parse().unwrap();
        (field(41), field(19))
    }

    const SCHED_OTHER: i64 = super::guard::SCHED_OTHER as i64;
    const SCHED_IDLE: i64 = super::guard::SCHED_IDLE as i64;

    /// (policy, nice) of a thread that applied `priority`, and of a thread it then started.
    fn applied(priority: Priority) -> ((i64, i64), (i64, i64)) {
        std::thread::spawn(move || {
            priority.apply("a test thread");
            (scheduling(), std::thread::spawn(scheduling).join().unwrap())
        })
        .join()
        .unwrap()
    }

    #[test]
    fn idle_is_sched_idle_at_nice_10_and_threads_started_later_inherit_it() {
        assert_eq!(applied(Priority::Idle), ((SCHED_IDLE, 10), (SCHED_IDLE, 10)));
    }

    #[test]
    fn low_is_nice_10_and_threads_started_later_inherit_it() {
        assert_eq!(applied(Priority::Low), ((SCHED_OTHER, 10), (SCHED_OTHER, 10)));
    }

    #[test]
    fn a_thread_already_nicer_than_10_keeps_its_nice_value() {
        let applied = std::thread::spawn(|| {
            uapi::setpriority(uapi::c::PRIO_PROCESS.cast_signed(), 0, 15).unwrap();
            Priority::Low.apply("a test thread");
            let low = scheduling();
            Priority::Idle.apply("a test thread");
            (low, scheduling())
        })
        .join()
        .unwrap();
        assert_eq!(applied, ((SCHED_OTHER, 15), (SCHED_IDLE, 15)));
    }

    #[test]
    fn normal_leaves_the_thread_as_it_was() {
        let before = scheduling();
        assert_eq!(applied(Priority::Normal), (before, before));
    }
}
