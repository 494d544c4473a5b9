#!/usr/bin/env python3
"""Runs one benchmark of this crate at an earlier commit and at the working
tree, alternating (base, head, base, head, ...) so that both meet the same
machine, and prints every figure of the two as medians with their ratio
head / base.

    python3 crates/bench/compare.py BASE BENCH [--runs N] [-- BENCH_ARGS...]

BASE is any git revision; it is checked out into a worktree of its own
(removed at the end) and built with its own target folder, kept between
calls ($DOMICILE_BENCH_BASE_TARGET, default ~/.cache/domicile/bench-base).
The working tree is built with $CARGO_TARGET_DIR (default target/).

Each run's Markdown tables (the format every benchmark here prints) are
read cell by cell, and every cell after the first that reads as a number (a
trailing unit such as "×" or "s" is dropped) is compared with the same cell
of the other side's runs. The load average before each run is printed, as
docs/benchmarks.md asks of every measurement.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

NUMBER = re.compile(r"^-?[0-9][0-9,]*(\.[0-9]+)?\s*(×|s|%|ms|µs)?$")


def build(tree, target, bench):
    """Builds the benchmark in `tree`; returns its executable."""
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    out = subprocess.run(
        ["cargo", "bench", "-p", "domicile-bench", "--bench", bench, "--no-run",
         "--locked", "--message-format=json"],
        cwd=tree, env=env, check=True, stdout=subprocess.PIPE, text=True,
    ).stdout
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if (msg.get("reason") == "compiler-artifact"
                and msg.get("target", {}).get("name") == bench
                and msg.get("executable")):
            return msg["executable"]
    sys.exit(f"compare: no executable for bench {bench} in {tree}")


def tables(text):
    """Every numeric cell of the Markdown tables in `text`, keyed by (table
    number, row number, column header), with the row's label (its leading
    cells that are not numbers) beside the value. Each benchmark prints its rows in a fixed order, so the same
    key names the same figure in every run."""
    cells = {}
    header = None
    table = -1
    row = 0
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            header = None
            continue
        parts = [c.strip() for c in line.strip("|").split("|")]
        if all(re.fullmatch(r":?-+:?", c) for c in parts if c):
            continue
        if header is None:
            header, table, row = parts, table + 1, 0
            continue
        row += 1
        label = []
        for c in parts:
            if NUMBER.match(c):
                break
            label.append(c)
        label = " | ".join(label) or parts[0]
        for i, c in enumerate(parts[1:], start=1):
            if i >= len(header) or not NUMBER.match(c):
                continue
            value = float(re.sub(r"[^0-9.\-]", "", c.replace(",", "")))
            cells[(table, row, header[i])] = (label, value)
    return cells


def run(exe, cwd, args):
    load = open("/proc/loadavg").read().split()[:3]
    print(f"  load {' '.join(load)}: {exe}", file=sys.stderr, flush=True)
    done = subprocess.run([exe, "--bench", *args], cwd=cwd, check=True,
                          stdout=subprocess.PIPE, text=True)
    return done.stdout


def main():
    argv = sys.argv[1:]
    bench_args = []
    if "--" in argv:
        i = argv.index("--")
        argv, bench_args = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", help="the git revision to compare against")
    p.add_argument("bench", help="the benchmark's name (catalog, migrate, ...)")
    p.add_argument("--runs", type=int, default=3, help="runs of each (default 3)")
    opts = p.parse_args(argv)
    if opts.runs < 1:
        sys.exit("compare: --runs must be at least 1")

    root = subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()
    base_rev = subprocess.run(["git", "rev-parse", "--short", opts.base], cwd=root,
                              check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    head_target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    base_target = os.environ.get(
        "DOMICILE_BENCH_BASE_TARGET",
        os.path.expanduser("~/.cache/domicile/bench-base"))
    worktree = tempfile.mkdtemp(prefix="domicile-bench-base-")
    shutil.rmtree(worktree)
    subprocess.run(["git", "worktree", "add", "-q", "--detach", worktree, base_rev],
                   cwd=root, check=True)
    try:
        print(f"building {opts.bench} at {base_rev} and at the working tree",
              file=sys.stderr, flush=True)
        base_exe = build(worktree, base_target, opts.bench)
        head_exe = build(root, head_target, opts.bench)
        base, head = {}, {}
        for n in range(opts.runs):
            print(f"run {n + 1} of {opts.runs}", file=sys.stderr, flush=True)
            for exe, tree, into in ((base_exe, worktree, base), (head_exe, root, head)):
                out = run(exe, os.path.join(tree, "crates", "bench"), bench_args)
                sys.stderr.write(out)
                for key, (label, value) in tables(out).items():
                    into.setdefault(key, (label, []))[1].append(value)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", worktree], cwd=root)

    print(f"\n{opts.bench} {' '.join(bench_args)}: head (working tree) against "
          f"{base_rev}, medians of {opts.runs} alternating runs each\n")
    # A column whose every value, on both sides, is one value is a
    # parameter of its row (in flight, objects…), not a measure: it names
    # the row instead.
    def constant(key):
        values = set(base[key][1]) | set(head.get(key, (None, []))[1])
        return len(values) == 1
    names = {}
    for key, (label, values) in base.items():
        if constant(key):
            names.setdefault(key[:2], [label]).append(f"{key[2]} {values[0]:g}")
        names.setdefault(key[:2], [label])
    print("| row | figure | base | head | head ÷ base |")
    print("|---|---|---:|---:|---:|")
    for key, (label, values) in base.items():
        if key not in head or constant(key):
            continue
        b, h = statistics.median(values), statistics.median(head[key][1])
        ratio = f"{h / b:.2f}×" if b else "—"
        name = ", ".join(names[key[:2]])
        print(f"| {name} | {key[2]} | {b:.4g} | {h:.4g} | {ratio} |")


if __name__ == "__main__":
    main()
