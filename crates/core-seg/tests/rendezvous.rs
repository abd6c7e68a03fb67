//! The rendezvous of a data-parallel launch on loopback (127.0.0.1, ports picked free): ranks as threads and as
//! separate processes (this test binary re-invoked with a launch environment) exchange a 128-byte id and agree;
//! a missing peer or rank 0 fails within the configured timeout with an error naming the address; a mismatched
//! launch (world size, duplicate rank, protocol, version) fails with an error naming the peer.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use core_seg::dist::rendezvous::{join, publish_file, read_file, serve, Group};
use core_seg::dist::{DistError, Launch, MAGIC, PROTOCOL_VERSION};
use core_seg::rng::SegRng;

const LONG: Duration = Duration::from_secs(30);

fn id(seed: u64) -> Vec<u8> {
    let mut rng = SegRng::new(seed);
    (0..128).map(|_| rng.below(256) as u8).collect()
}

fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// A port nobody listens on (bound, then released).
fn free_port() -> u16 {
    listener().0.local_addr().unwrap().port()
}

fn join_thread(
    addr: &str,
    rank: usize,
    world: usize,
    t: Duration,
) -> thread::JoinHandle<Result<(Group, Vec<u8>), DistError>> {
    let addr = addr.to_string();
    thread::spawn(move || join(&addr, rank, world, t))
}

