"""SSD recipe: config checks, the Eq. 1 objective wired end to end (against an independent NumPy
re-implementation of matching + encoding + hard negatives), the augmentations, an overfit run with
AP@0.5 > 0.9, and the exports (SavedModel in a fresh process on a raw image of another size, TFLite)."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.errors import ConfigError
from kerasnets.recipes.ssd import SSDConfig, SSDRecipe, photometric_distort, ssd_random_crop
from kerasnets.registry import BUILTIN_RECIPES

TINY_NET = dict(stage_widths=(16, 32, 32), stage_depths=(1, 1, 1), top_widths=(32,), fc_width=64,
                extra_widths=(32, 32))


def first_batch(recipe, size=6):
    """The first `size` padded training examples as a batch of tensors (no tf.data pipeline)."""
    arrays = recipe._padded("train")
    return {k: tf.constant(v[:size]) for k, v in arrays.items()}


def tiny(**overrides):
    base = dict(image_size=64, num_train_images=6, num_val_images=2, batch_size=6, strategy="default",
                **TINY_NET)
    return dataclasses.replace(SSDConfig(), **{**base, **overrides})


def test_registered_and_paper_defaults():
    assert BUILTIN_RECIPES["ssd"] == "kerasnets.recipes.ssd:SSDRecipe"
    c = SSDConfig()
    assert (c.match_threshold, c.neg_pos_ratio, c.alpha) == (0.5, 3.0, 1.0)
    assert (c.score_threshold, c.nms_iou_threshold, c.max_detections, c.pre_nms_top_k) == (0.01, 0.45, 200, 400)
    assert (c.s_min, c.s_max, c.momentum, c.weight_decay) == (0.2, 0.9, 0.9, 5e-4)


def test_config_errors():
    with pytest.raises(ConfigError, match="s_min < s_max"):
        apply_overrides(SSDConfig(), {"s_min": "0.9", "s_max": "0.5"})
    with pytest.raises(ConfigError, match="stage_depths"):
        apply_overrides(SSDConfig(), {"stage_depths": "(1, 2)"})
    with pytest.raises(ConfigError, match="lr_decay_at"):
        apply_overrides(SSDConfig(), {"lr_decay_at": "(0.9, 0.5)"})


# ----------------------------------------------------------------- objective


def _np_iou(a, b):
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), -1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def _np_ssd_objective(logits, deltas, priors, gt_boxes, gt_classes, num_objects):
    """Liu et al. Eq. 1 from scratch: match (best prior per GT + IoU >= 0.5), encode (0.1/0.2), mine 3:1."""
    total_conf = total_loc = 0.0
    npos_all = 0
    for b in range(len(logits)):
        n = num_objects[b]
        iou = _np_iou(gt_boxes[b, :n], priors)  # [G, A]
        match = np.where(iou.max(0) >= 0.5, iou.argmax(0), -1)
        for g in range(n):
            match[iou[g].argmax()] = g
        labels = np.where(match >= 0, gt_classes[b, np.maximum(match, 0)], 0)
        pos = labels > 0
        lse = np.log(np.exp(logits[b].astype(np.float64)).sum(-1))
        ce = lse - logits[b][np.arange(len(labels)), labels]
        hard = np.argsort(-np.where(pos, -np.inf, ce), kind="stable")[: 3 * pos.sum()]
        total_conf += ce[pos].sum() + ce[hard].sum()
        g = gt_boxes[b, np.maximum(match, 0)]
        pw, ph = priors[:, 2] - priors[:, 0], priors[:, 3] - priors[:, 1]
        pcx, pcy = priors[:, 0] + pw / 2, priors[:, 1] + ph / 2
        gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
        target = np.stack([(g[:, 0] + gw / 2 - pcx) / pw / 0.1, (g[:, 1] + gh / 2 - pcy) / ph / 0.1,
                           np.log(gw / pw) / 0.2, np.log(gh / ph) / 0.2], -1)
        err = np.abs(deltas[b] - target)
        sl1 = np.where(err < 1, 0.5 * err**2, err - 0.5).sum(-1)
        total_loc += sl1[pos].sum()
        npos_all += pos.sum()
    return total_conf / npos_all, total_loc / npos_all


def test_training_objective_matches_an_independent_numpy_version():
    recipe = SSDRecipe(tiny(random_crop=False, photometric=False, horizontal_flip=False))
    model = recipe.build_model()
    batch = first_batch(recipe)
    terms = model.losses_on(batch, training=False)
    logits, deltas = (np.asarray(t, np.float64) for t in model(recipe.preprocess(batch["images"])))
    conf, loc = _np_ssd_objective(logits, deltas, np.asarray(model.default_boxes, np.float64),
                                  batch["boxes"].numpy().astype(np.float64), batch["classes"].numpy(),
                                  batch["num_objects"].numpy())
    np.testing.assert_allclose(float(terms["classification"]), conf, rtol=2e-4)
    np.testing.assert_allclose(float(terms["box"]), loc, rtol=2e-4)


def test_default_boxes_follow_the_paper_scales():
    recipe = SSDRecipe(tiny())
    model = recipe.build_model()
    boxes = np.asarray(model.default_boxes)
    assert len(boxes) == 16 * 16 * 4 + 8 * 8 * 6 + 4 * 4 * 6 + 2 * 2 * 4  # 4 maps: stride 4, 8, 16, 32
    # first map: s_1 = 0.2 square (12.8 px) centred on cell (0, 0) of stride 4, then sqrt(0.2 * s_2)
    np.testing.assert_allclose(boxes[0], [2 - 6.4, 2 - 6.4, 2 + 6.4, 2 + 6.4], rtol=1e-5)
    s2 = 0.2 + 0.7 / 3  # s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)
    np.testing.assert_allclose(boxes[1, 2] - boxes[1, 0], np.sqrt(0.2 * s2) * 64, rtol=1e-5)


# ---------------------------------------------------------------- augmentation


def _block_batch():
    """Images with one white block each; the block's box is the ground truth (plus one padding row)."""
    images = np.zeros((8, 64, 64, 3), np.uint8)
    boxes = np.zeros((8, 2, 4), np.float32)
    rng = np.random.default_rng(0)
    for i in range(8):
        x, y = rng.integers(4, 30, 2)
        w, h = rng.integers(14, 30, 2)
        images[i, y : y + h, x : x + w] = 255
        boxes[i, 0] = [x, y, x + w, y + h]
    return {"images": tf.constant(images), "boxes": tf.constant(boxes),
            "classes": tf.constant([[1, 0]] * 8, tf.int32), "num_objects": tf.constant([1] * 8, tf.int32)}


