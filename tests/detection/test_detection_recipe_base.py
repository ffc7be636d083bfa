"""The shared detection recipe base (kerasnets.tasks.detection) with a tiny hand-written detector.

`BrightBoxRecipe` "detects" one box per image: the bounding box of the pixels
brighter than 0.5. Its output is known exactly, so the data pipeline, the
COCO evaluation in original pixels and the any-size serving endpoint can be
checked against hand-computed values.
"""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.data import coco, shapes
from kerasnets.errors import ConfigError
from kerasnets.tasks.detection import DetectionConfig, DetectionRecipe, _keypoint_flip_map


class BrightBoxModel(keras.Model):
    def __init__(self, preprocess, **kwargs):
        super().__init__(**kwargs)
        self.preprocess = preprocess
        self.conv = keras.layers.Conv2D(1, 1)
        self.optimizer = keras.optimizers.SGD(0.01)

    def call(self, images):
        return self.conv(images)

    def train_step(self, batch):
        from kerasnets.distribute import scale_loss

        images = self.preprocess(batch["images"])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(self(images)))
            scaled = scale_loss(loss)
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return {"loss": loss, "num_objects": tf.reduce_mean(tf.cast(batch["num_objects"], tf.float32))}


class BrightBoxRecipe(DetectionRecipe):
    name = "bright_box"
    paper = "test detector"
    summary = "one box around the bright pixels"

    def build_model(self):
        model = BrightBoxModel(self.preprocess)
        model(tf.zeros((1, *self.image_shape)))
        model.optimizer.build(model.trainable_variables)
        return model

    def detect(self, model, images):
        size = self.config.image_size
        bright = tf.reduce_max(images, axis=-1) > 0.5 + 0.0 * model(images)[..., 0]  # [B, S, S]
        cols = tf.reduce_any(bright, axis=1)
        rows = tf.reduce_any(bright, axis=2)
        x1 = tf.argmax(tf.cast(cols, tf.int32), axis=1, output_type=tf.int32)
        x2 = size - tf.argmax(tf.cast(cols[:, ::-1], tf.int32), axis=1, output_type=tf.int32)
        y1 = tf.argmax(tf.cast(rows, tf.int32), axis=1, output_type=tf.int32)
        y2 = size - tf.argmax(tf.cast(rows[:, ::-1], tf.int32), axis=1, output_type=tf.int32)
        found = tf.reduce_any(cols, axis=1)
        boxes = tf.cast(tf.stack([x1, y1, x2, y2], -1), tf.float32)[:, None]
        return {
            "boxes": boxes,
            "scores": tf.where(found, 1.0, 0.0)[:, None],
            "classes": tf.where(found, 1, 0)[:, None],
            "num_detections": tf.cast(found, tf.int32),
        }


def tiny_config(**overrides):
    base = dict(image_size=32, num_train_images=6, num_val_images=4, batch_size=2, steps=2, strategy="default")
    return dataclasses.replace(DetectionConfig(), **{**base, **overrides})


def padded_ground_truth(examples, depth=4):
    """Oracle 'detections': the ground truth of `examples` in their resized pixels."""
    n = len(examples)
    out = {"boxes": np.zeros((n, depth, 4), np.float32), "scores": np.zeros((n, depth), np.float32),
           "classes": np.zeros((n, depth), np.int32), "num_detections": np.zeros((n,), np.int32)}
    for i, ex in enumerate(examples):
        k = len(ex["classes"])
        out["boxes"][i, :k] = ex["boxes"]
        out["scores"][i, :k] = 0.9
        out["classes"][i, :k] = ex["classes"]
        out["num_detections"][i] = k
    return out


def test_config_errors():
    with pytest.raises(ConfigError, match="coco_annotations"):
        apply_overrides(DetectionConfig(), {"data": "coco"})
    with pytest.raises(ConfigError, match="tfds_name"):
        apply_overrides(DetectionConfig(), {"data": "tfds", "tfds_name": "mnist"})
    with pytest.raises(ConfigError, match="larger than num_train_images"):
        apply_overrides(DetectionConfig(), {"num_train_images": 4, "batch_size": 8})
    with pytest.raises(ConfigError, match="image_size"):
        apply_overrides(DetectionConfig(), {"image_size": 8})


def test_keypoint_flip_map_by_name():
    assert _keypoint_flip_map(shapes.KEYPOINT_NAMES) == shapes.KEYPOINT_FLIP_MAP
    names = ["nose", "left_eye", "right_eye", "left_ear", "right_ear"]
    assert _keypoint_flip_map(names) == (0, 2, 1, 4, 3)


