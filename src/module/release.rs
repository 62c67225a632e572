//! Big buffers dropped on a thread of the module's own, not inside a command
//! or a housekeeping step: freeing a block of 8 MiB or more makes jemalloc
//! return its pages to the kernel there and then (a 10 MiB txid index: a
//! 0.6 ms `madvise`). Freeing goes through Redis's allocator, which any
//! thread may call (Redis's own lazy-free threads do).

use crate::module::server::{log, Level};
use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;

type Garbage = Box<dyn Send>;

static QUEUE: OnceLock<Sender<Garbage>> = OnceLock::new();

/// Starts the thread and points the core's big buffers at it. Without the
/// thread (it could not start) everything is dropped where it goes, as
/// before.
pub fn start() {
    let (queue, garbage) = channel::<Garbage>();
    let started = std::thread::Builder::new()
        .name("inventory-free".into())
        .spawn(move || {
            lowest_priority();
            for value in garbage {
                drop(value);
            }
        });
    match started {
        Ok(_) => {
            let _ = QUEUE.set(queue);
            inventory_core::ledger::release_big_buffers_with(later);
        }
        Err(e) => log(
            Level::Warning,
            &format!("no thread to free big buffers on ({e}): they are freed in place"),
        ),
    }
}

/// Drops `value` on the module's freeing thread (in place without one).
pub fn later<T: Send + 'static>(value: T) {
    match QUEUE.get() {
        // A send fails only when the thread is gone; the value comes back
        // and is dropped here.
        Some(queue) => drop(queue.send(Box::new(value))),
        None => drop(value),
    }
}

/// Gives the calling thread the lowest priority (nice 19). Woken by a
/// command that hands it a buffer, a thread at normal priority can preempt
/// the server's main thread on the same core and put the `madvise` back
/// inside the command (measured: 0.7 ms). The idle scheduling class
/// avoided that too, but on a host with every core busy it left megabytes
/// unfreed for seconds; nice 19 keeps a small share (docs/benchmarks.md).
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a system call on the calling thread (who 0: on Linux a
        // thread's own nice value); failing leaves it at normal priority.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
    }
}
