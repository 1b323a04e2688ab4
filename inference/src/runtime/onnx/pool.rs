//! A small pool of sessions of one model.
//!
//! `ort`'s `Session::run` takes `&mut self` (some ONNX Runtime internals are not thread-safe), so
//! one session behind one mutex would make concurrent callers wait for each other. The pool hands
//! each caller a session of its own: an idle one if there is one, else a new one (up to `max`),
//! else it waits for one to come back. Sessions are only created when callers overlap, so a model
//! scored from one thread keeps one session. A session returns to the pool even when its run
//! failed (ONNX Runtime sessions stay usable after a failed run); one whose caller panicked is
//! dropped, and its place freed.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Idle sessions and how many exist.
struct State<S> {
    idle: Vec<S>,
    created: usize,
}

/// Sessions (`S`) of one model, at most `max` of them.
pub(crate) struct Pool<S> {
    state: Mutex<State<S>>,
    returned: Condvar,
    max: usize,
}

impl<S> Pool<S> {
    /// A pool holding `first`, growing to at most `max` sessions (at least one).
    pub(crate) fn new(first: S, max: usize) -> Self {
        Self { state: Mutex::new(State { idle: vec![first], created: 1 }), returned: Condvar::new(), max: max.max(1) }
    }

    /// Runs `f` on a session of the pool, creating one with `create` if none is idle and the pool
    /// is below its size.
    pub(crate) fn with<T, E>(
        &self,
        create: impl FnOnce() -> Result<S, E>,
        f: impl FnOnce(&mut S) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut session = self.take(create)?;
        // Should `f` panic, the session is dropped rather than reused, and its place freed.
        let place = Place { pool: self, held: true };
        let result = f(&mut session);
        place.give_back(session);
        result
    }

    /// How many sessions exist, idle or in use.
    pub(crate) fn created(&self) -> usize {
        self.lock().created
    }

    fn take<E>(&self, create: impl FnOnce() -> Result<S, E>) -> Result<S, E> {
        let mut state = self.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(session);
            }
            if state.created < self.max {
                state.created += 1;
                drop(state);
                return create().inspect_err(|_| self.free_place());
            }
            state = self.returned.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A session was lost (not created, or dropped): another may be created in its place.
    fn free_place(&self) {
        self.lock().created -= 1;
        self.returned.notify_one();
    }

    /// The state is a list and a count, consistent between statements: a panic elsewhere while
    /// the lock was held leaves nothing half-done, so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The place in the pool of a session in use: it frees the place if dropped while held (a panic
/// in the caller's closure), and returns the session to the idle list otherwise.
struct Place<'p, S> {
    pool: &'p Pool<S>,
    held: bool,
}

impl<S> Place<'_, S> {
    fn give_back(mut self, session: S) {
        self.held = false;
        self.pool.lock().idle.push(session);
        self.pool.returned.notify_one();
    }
}

impl<S> Drop for Place<'_, S> {
    fn drop(&mut self) {
        if self.held {
            self.pool.free_place();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn one_caller_at_a_time_reuses_one_session() {
        let pool = Pool::new(0_u32, 4);
        for _ in 0..10 {
            let out: Result<u32, ()> = pool.with(|| panic!("nothing to create"), |s| Ok(*s));
            assert_eq!(out, Ok(0));
        }
        assert_eq!(pool.created(), 1);
    }

    #[test]
    fn overlapping_callers_get_sessions_of_their_own_up_to_the_cap() {
        let (threads, max) = (6, 3);
        let pool = Pool::new(0_usize, max);
        let next = AtomicUsize::new(1);
        let inside = AtomicUsize::new(0);
        let most_inside = AtomicUsize::new(0);
        let barrier = Barrier::new(threads);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    barrier.wait();
                    for _ in 0..50 {
                        let create = || Ok::<_, ()>(next.fetch_add(1, Ordering::SeqCst));
                        pool.with(create, |_session| {
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most_inside.fetch_max(now, Ordering::SeqCst);
                            std::thread::yield_now();
                            inside.fetch_sub(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .expect("runs");
                    }
                });
            }
        });
        assert!(pool.created() <= max, "{} sessions", pool.created());
        assert_eq!(pool.created(), next.load(Ordering::SeqCst));
        assert!(most_inside.load(Ordering::SeqCst) <= max);
    }

    #[test]
    fn a_failed_creation_frees_its_place_and_a_failed_run_returns_the_session() {
        let pool = Pool::new(7_u32, 2);
        let held = pool.take(|| Err::<u32, &str>("unused")).expect("the idle one");
        assert_eq!(pool.with(|| Err("cannot create"), |s| Ok(*s)), Err("cannot create"));
        assert_eq!(pool.created(), 1);
        assert_eq!(pool.with(|| Ok(8), |_| Err::<u32, _>("run failed")), Err("run failed"));
        assert_eq!(pool.created(), 2);
        assert_eq!(pool.lock().idle, [8]);
        Place { pool: &pool, held: true }.give_back(held);
        assert_eq!(pool.lock().idle, [8, 7]);
    }

    #[test]
    fn a_panic_while_running_frees_the_place() {
        let pool = Pool::new(1_u32, 1);
        let panicked = std::panic::catch_unwind(|| pool.with(|| Err(()), |_| -> Result<(), ()> { panic!("in f") }));
        assert!(panicked.is_err());
        assert_eq!(pool.created(), 0);
        assert_eq!(pool.with(|| Ok(2), |s| Ok::<_, ()>(*s)), Ok(2));
    }
}
