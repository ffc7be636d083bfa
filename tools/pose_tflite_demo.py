"""Run an exported HRNet pose model (.tflite) with LiteRT on one image and draw the keypoints.

    python tools/pose_tflite_demo.py MODEL.tflite [--image person.jpg] [--out pose.png]
                                    [--box x,y,w,h] [--min-score 0.2] [--threads 2]

The model comes from `kerasnets export recipe=hrnet run=DIR format=tflite-int8` (or
`format=tflite`). Without `--image` a synthetic stick figure (`kerasnets.data.skeleton`,
seed `--seed`) is used.

Pre-processing (what the exported `serving_default` signature expects):
1. RGB image; if `--box` is given, the person box is grown to the model's aspect ratio
   around its centre and by x1.25 (HRNet's `_xywh2cs`), otherwise the whole image is used
   as the box;
2. that region is resampled (bilinear) to the model's H x W input;
3. pixel values / 255 -> float32 in [0, 1] (ImageNet mean/std normalisation is inside the
   model); for an int8 model the floats are quantized with the input tensor's scale and zero
   point, `q = round(x / scale) + zero_point`.

Post-processing: the model already decodes the heatmaps in-graph (argmax + HRNet's
quarter-pixel step toward the higher neighbour, x4) into `keypoints [1, 17, 2]` (x, y) in
input pixels, with `scores [1, 17]` = heatmap maxima; int8 outputs are dequantized
`x = (q - zero_point) * scale`. Keypoints are mapped back to the image through the crop's
affine map; joints with score <= `--min-score` (HRNet: 0.2) are not drawn. The PNG shows the
image with the COCO skeleton (left joints green, right yellow) and the printed table lists
every joint.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _quantize(x, detail):
    scale, zero = detail["quantization"]
    if scale and np.issubdtype(detail["dtype"], np.integer):
        info = np.iinfo(detail["dtype"])
        return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(detail["dtype"])
    return x.astype(detail["dtype"])


def _dequantize(x, detail):
    scale, zero = detail["quantization"]
    if scale and np.issubdtype(detail["dtype"], np.integer):
        return (x.astype(np.float32) - zero) * np.float32(scale)
    return x.astype(np.float32)


def crop_affine(box, out_hw, padding=1.25):
    """Crop -> image affine `[2, 3]` (pixel-corner coordinates) for an xywh box."""
    x, y, w, h = box
    out_h, out_w = out_hw
    aspect = out_w / out_h
    cx, cy = x + w / 2, y + h / 2
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    w, h = w * padding, h * padding
    return np.array([[w / out_w, 0, cx - w / 2], [0, h / out_h, cy - h / 2]])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--image", help="RGB image file (default: a synthetic stick figure)")
    p.add_argument("--box", help="person box x,y,w,h in image pixels (default: the whole image, no padding)")
    p.add_argument("--out", default="pose_demo.png")
    p.add_argument("--min-score", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=123)
    args = p.parse_args(argv)

    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    from kerasnets.data import skeleton

    interpreter = Interpreter(model_path=args.model, num_threads=args.threads)
    runner = interpreter.get_signature_runner("serving_default")
    in_detail = runner.get_input_details()["images"]
    out_details = runner.get_output_details()
    _, height, width, _ = (int(v) for v in in_detail["shape"])

    if args.image:
        picture = Image.open(args.image).convert("RGB")
    else:
        synthetic = skeleton.generate(1, height=height * 2, width=width * 2, seed=args.seed)
        picture = Image.fromarray((synthetic.images[0] * 255 + 0.5).astype(np.uint8))
    if args.box:
        box = [float(v) for v in args.box.split(",")]
        if len(box) != 4:
            raise SystemExit("--box needs x,y,w,h")
        affine = crop_affine(box, (height, width))
    else:
        affine = np.array([[picture.width / width, 0, 0], [0, picture.height / height, 0]])
    crop = picture.transform((width, height), Image.AFFINE, data=tuple(affine.reshape(-1)), resample=Image.BILINEAR)
    images = np.asarray(crop, np.float32)[None] / 255.0

    start = time.perf_counter()
    raw = runner(images=_quantize(images, in_detail))
    elapsed = (time.perf_counter() - start) * 1000
    out = {k: _dequantize(v, out_details[k]) for k, v in raw.items()}
    kp = out["keypoints"][0]
    scores = out["scores"][0]
    # crop pixel centres -> continuous crop coordinates -> image.
    in_image = (kp + 0.5) @ affine[:, :2].T + affine[:, 2] - 0.5

    scale = max(1, 384 // max(picture.height, picture.width))
    image = np.asarray(picture, np.float32) / 255.0
    drawn = skeleton.draw_keypoints(image, np.concatenate([in_image, scores[:, None]], -1),
                                    min_score=args.min_score, scale=scale)  # fmt: skip
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    Image.fromarray(drawn).save(args.out)
    print(f"{args.model}: input {in_detail['dtype'].__name__} [1, {height}, {width}, 3], {elapsed:.1f} ms")
    for name, (x, y), s in zip(skeleton.KEYPOINT_NAMES, in_image, scores):
        print(f"  {name:15s} x {x:7.1f}  y {y:7.1f}  score {s:.2f}{'' if s > args.min_score else '  (hidden)'}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