def test_random_crop_moves_boxes_with_the_pixels():
    batch = _block_batch()
    out = ssd_random_crop(batch, tf.constant([3, 4], tf.int64))
    again = ssd_random_crop(batch, tf.constant([3, 4], tf.int64))
    np.testing.assert_array_equal(out["images"], again["images"])  # stateless
    images, boxes, num = out["images"].numpy(), out["boxes"].numpy(), out["num_objects"].numpy()
    changed = [i for i in range(8) if not np.array_equal(images[i], batch["images"][i])]
    assert changed, "no image was cropped"
    for i in range(8):
        if num[i] == 0:
            continue
        ys, xs = np.nonzero(images[i, ..., 0] > 127)
        # the block (stretched by the patch's resize) is where its box says, to a pixel of blur
        np.testing.assert_allclose(boxes[i, 0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], atol=1.6)
        assert out["classes"].numpy()[i, 0] == 1
    np.testing.assert_array_equal(out["classes"].numpy()[:, 1], 0)  # padding stays padding


def test_random_crop_drops_objects_whose_centre_leaves_the_patch():
    images = np.zeros((1, 64, 64, 3), np.uint8)
    boxes = tf.constant([[[2.0, 2, 12, 12], [30, 30, 60, 60]]])
    batch = {"images": tf.constant(images), "boxes": boxes, "classes": tf.constant([[2, 3]], tf.int32),
             "num_objects": tf.constant([2], tf.int32)}
    kept_counts = set()
    for s in range(24):
        out = ssd_random_crop(batch, tf.constant([s, 0], tf.int64))
        n = int(out["num_objects"][0])
        kept_counts.add(n)
        cls = out["classes"].numpy()[0]
        assert np.all(cls[:n] > 0) and np.all(cls[n:] == 0)
        assert np.all(out["boxes"].numpy()[0, n:] == 0)
        if n == 1:
            assert cls[0] in (2, 3)
    assert kept_counts >= {1, 2}


def test_photometric_distortion_is_stateless_and_uint8():
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), np.uint8))
    a = photometric_distort(images, tf.constant([1, 2], tf.int64))
    b = photometric_distort(images, tf.constant([1, 2], tf.int64))
    assert a.dtype == tf.uint8 and a.shape == images.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, images)


def test_augmented_batches_keep_the_batch_contract():
    recipe = SSDRecipe(tiny(max_objects=4))
    batch = recipe.augment(first_batch(recipe), tf.constant([0, 2], tf.int64))
    assert batch["images"].dtype == tf.uint8 and batch["images"].shape == (6, 64, 64, 3)
    assert batch["boxes"].shape == (6, 4, 4) and batch["classes"].dtype == tf.int32
    boxes, num = batch["boxes"].numpy(), batch["num_objects"].numpy()
    for i in range(6):
        assert np.all(boxes[i, : num[i], 2:] > boxes[i, : num[i], :2])  # real boxes stay non-empty
        assert np.all(boxes[i, : num[i]] >= 0) and np.all(boxes[i, : num[i]] <= 64)