def test_shapes_batches_are_padded_deterministic_and_resumable():
    recipe = BrightBoxRecipe(tiny_config(max_objects=5))
    batches = list(recipe.build_dataset("train").take(4).as_numpy_iterator())
    b = batches[0]
    assert set(b) == {"images", "boxes", "classes", "num_objects", "image_ids"}  # no masks/keypoints for bbox
    assert b["images"].shape == (2, 32, 32, 3) and b["images"].dtype == np.uint8
    assert b["boxes"].shape == (2, 5, 4) and b["classes"].shape == (2, 5) and b["classes"].dtype == np.int32
    real = np.arange(5)[None] < b["num_objects"][:, None]
    assert np.all(b["classes"][real] >= 1) and np.all(b["classes"][~real] == 0)
    again = list(BrightBoxRecipe(tiny_config(max_objects=5)).build_dataset("train").take(4).as_numpy_iterator())
    resumed = next(iter(recipe.build_dataset("train", start_step=3).as_numpy_iterator()))
    for key in b:
        np.testing.assert_array_equal(batches[1][key], again[1][key])
        np.testing.assert_array_equal(resumed[key], batches[3][key])  # flips included
    val = list(recipe.build_dataset("validation").as_numpy_iterator())
    assert sum(len(v["images"]) for v in val) == 4


def test_flip_augmentation_moves_boxes_with_pixels():
    recipe = BrightBoxRecipe(tiny_config(num_train_images=8, batch_size=8))
    plain = BrightBoxRecipe(tiny_config(num_train_images=8, batch_size=8, horizontal_flip=False))
    a = next(iter(recipe.build_dataset("train").as_numpy_iterator()))
    b = next(iter(plain.build_dataset("train").as_numpy_iterator()))
    flipped = [i for i in range(8) if not np.array_equal(a["images"][i], b["images"][i])]
    assert 0 < len(flipped) < 8
    for i in flipped:
        np.testing.assert_array_equal(a["images"][i], b["images"][i, :, ::-1])
        n = b["num_objects"][i]
        np.testing.assert_allclose(a["boxes"][i, :n, 0], 32 - b["boxes"][i, :n, 2])


def test_evaluate_with_oracle_detections_on_shapes(monkeypatch):
    recipe = BrightBoxRecipe(tiny_config())
    examples = recipe.examples("validation")
    monkeypatch.setattr(recipe, "predict", lambda model, images, batch_size=None: padded_ground_truth(examples))
    metrics = recipe.evaluate(model=None)
    assert metrics["bbox/AP"] == pytest.approx(1.0) and metrics["bbox/AP50"] == pytest.approx(1.0)


def _write_rectangular_coco(tmp_path, sizes):
    examples = [shapes.shapes_example(i, image_size=s, max_objects=3) for i, s in enumerate(sizes)]
    for i, ex in enumerate(examples):
        ex["image_id"] = 100 + i
    return coco.write_coco(examples, str(tmp_path / "coco"), shapes.categories()), examples


def test_coco_data_is_letterboxed_and_evaluated_in_original_pixels(tmp_path, monkeypatch):
    sizes = [(48, 80), (80, 48), (64, 64), (40, 100), (56, 72)]
    (ann, image_dir), originals = _write_rectangular_coco(tmp_path, sizes)
    config = tiny_config(data="coco", coco_annotations=ann, coco_images=image_dir, num_val_images=2)
    recipe = BrightBoxRecipe(config)
    assert recipe.class_names() == list(shapes.CLASS_NAMES)
    train, val = recipe.examples("train"), recipe.examples("validation")
    assert [ex["image_id"] for ex in train] == [100, 101, 102] and [ex["image_id"] for ex in val] == [103, 104]
    first = train[0]  # 48x80 -> scale 32/80 = 0.4, 19x32 image padded to 32x32
    assert first["image"].shape == (32, 32, 3) and first["scale"] == pytest.approx((0.4, 0.4))
    assert first["original_size"] == (48, 80) and not first["image"][20:].any()
    np.testing.assert_allclose(first["boxes"], originals[0]["boxes"] * 0.4, rtol=1e-5)
    # Oracle boxes in model pixels score AP 1 only if mapped back by the scale.
    monkeypatch.setattr(recipe, "predict", lambda model, images, batch_size=None: padded_ground_truth(val))
    assert recipe.evaluate(None)["bbox/AP"] == pytest.approx(1.0)
    unmapped = padded_ground_truth(val)
    val_originals = originals[3:]
    for i, ex in enumerate(val_originals):
        unmapped["boxes"][i, : len(ex["classes"])] = ex["boxes"]  # already original: mapped again -> wrong
    monkeypatch.setattr(recipe, "predict", lambda model, images, batch_size=None: unmapped)
    assert recipe.evaluate(None)["bbox/AP"] < 0.5


