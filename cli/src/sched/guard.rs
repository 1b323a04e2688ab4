//! The starvation guard: `SCHED_IDLE` without starving.
//!
//! A thread at `SCHED_IDLE` runs only on CPU time no normal thread wants. When another program
//! keeps every core busy (a compiler, `livora train` on the same host, a database's batch job),
//! that is almost none — about 0.3 % of a core against one busy nice-0 thread — and the lake
//! would stop advancing for as long as the other program runs. The guard, a thread at normal
//! priority that wakes once a second, watches every `SCHED_IDLE` thread of the process through
//! `/proc/self/task/<tid>/stat` (is it runnable) and `schedstat` (time on a CPU, time runnable
//! but waiting for one):
//!
//! - a thread found runnable at each of 5 ticks in a row, having run less than a tenth of each
//!   tick, is **lifted** to `SCHED_OTHER` at nice 10 — the `low` share, about a tenth of a core
//!   against a busy nice-0 thread. (The kernel adds a wait to `schedstat` only once the wait
//!   ends, so the wait itself cannot tell a thread that is still waiting.)
//! - a lifted thread found asleep at a tick, having used or waited for the CPU less than half
//!   of it (it has caught up), is put back at `SCHED_IDLE`.
//!
//! Under a burst of the server's own requests the idle threads still get the CPU the requests
//! leave; only a starvation of seconds lifts them. Lifting a thread out of `SCHED_IDLE` takes
//! `CAP_SYS_NICE` (or an `RLIMIT_NICE` of at least 10): without it the guard says so once, and
//! which setting to change.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::metrics::SchedMetrics;

/// `SCHED_OTHER`, as `/proc/<pid>/task/<tid>/stat` and `sched_setscheduler(2)` number it.
pub(crate) const SCHED_OTHER: i32 = 0;
/// `SCHED_IDLE`.
pub(crate) const SCHED_IDLE: i32 = 5;

/// When the guard lifts a thread and puts it back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    /// How often the threads are looked at.
    pub(crate) tick: Duration,
    /// A thread runnable at a tick that ran less than this share of it was starved in it.
    pub(crate) starved_cpu_share: f64,
    /// Starved ticks in a row that lift a thread.
    pub(crate) starved_ticks: u32,
    /// Below this share of a tick on or waiting for a CPU, a lifted thread has caught up.
    pub(crate) caught_up_share: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { tick: Duration::from_secs(1), starved_cpu_share: 0.1, starved_ticks: 5, caught_up_share: 0.5 }
    }
}

/// One thread's scheduling, read from `/proc`.
#[derive(Debug, Clone)]
struct Sample {
    /// Its name (`livora-lake`, `tokio-runtime-w`).
    name: String,
    /// Its nice value.
    nice: i32,
    /// Running or waiting to run (state `R`).
    runnable: bool,
    /// When it started, in clock ticks after boot: with the thread id, who it is (ids are
    /// reused).
    started: u64,
    /// Nanoseconds on a CPU so far.
    on_cpu: u64,
    /// Nanoseconds runnable but waiting for a CPU so far.
    waiting: u64,
}

/// What the guard remembers of a thread between ticks.
#[derive(Debug, Clone, Copy)]
struct Watched {
    /// [`Sample::started`].
    started: u64,
    at: Instant,
    on_cpu: u64,
    waiting: u64,
    /// Starved ticks in a row.
    starved: u32,
    /// Lifted by the guard, not yet put back.
    lifted: bool,
}

/// What a tick does to a thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Lift,
    PutBack,
    Keep,
}

/// What a thread did between two ticks.
#[derive(Debug, Clone, Copy)]
struct Spent {
    elapsed: Duration,
    on_cpu: Duration,
    waiting: Duration,
    /// Runnable at the second tick.
    runnable: bool,
}

impl Watched {
    /// The tick's verdict on a thread that `spent` what it did since the last.
    fn judge(&mut self, thresholds: &Thresholds, spent: Spent) -> Action {
        let share = |d: Duration| d.as_secs_f64() / spent.elapsed.as_secs_f64().max(f64::EPSILON);
        if self.lifted {
            if !spent.runnable && share(spent.on_cpu + spent.waiting) < thresholds.caught_up_share {
                self.lifted = false;
                self.starved = 0;
                return Action::PutBack;
            }
            return Action::Keep;
        }
        if spent.runnable && share(spent.on_cpu) < thresholds.starved_cpu_share {
            self.starved += 1;
        } else {
            self.starved = 0;
        }
        if self.starved >= thresholds.starved_ticks {
            self.lifted = true;
            return Action::Lift;
        }
        Action::Keep
    }
}

