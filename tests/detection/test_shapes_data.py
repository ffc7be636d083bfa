"""Synthetic shapes: determinism and annotation consistency; padding and the training stream."""

import numpy as np
import pytest

from kerasnets.data import detection, shapes

KW = dict(image_size=64, max_objects=4, min_size=0.2, max_size=0.45)


@pytest.fixture(scope="module")
def examples():
    return shapes.generate_shapes(12, seed=3, **KW)


def test_deterministic_by_seed_and_index(examples):
    again = shapes.generate_shapes(12, seed=3, **KW)
    for a, b in zip(examples, again):
        for key in ("image", "boxes", "classes", "masks", "keypoints"):
            np.testing.assert_array_equal(a[key], b[key])
    alone = shapes.shapes_example(5, seed=3, **KW)  # image 5 regenerated on its own
    np.testing.assert_array_equal(alone["image"], examples[5]["image"])
    other = shapes.generate_shapes(3, seed=4, **KW)
    assert not np.array_equal(other[0]["image"], examples[0]["image"])


def test_annotations_are_consistent_with_visible_pixels(examples):
    counts = []
    for ex in examples:
        detection.validate_example(ex)
        n = len(ex["classes"])
        counts.append(n)
        assert 1 <= n <= 4 and set(ex["classes"]) <= {1, 2, 3}
        masks = ex["masks"].astype(bool)
        assert masks.sum(0).max() <= 1, "visible masks of different objects overlap"
        for i in range(n):
            ys, xs = np.nonzero(masks[i])
            x1, y1, x2, y2 = ex["boxes"][i]
            # tight box of the visible mask: contains it and touches it on all four sides
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
            # the visible pixels show one flat colour (only pixel noise, std 4)
            assert ex["image"][masks[i]].astype(float).std(0).max() < 12
            kp = ex["keypoints"][i]
            assert kp.shape == (5, 3) and set(np.unique(kp[:, 2])) <= {1.0, 2.0}
            visible = kp[kp[:, 2] == 2]
            assert np.all((visible[:, 0] >= x1 - 1.5) & (visible[:, 0] <= x2 + 1.5))
            assert np.all((visible[:, 1] >= y1 - 1.5) & (visible[:, 1] <= y2 + 1.5))
    assert len(set(counts)) > 1  # object count varies
    # Occlusion happens, and occluded keypoints are marked v=1.
    assert any(np.any(ex["keypoints"][..., 2] == 1) for ex in examples)


def test_circle_keypoints_are_centre_and_extreme_points():
    for i in range(40):
        ex = shapes.shapes_example(i, seed=0, image_size=64, max_objects=1)
        if ex["classes"][0] == 1:
            (cx, cy), top, right = ex["keypoints"][0, 0, :2], ex["keypoints"][0, 1, :2], ex["keypoints"][0, 2, :2]
            r = cy - top[1]
            np.testing.assert_allclose([top[0], right[0] - cx, right[1]], [cx, r, cy], atol=1e-4)
            x1, y1, x2, y2 = ex["boxes"][0]  # the lone circle's box spans its diameter (to a pixel)
            assert abs((x2 - x1) - 2 * r) <= 2 and abs((y2 - y1) - 2 * r) <= 2
            return
    pytest.fail("no circle among 40 single-object images")


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="min_objects"):
        shapes.shapes_example(0, min_objects=3, max_objects=2)
    with pytest.raises(ValueError, match="image_size"):
        shapes.shapes_example(0, image_size=8)


def test_pad_examples_and_stream(examples):
    padded = detection.pad_examples(examples, max_objects=6)
    assert padded["image"].shape == (12, 64, 64, 3) and padded["image"].dtype == np.uint8
    assert padded["boxes"].shape == (12, 6, 4) and padded["masks"].shape == (12, 6, 64, 64)
    assert padded["keypoints"].shape == (12, 6, 5, 3)
    for i, ex in enumerate(examples):
        n = len(ex["classes"])
        assert padded["num_objects"][i] == n
        np.testing.assert_array_equal(padded["boxes"][i, :n], ex["boxes"])
        assert np.all(padded["classes"][i, n:] == 0) and np.all(padded["masks"][i, n:] == 0)
    with pytest.raises(ValueError, match="max_objects"):
        detection.pad_examples(examples, max_objects=1)
    assert detection.pad_examples(examples, max_objects=1, truncate=True)["boxes"].shape == (12, 1, 4)
    stream = detection.train_stream(examples, 4, batch_size=3, seed=0)
    first = [b["image_id"].numpy() for b in stream.take(4)]
    resumed = next(iter(detection.train_stream(examples, 4, batch_size=3, seed=0, start_step=3)))
    np.testing.assert_array_equal(resumed["image_id"], first[3])
    assert sorted(np.concatenate(first)) == sorted(p["image_id"] for p in examples)  # one epoch = every image
    batch = next(iter(detection.padded_dataset(examples, 4).batch(5)))
    assert batch["masks"].shape == (5, 4, 64, 64)


