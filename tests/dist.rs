//! Data-parallel training on c10d's Gloo backend, on this machine's loopback: collectives between
//! two ranks, a lost rank failing the other with an error instead of a hang, and two processes
//! training exactly like one process with the double batch. Skipped (with a message) when this
//! build has no c10d shim (Gloo headers missing at build time).
// Test code (the lints of clippy.toml cover #[test] functions, not their helpers here): a failed
// assumption is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use dino_tui::dist::{DistEnv, ProcessGroup, AVAILABLE};
use std::os::fd::IntoRawFd;
use std::path::Path;
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

fn skip() -> bool {
    !common::prerequisite(AVAILABLE, "this build has no c10d shim (built with --no-default-features)")
}

/// The processes these tests start share two cores: one job at a time keeps the collective
/// timeouts meaningful (and the in-process groups out of their way).
static ONE_JOB_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A store port held from the moment it is chosen: a listening socket on a free loopback port,
/// handed to rank 0's store (picking a port, closing it and binding it again later let another
/// job take it in between, and two jobs on one store mix their ranks).
fn store_socket() -> (u16, std::os::fd::OwnedFd) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (l.local_addr().unwrap().port(), l.into())
}

fn env(rank: usize, port: u16, listen_fd: Option<i32>) -> DistEnv {
    env_of(rank, 2, port, listen_fd)
}

fn env_of(rank: usize, world_size: usize, port: u16, listen_fd: Option<i32>) -> DistEnv {
    DistEnv {
        rank,
        world_size,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        store_is_external: false,
        listen_fd: if rank == 0 { listen_fd } else { None },
    }
}

/// What a job wrote to the file its stderr went to, for failure messages.
fn output_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn two_ranks_all_reduce_broadcast_and_bucket() {
    if skip() {
        return;
    }
    let _serial = serial();
    let (port, socket) = store_socket();
    // The store takes the descriptor over.
    let fd = socket.into_raw_fd();
    let results: Vec<Vec<Vec<f32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                s.spawn(move || {
                    let g = ProcessGroup::new(&env(rank, port, Some(fd)), false, Duration::from_secs(30)).unwrap();
                    let mut a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]) * (rank as f64 + 1.0);
                    g.all_reduce_sum(&mut a).unwrap();
                    let mut b = Tensor::from_slice(&[rank as f32 * 10.0; 2]);
                    g.broadcast(&mut b, 1).unwrap();
                    // Three tensors of different shapes through one bucket.
                    let parts = [
                        Tensor::ones([2, 3], (Kind::Float, tch::Device::Cpu)) * rank as f64,
                        Tensor::from_slice(&[rank as f32]),
                        Tensor::full([4], 2.0, (Kind::Float, tch::Device::Cpu)),
                    ];
                    g.all_reduce_bucketed(&parts).unwrap();
                    g.barrier().unwrap();
                    let v = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap();
                    vec![v(&a), v(&b), v(&parts[0]), v(&parts[1]), v(&parts[2])]
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert_eq!(r[0], vec![3.0, 6.0, 9.0], "sum of 1x and 2x");
        assert_eq!(r[1], vec![10.0, 10.0], "rank 1's values everywhere");
        assert_eq!(r[2], vec![1.0; 6]);
        assert_eq!(r[3], vec![1.0]);
        assert_eq!(r[4], vec![4.0; 4]);
    }
}

#[test]
fn a_lost_rank_fails_the_other_with_an_error_not_a_hang() {
    if skip() {
        return;
    }
    let _serial = serial();
    let (port, socket) = store_socket();
    let fd = socket.into_raw_fd();
    let started = Instant::now();
    let err = std::thread::scope(|s| {
        let survivor = s.spawn(move || {
            let g = ProcessGroup::new(&env(0, port, Some(fd)), false, Duration::from_secs(10)).unwrap();
            g.barrier().unwrap();
            let mut t = Tensor::from_slice(&[1.0f32]);
            g.all_reduce_sum(&mut t).err()
        });
        s.spawn(move || {
            let g = ProcessGroup::new(&env(1, port, None), false, Duration::from_secs(10)).unwrap();
            g.barrier().unwrap();
            drop(g); // gone before the all-reduce
        });
        survivor.join().unwrap()
    });
    let err = err.expect("the all-reduce must fail without its peer");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    assert!(err.to_string().starts_with("c10d:"), "{err}");
}

