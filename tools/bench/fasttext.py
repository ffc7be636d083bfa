"""Benchmark: the `fasttext` recipe vs Facebook's fastText (PyPI `fasttext-numpy2-wheel`) on the same data.

Both train on the same corpus (default: the recipe's embedded synthetic topic
corpus; `--data ag_news --data-dir DIR` for a prepared tfds `ag_news_subset`)
with the same hyper-parameters: dim 10, word bigrams, the same bucket count,
the same number of epochs, lr decaying linearly to 0, softmax loss,
min_count 1. The text is normalized identically (fastText gets the output of
`kerasnets.ops.text.normalize_text`, lowercased and punctuation-spaced, as the
paper's script prepares it), so the vocabularies and FNV-1a bigram buckets are
the same. Differences left: fastText does per-example Hogwild SGD over
`--threads` threads, the recipe mini-batch SGD (`batch_size`, lr x batch).

Printed: test accuracy of both, training wall time of both (recipe: the
engine's training loop including tracing, not data generation or
evaluation; fastText: `train_supervised`), and the ratios.

    python tools/bench/fasttext.py [--epochs 5] [--batch 32] [--lr 0.25] [--buckets 1048576] [--threads 2]

fastText is optional (not in setup.cfg): `pip install fasttext-numpy2-wheel`
(the `fasttext` sdist needs a C++ build; `fasttext-wheel` breaks under NumPy 2).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="embedded", choices=("embedded", "ag_news"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.25)
    parser.add_argument("--buckets", type=int, default=2**20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # This file is named fasttext.py: keep its folder off the path so `import fasttext` finds the package.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    sys.modules.pop("fasttext", None)
    try:
        import fasttext
    except ImportError:
        print("fastText is not installed: pip install fasttext-numpy2-wheel", file=sys.stderr)
        return 2
    import numpy as np
    import tensorflow as tf

    from kerasnets.ops.text import normalize_text
    from kerasnets.recipes.fasttext import FastTextConfig, FastTextRecipe
    from kerasnets.training import engine

    probe = FastTextRecipe(FastTextConfig(data=args.data, data_dir=args.data_dir, seed=args.seed))
    (x_tr, y_tr), (x_te, y_te), _ = probe.data()
    steps = max(1, int(round(args.epochs * len(x_tr) / args.batch)))
    config = FastTextConfig(
        data=args.data, data_dir=args.data_dir, seed=args.seed, steps=steps, batch_size=args.batch,
        learning_rate=args.lr, buckets=args.buckets, word_ngrams=2, strategy="default",
        checkpoint_every=10**9, log_every=max(1, steps // 10),
    )
    recipe = FastTextRecipe(config)
    recipe._data = probe._data  # same arrays, generated once

    with tempfile.TemporaryDirectory() as tmp:
        model_holder = {}

        class Timed(FastTextRecipe):
            def on_train_end(self, model, run_dir, history):
                model_holder["t_end"] = time.perf_counter()
                return {}

        timed = Timed(config)
        timed._data = probe._data
        timed._vocab = recipe.vocabulary()
        t0 = time.perf_counter()
        result = engine.train(timed, os.path.join(tmp, "run"), progress_stream=open(os.devnull, "w"))
        ours_time = model_holder["t_end"] - t0
        ours_acc = timed.evaluate(result.model)["test_accuracy"]

        def lines(x, y):
            norm = normalize_text(tf.constant(list(x))).numpy()
            return "".join(f"__label__{label} {' '.join(t.decode('utf-8', 'replace').split())}\n"
                           for t, label in zip(norm, y))

        train_path = os.path.join(tmp, "train.txt")
        with open(train_path, "w") as f:
            f.write(lines(x_tr, y_tr))
        t0 = time.perf_counter()
        ft = fasttext.train_supervised(train_path, dim=10, lr=args.lr, wordNgrams=2, minCount=1, bucket=args.buckets,
                                       epoch=args.epochs, thread=args.threads, loss="softmax", verbose=0,
                                       seed=args.seed)
        ft_time = time.perf_counter() - t0
        test_lines = lines(x_te, y_te).splitlines()
        pred = [ft.predict(line.split(" ", 1)[1])[0][0] for line in test_lines]
        ft_acc = float(np.mean([p == f"__label__{y}" for p, y in zip(pred, y_te)]))

    print(f"data {args.data}: {len(x_tr)} train / {len(x_te)} test, {args.epochs} epochs, dim 10, bigrams, "
          f"{args.buckets} buckets")
    print(f"kerasnets fasttext: accuracy {ours_acc:.4f}  train {ours_time:.1f} s  ({steps} steps of {args.batch})")
    print(f"fastText {fasttext.__name__}:  accuracy {ft_acc:.4f}  train {ft_time:.1f} s  ({args.threads} threads)")
    print(f"ratios: accuracy {ours_acc / ft_acc:.3f}, training time {ours_time / ft_time:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
