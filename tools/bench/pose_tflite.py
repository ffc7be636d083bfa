"""HRNet on-device benchmark: size, latency and accuracy of float32 vs int8 TFLite vs Keras predict.

    python tools/bench/pose_tflite.py --run DIR [--threads 2] [--repeats 50] [--num-val 256]
    python tools/bench/pose_tflite.py --untrained   # smoke test on a freshly built model

One model (the last checkpoint of an `hrnet` run) is exported with `kerasnets.export.export_run`
to float32 and full-int8 TFLite (builtin ops only, int8 calibrated on the recipe's
`representative_dataset`), into a temporary export root. Then, all at batch 1 with the same
thread count (TensorFlow intra/inter-op threads and LiteRT `num_threads`):

* size: the two `.tflite` files (and the int8 / float ratio);
* latency: median milliseconds per image of `model.predict(x, verbose=0)` (Keras' public
  inference call, what the issue compares against), of the model called through a
  `tf.function` (the fastest Keras/TF path, for context), and of LiteRT `invoke` for each
  file (quantization of the input and dequantization of the outputs included);
  rounds alternate between the contenders so machine load hits them alike;
* accuracy on the recipe's validation split: PCK@alpha and OKS AP of the Keras model (no flip
  test, the exported graph has none), of the float32 file and of the int8 file, and the
  int8 - float drop in points.

Prints a table and writes the numbers as JSON (`--json`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="an hrnet run directory (kerasnets train recipe=hrnet run=DIR)")
    p.add_argument("--untrained", action="store_true", help="benchmark a freshly built default model instead")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=50, help="timed calls per contender")
    p.add_argument("--num-val", type=int, default=None, help="validation images for the accuracy (default: all)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if not args.run and not args.untrained:
        p.error("pass --run DIR (or --untrained for a smoke test)")
    return args


def _time_rounds(contenders: dict, repeats: int) -> dict:
    """Median ms per call of each contender, calls interleaved round by round."""
    for fn in contenders.values():  # warm-up
        for _ in range(3):
            fn()
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(v) for name, v in times.items()}


def main(argv=None):
    args = parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from kerasnets.export import export_run
    from kerasnets.metrics import pose as pose_metrics
    from kerasnets.recipes.hrnet import HRNetConfig, HRNetRecipe
    from kerasnets.training import engine
    from kerasnets.training import run_dir as run_dir_lib

    if args.run:
        config = run_dir_lib.load_config(args.run, HRNetRecipe)
        recipe = HRNetRecipe(config)
        model, step = engine.build_and_restore(recipe, args.run)
    else:
        recipe = HRNetRecipe(HRNetConfig())
        model, step = recipe.build_model(), 0
    c = recipe.config
    val = recipe.split("validation")
    n = len(val["images"]) if args.num_val is None else min(args.num_val, len(val["images"]))
    images = val["images"][:n].astype(np.float32) / 255.0

    root = tempfile.mkdtemp(prefix="kn-pose-bench-")
    report = export_run(recipe, model, formats=["tflite", "tflite-int8"], export_root=root)
    paths = {"float32": report.tflite["tflite"], "int8": report.tflite["tflite-int8"]}
    sizes = {k: os.path.getsize(p) for k, p in paths.items()}

    runners = {}
    for kind, path in paths.items():
        interp = Interpreter(model_path=path, num_threads=args.threads)
        runner = interp.get_signature_runner("serving_default")
        runners[kind] = (runner, runner.get_input_details()["images"], runner.get_output_details())

    def run_lite(kind, x):
        runner, detail, outs = runners[kind]
        scale, zero = detail["quantization"]
        if detail["dtype"] == np.int8:
            x = np.clip(np.round(x / scale) + zero, -128, 127).astype(np.int8)
        raw = runner(images=x)
        result = {}
        for name, value in raw.items():
            s, z = outs[name]["quantization"]
            result[name] = (value.astype(np.float32) - z) * np.float32(s) if outs[name]["dtype"] == np.int8 else value
        return result

    endpoint = recipe.export_endpoints(model)["serving_default"].fn
    serve = tf.function(endpoint, input_signature=[tf.TensorSpec([None, *c.input_shape()], tf.float32)])
    one = images[:1]
    one_tf = tf.constant(one)
    latency = _time_rounds(
        {
            "keras_predict": lambda: model.predict(one, verbose=0),
            "tf_function": lambda: serve(one_tf),
            "tflite_float32": lambda: run_lite("float32", one),
            "tflite_int8": lambda: run_lite("int8", one),
        },
        args.repeats,
    )

    def metrics(kp, maxvals):
        pck, _ = pose_metrics.pck(kp, val["keypoints"][:n], val["boxes"][:n], alpha=c.pck_alpha)
        conf = np.where(maxvals > 0.2, maxvals, 0.0)
        score = conf.sum(-1) / np.maximum((maxvals > 0.2).sum(-1), 1)
        in_image = np.stack(
            [(k + val["pixel_offset"]) @ a[:, :2].T + a[:, 2] for k, a in zip(kp, val["to_image"][:n])]
        )
        gt = val["ground_truth"]
        keep = set(int(i) for i in val["image_ids"][:n])
        gt = {**gt, "images": [i for i in gt["images"] if i["id"] in keep],
              "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}  # fmt: skip
        ap = pose_metrics.oks_ap(in_image, score, None, None, None, image_ids=val["image_ids"][:n], ground_truth=gt)
        return {"pck": pck, "oks_ap": ap["AP"]}

    accuracy = {}
    kp, mv = recipe.predict(model, images, flip=False)
    accuracy["keras"] = metrics(kp, mv)
    for kind in paths:
        outs = [run_lite(kind, images[i : i + 1]) for i in range(n)]
        kp = np.concatenate([o["keypoints"] for o in outs])
        mv = np.concatenate([o["scores"] for o in outs])
        accuracy[kind] = metrics(kp, mv)

    result = {
        "run": args.run,
        "step": step,
        "config": {"input": list(c.input_shape()), "width": c.width, "num_modules": list(c.num_modules),
                   "num_blocks": c.num_blocks},  # fmt: skip
        "params": int(sum(np.prod(v.shape) for v in model.network.trainable_variables)),
        "threads": args.threads,
        "size_bytes": sizes,
        "int8_over_float_size": sizes["int8"] / sizes["float32"],
        "latency_ms": latency,
        "keras_predict_over_int8": latency["keras_predict"] / latency["tflite_int8"],
        "accuracy": accuracy,
        "pck_drop_points": 100.0 * (accuracy["float32"]["pck"] - accuracy["int8"]["pck"]),
        "oks_ap_drop_points": 100.0 * (accuracy["float32"]["oks_ap"] - accuracy["int8"]["oks_ap"]),
        "num_val": n,
    }
    print(f"HRNet W{c.width} modules {tuple(c.num_modules)} input {c.input_shape()}, "
          f"{result['params']:,} params, step {step}, {args.threads} threads, batch 1")  # fmt: skip
    print(f"size: float32 {sizes['float32'] / 1024:.0f} KB, int8 {sizes['int8'] / 1024:.0f} KB "
          f"(int8/float = 1/{1 / result['int8_over_float_size']:.2f})")  # fmt: skip
    for name, ms in latency.items():
        print(f"latency {name:15s} {ms:8.2f} ms")
    print(f"Keras predict / int8 TFLite = {result['keras_predict_over_int8']:.1f}x")
    for name, acc in accuracy.items():
        print(f"accuracy {name:8s} PCK@{c.pck_alpha} {100 * acc['pck']:.1f}  OKS AP {100 * acc['oks_ap']:.1f}")
    print(f"int8 drop vs float32: PCK {result['pck_drop_points']:.2f} points, OKS AP {result['oks_ap_drop_points']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
