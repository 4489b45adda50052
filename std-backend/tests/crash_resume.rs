//! Crash safety of `ember train`, tested by killing it: SIGKILL at random
//! moments and right while a checkpoint is being written, dozens of times.
//! Whatever the moment, the checkpoint on disk loads, and `--resume` from it
//! ends with the same model file, byte for byte, as a run that was never
//! interrupted.

use ember_nn_std::checkpoint::Checkpoint;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The built-in subset's files, as a data directory.
const SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset");
/// Runs killed at a random moment.
const RANDOM_KILLS: usize = 12;
/// Runs killed as soon as a checkpoint's temporary file appears.
const WRITE_KILLS: usize = 12;

fn train(out: &Path, resume: Option<&Path>) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ember"));
    c.args([
        "train",
        "--layers",
        "784-64-10",
        "--epochs",
        "4",
        "--limit",
        "400",
    ])
    .args(["--seed", "5", "--threads", "1", "--data", SUBSET, "--out"])
    .arg(out)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(r) = resume {
        c.arg("--resume").arg(r);
    }
    c
}

/// Runs to the end and returns the exported model file.
fn finish(out: &Path, resume: Option<&Path>) -> Vec<u8> {
    let status = train(out, resume).status().expect("run ember");
    assert!(status.success(), "{} (resume {resume:?})", out.display());
    std::fs::read(out.join("model.emb")).expect("model.emb")
}

/// Whether a checkpoint's temporary file is in `dir`.
fn checkpoint_being_written(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".checkpoint.safetensors.tmp-")
        })
    })
}

/// A small deterministic generator for the kill moments.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn kill(mut child: Child) {
    // `Child::kill` is SIGKILL on Unix: no handler runs, nothing is flushed.
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn killed_runs_leave_a_loadable_checkpoint_and_resume_bit_identical() {
    let root = tempfile::tempdir().unwrap();
    // The uninterrupted run, timed: when its first checkpoint appears, and
    // when it ends.
    let reference_dir = root.path().join("reference");
    let started = Instant::now();
    let mut child = train(&reference_dir, None).spawn().expect("run ember");
    while !reference_dir.join("checkpoint.safetensors").exists()
        && child.try_wait().expect("wait").is_none()
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = started.elapsed().as_millis() as u64;
    assert!(child.wait().expect("wait").success());
    let duration = started.elapsed().as_millis() as u64;
    let reference = std::fs::read(reference_dir.join("model.emb")).expect("model.emb");

    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut resumed, mut mid_write, mut before_first) = (0, 0, 0);
    for i in 0..RANDOM_KILLS + WRITE_KILLS {
        let out: PathBuf = root.path().join(format!("run{i}"));
        let child = train(&out, None).spawn().expect("run ember");
        let ckpt = out.join("checkpoint.safetensors");
        let deadline = Instant::now() + Duration::from_millis(4 * duration + 2000);
        let wait_for = |ready: &dyn Fn() -> bool| {
            while !ready() && Instant::now() < deadline {
                std::hint::spin_loop();
            }
        };
        if i < RANDOM_KILLS && i % 4 == 0 {
            // Before the first checkpoint.
            std::thread::sleep(Duration::from_millis(rng.below(first)));
        } else if i < RANDOM_KILLS {
            // After it, at a random moment of the rest of the run.
            wait_for(&|| ckpt.exists());
            std::thread::sleep(Duration::from_millis(rng.below(duration - first)));
        } else {
            // While a later checkpoint is being written over the first.
            wait_for(&|| ckpt.exists());
            wait_for(&|| checkpoint_being_written(&out));
        }
        kill(child);
        mid_write += usize::from(checkpoint_being_written(&out));
        if !ckpt.exists() {
            before_first += 1;
            continue;
        }
        // Whatever the moment of the kill, the checkpoint there is whole.
        let c = Checkpoint::load(&ckpt)
            .unwrap_or_else(|e| panic!("run {i}: the checkpoint does not load: {e}"));
        assert!(
            (1..=4).contains(&c.meta.epoch),
            "run {i}: epoch {}",
            c.meta.epoch
        );
        let model = finish(&out, Some(&ckpt));
        assert!(
            !checkpoint_being_written(&out),
            "run {i}: the resumed run left the killed run's temporary file"
        );
        assert!(
            model == reference,
            "run {i}: resumed from epoch {} but the model differs from the uninterrupted run's",
            c.meta.epoch
        );
        resumed += 1;
    }
    eprintln!(
        "{} kills: {resumed} resumed bit-identical, {mid_write} left a checkpoint half-written, {before_first} came before the first checkpoint",
        RANDOM_KILLS + WRITE_KILLS
    );
    assert!(mid_write >= 1, "no kill landed during a checkpoint write");
    assert!(
        resumed >= (RANDOM_KILLS + WRITE_KILLS) / 2,
        "too few runs had a checkpoint to resume"
    );
}