def test_to_coco_round_trip(examples):
    from pycocotools import mask as mask_utils

    gt = shapes.to_coco(examples)
    assert len(gt["images"]) == 12 and [c["id"] for c in gt["categories"]] == [1, 2, 3]
    assert len(gt["annotations"]) == sum(len(ex["classes"]) for ex in examples)
    ann = gt["annotations"][0]
    ex = examples[0]
    x1, y1, x2, y2 = ex["boxes"][0]
    assert ann["bbox"] == [x1, y1, x2 - x1, y2 - y1] and ann["category_id"] == ex["classes"][0]
    np.testing.assert_array_equal(mask_utils.decode(ann["segmentation"]), ex["masks"][0])
    assert ann["area"] == ex["masks"][0].sum()
    assert ann["num_keypoints"] == 5 and len(ann["keypoints"]) == 15
    with pytest.raises(ValueError, match="categories"):
        detection.examples_to_coco(examples, [{"id": 1, "name": "circle"}])


def test_horizontal_flip_keeps_annotations_consistent(examples):
    import tensorflow as tf

    padded = detection.pad_examples(examples[:6], 4)
    batch = {k: tf.constant(v) for k, v in padded.items()}
    out = detection.random_horizontal_flip(batch, tf.constant([0, 1]), shapes.KEYPOINT_FLIP_MAP)
    flipped = np.any(out["image"].numpy() != padded["image"], axis=(1, 2, 3))
    assert 0 < flipped.sum() < 6
    again = detection.random_horizontal_flip(batch, tf.constant([0, 1]), shapes.KEYPOINT_FLIP_MAP)
    np.testing.assert_array_equal(again["image"], out["image"])  # seeded
    for i in range(6):
        n = padded["num_objects"][i]
        masks = out["masks"].numpy()[i]
        for j in range(n):  # boxes stay the tight boxes of the (mirrored) masks
            ys, xs = np.nonzero(masks[j])
            np.testing.assert_allclose(out["boxes"][i, j], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        assert np.all(out["boxes"].numpy()[i, n:] == 0)
        if flipped[i]:
            kp, orig = out["keypoints"].numpy()[i, :n], padded["keypoints"][i, :n]
            np.testing.assert_allclose(kp[:, 2, 0], 64 - orig[:, 4, 0])  # new "right" = mirrored old "left"
            np.testing.assert_allclose(kp[:, 0, :2], np.c_[64 - orig[:, 0, 0], orig[:, 0, 1]])


def test_resize_example_keeps_aspect_and_pads(examples):
    ex = examples[0]
    small = detection.resize_example(ex, (32, 48))  # scale 0.5, padded on the right
    assert small["image"].shape == (32, 48, 3) and small["scale"] == (0.5, 0.5)
    assert np.all(small["image"][:, 32:] == 0) and np.all(small["masks"][:, :, 32:] == 0)
    np.testing.assert_allclose(small["boxes"], ex["boxes"] * 0.5)
    np.testing.assert_allclose(small["keypoints"][..., :2], ex["keypoints"][..., :2] * 0.5)
    for j, m in enumerate(small["masks"]):
        ys, xs = np.nonzero(m)
        x1, y1, x2, y2 = small["boxes"][j]
        assert xs.min() >= x1 - 1 and xs.max() + 1 <= x2 + 1 and ys.min() >= y1 - 1 and ys.max() + 1 <= y2 + 1
    stretched = detection.resize_example(ex, (32, 128), keep_aspect=False)
    assert stretched["scale"] == (2.0, 0.5)
