//! `klagg` as a process (test threads): the command in a fresh temporary directory, waiting for
//! its exit with a bound, and short GETs of its API.

use std::ffi::OsStr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// `klagg`, run in a fresh temporary directory so its default `klagg.db` stays out of the
/// checkout and apart from the other tests.
pub fn klagg() -> Command {
    static RUN: AtomicUsize = AtomicUsize::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("klagg-cli-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_klagg"));
    command.current_dir(dir);
    command
}

/// `klagg` with `args` started, its output captured.
pub fn spawn<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Child {
    klagg()
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `klagg run --venue sim --sim-symbols <symbols> --shards 1` and `flags`, its output captured.
pub fn run_sim<S: AsRef<OsStr>>(symbols: usize, flags: impl IntoIterator<Item = S>) -> Child {
    let symbols = symbols.to_string();
    let run = [
        "run",
        "--venue",
        "sim",
        "--sim-symbols",
        &symbols,
        "--shards",
        "1",
    ];
    let args = run.iter().map(OsStr::new).map(OsStr::to_os_string);
    spawn(args.chain(flags.into_iter().map(|f| f.as_ref().to_os_string())))
}

/// Wait for `child` to exit (killed, and a panic, after `limit`): its output and how long it
/// took.
pub fn wait_output(mut child: Child, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("klagg did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), started.elapsed())
}

/// The body of `GET http://127.0.0.1:<port><path>` within 500 ms, or `None`.
pub fn get(port: u16, path: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(500)))
        .build()
        .into();
    let mut response = agent
        .get(format!("http://127.0.0.1:{port}{path}"))
        .call()
        .ok()?;
    response.body_mut().read_to_string().ok()
}
