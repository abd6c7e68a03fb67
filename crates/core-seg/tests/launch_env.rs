//! Launch detection from the environment (`core_seg::dist::Launch::from_vars`): torchrun's variables, Slurm's,
//! both, neither, and malformed values (each an error naming the variable); Slurm node lists.

use std::collections::HashMap;
use std::time::Duration;

use core_seg::dist::launch::{first_host, DEFAULT_PORT, DEFAULT_TIMEOUT_S};
use core_seg::dist::{DistError, Launch, LaunchSource, Meeting};

fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>, DistError> {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Launch::from_vars(|k| map.get(k).cloned())
}

/// The error's variable and message; panics (failing the test) if `vars` parse.
fn env_error(vars: &[(&str, &str)]) -> (String, String) {
    match launch(vars) {
        Err(DistError::Env { var, msg }) => (var, msg),
        other => panic!("expected an environment error for {vars:?}, got {other:?}"),
    }
}

const TORCHRUN: [(&str, &str); 5] =
    [("RANK", "5"), ("WORLD_SIZE", "8"), ("LOCAL_RANK", "1"), ("MASTER_ADDR", "node01"), ("MASTER_PORT", "29400")];
const SLURM: [(&str, &str); 4] =
    [("SLURM_PROCID", "6"), ("SLURM_NTASKS", "8"), ("SLURM_LOCALID", "2"), ("SLURM_NODELIST", "node[01-04,07],gpu3")];

#[test]
fn neither_is_no_launch() {
    assert_eq!(launch(&[]).unwrap(), None);
    assert_eq!(launch(&[("MASTER_ADDR", "node01"), ("CUDA_VISIBLE_DEVICES", "0")]).unwrap(), None);
    // Empty values count as unset.
    assert_eq!(launch(&[("RANK", ""), ("WORLD_SIZE", " ")]).unwrap(), None);
}

#[test]
fn torchrun_variables() {
    let l = launch(&TORCHRUN).unwrap().unwrap();
    assert_eq!((l.rank, l.world_size, l.local_rank, l.device_ordinal), (5, 8, 1, 1));
    assert_eq!(l.source, LaunchSource::Torchrun);
    assert_eq!(l.meeting, Meeting::Tcp { host: "node01".into(), port: 29400 });
    assert_eq!(l.timeout, Duration::from_secs_f64(DEFAULT_TIMEOUT_S));
}

#[test]
fn torchrun_agent_store_moves_the_rendezvous_to_the_next_port() {
    let mut vars = TORCHRUN.to_vec();
    vars.push(("TORCHELASTIC_USE_AGENT_STORE", "True"));
    assert_eq!(launch(&vars).unwrap().unwrap().meeting, Meeting::Tcp { host: "node01".into(), port: 29401 });
    vars.pop();
    vars.push(("TORCHELASTIC_USE_AGENT_STORE", "False"));
    assert_eq!(launch(&vars).unwrap().unwrap().meeting, Meeting::Tcp { host: "node01".into(), port: 29400 });
}

#[test]
fn defaults_port_local_rank_and_world_size_one() {
    let l = launch(&[("RANK", "3"), ("WORLD_SIZE", "4"), ("MASTER_ADDR", "127.0.0.1")]).unwrap().unwrap();
    assert_eq!(l.local_rank, 3, "LOCAL_RANK defaults to RANK");
    assert_eq!(l.meeting, Meeting::Tcp { host: "127.0.0.1".into(), port: DEFAULT_PORT });
    let one = launch(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap().unwrap();
    assert_eq!((one.world_size, one.meeting.clone()), (1, Meeting::Alone), "world size 1 needs no MASTER_ADDR");
}

#[test]
fn slurm_variables_and_the_first_node_as_master() {
    let l = launch(&SLURM).unwrap().unwrap();
    assert_eq!((l.rank, l.world_size, l.local_rank, l.device_ordinal), (6, 8, 2, 2));
    assert_eq!(l.source, LaunchSource::Slurm);
    assert_eq!(l.meeting, Meeting::Tcp { host: "node01".into(), port: DEFAULT_PORT });
    // The step's node list wins over the job's; MASTER_ADDR / MASTER_PORT over both.
    let mut vars = SLURM.to_vec();
    vars.push(("SLURM_STEP_NODELIST", "gpu[5-6]"));
    assert_eq!(launch(&vars).unwrap().unwrap().meeting, Meeting::Tcp { host: "gpu5".into(), port: DEFAULT_PORT });
    vars.extend([("MASTER_ADDR", "login2"), ("MASTER_PORT", "1234")]);
    assert_eq!(launch(&vars).unwrap().unwrap().meeting, Meeting::Tcp { host: "login2".into(), port: 1234 });
}

#[test]
fn a_single_slurm_task_is_no_launch() {
    assert_eq!(launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "1"), ("SLURM_LOCALID", "0")]).unwrap(), None);
    // A batch script without --ntasks has SLURM_PROCID but no SLURM_NTASKS.
    assert_eq!(launch(&[("SLURM_PROCID", "0"), ("SLURM_NODELIST", "node1")]).unwrap(), None);
}

#[test]
fn torchrun_wins_over_slurm() {
    let mut vars = SLURM.to_vec();
    vars.extend(TORCHRUN);
    let l = launch(&vars).unwrap().unwrap();
    assert_eq!((l.source, l.rank, l.world_size, l.local_rank), (LaunchSource::Torchrun, 5, 8, 1));
    assert_eq!(l.meeting, Meeting::Tcp { host: "node01".into(), port: 29400 });
}