/// Ranks of one process (threads here) whose groups issue their first collective at the same
/// instant. libtorch's flight recorder, a process-wide singleton on by default, registers a group
/// in a std::map outside its own lock the first time it records one of its collectives
/// (FlightRecorderDetail.hpp, `recordWithResetEnabled`); two such first records at once corrupted
/// the map, and this file's test binary died of SIGSEGV in `_Rb_tree_insert_and_rebalance` (seen
/// in 1 of 88 runs of this file's two in-process tests beside two busy loops). The shim enqueues
/// collectives under one lock.
/// Each round is a new set of groups, so each round has its first records again.
#[test]
fn groups_of_one_process_starting_their_collectives_at_once_do_not_crash() {
    if skip() {
        return;
    }
    let _serial = serial();
    const RANKS: usize = 8;
    // Without the lock, 8 of 8 runs crashed by round 25 (in round 1, 2, 2, 3, 7, 8, 9 and 24).
    for round in 0..40 {
        let (port, socket) = store_socket();
        let fd = socket.into_raw_fd();
        let start = std::sync::Barrier::new(RANKS);
        let sums: Vec<f32> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..RANKS)
                .map(|rank| {
                    let start = &start;
                    s.spawn(move || {
                        let g = ProcessGroup::new(&env_of(rank, RANKS, port, Some(fd)), false, Duration::from_secs(60)).unwrap();
                        start.wait();
                        let mut t = Tensor::from_slice(&[1.0f32]);
                        g.all_reduce_sum(&mut t).unwrap();
                        g.barrier().unwrap();
                        t.double_value(&[0]) as f32
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(sums, vec![RANKS as f32; RANKS], "round {round}");
    }
}

fn tensors(path: &Path) -> std::collections::BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

#[test]
fn two_processes_train_like_one_with_the_double_batch() {
    if skip() {
        return;
    }
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 8);
    let mut c = common::tiny_config(&data, &d.path().join("unused"));
    c.optim.epochs = 1;
    c.run.output_dir = None;
    let run = |name: &str, batch: usize, nproc: usize| {
        let mut c = c.clone();
        c.optim.batch_size_per_gpu = batch;
        let cfg = d.path().join(format!("{name}.toml"));
        std::fs::write(&cfg, c.to_toml()).unwrap();
        let out = d.path().join(name);
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_dino"))
            .args(["train", "--headless", "--nproc_per_node", &nproc.to_string()])
            .arg("--config")
            .arg(&cfg)
            .arg("--output_dir")
            .arg(&out)
            .env("DINO_DIST_TIMEOUT", "60")
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{name}: {}\n{}",
            String::from_utf8_lossy(&status.stdout),
            String::from_utf8_lossy(&status.stderr)
        );
        let dir = out.join("checkpoints");
        let meta = dino_tui::run::checkpoint::read_meta(&dir.join(dino_tui::run::checkpoint::LATEST)).unwrap();
        dir.join(meta.tensors)
    };
    let one = tensors(&run("single", 8, 1));
    let two = tensors(&run("ranks", 4, 2));
    assert!(d.path().join("ranks/ranks/rank1/metrics.jsonl").exists(), "rank 1 logs beside the run");
    let single_metrics = std::fs::read_to_string(d.path().join("single/metrics.jsonl")).unwrap();
    let ranks_metrics = std::fs::read_to_string(d.path().join("ranks/metrics.jsonl")).unwrap();
    assert_eq!(single_metrics.lines().count(), ranks_metrics.lines().count(), "the same number of iterations");
    let mut worst = (0.0f64, String::new());
    for (name, a) in &one {
        if name.starts_with("optim.") || a.kind() != Kind::Float {
            continue;
        }
        let b = two.get(name).unwrap_or_else(|| panic!("{name} missing"));
        let diff = (a - b).abs().max().double_value(&[]);
        if diff > worst.0 {
            worst = (diff, name.clone());
        }
    }
    // Sums in another order give float noise; AdamW turns noise on near-zero gradients into
    // updates of ~lr, hence an absolute tolerance (measured: 2.6e-7, on a qkv bias).
    eprintln!("largest weight difference, 2 ranks x 4 vs 1 x 8: {:.2e} ({})", worst.0, worst.1);
    assert!(worst.0 < 1e-5, "largest difference {} in {}", worst.0, worst.1);
    let loss = |text: &str| -> Vec<f64> {
        text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap()).collect()
    };
    for (a, b) in loss(&single_metrics).iter().zip(loss(&ranks_metrics)) {
        assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "loss {a} vs {b}");
    }
}

