"""Benchmark RoIAlign / RoIPool (kerasnets.ops.roi) against torchvision.ops, same inputs.

Default problem (issue 3): features 2x256x64x64 (NHWC for us, NCHW for torch), stride 16
(a 1024-pixel image), 512 RoIs of 32..800 pixels, 7x7 output, sampling ratio 2, aligned.
TensorFlow and torch are both limited to 2 threads. Prints the median milliseconds per
call (over ``--rounds`` alternating rounds of torchvision then ours, so a slow patch of a
shared machine hits both sides), forward and forward+backward (gradient w.r.t. the features; RoIPool with
``training=True`` there, as a training step calls it), torchvision's numbers
beside ours when torch/torchvision are importable (`pip install kerasnets[bench]`), the
speed-up (torchvision time / ours) and the max abs difference of the outputs.

    python tools/bench/roi.py [--rois 512] [--size 64] [--channels 256] [--repeats 20] [--rounds 3] [--extra]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--size", type=int, default=64, help="feature map height = width")
    p.add_argument("--stride", type=int, default=16)
    p.add_argument("--rois", type=int, default=512)
    p.add_argument("--output", type=int, default=7)
    p.add_argument("--sampling", type=int, default=2)
    p.add_argument("--aligned", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating rounds (torchvision, then ours); each side reports the median over rounds")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time, or process CPU time (steadier on a machine shared with other jobs)")
    p.add_argument("--extra", action="store_true", help="also time the einsum path (eager graph and XLA)")
    p.add_argument("--torch-worker", default=None, help=argparse.SUPPRESS)  # internal: torch side, own process
    return p.parse_args()


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


def median_ms(fn, repeats, clock="wall"):
    fn()  # warm-up (tracing / compilation)
    fn()
    now = CLOCK[clock]
    times = []
    for _ in range(repeats):
        start = now()
        fn()
        times.append(now() - start)
    return 1e3 * statistics.median(times)


def make_inputs(args):
    import numpy as np

    rng = np.random.default_rng(0)
    features = rng.standard_normal((args.batch, args.size, args.size, args.channels)).astype("float32")
    image = args.size * args.stride
    wh = rng.uniform(32, min(800, image), (args.rois, 2))
    xy = rng.uniform(0, image - wh)
    boxes = np.concatenate([xy, xy + wh], axis=1).astype("float32")
    indices = rng.integers(0, args.batch, args.rois).astype("int32")
    return features, boxes, indices


def ours(args, features, boxes, indices):
    """Trace our ops once; returns (measure() -> {label: (fwd ms, fwd+bwd ms)}, outputs)."""
    import numpy as np
    import tensorflow as tf

    from kerasnets.ops.roi_align import roi_align
    from kerasnets.ops.roi_pool import roi_pool

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    feats = tf.constant(features)
    bx, ix = tf.constant(boxes), tf.constant(indices)
    scale = 1.0 / args.stride
    ops = {
        "roi_align": lambda f, impl="auto": roi_align(f, bx, ix, args.output, scale, args.sampling,
                                                       bool(args.aligned), impl),
        "roi_pool": lambda f, training=False: roi_pool(f, bx, ix, args.output, scale, training=training),
    }
    timers, outputs = {}, {}
    variants = [("roi_align", "auto", False), ("roi_pool", None, False)]
    if args.extra:
        variants += [("roi_align", "einsum", False), ("roi_align", "einsum", True)]
    for name, impl, jit in variants:
        op = ops[name] if impl is None else (lambda f, op=ops[name], impl=impl: op(f, impl))

        fwd = tf.function(op, jit_compile=jit)
        # RoIPool in training mode keeps the forward pass's arg-max for the backward pass
        # (what a training step runs); the forward-only column is inference mode.
        train_op = (lambda f: op(f, training=True)) if name == "roi_pool" else op

        @tf.function(jit_compile=jit)
        def fwd_bwd(f, op=train_op):
            with tf.GradientTape() as tape:
                tape.watch(f)
                out = op(f)
            return tape.gradient(out, f, output_gradients=tf.ones_like(out))

        label = name if impl in (None, "auto") else f"{name}[{impl}{', XLA' if jit else ''}]"
        outputs.setdefault(name, np.asarray(fwd(feats)))
        timers[label] = (lambda fwd=fwd: fwd(feats).numpy(), lambda fwd_bwd=fwd_bwd: fwd_bwd(feats).numpy())

    def measure():
        return {label: tuple(median_ms(fn, args.repeats, args.clock) for fn in fns) for label, fns in timers.items()}

    return measure, outputs


def torchvision_numbers(args, features, boxes, indices):
    """Time torchvision in a child process: importing torch after TensorFlow can crash (triton)."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("torchvision") is None:
        return None, None
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, os.path.abspath(__file__), "--torch-worker", tmp]
        argv += [f"--{k}={v}" for k, v in vars(args).items() if k not in ("torch_worker", "extra")]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"torchvision run failed:\n{done.stderr[-2000:]}")
            return None, None
        outputs = dict(np.load(os.path.join(tmp, "outputs.npz")))
        with open(os.path.join(tmp, "times.json")) as fh:
            return {k: tuple(v) for k, v in json.load(fh).items()}, outputs


