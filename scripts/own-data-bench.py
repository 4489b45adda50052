#!/usr/bin/env python3
"""Ember's CLI beside scikit-learn on the committed data files, same MLP, same split.

For each set in std-backend/tests/data/tables (iris and wine: classification,
diabetes: regression) the script splits the rows once (a stratified fifth held
out for classification, a shuffled fifth for regression; scikit-learn's
train_test_split, random_state 0) and writes the two parts as CSV files; then,
for several seeds, alternating:

- Ember: `ember train --data train.csv --test test.csv --hidden 64,32 ...`
  (standardized features, and targets for regression; Adam, constant learning
  rate, no validation split, one thread), its f32 test accuracy or R² read off
  its report, and the wall time of the whole command (start-up, parsing, the
  training, the report and the export of both weight files included);
- scikit-learn: StandardScaler then MLPClassifier / MLPRegressor (regression
  inside TransformedTargetRegressor with a StandardScaler, as Ember scales its
  targets) of the same widths, ReLU, Adam, the same learning rate, batch and
  epochs, no L2 penalty, no early stopping; test accuracy or R², and the time
  of `fit` alone (Python's start-up and the data loading left out).

Prints a Markdown table of medians (BENCHMARKS.md, "Your own data").

Usage: python3 scripts/own-data-bench.py [--ember target/release/ember] [--seeds 5]
Needs scikit-learn (a venv: `pip install scikit-learn`); builds nothing itself:
`cargo build --release -p ember-nn-std --bin ember` first.
"""

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import sklearn
from sklearn.compose import TransformedTargetRegressor
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = os.path.join(ROOT, "std-backend", "tests", "data", "tables")

# name, file, task, epochs, batch, learning rate
SETS = [
    ("iris", "iris.csv", "classify", 100, 16, 0.003),
    ("wine", "wine.csv", "classify", 60, 16, 0.003),
    ("diabetes", "diabetes.csv", "regress", 30, 32, 0.001),
]
HIDDEN = (64, 32)


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def ember_run(ember, train, test, task, epochs, batch, lr, seed, out):
    cmd = [
        ember, "train", "--data", train, "--test", test, "--task", task,
        "--hidden", ",".join(map(str, HIDDEN)), "--optimizer", "adam",
        "--lr", str(lr), "--scheduler", "none", "--batch", str(batch),
        "--epochs", str(epochs), "--val-fraction", "0", "--threads", "1",
        "--seed", str(seed), "--out", out,
    ]
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"ember failed: {' '.join(cmd)}\n{p.stderr}")
    if task == "classify":
        line = next(l for l in p.stdout.splitlines() if l.startswith("accuracy: "))
        score = float(line.split()[1])
        int8_line = next(l for l in p.stdout.splitlines() if l.startswith("int8 accuracy"))
        int8 = float(int8_line.split(": ")[1].split()[0])
    else:
        f32_part = p.stdout.split("int8 model:")[0]
        lines = f32_part.splitlines()
        at = next(i for i, l in enumerate(lines) if l.startswith("target "))
        score = float(lines[at + 1].split()[-1])
        int8_lines = p.stdout.split("int8 model:")[1].splitlines()
        at = next(i for i, l in enumerate(int8_lines) if l.startswith("target "))
        int8 = float(int8_lines[at + 1].split()[-1])
    return score, int8, wall


def sklearn_run(x_train, y_train, x_test, y_test, task, epochs, batch, lr, seed):
    common = dict(
        hidden_layer_sizes=HIDDEN, activation="relu", solver="adam",
        learning_rate_init=lr, batch_size=batch, max_iter=epochs, alpha=0.0,
        shuffle=True, random_state=seed, tol=0.0, n_iter_no_change=epochs + 1,
    )
    if task == "classify":
        model = make_pipeline(StandardScaler(), MLPClassifier(**common))
    else:
        model = TransformedTargetRegressor(
            regressor=make_pipeline(StandardScaler(), MLPRegressor(**common)),
            transformer=StandardScaler(),
        )
    import warnings
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(x_train, y_train)
        took = time.perf_counter() - start
    pred = model.predict(x_test)
    score = accuracy_score(y_test, pred) if task == "classify" else r2_score(y_test, pred)
    return score, took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ember", default=os.path.join(ROOT, "target", "release", "ember"))
    ap.add_argument("--seeds", type=int, default=5)
    a = ap.parse_args()
    if not os.path.exists(a.ember):
        sys.exit(f"{a.ember}: build it first (cargo build --release -p ember-nn-std --bin ember)")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"CPU: {cpu}; scikit-learn {sklearn.__version__}, NumPy {np.__version__}; "
          f"{a.seeds} seeds, medians; Ember one thread")
    print()
    print("| data | task | rows train/test | MLP | epochs, batch, lr | Ember f32 | Ember int8 | scikit-learn | Ember time (whole command) | scikit-learn time (fit) |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, file, task, epochs, batch, lr in SETS:
            header, rows = read(os.path.join(TABLES, file))
            y_all = [r[-1] for r in rows]
            strat = y_all if task == "classify" else None
            train_rows, test_rows = train_test_split(
                rows, test_size=0.2, random_state=0, stratify=strat)
            train_csv = os.path.join(tmp, f"{name}-train.csv")
            test_csv = os.path.join(tmp, f"{name}-test.csv")
            write(train_csv, header, train_rows)
            write(test_csv, header, test_rows)
            x_train = np.array([[float(v) for v in r[:-1]] for r in train_rows])
            x_test = np.array([[float(v) for v in r[:-1]] for r in test_rows])
            if task == "classify":
                y_train = [r[-1] for r in train_rows]
                y_test = [r[-1] for r in test_rows]
            else:
                y_train = np.array([float(r[-1]) for r in train_rows])
                y_test = np.array([float(r[-1]) for r in test_rows])
            e_scores, e_int8, e_times, s_scores, s_times = [], [], [], [], []
            for seed in range(a.seeds):
                out = os.path.join(tmp, f"{name}-{seed}")
                s, q, t = ember_run(a.ember, train_csv, test_csv, task, epochs, batch, lr, seed, out)
                e_scores.append(s)
                e_int8.append(q)
                e_times.append(t)
                s, t = sklearn_run(x_train, y_train, x_test, y_test, task, epochs, batch, lr, seed)
                s_scores.append(s)
                s_times.append(t)
            metric = "accuracy" if task == "classify" else "R²"
            med = statistics.median
            widths = "-".join(map(str, (x_train.shape[1],) + HIDDEN + (
                len(set(y_train)) if task == "classify" else 1,)))
            print(f"| {name} | {task} | {len(train_rows)}/{len(test_rows)} | {widths} | "
                  f"{epochs}, {batch}, {lr} | {metric} {med(e_scores):.3f} | {med(e_int8):.3f} | "
                  f"{metric} {med(s_scores):.3f} | {med(e_times):.2f} s | {med(s_times):.2f} s |")


if __name__ == "__main__":
    main()
