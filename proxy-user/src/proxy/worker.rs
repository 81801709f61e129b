//! L7 worker threads: one OS thread per `threads`, each running its own
//! current-thread tokio runtime, as HAProxy runs one thread per core with
//! its own accept queue.
//!
//! Every `bind` of a `mode http` frontend gets one SO_REUSEPORT listener
//! per worker (the kernel spreads new connections over them), and a client
//! connection lives on the worker that accepted it from then on: no work
//! stealing, no cross-thread wake-ups, and server connections are pooled
//! per worker ([`current`] picks the pool slot), so a pooled connection is
//! always driven by the event loop of the thread that uses it.
//!
//! The rest of the process (L4 relay, health checks, stats) stays on the
//! main multi-thread runtime.

use std::cell::Cell;
use std::future::Future;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the L7 worker running the calling thread (0 outside workers).
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// Number of L7 workers for a `threads` setting (`None`: one per CPU).
pub fn count(threads: Option<u32>) -> usize {
    threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |n| n.max(1) as usize,
    )
}

/// Running L7 worker threads; stopped (and joined) on drop.
#[derive(Debug)]
pub struct Workers {
    workers: Vec<Worker>,
}

#[derive(Debug)]
struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Workers {
    /// Starts `n` worker threads (at least one).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let mut workers = Vec::new();
        for index in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // Accept coalescing: maybe a short pause in the ring first.
                .on_thread_park(crate::uring::before_park)
                .build()?;
            let handle = rt.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("weir-l7-{index}"))
                .spawn(move || {
                    INDEX.with(|i| i.set(index));
                    // Runs the spawned tasks until told to stop (or until
                    // the Workers are dropped, which drops the sender).
                    let _ = rt.block_on(stopped);
                    // Dropping the runtime here cancels its tasks.
                })?;
            workers.push(Worker {
                handle,
                stop: Some(stop),
                thread: Some(thread),
            });
        }
        Ok(Workers { workers })
    }

    /// Number of workers.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Spawns `make(i)` on worker `i`, for every worker.
    pub fn spawn_each<F, Fut>(&self, mut make: F)
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        for (i, w) in self.workers.iter().enumerate() {
            w.handle.spawn(make(i));
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}
