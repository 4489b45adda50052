#!/usr/bin/env python3
"""Ember against PyTorch, side by side in one run, same machine, same
workloads, data in host memory (each step moves its batch to the device).

    python3 scripts/bench.py [--threads 2] [--seconds 3]        # CPU
    python3 scripts/bench.py --device cuda [--ember-bin PATH]   # GPU
    python3 scripts/bench.py --baseline-bin OLD [--ember-bin NEW]  # before/after

Builds and runs `cargo run --release -p ember-nn-std --example bench_train`
(or runs the prebuilt `--ember-bin`, for a GPU machine without Rust), then
times the same workloads in PyTorch (if installed) and prints both with their
ratio, Ember and PyTorch alternating `--rounds` times. PyTorch's absence is
reported, not an error. The CPU cases include the `cnn` preset of `ember
train --model cnn` (Conv2d-ReLU-MaxPool twice, Linear; Adam) at batch 64 and
256, as the same nn.Sequential in PyTorch. On the GPU: 784-512-512-10, SGD, batch 64/256/1024,
both sides waiting for the GPU at the end of each timing window.

With `--baseline-bin`, the other side is not PyTorch but another build of
Ember's bench_train (an older commit's, say): a before/after comparison in
one run, the two builds alternating.
"""
import argparse
import json
import subprocess
import sys
import time

CASES = [
    # name, widths, batch, optimizer
    ("784-128-10 adam b64", [784, 128, 10], 64, "adam"),
    ("784-512-512-10 sgd b64", [784, 512, 512, 10], 64, "sgd"),
    ("784-512-512-10 sgd b256", [784, 512, 512, 10], 256, "sgd"),
]
# The `cnn` preset of `ember train --model cnn`, Adam (lr 1e-3), on 28x28 images.
CNN_CASES = [("cnn adam b64", 64, "adam"), ("cnn adam b256", 256, "adam")]
GPU_CASES = [(f"784-512-512-10 sgd b{b}", [784, 512, 512, 10], b, "sgd") for b in (64, 256, 1024)]


def cpu_isa():
    """The CPU's model and the widest vector set the GEMM dispatches to
    (`gemm` picks AVX-512 or AVX2+FMA at run time on x86-64, NEON on aarch64)."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and model == "unknown CPU":
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    if "avx512f" in flags:
        isa = "AVX-512"
    elif "avx2" in flags and "fma" in flags:
        isa = "AVX2+FMA"
    elif "asimd" in flags:
        isa = "NEON"
    else:
        isa = "scalar/SSE"
    return f"{model}, GEMM on {isa}"


def ember(threads, seconds, device, binary):
    cmd = [binary] if binary else ["cargo", "run", "-q", "--release", "-p", "ember-nn-std",
                                   "--example", "bench_train", "--"]
    cmd += ["--threads", str(threads), "--seconds", str(seconds)]
    if device == "cuda":
        cmd += ["--device", "cuda"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def torch_results(threads, seconds, device):
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed (pip install torch numpy): Ember figures only"
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    res = {}
    if device == "cuda":
        if not torch.cuda.is_available():
            return None, "PyTorch sees no GPU: Ember figures only"
        sync = torch.cuda.synchronize
        cases = GPU_CASES
        note = f"PyTorch {torch.__version__} on {torch.cuda.get_device_name(0)}, " \
               f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}"
    else:
        sync = lambda: None
        cases = CASES
        note = f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads"
    for n in (256, 512, 1024) if device == "cpu" else ():
        a, b = torch.rand(n, n), torch.rand(n, n)
        best = 0.0
        for _ in range(5):
            t0, reps = time.perf_counter(), 0
            while time.perf_counter() - t0 < seconds / 5:
                a @ b
                reps += 1
            best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9)
        res[("gemm", n)] = best
    for name, widths, batch, opt_name in cases:
        layers = []
        for i in range(len(widths) - 1):
            layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
            if i + 2 < len(widths):
                layers.append(torch.nn.ReLU())
        model = torch.nn.Sequential(*layers).to(device)
        opt = (torch.optim.Adam if opt_name == "adam" else torch.optim.SGD)(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        xs = torch.rand(16, batch, widths[0])
        ys = torch.randint(0, widths[-1], (16, batch))

        def step(i):
            x, y = xs[i % 16].to(device), ys[i % 16].to(device)
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()

        for i in range(10):
            step(i)
        sync()
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            step(n)
            n += 1
        sync()
        res[("train", name)] = n * batch / (time.perf_counter() - t0)
    for name, batch, opt_name in CNN_CASES if device == "cpu" else ():
        nn = torch.nn
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
        opt = (torch.optim.Adam if opt_name == "adam" else torch.optim.SGD)(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        xs = torch.rand(16, batch, 1, 28, 28)
        ys = torch.randint(0, 10, (16, batch))

        def cnn_step(i):
            opt.zero_grad()
            loss = loss_fn(model(xs[i % 16]), ys[i % 16])
            loss.backward()
            opt.step()

        for i in range(5):
            cnn_step(i)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            cnn_step(n)
            n += 1
        res[("train", name)] = n * batch / (time.perf_counter() - t0)
    return res, note


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=3,
                   help="Ember and PyTorch alternate this many times; medians are reported")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--ember-bin", help="a prebuilt bench_train binary (default: cargo run)")
    p.add_argument("--baseline-bin",
                   help="compare with this bench_train binary (before/after) instead of PyTorch")
    a = p.parse_args()
    import statistics
    ember_runs, torch_runs, note = [], [], ""
    for _ in range(a.rounds):
        try:
            ember_runs.append(ember(a.threads, a.seconds, a.device, a.ember_bin))
        except subprocess.CalledProcessError as e:
            print(f"Ember's benchmark failed ({e.returncode}): {e.stderr.strip()}")
            return 1
        if a.baseline_bin:
            base = ember(a.threads, a.seconds, a.device, a.baseline_bin)
            torch_runs.append({
                ("gemm", r["n"]) if r["bench"] == "gemm" else ("train", r["case"]):
                    r["gflops"] if r["bench"] == "gemm" else r["samples_per_sec"]
                for r in base
            })
            note = f"baseline {a.baseline_bin}"
            continue
        t, note = torch_results(a.threads, a.seconds, a.device)
        if t:
            torch_runs.append(t)
    where = f"{cpu_isa()}; threads: {a.threads}" if a.device == "cpu" \
        else f"GPU: {ember_runs[0][0].get('device')}"
    print(f"{where}; {note}; median of {a.rounds} alternating rounds\n")
    other = "before" if a.baseline_bin else "PyTorch"
    mine = "after" if a.baseline_bin else "Ember"
    print(f"{'benchmark':<36} {mine:>10} {other:>10} {'ratio':>7}  ratios per round")
    for idx, r in enumerate(ember_runs[0]):
        if r["bench"] == "gemm":
            key, label, field = ("gemm", r["n"]), f"GEMM {r['n']}^3 (GFLOP/s)", "gflops"
        else:
            key, label, field = ("train", r["case"]), f"{r['case']} (samples/s)", "samples_per_sec"
        ev = [run[idx][field] for run in ember_runs]
        tv = [run[key] for run in torch_runs]
        em = statistics.median(ev)
        if tv:
            tm = statistics.median(tv)
            per = " ".join(f"{e / t:.2f}" for e, t in zip(ev, tv))
            print(f"{label:<36} {em:>10.1f} {tm:>10.1f} {em / tm:>6.2f}x  {per}")
        else:
            print(f"{label:<36} {em:>10.1f} {'-':>10} {'-':>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