/// Watches the process's `SCHED_IDLE` threads; [`Guard::tick`] once per [`Thresholds::tick`].
pub(crate) struct Guard {
    thresholds: Thresholds,
    metrics: SchedMetrics,
    watched: HashMap<i32, Watched>,
    /// Set once a lift was refused: the guard then only watches.
    refused: bool,
}

impl Guard {
    pub(crate) fn new(thresholds: Thresholds, metrics: SchedMetrics) -> Self {
        Self { thresholds, metrics, watched: HashMap::new(), refused: false }
    }

    /// Looks at every thread of the process once: lifts the starved idle threads, puts back the
    /// lifted ones that caught up.
    pub(crate) fn tick(&mut self) {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return };
        let now = Instant::now();
        let mut seen = Vec::new();
        for tid in tasks.filter_map(|t| t.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
            // Threads the guard did not lift and that are not idle are none of its business
            // (the requests' workers, the `low` stream aggregator): their `schedstat` is not read.
            let Some(sample) = sample(tid, |policy, started| {
                policy == SCHED_IDLE || self.watched.get(&tid).is_some_and(|w| w.lifted && w.started == started)
            }) else {
                continue;
            };
            seen.push(tid);
            let fresh = Watched {
                started: sample.started,
                at: now,
                on_cpu: sample.on_cpu,
                waiting: sample.waiting,
                starved: 0,
                lifted: false,
            };
            let watched = self.watched.entry(tid).or_insert(fresh);
            if watched.started != sample.started {
                // The id of an ended thread, given to a new one.
                *watched = fresh;
            }
            let spent = Spent {
                elapsed: now.saturating_duration_since(watched.at),
                on_cpu: Duration::from_nanos(sample.on_cpu.saturating_sub(watched.on_cpu)),
                waiting: Duration::from_nanos(sample.waiting.saturating_sub(watched.waiting)),
                runnable: sample.runnable,
            };
            let action = watched.judge(&self.thresholds, spent);
            (watched.at, watched.on_cpu, watched.waiting) = (now, sample.on_cpu, sample.waiting);
            match action {
                Action::Keep => {}
                Action::Lift if self.refused => {
                    watched.lifted = false;
                    self.metrics.refused_lifts.inc();
                }
                Action::Lift => match set_policy(tid, SCHED_OTHER) {
                    Ok(()) => {
                        self.metrics.lifts.inc();
                        tracing::warn!(
                        thread = %sample.name,
                        tid,
                        nice = sample.nice,
                        starved_seconds = self.thresholds.tick.as_secs_f64() * f64::from(self.thresholds.starved_ticks),
                            "a background thread at SCHED_IDLE waited for the CPU: running it at its nice value \
                             until it catches up (other work keeps the cores busy)"
                        );
                    }
                    Err(e) => {
                        watched.lifted = false;
                        self.refused = true;
                        self.metrics.refused_lifts.inc();
                        tracing::error!(
                            thread = %sample.name,
                            tid,
                            error = %e,
                            "a background thread at SCHED_IDLE is starved for CPU and cannot be lifted without \
                             CAP_SYS_NICE (or RLIMIT_NICE >= 10): it waits for the other programs; set its \
                             [scheduling] key to \"low\" on a machine whose cores stay busy"
                        );
                    }
                },
                Action::PutBack => {
                    if let Err(e) = set_policy(tid, SCHED_IDLE) {
                        tracing::warn!(thread = %sample.name, tid, error = %e, "could not put a lifted thread back at SCHED_IDLE");
                    } else {
                        tracing::info!(thread = %sample.name, tid, "a lifted background thread caught up: back at SCHED_IDLE");
                    }
                }
            }
        }
        // Threads that ended, or left `SCHED_IDLE` by their own doing.
        self.watched.retain(|tid, _| seen.contains(tid));
        let lifted = self.watched.values().filter(|w| w.lifted).count();
        self.metrics.lifted_threads.set(i64::try_from(lifted).unwrap_or(i64::MAX));
    }
}

/// Starts the guard on a thread of its own (`livora-sched`), for the life of the process; once
/// per process (a second call keeps the first one's metrics).
pub(crate) fn start(metrics: SchedMetrics) -> std::io::Result<()> {
    static STARTED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut started = STARTED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if *started {
        return Ok(());
    }
    if sample(std::process::id().cast_signed(), |_, _| true).is_none() {
        tracing::warn!("no /proc/self/task/<tid>/schedstat: threads at SCHED_IDLE are not guarded against starvation");
        return Ok(());
    }
    let thresholds = Thresholds::default();
    std::thread::Builder::new().name("livora-sched".into()).spawn(move || {
        let mut guard = Guard::new(thresholds, metrics);
        loop {
            std::thread::sleep(thresholds.tick);
            guard.tick();
        }
    })?;
    *started = true;
    Ok(())
}