# ------------------------------------------------------------ training + export


@pytest.mark.slow
def test_overfits_a_few_images_then_exports_for_serving_and_tflite(tmp_path):
    from PIL import Image

    from kerasnets.export import export_run
    from kerasnets.export.verify import run_tflite
    from kerasnets.ops.boxes import pairwise_iou
    from kerasnets.testing import report_figure

    config = tiny(steps=80, learning_rate=0.05, warmup_steps=10, lr_decay_at=(), weight_decay=0.0,
                  random_crop=False, photometric=False, horizontal_flip=False)
    recipe = SSDRecipe(config)
    model = recipe.build_model()
    data = iter(recipe.build_dataset("train"))
    step = tf.function(model.train_step)
    losses = [float(step(next(data))["loss"]) for _ in range(config.steps)]
    report_figure("loss_ratio", np.mean(losses[-5:]) / np.mean(losses[:5]))
    assert np.mean(losses[-5:]) < 0.1 * np.mean(losses[:5])
    metrics = recipe.evaluate(model, "train")
    report_figure("bbox/AP50", metrics["bbox/AP50"])
    assert metrics["bbox/AP50"] > 0.9, metrics

    # A raw image of another size: training image 0 upscaled to 128 x 128, resized back inside the graph.
    # (Non-square inputs are letterboxed: tests/detection/test_detection_recipe_base.py.)
    example = recipe.examples("train")[0]
    raw = np.asarray(Image.fromarray(example["image"]).resize((128, 128), Image.BILINEAR))[None]
    report = export_run(recipe, model, formats=("savedmodel", "tflite"), export_root=str(tmp_path),
                        sample_inputs={"images": raw})
    assert report.max_error("savedmodel") <= 1e-5 and report.max_error("tflite") <= 1e-4
    endpoints = recipe.export_endpoints(model)
    served = endpoints["serving_default"].fn(images=tf.constant(raw))
    letterboxed, scale = recipe.letterbox(tf.constant(raw))
    assert float(scale) == 0.5 and letterboxed.shape == (1, 64, 64, 3)
    fixed = endpoints["fixed_size"].fn(images=letterboxed)
    n = int(fixed["num_detections"][0])
    assert n > 0 and int(served["num_detections"][0]) == n
    np.testing.assert_allclose(served["boxes"].numpy()[0, :n], fixed["boxes"].numpy()[0, :n] * 2.0, atol=1e-3)
    np.testing.assert_array_equal(served["classes"], fixed["classes"])
    # ... and they find the upscaled objects in the input's pixels.
    top = served["boxes"].numpy()[0, :10]
    iou = pairwise_iou(top, example["boxes"] * 2.0).numpy()
    report_figure("best_iou_per_object", iou.max(axis=0))
    assert np.all(iou.max(axis=0) > 0.5), iou.max(axis=0)

    # TFLite: builtin ops only (NMS inside) on the letterboxed fixed-size input, same detections.
    tflite = run_tflite(report.tflite["tflite"], {"images": example["image"][None]}, signature="fixed_size")
    fixed = endpoints["fixed_size"].fn(images=tf.constant(example["image"][None]))
    assert int(tflite["num_detections"][0]) == int(fixed["num_detections"][0])
    np.testing.assert_allclose(tflite["boxes"], fixed["boxes"].numpy(), atol=1e-3)
    np.testing.assert_array_equal(tflite["classes"], fixed["classes"].numpy())


@pytest.mark.slow
def test_raw_endpoint_converts_to_full_integer_tflite(tmp_path):
    from kerasnets.export import export_saved_model
    from kerasnets.export.tflite import convert_saved_model
    from kerasnets.export.verify import run_tflite

    recipe = SSDRecipe(tiny(stage_widths=(8, 16), stage_depths=(1, 1), top_widths=(16,), fc_width=16,
                            extra_widths=(16,), num_train_images=8, batch_size=4))
    model = recipe.build_model()
    saved = export_saved_model(recipe, model, export_root=str(tmp_path))
    flatbuffer = convert_saved_model(saved, "tflite-int8", "raw", lambda: recipe.representative_dataset(8))
    path = tmp_path / "raw_int8.tflite"
    path.write_bytes(flatbuffer)
    image = recipe.examples("validation")[0]["image"][None]
    got = run_tflite(path, {"images": image}, signature="raw")
    want = {k: v.numpy() for k, v in recipe.export_endpoints(model)["raw"].fn(images=tf.constant(image)).items()}
    assert got["boxes"].shape == want["boxes"].shape == (1, len(model.default_boxes), 4)
    assert got["scores"].shape == (1, len(model.default_boxes), 3)
    np.testing.assert_allclose(got["boxes"], want["boxes"], atol=64 / 16)  # int8 steps of a [0, 64] range
    np.testing.assert_allclose(got["scores"], want["scores"], atol=0.03)
