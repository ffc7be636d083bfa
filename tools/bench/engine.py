"""Benchmark: the engine's training step vs a bare `tf.function` step, same model and batch.

Both sides train the `resnet` recipe's model (ResNet-20 by default) on one
fixed random batch (32 x 32x32x3, repeated through `tf.data`), on the default
strategy (one device):

* bare: `@tf.function def step(it): return model.train_step(next(it))`, called
  in a Python loop with no host synchronisation until the end (the fastest a
  hand-written loop gets);
* engine: `kerasnets.training.engine.train(recipe, run_dir)` exactly as a user
  runs it (progress line on a terminal, NaN/inf check, TensorBoard scalars
  every `log_every` steps, history). Its progress stream is a fake terminal
  that records the time of every step, so build, tracing, the final checkpoint
  and `on_train_end` are outside the timed window.

Each round times `--warmup` untimed then `--steps` timed steps of each side,
alternating which goes first to spread machine drift; the ratio printed is
the median over rounds of engine steps/s divided by bare steps/s (goal >= 0.90),
and the same ratio of steps per CPU-second of this process (less sensitive to
other processes competing for the cores).

    python tools/bench/engine.py [--depth 20] [--batch 32] [--steps 100] [--warmup 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _random_batch(batch, size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, size=(batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, 10, size=(batch,)).astype("int32")
    return images, labels


def make_recipe(depth: int, batch: int, steps: int):
    """The `resnet` recipe on one fixed random batch (no data loading, no evaluation)."""
    import numpy as np
    import tensorflow as tf

    from kerasnets.recipes.resnet import ResNetConfig, ResNetRecipe

    class RandomBatchResNet(ResNetRecipe):
        def build_dataset(self, split="train", start_step=0):
            return tf.data.Dataset.from_tensors(_random_batch(batch, 32)).repeat().prefetch(2)

        def data(self):  # no data set: only the pixel mean is read (by build_model)
            return types.SimpleNamespace(pixel_mean=np.zeros((32, 32, 3), "float32"))

        def on_train_end(self, model, run_dir, history):
            return {}

    config = ResNetConfig(
        depth=depth,
        batch_size=batch,
        steps=steps,
        image_size=32,
        strategy="default",
        checkpoint_every=10**9,
    )
    return RandomBatchResNet(config)


class _StepClock:
    """A fake terminal for the engine's progress line: records when each step finished."""

    def __init__(self):
        self.times = []  # (wall, process CPU) seconds

    def isatty(self):
        return True

    def write(self, text):
        if text.startswith("\r"):
            self.times.append((time.perf_counter(), time.process_time()))

    def flush(self):
        pass


def time_engine(depth, batch, warmup, steps) -> tuple[float, float]:
    """(wall, CPU) steps/s of `engine.train` over steps warmup+1 .. warmup+steps."""
    from kerasnets.training import engine

    recipe = make_recipe(depth, batch, warmup + steps)
    clock = _StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        engine.train(recipe, os.path.join(tmp, "run"), progress_stream=clock)
    if len(clock.times) != warmup + steps:
        raise RuntimeError(f"expected {warmup + steps} progress updates, got {len(clock.times)}")
    (w0, c0), (w1, c1) = clock.times[warmup - 1], clock.times[-1]
    return steps / (w1 - w0), steps / (c1 - c0)


class BareLoop:
    """The same recipe model trained by a plain `tf.function` loop."""

    def __init__(self, depth, batch):
        import tensorflow as tf

        recipe = make_recipe(depth, batch, 1)
        self.model = recipe.build_model()
        self.iterator = iter(recipe.build_dataset("train"))

        @tf.function
        def step(it):
            return self.model.train_step(next(it))

        self.step = step

    def time(self, warmup, steps) -> tuple[float, float]:
        """(wall, CPU) steps/s over `steps` steps after `warmup`."""
        logs = None
        for _ in range(warmup):
            logs = self.step(self.iterator)
        float(logs["loss"])
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            logs = self.step(self.iterator)
        float(logs["loss"])  # wait for the last step
        return steps / (time.perf_counter() - w0), steps / (time.process_time() - c0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1 or args.rounds < 1:
        parser.error("--warmup, --steps and --rounds must be >= 1")

    bare = BareLoop(args.depth, args.batch)
    ratios, cpu_ratios = [], []
    print(f"ResNet-{args.depth}, batch {args.batch} x 32x32x3, {args.steps} timed steps after {args.warmup} warm-up")
    for r in range(args.rounds):
        if r % 2 == 0:
            b = bare.time(args.warmup, args.steps)
            e = time_engine(args.depth, args.batch, args.warmup, args.steps)
        else:
            e = time_engine(args.depth, args.batch, args.warmup, args.steps)
            b = bare.time(args.warmup, args.steps)
        ratios.append(e[0] / b[0])
        cpu_ratios.append(e[1] / b[1])
        print(
            f"round {r + 1}: bare {b[0]:.2f} step/s  engine {e[0]:.2f} step/s  ratio {ratios[-1]:.3f}"
            f"  (per CPU-second: bare {b[1]:.2f}, engine {e[1]:.2f}, ratio {cpu_ratios[-1]:.3f})",
            flush=True,
        )
    ratio, cpu_ratio = statistics.median(ratios), statistics.median(cpu_ratios)
    verdict = "OK" if ratio >= 0.90 else "BELOW GOAL"
    print(f"engine / bare steps/s (median of {args.rounds}): {ratio:.3f}  (goal >= 0.90: {verdict})")
    print(f"engine / bare steps per CPU-second (median; robust to other load): {cpu_ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