def test_coco_validation_file_and_errors(tmp_path):
    (ann, image_dir), _ = _write_rectangular_coco(tmp_path, [(40, 40)] * 3)
    recipe = BrightBoxRecipe(tiny_config(data="coco", coco_annotations=ann, coco_images=image_dir,
                                         coco_val_annotations=ann, batch_size=1))
    assert len(recipe.examples("train")) == 3 and len(recipe.examples("validation")) == 3
    with pytest.raises(ValueError, match="leaves none to train on"):
        BrightBoxRecipe(tiny_config(data="coco", coco_annotations=ann, coco_images=image_dir,
                                    num_val_images=3, batch_size=1)).examples("train")
    with pytest.raises(ValueError, match="split must be"):
        BrightBoxRecipe(tiny_config()).examples("test")


def _fake_voc(self, *args, **kwargs):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (3, 30, 50, 3), np.uint8)
    return tf.data.Dataset.from_tensor_slices({
        "image": images,
        "objects": {
            "bbox": tf.constant([[[0.1, 0.2, 0.5, 0.6], [0.2, 0.2, 0.9, 0.3]]] * 3),
            "label": tf.constant([[3, 14]] * 3, tf.int64),
            "is_difficult": tf.constant([[False, False]] * 3),
        },
    })


def test_tfds_source_offline_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    config = tiny_config(data="tfds", tfds_name="voc/2007", data_dir=str(tmp_path), batch_size=1, max_images=2)
    recipe = BrightBoxRecipe(config)
    with tfds.testing.mock_data(as_dataset_fn=_fake_voc):
        train = recipe.examples("train")
    assert len(train) == 2 and recipe.num_classes == 20 and recipe.class_names()[2] == "bird"
    # 30x50 -> scale 32/50: box [0.2, 0.1, 0.6, 0.5] of (W=50, H=30) -> pixels x0.64
    np.testing.assert_allclose(train[0]["boxes"][0], np.array([10, 3, 30, 15]) * 0.64, rtol=1e-5)
    np.testing.assert_array_equal(train[0]["classes"], [4, 15])


@pytest.mark.slow
def test_engine_run_writes_metrics_and_predictions(tmp_path):
    from kerasnets.training.engine import train

    recipe = BrightBoxRecipe(tiny_config())
    result = train(recipe, str(tmp_path / "run"))
    assert {"bbox/AP", "bbox/AP50", "predictions_png"} <= set(result.summary)
    assert os.path.getsize(result.summary["predictions_png"]) > 0
    with open(tmp_path / "run" / "summary.json") as f:
        assert "bbox/AP" in json.load(f)


def test_serving_endpoint_maps_boxes_back_to_any_input_size():
    """Traced with the exported signature (uint8, any size); the export itself (fresh process without
    kerasnets) is exercised by tests/detection/test_ssd_recipe.py."""
    recipe = BrightBoxRecipe(tiny_config())
    model = recipe.build_model()
    endpoints = recipe.export_endpoints(model)
    assert set(endpoints) == {"serving_default", "fixed_size"}
    fn, signature = endpoints["serving_default"]
    assert signature[0].shape.as_list() == [None, None, None, 3] and signature[0].dtype == tf.uint8
    serve = tf.function(lambda images: fn(images=images), input_signature=signature)
    image = np.zeros((1, 90, 150, 3), np.uint8)
    image[0, 20:50, 30:60] = 255  # a white block: x 30..60, y 20..50
    out = {k: v.numpy() for k, v in serve(tf.constant(image)).items()}
    assert set(out) == {"boxes", "scores", "classes", "num_detections"}
    # 150 px -> 32: scale 32/150, the block becomes x 6.4..12.8 -> whole model pixels (blur) -> x 1/scale
    np.testing.assert_allclose(out["boxes"][0, 0], [30, 20, 60, 50], atol=150 / 32 + 0.5)
    assert out["num_detections"][0] == 1 and out["classes"][0, 0] == 1 and out["classes"].dtype == np.int32
    tall = np.zeros((2, 200, 40, 3), np.uint8)
    tall[:, 150:190, 10:30] = 255
    out = serve(tf.constant(tall))  # another size through the same graph, batch of 2
    np.testing.assert_allclose(out["boxes"].numpy()[:, 0], [[10, 150, 30, 190]] * 2, atol=200 / 32 + 0.5)
    fixed = endpoints["fixed_size"]
    assert fixed.input_signature[0].shape.as_list() == [1, 32, 32, 3]
    letterboxed, scale = recipe.letterbox(tf.constant(image))
    np.testing.assert_allclose(fixed.fn(images=letterboxed)["boxes"].numpy()[0, 0] / float(scale),
                               serve(tf.constant(image))["boxes"].numpy()[0, 0], rtol=1e-5)