#[test]
fn threads_exchange_the_id_and_agree() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // The peers start first: they retry until rank 0 listens.
    let peers: Vec<_> = (1..4).rev().map(|r| join_thread(&addr, r, 4, LONG)).collect();
    thread::sleep(Duration::from_millis(300));
    let blob = id(7);
    let server = {
        let blob = blob.clone();
        let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
        thread::spawn(move || serve(l, 4, &blob, LONG))
    };
    let mut groups = vec![server.join().unwrap().unwrap()];
    for p in peers {
        let (g, got) = p.join().unwrap().unwrap();
        assert_eq!(got, blob);
        groups.push(g);
    }
    let mut ranks: Vec<usize> = groups.iter().map(|g| g.rank()).collect();
    ranks.sort();
    assert_eq!(ranks, [0, 1, 2, 3]);
    assert!(groups.iter().all(|g| g.world_size() == 4));

    // Same value everywhere: every rank gets Ok. One rank differs: every rank gets the same error naming it.
    let agree_all = |groups: Vec<Group>, value_of: fn(usize) -> String| {
        let hs: Vec<_> = groups
            .into_iter()
            .map(|mut g| {
                thread::spawn(move || {
                    let r = g.agree("the start of run runs/x", &value_of(g.rank())).map_err(|e| e.to_string());
                    (g, r)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
    };
    let out = agree_all(groups, |_| "iteration 400".into());
    assert!(out.iter().all(|(_, r)| r.is_ok()), "{:?}", out.iter().map(|(_, r)| r).collect::<Vec<_>>());
    let groups: Vec<Group> = out.into_iter().map(|(g, _)| g).collect();
    let out = agree_all(groups, |r| if r == 2 { "a fresh start".into() } else { "iteration 400".into() });
    for (g, r) in &out {
        let msg = r.as_ref().expect_err("disagreement must fail every rank");
        assert!(msg.contains("rank 0, 1, 3: iteration 400"), "rank {}: {msg}", g.rank());
        assert!(msg.contains("rank 2: a fresh start"), "rank {}: {msg}", g.rank());
    }
}

#[test]
fn a_peer_that_leaves_fails_the_agreement() {
    let (l, addr) = listener();
    let peer = join_thread(&addr, 1, 2, LONG);
    let mut g0 = serve(l, 2, &id(1), LONG).unwrap();
    let (g1, _) = peer.join().unwrap().unwrap();
    drop(g1);
    let err = g0.agree("step", "a").unwrap_err().to_string();
    assert!(err.contains("rank 1 (") && err.contains("closed the connection"), "{err}");
}

#[test]
fn a_missing_peer_fails_rank_0_and_the_others_within_the_timeout() {
    let (l, addr) = listener();
    let peer = join_thread(&addr, 1, 3, LONG);
    let t0 = Instant::now();
    let err = serve(l, 3, &id(2), Duration::from_secs(2)).map(|_| ()).unwrap_err();
    let elapsed = t0.elapsed();
    assert!(matches!(err, DistError::Timeout { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&addr) && msg.contains("rank 2 never came"), "{msg}");
    assert!(elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(4), "{elapsed:?}");
    // The peer that came is told why, at once (its own timeout is 30 s).
    let peer_err = peer.join().unwrap().map(|_| ()).unwrap_err().to_string();
    assert!(peer_err.contains(&addr) && peer_err.contains("rank 2 never came"), "{peer_err}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn no_rank_0_fails_within_the_timeout_naming_the_address() {
    let addr = format!("127.0.0.1:{}", free_port());
    let t0 = Instant::now();
    let err = join(&addr, 1, 2, Duration::from_secs(2)).map(|_| ()).unwrap_err();
    let elapsed = t0.elapsed();
    assert!(matches!(err, DistError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("no rank 0 answered at {addr}")), "{err}");
    assert!(elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(4), "{elapsed:?}");
}

/// Rank 0's error and one peer's, for a launch where the peers are `peers` (rank, world size).
fn mismatch(world: usize, peers: &[(usize, usize)]) -> (String, Vec<String>) {
    let (l, addr) = listener();
    let hs: Vec<_> = peers
        .iter()
        .enumerate()
        .map(|(i, &(r, w))| {
            thread::sleep(Duration::from_millis(if i == 0 { 0 } else { 200 }));
            join_thread(&addr, r, w, LONG)
        })
        .collect();
    let server = thread::spawn(move || serve(l, world, &id(3), LONG).map(|_| ()).unwrap_err().to_string());
    let peer_errs = hs.into_iter().map(|h| h.join().unwrap().map(|_| ()).unwrap_err().to_string()).collect();
    (server.join().unwrap(), peer_errs)
}

#[test]
fn another_world_size_is_refused_naming_the_peer() {
    let (err, peers) = mismatch(3, &[(1, 2)]);
    assert!(err.contains("rank 1 (") && err.contains("127.0.0.1:"), "{err}");
    assert!(err.contains("world size 2, rank 0 with 3"), "{err}");
    assert!(peers[0].contains("world size 2, rank 0 with 3"), "{}", peers[0]);
}

#[test]
fn a_duplicate_rank_is_refused() {
    let (err, peers) = mismatch(3, &[(1, 3), (1, 3)]);
    assert!(err.contains("rank 1 joined twice"), "{err}");
    assert_eq!(err.matches("127.0.0.1:").count(), 3, "rank 0's address and both peers': {err}");
    assert!(peers.iter().all(|p| p.contains("rank 1 joined twice")), "{peers:?}");
    let (err, _) = mismatch(2, &[(5, 2)]);
    assert!(err.contains("claims rank 5"), "{err}");
}

/// Rank 0's error when a raw client sends `bytes`.
fn raw_client(bytes: Vec<u8>) -> (String, String, Vec<u8>) {
    let (l, addr) = listener();
    let server = thread::spawn(move || serve(l, 2, &id(4), LONG).map(|_| ()).unwrap_err().to_string());
    let mut s = TcpStream::connect(&addr).unwrap();
    let me = s.local_addr().unwrap().to_string();
    s.write_all(&bytes).unwrap();
    let err = server.join().unwrap();
    let mut reply = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.read_to_end(&mut reply);
    (err, me, reply)
}

#[test]
fn a_foreign_protocol_or_version_is_refused_naming_the_peer() {
    let (err, me, reply) = raw_client(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
    assert!(err.contains(&format!("the peer at {me} does not speak the semiseg rendezvous protocol")), "{err}");
    assert!(reply.is_empty(), "no answer to a foreign protocol");

    let mut frame = MAGIC.to_vec();
    frame.extend_from_slice(&(PROTOCOL_VERSION + 1).to_be_bytes());
    frame.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0]);
    let (err, me, reply) = raw_client(frame);
    let want = format!("the peer at {me} speaks rendezvous protocol version {}", PROTOCOL_VERSION + 1);
    assert!(err.contains(&want), "{err}");
    assert!(reply.starts_with(&MAGIC), "a peer of another version is told why");
}

#[test]
fn a_foreign_server_is_refused_naming_its_address() {
    let (l, addr) = listener();
    let fake = thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap();
        thread::sleep(Duration::from_millis(500));
    });
    let err = join(&addr, 1, 2, LONG).map(|_| ()).unwrap_err().to_string();
    fake.join().unwrap();
    assert!(err.contains(&format!("rank 0 at {addr} does not speak the semiseg rendezvous protocol")), "{err}");
}

#[test]
fn shared_file_rendezvous() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.id");
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let p = path.clone();
            thread::spawn(move || read_file(&p, 3, LONG))
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    publish_file(&path, 3, &id(5)).unwrap();
    for r in readers {
        assert_eq!(r.join().unwrap().unwrap(), id(5));
    }
    let stale = publish_file(&path, 3, &id(6)).unwrap_err().to_string();
    assert!(stale.contains("job.id") && stale.contains("exists already"), "{stale}");
    let wrong = read_file(&path, 4, LONG).unwrap_err().to_string();
    assert!(wrong.contains("world size 3, this rank has 4"), "{wrong}");
    let missing = dir.path().join("never.id");
    let t0 = Instant::now();
    let err = read_file(&missing, 2, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, DistError::Timeout { .. }) && err.to_string().contains("never.id"), "{err}");
    assert!(t0.elapsed() >= Duration::from_secs(1) && t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[test]
fn checkpoint_fingerprints_tell_files_apart() {
    let dir = tempfile::tempdir().unwrap();
    let print = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let f = core_seg::dist::checkpoint_fingerprint(&p).unwrap();
        assert!(f.starts_with(&p.display().to_string()), "{f}");
        f.strip_prefix(&p.display().to_string()).unwrap().to_string()
    };
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut late_change = big.clone();
    late_change[2_999_999] ^= 1;
    assert_eq!(print("a", &big), print("b", &big));
    assert_eq!(print("a", &big), format!(" (3000000 bytes, crc32c {:08x})", crc32c::crc32c(&big)));
    assert_ne!(print("a", &big), print("c", &late_change), "a change past the first buffer counts");
    let err = core_seg::dist::checkpoint_fingerprint(&dir.path().join("absent.safetensors")).unwrap_err();
    assert!(err.to_string().contains("absent.safetensors"), "{err}");
}

// ---- separate processes: this binary, re-invoked with a launch environment --------------------------------

const CHILD: &str = "SEMISEG_TEST_RENDEZVOUS_CHILD";
const BLOB: &str = "SEMISEG_TEST_RENDEZVOUS_BLOB";
const LAUNCH_VARS: [&str; 12] = [
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_USE_AGENT_STORE",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
    "SLURM_NODELIST",
    "SLURM_STEP_NODELIST",
    "SEMISEG_NCCL_ID",
];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The child side: joins the launch its environment describes, agrees, prints what it got.
fn child() -> Result<(), core_seg::Error> {
    let l = Launch::from_env()?.expect("a launch environment");
    let (blob, group) = l.rendezvous(|| Ok(unhex(&std::env::var(BLOB).expect("rank 0 gets the blob"))))?;
    let mut group = group.expect("a TCP group");
    group.agree("the end of the test", "done")?;
    println!(
        "CHILD rank={} world={} local={} device={} blob={}",
        l.rank,
        l.world_size,
        l.local_rank,
        l.device_ordinal,
        hex(&blob)
    );
    Ok(())
}

/// Starts this test in a child process with `vars`.
fn spawn(test: &str, vars: &[(&str, String)]) -> std::process::Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]).env(CHILD, "1");
    for v in LAUNCH_VARS.iter().chain(&["CUDA_VISIBLE_DEVICES", "SEMISEG_RDZV_TIMEOUT"]) {
        cmd.env_remove(v);
    }
    cmd.envs(vars.iter().map(|(k, v)| (*k, v.as_str()))).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs `test` as `n` child processes with the launch variables `vars(rank)` (rank 0 last, after the others, so
/// that they retry) and checks that every rank reports its rank, local rank, device and rank 0's blob.
fn run_launch(test: &str, n: usize, seed: u64, vars: impl Fn(usize) -> Vec<(&'static str, String)>) {
    let blob = id(seed);
    let mut children: Vec<(usize, std::process::Child)> = Vec::new();
    for rank in (0..n).rev() {
        let mut v = vars(rank);
        v.push(("SEMISEG_RDZV_TIMEOUT", "60".into()));
        if rank == 0 {
            v.push((BLOB, hex(&blob)));
        }
        children.push((rank, spawn(test, &v)));
        thread::sleep(Duration::from_millis(100));
    }
    children.sort_by_key(|(rank, _)| *rank);
    for (rank, c) in children {
        let o = c.wait_with_output().unwrap();
        let t = text(&o);
        assert!(o.status.success(), "{test} rank {rank} failed:\n{t}");
        let line = t.lines().find(|l| l.contains("CHILD rank=")).unwrap_or_else(|| panic!("no report:\n{t}"));
        let want = format!("rank={rank} world={n} local={rank} device={rank} blob={}", hex(&blob));
        assert!(line.ends_with(&want), "{test} rank {rank}: {line}");
    }
}

#[test]
fn torchrun_processes_exchange_the_id() -> Result<(), String> {
    if std::env::var_os(CHILD).is_some() {
        return child().map_err(|e| e.to_string());
    }
    let port = free_port().to_string();
    run_launch("torchrun_processes_exchange_the_id", 3, 11, |r| {
        vec![
            ("RANK", r.to_string()),
            ("WORLD_SIZE", "3".into()),
            ("LOCAL_RANK", r.to_string()),
            ("MASTER_ADDR", "127.0.0.1".into()),
            ("MASTER_PORT", port.clone()),
        ]
    });
    Ok(())
}

#[test]
fn slurm_processes_exchange_the_id() -> Result<(), String> {
    if std::env::var_os(CHILD).is_some() {
        return child().map_err(|e| e.to_string());
    }
    let port = free_port().to_string();
    run_launch("slurm_processes_exchange_the_id", 2, 12, |r| {
        vec![
            ("SLURM_PROCID", r.to_string()),
            ("SLURM_NTASKS", "2".into()),
            ("SLURM_LOCALID", r.to_string()),
            ("SLURM_NODELIST", "localhost,node[02-03]".into()),
            ("MASTER_PORT", port.clone()),
        ]
    });
    Ok(())
}

#[test]
fn a_missing_process_fails_within_the_configured_timeout() -> Result<(), String> {
    if std::env::var_os(CHILD).is_some() {
        return child().map_err(|e| e.to_string());
    }
    let port = free_port();
    let vars = vec![
        ("RANK", "0".to_string()),
        ("WORLD_SIZE", "2".into()),
        ("MASTER_ADDR", "127.0.0.1".into()),
        ("MASTER_PORT", port.to_string()),
        ("SEMISEG_RDZV_TIMEOUT", "2".into()),
        (BLOB, hex(&id(13))),
    ];
    let t0 = Instant::now();
    let out = spawn("a_missing_process_fails_within_the_configured_timeout", &vars).wait_with_output().unwrap();
    let elapsed = t0.elapsed();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains(&format!("127.0.0.1:{port}")) && t.contains("rank 1 never came"), "{t}");
    assert!(elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(6), "{elapsed:?}");
    Ok(())
}