def torch_worker(args):
    import numpy as np
    import torch
    import torchvision

    features, boxes, indices = make_inputs(args)
    torch.set_num_threads(args.threads)
    feats = torch.from_numpy(np.ascontiguousarray(features.transpose(0, 3, 1, 2)))
    rois = torch.from_numpy(np.concatenate([indices[:, None].astype("float32"), boxes], axis=1))
    scale = 1.0 / args.stride
    ops = {
        "roi_align": lambda f: torchvision.ops.roi_align(f, rois, args.output, scale, args.sampling,
                                                         bool(args.aligned)),
        "roi_pool": lambda f: torchvision.ops.roi_pool(f, rois, args.output, scale),
    }
    results, outputs = {}, {}
    for name, op in ops.items():
        with torch.no_grad():
            outputs[name] = op(feats).numpy().transpose(0, 2, 3, 1)
        leaf = feats.clone().requires_grad_(True)

        def fwd_bwd(op=op, leaf=leaf):
            leaf.grad = None
            out = op(leaf)
            out.backward(torch.ones_like(out))

        def fwd(op=op):
            with torch.no_grad():
                op(feats)

        results[name] = (median_ms(fwd, args.repeats, args.clock), median_ms(fwd_bwd, args.repeats, args.clock))
    np.savez(os.path.join(args.torch_worker, "outputs.npz"), **outputs)
    with open(os.path.join(args.torch_worker, "times.json"), "w") as fh:
        json.dump(results, fh)


def median_over_rounds(rounds):
    """``{label: (fwd, fwd+bwd)}`` per round -> the median of each number over the rounds (None if none)."""
    if not rounds:
        return None
    return {label: tuple(statistics.median(r[label][i] for r in rounds) for i in range(2)) for label in rounds[0]}


def main():
    args = parse_args()
    if args.torch_worker:
        return torch_worker(args)
    features, boxes, indices = make_inputs(args)
    measure_ours, my_out = ours(args, features, boxes, indices)
    their_rounds, my_rounds, their_out = [], [], None
    for _ in range(max(args.rounds, 1)):
        theirs, their_out = torchvision_numbers(args, features, boxes, indices)
        if theirs:
            their_rounds.append(theirs)
        my_rounds.append(measure_ours())
    theirs, mine = median_over_rounds(their_rounds), median_over_rounds(my_rounds)
    print(f"features {args.batch}x{args.channels}x{args.size}x{args.size}, {args.rois} RoIs, "
          f"{args.output}x{args.output}, sampling {args.sampling}, aligned={bool(args.aligned)}, "
          f"{args.threads} threads, median {args.clock} time of {args.repeats} calls x {len(my_rounds)} rounds")
    header = f"{'op':34s} {'ours fwd':>9s} {'ours f+b':>9s}"
    if theirs:
        header += f" {'tv fwd':>9s} {'tv f+b':>9s} {'x fwd':>7s} {'x f+b':>7s} {'max|diff|':>10s}"
    print(header + "   (ms per call; x = torchvision / ours)")
    for label, (fwd, fwd_bwd) in mine.items():
        line = f"{label:34s} {fwd:9.1f} {fwd_bwd:9.1f}"
        name = label.split("[")[0]
        if theirs:
            tv_fwd, tv_fb = theirs[name]
            diff = abs(my_out[name] - their_out[name]).max() if label == name else float("nan")
            line += f" {tv_fwd:9.1f} {tv_fb:9.1f} {tv_fwd / fwd:7.2f} {tv_fb / fwd_bwd:7.2f} {diff:10.2e}"
        print(line)
    if not theirs:
        print("torch/torchvision not importable: ours only (pip install 'kerasnets[bench]' for the comparison)")


if __name__ == "__main__":
    main()
