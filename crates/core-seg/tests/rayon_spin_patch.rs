//! Guard for the patched rayon-core idle loop (`third_party/rayon-core/PATCHES.md`): an idle worker keeps yielding
//! for `RAYON_SPIN_ROUNDS` rounds before it sleeps. Upstream rayon-core sleeps after 32 rounds (tens of
//! microseconds), so this test fails if `[patch.crates-io]` is lost. Its own test binary: the spin setting is read
//! once per process.

/// Scheduler state letter (`R` running or runnable, `S` sleeping, ...) of this process's thread named `name`.
#[cfg(target_os = "linux")]
fn thread_state(name: &str) -> Option<char> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // `pid (comm) S ...`: the state follows the parenthesised name.
            return stat.rsplit_once(')')?.1.trim_start().chars().next();
        }
    }
    None
}

#[cfg(target_os = "linux")]
#[test]
fn an_idle_worker_keeps_yielding_instead_of_sleeping() {
    // About a second of yielding: far longer than the pause below, far shorter than the test's patience.
    std::env::set_var("RAYON_SPIN_ROUNDS", "1000000");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .thread_name(|i| format!("spin-probe-{i}"))
        .build()
        .expect("a two-thread pool");
    let (a, b) = pool.install(|| rayon::join(|| 1 + 1, || 2 + 2));
    assert_eq!((a, b), (2, 4));
    // Both workers are now out of work. Upstream, each sleeps on a condition variable within ~32 yields.
    std::thread::sleep(std::time::Duration::from_millis(30));
    let states: Vec<Option<char>> = (0..2).map(|i| thread_state(&format!("spin-probe-{i}"))).collect();
    assert!(states.iter().all(Option::is_some), "both pool threads are listed under /proc/self/task: {states:?}");
    assert!(
        states.iter().all(|s| *s == Some('R')),
        "idle workers should still be yielding (state R), not asleep: {states:?}"
    );
}