/// `tid`'s name, scheduling and CPU times, when `wanted(policy, started)`; `None` when not wanted
/// or once it has ended.
fn sample(tid: i32, wanted: impl FnOnce(i32, u64) -> bool) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Nice is field 19, the start time 22, the policy 41.
    let field = |n: usize| stat_field(&stat, n)?.parse::<i64>().ok();
    let policy = i32::try_from(field(41)?).ok()?;
    let started = u64::try_from(field(22)?).ok()?;
    if !wanted(policy, started) {
        return None;
    }
    let (runnable, nice) = (stat_field(&stat, 3)? == "R", i32::try_from(field(19)?).ok()?);
    let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_owned();
    let schedstat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let mut times = schedstat.split_whitespace().map(str::parse::<u64>);
    let on_cpu = times.next()?.ok()?;
    let waiting = times.next()?.ok()?;
    Some(Sample { name, nice, runnable, started, on_cpu, waiting })
}

/// Field `n` (1-based, as in proc(5)) of a thread's `stat`: `pid (name) state ...`, where the
/// name may hold spaces and parentheses, so the fields are counted after the last `)` (the
/// state is field 3).
pub(crate) fn stat_field(stat: &str, n: usize) -> Option<&str> {
    stat.get(stat.rfind(')')? + 2..)?.split(' ').nth(n.checked_sub(3)?)
}