#[test]
fn shared_file_and_timeout_settings() {
    let mut vars = SLURM.to_vec();
    vars.extend([("SEMISEG_NCCL_ID", "/shared/job42.id"), ("SEMISEG_RDZV_TIMEOUT", "2.5")]);
    let l = launch(&vars).unwrap().unwrap();
    assert_eq!(l.meeting, Meeting::File("/shared/job42.id".into()));
    assert_eq!(l.timeout, Duration::from_millis(2500));
}

#[test]
fn one_visible_device_is_cuda_0() {
    let mut vars = TORCHRUN.to_vec();
    vars.push(("CUDA_VISIBLE_DEVICES", "3"));
    let l = launch(&vars).unwrap().unwrap();
    assert_eq!((l.local_rank, l.device_ordinal), (1, 0));
    vars.pop();
    vars.push(("CUDA_VISIBLE_DEVICES", "0,1,2,3"));
    assert_eq!(launch(&vars).unwrap().unwrap().device_ordinal, 1);
}

/// A launcher's environment: `(variable, value)` pairs.
type Env = [(&'static str, &'static str)];

#[test]
fn bad_values_name_their_variable() {
    let with = |base: &Env, k: &'static str, v: &'static str| {
        let mut vars: Vec<(&str, &str)> = base.iter().filter(|(n, _)| *n != k).copied().collect();
        vars.push((k, v));
        env_error(&vars)
    };
    let cases: [(&Env, &str, &str, &str); 13] = [
        (&TORCHRUN, "RANK", "abc", "\"abc\""),
        (&TORCHRUN, "RANK", "-1", "\"-1\""),
        (&TORCHRUN, "RANK", "8", "not below WORLD_SIZE=8"),
        (&TORCHRUN, "WORLD_SIZE", "0", "at least 1"),
        (&TORCHRUN, "LOCAL_RANK", "x1", "\"x1\""),
        (&TORCHRUN, "MASTER_PORT", "70000", "\"70000\""),
        (&TORCHRUN, "MASTER_PORT", "0", "\"0\""),
        (&TORCHRUN, "SEMISEG_RDZV_TIMEOUT", "-3", "\"-3\""),
        (&TORCHRUN, "SEMISEG_RDZV_TIMEOUT", "soon", "\"soon\""),
        (&SLURM, "SLURM_NTASKS", "many", "\"many\""),
        (&SLURM, "SLURM_PROCID", "9", "not below SLURM_NTASKS=8"),
        (&SLURM, "SLURM_LOCALID", "?", "\"?\""),
        (&SLURM, "SLURM_NODELIST", "node[01-", "'[' without ']'"),
    ];
    for (base, var, value, needle) in cases {
        let (got_var, msg) = with(base, var, value);
        assert_eq!(got_var, var, "{var}={value}: {msg}");
        assert!(msg.contains(needle), "{var}={value}: message {msg:?} lacks {needle:?}");
    }
    let (var, msg) = env_error(&[("RANK", "1")]);
    assert_eq!(var, "WORLD_SIZE", "{msg}");
    let (var, _) = env_error(&[("WORLD_SIZE", "2")]);
    assert_eq!(var, "RANK");
    let (var, msg) = env_error(&[("RANK", "1"), ("WORLD_SIZE", "2")]);
    assert_eq!(var, "MASTER_ADDR", "{msg}");
    assert!(msg.contains("SEMISEG_NCCL_ID"), "{msg}");
    let (var, _) = env_error(&[("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2")]);
    assert_eq!(var, "SLURM_LOCALID");
    let (var, _) = env_error(&[("SLURM_PROCID", "1"), ("SLURM_NTASKS", "2"), ("SLURM_LOCALID", "1")]);
    assert_eq!(var, "SLURM_NODELIST");
    let mut step = SLURM.to_vec();
    step.push(("SLURM_STEP_NODELIST", "gpu[a-b]"));
    assert_eq!(env_error(&step).0, "SLURM_STEP_NODELIST");
    let full_port = [("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h"), ("MASTER_PORT", "65535")];
    let mut agent = full_port.to_vec();
    agent.push(("TORCHELASTIC_USE_AGENT_STORE", "True"));
    assert_eq!(env_error(&agent).0, "MASTER_PORT");
}

#[test]
fn slurm_node_lists() {
    let ok = [
        ("node[01-04,07],gpu3", "node01"),
        ("gpu3", "gpu3"),
        ("gpu3,node[1-2]", "gpu3"),
        ("node[07,01-04]", "node07"),
        ("node[007-010]", "node007"),
        ("rack[1-2]-node[03-04]", "rack1-node03"),
        ("node[5]", "node5"),
        (" localhost ", "localhost"),
    ];
    for (list, host) in ok {
        assert_eq!(first_host(list).as_deref(), Ok(host), "{list}");
    }
    for bad in ["", ",node1", "node[01-04", "node]1", "node[[1]]", "node[]", "node[a-b]", "node[1-]", "node[-2]"] {
        assert!(first_host(bad).is_err(), "{bad:?} should be refused, got {:?}", first_host(bad));
    }
}

#[test]
fn rank_0_listens_on_loopback_only_for_loopback_addresses() {
    let at = |h: &str| Launch::listen_addr(h, 4321).unwrap().to_string();
    assert_eq!(at("127.0.0.1"), "127.0.0.1:4321");
    assert_eq!(at("::1"), "[::1]:4321");
    assert_eq!(at("[::1]"), "[::1]:4321");
    assert!(Launch::listen_addr("localhost", 4321).unwrap().ip().is_loopback());
    assert_eq!(at("10.1.2.3"), "0.0.0.0:4321", "another machine's view of rank 0: every interface");
    assert_eq!(at("fd00::7"), "[::]:4321");
}
