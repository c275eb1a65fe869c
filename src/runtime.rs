//! Thread creation (main thread): the one place that spawns threads. A control thread gets a
//! name and, where `--control-core` asks for it, a core; pinning happens first, inside the new
//! thread, before the thread builds its state.

use std::io;
use std::thread::JoinHandle;

/// Spawn a named control thread, pinned to `core` when given.
///
/// # Errors
/// The operating system refused to create the thread.
pub fn spawn_control<F, T>(name: &str, core: Option<usize>, body: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            if let Some(core) = core {
                // A failed pin leaves the thread unpinned; control threads are not latency
                // critical, so this is reported in status (control_core) and not fatal.
                let _ = core_affinity::set_for_current(core_affinity::CoreId { id: core });
            }
            body()
        })
}

/// Number of cores this process may use (1 when unknown).
pub fn available_cores() -> usize {
    core_ids().len().max(1)
}

/// The ids of the cores this process may use (its affinity mask, e.g. `[1]` under
/// `taskset -c 1`), ascending; empty when unknown.
pub fn core_ids() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|core| core.id)
        .collect();
    ids.sort_unstable();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawns_named_threads() {
        let handle = spawn_control("test-thread", None, || {
            std::thread::current().name().map(str::to_string)
        })
        .unwrap();
        assert_eq!(handle.join().unwrap().as_deref(), Some("test-thread"));
        assert!(available_cores() >= 1);
        assert_eq!(core_ids().len().max(1), available_cores());
    }
}