/// Sets `tid`'s policy (0: the calling thread's), keeping its nice value (10 for a thread
/// [`super::Priority::Idle`] set).
pub(crate) fn set_policy(tid: i32, policy: i32) -> std::io::Result<()> {
    let param = uapi::c::sched_param { sched_priority: 0 };
    uapi::sched_setscheduler(tid, policy, &param).map(drop).map_err(|e| std::io::Error::from_raw_os_error(e.0))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn watched() -> Watched {
        Watched { started: 0, at: Instant::now(), on_cpu: 0, waiting: 0, starved: 0, lifted: false }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// A second of a thread's life: runnable at its end or not, `on_cpu` and `waiting` ms.
    fn second(runnable: bool, on_cpu: u64, waiting: u64) -> Spent {
        Spent { elapsed: MS(1000), on_cpu: MS(on_cpu), waiting: MS(waiting), runnable }
    }

    #[test]
    fn only_seconds_of_starvation_in_a_row_lift_a_thread() {
        let t = Thresholds::default();
        let mut w = watched();
        for _ in 0..4 {
            assert_eq!(w.judge(&t, second(true, 2, 0)), Action::Keep);
        }
        // A second with a fair share of the CPU starts the count again.
        assert_eq!(w.judge(&t, second(true, 300, 600)), Action::Keep);
        for _ in 0..4 {
            assert_eq!(w.judge(&t, second(true, 2, 3000)), Action::Keep);
        }
        assert_eq!(w.judge(&t, second(true, 2, 0)), Action::Lift);
        assert!(w.lifted);
    }

    #[test]
    fn a_lifted_thread_stays_lifted_while_it_is_busy_and_goes_back_once_it_sleeps() {
        let t = Thresholds::default();
        let mut w = Watched { lifted: true, ..watched() };
        // Busy at its nice-10 share: it runs a tenth and waits the rest.
        assert_eq!(w.judge(&t, second(true, 100, 880)), Action::Keep);
        assert_eq!(w.judge(&t, second(false, 600, 0)), Action::Keep);
        // Caught up: it sleeps most of the tick.
        assert_eq!(w.judge(&t, second(false, 150, 40)), Action::PutBack);
        assert!(!w.lifted);
        assert_eq!(w.starved, 0);
    }

    #[test]
    fn a_thread_that_sleeps_is_never_lifted() {
        let t = Thresholds::default();
        let mut w = watched();
        for _ in 0..100 {
            assert_eq!(w.judge(&t, second(false, 0, 0)), Action::Keep);
        }
    }

    /// Spins until `stop`, or sleeps in short naps while `nap` is set.
    fn spin(stop: &AtomicBool, nap: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if nap.load(Ordering::Relaxed) {
                std::thread::sleep(MS(20));
            } else {
                std::hint::black_box((0..1000u64).sum::<u64>());
            }
        }
    }

    fn own_tid() -> i32 {
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        link.file_name().unwrap().to_str().unwrap().parse().unwrap()
    }

    /// Ticks `guard` until `tid`'s policy is `policy` (a bound, not a timing: fails after a
    /// minute).
    fn tick_until(guard: &mut Guard, tid: i32, policy: i32) -> bool {
        (0..600).any(|_| {
            std::thread::sleep(MS(100));
            guard.tick();
            sample(tid, |p, _| p == policy).is_some()
        })
    }

    /// Held by each test that ticks a [`Guard`]: a guard watches every thread of the process,
    /// so two at once would lift each other's test threads (and count the lift in the other's
    /// metrics).
    static GUARDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn one_guard_at_a_time() -> std::sync::MutexGuard<'static, ()> {
        GUARDS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A thread at [`crate::sched::Priority::Idle`] that [`spin`]s, and its id.
    fn idle_thread(stop: &Arc<AtomicBool>, nap: &Arc<AtomicBool>) -> (std::thread::JoinHandle<()>, i32) {
        let (tids, tid) = std::sync::mpsc::channel();
        let (stop, nap) = (stop.clone(), nap.clone());
        let thread = std::thread::spawn(move || {
            crate::sched::Priority::Idle.apply("a test thread");
            tids.send(own_tid()).unwrap();
            spin(&stop, &nap);
        });
        (thread, tid.recv().unwrap())
    }

    #[test]
    fn a_starved_idle_thread_is_lifted_at_nice_10_and_put_back_once_it_sleeps() {
        let _one = one_guard_at_a_time();
        let (stop, nap, hogs_stop) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (idle, tid) = idle_thread(&stop, &nap);
        assert_eq!(sample(tid, |p, _| p == SCHED_IDLE).map(|s| s.nice), Some(10));
        // Every core kept busy at normal priority: the idle thread gets next to nothing.
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let hogs: Vec<_> = (0..cores)
            .map(|_| {
                let stop = hogs_stop.clone();
                std::thread::spawn(move || spin(&stop, &AtomicBool::new(false)))
            })
            .collect();
        let metrics = SchedMetrics::default();
        let thresholds = Thresholds { tick: MS(100), starved_ticks: 3, ..Thresholds::default() };
        let mut guard = Guard::new(thresholds, metrics.clone());
        let lifted = tick_until(&mut guard, tid, SCHED_OTHER);
        hogs_stop.store(true, Ordering::Relaxed);
        hogs.into_iter().for_each(|h| h.join().unwrap());
        assert!(lifted, "the starved idle thread was never lifted (the test needs CAP_SYS_NICE, as root has)");
        assert_eq!(sample(tid, |p, _| p == SCHED_OTHER).map(|s| s.nice), Some(10));
        // Other tests' idle threads (not guard tests) may have been lifted too: at least this
        // one was.
        assert!(metrics.lifts.get() >= 1);
        assert_eq!(metrics.refused_lifts.get(), 0);
        // It has caught up: it sleeps, and goes back to SCHED_IDLE.
        nap.store(true, Ordering::Relaxed);
        let back = tick_until(&mut guard, tid, SCHED_IDLE);
        stop.store(true, Ordering::Relaxed);
        idle.join().unwrap();
        assert!(back, "the lifted thread was never put back at SCHED_IDLE");
    }

    #[test]
    fn an_idle_thread_that_gets_the_cpu_is_left_alone() {
        let _one = one_guard_at_a_time();
        let (stop, nap) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(true)));
        let (idle, tid) = idle_thread(&stop, &nap);
        let mut guard = Guard::new(
            Thresholds { tick: MS(100), starved_ticks: 3, ..Thresholds::default() },
            SchedMetrics::default(),
        );
        for _ in 0..10 {
            std::thread::sleep(MS(100));
            guard.tick();
        }
        let still_idle = sample(tid, |p, _| p == SCHED_IDLE).is_some();
        stop.store(true, Ordering::Relaxed);
        idle.join().unwrap();
        assert!(still_idle, "an idle thread that sleeps was lifted");
    }

    #[test]
    fn the_calling_threads_sample_names_it_and_counts_its_cpu() {
        let tid = own_tid();
        let before = sample(tid, |_, _| true).unwrap();
        let spin = Instant::now();
        while spin.elapsed() < MS(20) {
            std::hint::black_box(spin.elapsed());
        }
        let after = sample(tid, |p, _| p == SCHED_OTHER).unwrap();
        assert!(after.on_cpu > before.on_cpu);
        assert_eq!(after.name, std::thread::current().name().unwrap().chars().take(15).collect::<String>());
    }
}
