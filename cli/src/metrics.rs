//! The metrics of `livora serve` itself (beside the ingest and feature-store crates' own),
//! declared in one place, exposed on `/metrics`.
//!
//! Names follow `livora_sched_<what>_<unit>`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The starvation guard's metrics ([`crate::sched::guard`]): lifts mean another program (or
/// the server itself) keeps the cores busy for seconds on end.
#[derive(Clone, Default)]
pub struct SchedMetrics {
    /// Background threads lifted out of `SCHED_IDLE` after starving.
    pub lifts: Counter,
    /// Background threads running lifted now.
    pub lifted_threads: Gauge,
    /// Lifts the guard could not make (no `CAP_SYS_NICE`): one per tick while a thread starves.
    pub refused_lifts: Counter,
}

impl SchedMetrics {
    /// Creates the metrics and registers them under `livora_sched` in `root`.
    pub fn new(root: &mut Registry) -> Self {
        let m = Self::default();
        let r = root.sub_registry_with_prefix("livora_sched");
        r.register("lifts", "Background threads lifted out of SCHED_IDLE to nice 10 after starving", m.lifts.clone());
        r.register("lifted_threads", "Background threads running lifted now", m.lifted_threads.clone());
        r.register(
            "refused_lifts",
            "Ticks at which a starved background thread could not be lifted (no CAP_SYS_NICE)",
            m.refused_lifts.clone(),
        );
        m
    }
}
