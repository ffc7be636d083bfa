"""Train `began` on its embedded digits and score the generator's diversity with a digits classifier.

The numbers behind the README's began row: a small CNN trained on the real digits
(`kerasnets.metrics.gan.train_feature_classifier`) labels 1000 samples; prints the
classifier score (IS; real digits reach ~6), FID / KID against real digits, the share of
samples per predicted digit (mode collapse shows as a few digits taking most samples) and
the training time. Overrides are the CLI's ``key=value``.

    python tools/checks/began_samples.py [seed=1] [lambda_k=0.01] [--out results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="began config overrides, key=value")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", default=None, help="append the result as one JSON line to this file")
    args = parser.parse_args()

    import numpy as np

    from kerasnets.config import apply_overrides
    from kerasnets.data.digits import load_digits
    from kerasnets.metrics.gan import evaluate_samples, train_feature_classifier
    from kerasnets.recipes.began import BeganConfig, BeganRecipe
    from kerasnets.training import engine

    overrides = dict(item.split("=", 1) for item in args.overrides)
    config = apply_overrides(BeganConfig(), overrides)
    if config.data != "embedded":
        parser.error("this check scores the embedded digits data set only")
    start, cpu_start = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as run_dir:
        result = engine.train(BeganRecipe(config), run_dir)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start

    (train, labels), _ = load_digits(test_fraction=0.1, seed=0, image_size=config.image_size, value_range=(-1.0, 1.0))
    classifier = train_feature_classifier(train, labels, 10, epochs=30)
    z = np.random.default_rng(123).uniform(-1, 1, (args.samples, config.h)).astype("float32")
    fakes = np.asarray(result.model.generator(z, training=False))
    scores = evaluate_samples(classifier, train[: args.samples], fakes)
    probabilities = np.asarray(classifier.predict(fakes, verbose=0)[1])
    share = np.bincount(probabilities.argmax(1), minlength=10) / len(probabilities)
    report = {"overrides": overrides, **scores, "share_per_digit": share.round(3).tolist(),
              "M_end": result.history[-1]["M"], "train_wall_s": round(wall, 1), "train_cpu_s": round(cpu, 1)}
    print(json.dumps(report, indent=2))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