/// The NCCL process group comes from a shared object of its own (`src/dist/nccl.cpp`, embedded
/// in the binary and opened from memory on first use, because it needs libtorch_cuda, which `dino`
/// loads only where there is a GPU). Built wherever NCCL's and the CUDA runtime's headers are (the
/// `nvidia-*` wheels beside libtorch's, two of them installed by scripts/setup-test-tools.sh).
/// Without a GPU the whole path still runs: the object opens, the store crosses into it, and
/// ProcessGroupNCCL's refusal comes back as an error, not an abort.
#[test]
fn nccl_object_opens_and_without_a_gpu_refuses_with_an_error() {
    if skip() {
        return;
    }
    let _one = serial();
    // As `dino` does before anything asks libtorch about CUDA (it keeps its first answer).
    dino_tui::model::cuda_backend::load();
    if !dino_tui::dist::nccl::AVAILABLE {
        // build.rs's condition: NCCL's header in the nvidia wheel, the CUDA crt headers in the cache.
        let torch = std::env::var_os("LIBTORCH").map(std::path::PathBuf::from).unwrap_or_default();
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        let nccl = torch.join("../nvidia/nccl/include/nccl.h");
        let crt = cache.join("dino-tui/cuda-headers-13.0/nvidia/cu13/include/crt/host_config.h");
        let cuda = torch.join("lib/libtorch_cuda.so");
        let headers = nccl.exists() && crt.exists() && cuda.exists() && std::env::var_os("DINO_CUDA_HEADERS").is_none();
        assert!(!headers, "{}, {} and {} are there, yet no NCCL object was built", nccl.display(), crt.display(), cuda.display());
        // A CPU-only libtorch has no NCCL to build (build.rs); a CUDA one must have it.
        common::prerequisite(!cuda.exists(), "this libtorch has CUDA, yet the build has no NCCL");
        return;
    }
    let (port, fd) = store_socket();
    let err = match ProcessGroup::new(&env_of(0, 1, port, Some(fd.into_raw_fd())), true, Duration::from_secs(20)) {
        Ok(_) if tch::Cuda::is_available() => return, // a GPU machine: the group is real
        Ok(_) => panic!("an NCCL group without a GPU"),
        Err(e) => e.to_string(),
    };
    eprintln!("NCCL without a GPU: {err}");
    assert!(err.contains("GPU"), "{err}");
}

#[test]
fn killing_a_rank_process_ends_the_other_with_an_error() {
    if skip() {
        return;
    }
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 8);
    let mut c = common::tiny_config(&data, &d.path().join("run"));
    c.optim.epochs = 10_000; // runs until killed
    c.optim.batch_size_per_gpu = 4;
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    let (port, socket) = store_socket();
    let port = port.to_string();
    let fd0 = std::os::fd::AsRawFd::as_raw_fd(&socket);
    let rank = |r: &str| {
        let err = d.path().join(format!("rank{r}.err"));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_dino"));
        cmd.args(["train", "--headless"])
            .arg("--config")
            .arg(&cfg)
            .envs([
                ("RANK", r),
                ("WORLD_SIZE", "2"),
                ("MASTER_ADDR", "127.0.0.1"),
                ("MASTER_PORT", port.as_str()),
                ("DINO_DIST_TIMEOUT", "30"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap());
        if r == "0" {
            // Rank 0's store serves on the socket the test holds (the launcher's way).
            let fd = fd0;
            cmd.env(dino_tui::dist::LISTEN_FD_VAR, fd.to_string());
            use std::os::unix::process::CommandExt;
            // SAFETY: fcntl is async-signal-safe; it clears close-on-exec in the child only.
            unsafe {
                cmd.pre_exec(move || {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                    Ok(())
                });
            }
        }
        (common::spawn_guarded(&mut cmd), err)
    };
    let (mut r0, r0_err) = rank("0");
    // Rank 0 has its copy; ours would keep the port open after it died.
    drop(socket);
    let (mut r1, r1_err) = rank("1");
    let metrics = d.path().join("run/metrics.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&metrics).map(|s| s.lines().count()).unwrap_or(0) < 5 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the two ranks never trained; rank 0: {}\nrank 1: {}",
            output_of(&r0_err),
            output_of(&r1_err)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    r1.kill().unwrap();
    let _ = r1.wait();
    let killed_at = Instant::now();
    let status = loop {
        if let Some(s) = r0.try_wait().unwrap() {
            break s;
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(60),
            "rank 0 still running 60 s after its peer was killed: {}",
            output_of(&r0_err)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = output_of(&r0_err);
    assert!(!status.success(), "{err}");
    assert!(err.contains("c10d") || err.contains("data-parallel"), "the error names the cause: {err}");
    eprintln!("rank 0 exited {:.1} s after rank 1 was killed", killed_at.elapsed().as_secs_f64());
}

#[test]
fn a_pause_longer_than_the_timeout_holds_every_rank_and_stop_ends_them_all() {
    if skip() {
        return;
    }
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    common::demo_data(&data, 8);
    let run = d.path().join("run");
    let mut c = common::tiny_config(&data, &run);
    c.optim.epochs = 10_000;
    c.optim.batch_size_per_gpu = 4;
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, c.to_toml()).unwrap();
    let dino = env!("CARGO_BIN_EXE_dino");
    let job_err = d.path().join("job.err");
    // The collective timeout: the pause below lasts more than twice as long.
    let timeout = 5u64;
    let mut job = common::spawn_guarded(
        std::process::Command::new(dino)
            .args(["train", "--headless", "--nproc_per_node", "2"])
            .arg("--config")
            .arg(&cfg)
            .env("DINO_DIST_TIMEOUT", timeout.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&job_err).unwrap()),
    );
    // Every failure message carries what the job said: under load, the cause is in there.
    let said = || format!("\njob stderr:\n{}", output_of(&job_err));
    let lines = |p: &Path| std::fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0);
    let metrics = run.join("metrics.jsonl");
    let t0 = Instant::now();
    while lines(&metrics) < 3 {
        assert!(t0.elapsed() < Duration::from_secs(120), "the job never trained{}", said());
        assert!(job.try_wait().unwrap().is_none(), "the job ended before training{}", said());
        std::thread::sleep(Duration::from_millis(100));
    }
    let ctl = |what: &str| {
        let o = std::process::Command::new(dino).arg("ctl").arg(&run).arg(what).output().unwrap();
        assert!(o.status.success(), "dino ctl {what}: {}{}", String::from_utf8_lossy(&o.stderr), said());
    };
    ctl("pause");
    let held = lines(&metrics);
    std::thread::sleep(Duration::from_secs(2 * timeout + 1));
    assert_eq!(lines(&metrics), held, "paused{}", said());
    assert!(job.try_wait().unwrap().is_none(), "the job is still alive after a pause longer than the timeout{}", said());
    ctl("resume");
    let rank1 = run.join("ranks/rank1/metrics.jsonl");
    let before = lines(&rank1);
    let t1 = Instant::now();
    while lines(&rank1) <= before + 2 {
        assert!(t1.elapsed() < Duration::from_secs(60), "rank 1 did not go on after the resume{}", said());
        std::thread::sleep(Duration::from_millis(100));
    }
    ctl("stop");
    let status = job.wait().unwrap();
    assert!(status.success(), "{}", said());
    assert_eq!(lines(&metrics), lines(&rank1), "both ranks stopped after the same iteration");
}

/// Sinkhorn-Knopp targets are computed per process: a job of several is refused before any
/// process starts, naming the setting (whether or not Gloo is built in).
#[test]
fn sinkhorn_knopp_centering_is_refused_for_several_processes() {
    let d = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dino"))
        .args(["train", "--headless", "--nproc_per_node", "2", "--centering", "sinkhorn_knopp", "--data_path"])
        .arg(d.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("centering") && err.contains("ema"), "{err}");
    assert!(!d.path().join("runs").exists() && std::fs::read_dir(d.path()).unwrap().next().is_none(), "nothing written");
}

/// What every build must have (issue 31): `dino --version` lists Gloo as built in, and the demo
/// preset trains on two processes end to end through `--nproc_per_node 2`. Not gated on the
/// build: a `dino` without Gloo fails here.
#[test]
fn the_binary_has_gloo_and_trains_the_demo_config_on_two_processes() {
    let version = common::dino(&["--version"]);
    let gloo = version.lines().find(|l| l.trim_start().starts_with("Gloo")).unwrap_or_default();
    assert!(gloo.contains("yes"), "dino --version does not list Gloo as built in:\n{version}");
    let _serial = serial();
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let make: [&std::ffi::OsStr; 4] = ["make-demo-data".as_ref(), data.as_os_str(), "--per_class".as_ref(), "16".as_ref()];
    common::dino(&make);
    let out = d.path().join("run");
    let done = std::process::Command::new(env!("CARGO_BIN_EXE_dino"))
        .args(["train", "--headless", "--config", "demo", "--nproc_per_node", "2", "--epochs", "1"])
        .args(["--batch_size_per_gpu", "8", "--num_workers", "1", "--data_path"])
        .arg(&data)
        .arg("--output_dir")
        .arg(&out)
        .env("DINO_DIST_TIMEOUT", "120")
        .output()
        .unwrap();
    let said = format!("{}\n{}", String::from_utf8_lossy(&done.stdout), String::from_utf8_lossy(&done.stderr));
    assert!(done.status.success(), "two-process demo run failed:\n{said}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> =
        metrics.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap()).collect();
    assert!(!losses.is_empty() && losses.iter().all(|l| l.is_finite()), "{metrics}\n{said}");
    assert!(out.join("ranks/rank1/metrics.jsonl").exists(), "rank 1 logs beside the run");
    assert!(out.join("checkpoints").join(dino_tui::run::checkpoint::LATEST).exists(), "{said}");
}
