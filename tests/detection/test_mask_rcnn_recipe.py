"""Mask R-CNN: FPN anchors, mask / keypoint heads, the GT-class mask loss, overfitting, export, two replicas."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.errors import ConfigError
from kerasnets.models import two_stage
from kerasnets.recipes.mask_rcnn import MaskRCNNConfig, MaskRCNNRecipe
from kerasnets.testing import run_distributed_train_step

TINY = dict(image_size=64, num_train_images=4, num_val_images=2, batch_size=4, backbone_width=8, fpn_channels=16,
            fc_dim=64, mask_conv_dim=16, mask_num_convs=2, keypoint_conv_dim=16, keypoint_num_convs=2,
            roi_batch_size=64, head_rois_per_image=16, rpn_pre_nms_top_k_train=200, rpn_post_nms_top_k_train=100,
            rpn_pre_nms_top_k_test=200, rpn_post_nms_top_k_test=100, max_objects=4, horizontal_flip=False,
            optimizer="adam", learning_rate=3e-3, warmup_steps=0, strategy="default", log_every=10)


def tiny_recipe(**overrides):
    return MaskRCNNRecipe(apply_overrides(MaskRCNNConfig(), {**TINY, **overrides}, parse=False))


def test_mask_and_keypoint_head_output_shapes():
    mask = two_stage.build_mask_head(14, 16, num_classes=3, conv_dim=8, num_convs=4)
    assert mask(tf.zeros((5, 14, 14, 16))).shape == (5, 28, 28, 3)
    assert len([layer for layer in mask.layers if "conv" in layer.name and "deconv" not in layer.name]) == 4
    keypoints = two_stage.build_keypoint_head(14, 16, num_keypoints=5, conv_dim=8, num_convs=3, heatmap_size=56)
    assert keypoints(tf.zeros((5, 14, 14, 16))).shape == (5, 56, 56, 5)
    with pytest.raises(ValueError, match="heatmap_size"):
        two_stage.build_keypoint_head(14, 16, 5, heatmap_size=50)


def test_fpn_anchors_and_levels_follow_the_image_size():
    recipe = MaskRCNNRecipe(MaskRCNNConfig(image_size=128))
    features = recipe.build_features()
    assert [tuple(o.shape[1:3]) for o in features.outputs] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    np.testing.assert_allclose(recipe.anchor_sizes(), np.array([32, 64, 128, 256, 512]) * 128 / 800, atol=0.06)
    anchors, counts, per_location = recipe.anchor_layout(features)
    assert per_location == 3 and counts == (32 * 32 * 3, 16 * 16 * 3, 8 * 8 * 3, 4 * 4 * 3, 2 * 2 * 3)
    spec = recipe.spec(features)
    assert spec.roi_levels == (2, 3, 4, 5) and spec.canonical_size == pytest.approx(224 * 128 / 800)
    assert spec.heads == ("mask",) and recipe.iou_types == ("bbox", "segm")
    keypoint_recipe = MaskRCNNRecipe(MaskRCNNConfig(image_size=128, heads="keypoints"))
    assert keypoint_recipe.iou_types == ("bbox", "keypoints") and keypoint_recipe.num_keypoints() == 5
    with pytest.raises(ConfigError, match="anchor_sizes"):
        apply_overrides(MaskRCNNConfig(), {"anchor_sizes": "(16, 32)"})


def test_mask_loss_only_trains_the_ground_truth_class_channel():
    # Only circles (class 1) in the batch: the mask logits kernel gets gradient for channel 0 only.
    recipe = tiny_recipe()
    model = recipe.build_model()
    batch = next(iter(recipe.build_dataset("train")))
    circles = tf.where(batch["classes"] > 0, 1, 0)
    batch = {**batch, "classes": circles}
    kernel = model.mask_head.get_layer("mask_logits").kernel
    with tf.GradientTape() as tape:
        logs = model.compute_losses(batch, tf.constant([3, 4]))
    grad = tape.gradient(logs["mask"], kernel).numpy()  # [1, 1, C, K]
    assert np.abs(grad[..., 0]).max() > 0
    np.testing.assert_array_equal(grad[..., 1:], 0.0)
    # Untrained logits ~ small: per-pixel BCE near log 2 on the positive RoIs.
    assert 0.3 < float(logs["mask"]) < 1.5


@pytest.mark.slow
def test_overfits_a_few_images_with_masks_and_exports_a_standalone_saved_model(tmp_path):
    from kerasnets.export import export_saved_model, verify_saved_model
    from kerasnets.testing import report_figure
    from kerasnets.training import engine

    recipe = tiny_recipe(steps=200, image_size=96)
    result = engine.train(recipe, str(tmp_path / "run"))
    history = result.history
    report_figure("loss_ratio", history[-1]["loss"] / history[0]["loss"])
    report_figure("mask_loss_ratio", history[-1]["mask"] / history[0]["mask"])
    assert history[-1]["loss"] < 0.4 * history[0]["loss"]
    assert history[-1]["mask"] < 0.6 * history[0]["mask"]
    metrics = recipe.evaluate(result.model, split="train")
    report_figure("bbox/AP50", metrics["bbox/AP50"])
    report_figure("segm/AP50", metrics["segm/AP50"])
    assert metrics["bbox/AP50"] > 0.9 and metrics["segm/AP50"] > 0.9, metrics

    path = export_saved_model(recipe, result.model, export_root=str(tmp_path / "export"))
    image = recipe.examples("train")[0]["image"]
    raw = np.asarray(tf.image.resize(image[None], (80, 112), antialias=True).numpy().round().clip(0, 255), np.uint8)
    expected = {k: v.numpy() for k, v in recipe.serve(result.model, tf.constant(raw)).items()}
    assert set(expected) == {"boxes", "scores", "classes", "num_detections", "masks"}
    assert expected["masks"].shape == (1, 100, 28, 28)
    verify_saved_model(path, {"images": raw}, expected, atol=1e-3)


@pytest.mark.slow
def test_keypoint_variant_overfits(tmp_path):
    from kerasnets.testing import report_figure
    from kerasnets.training import engine

    recipe = tiny_recipe(steps=300, image_size=96, heads="keypoints")
    result = engine.train(recipe, str(tmp_path / "run"))
    history = result.history
    report_figure("keypoint_loss_ratio", history[-1]["keypoint"] / history[0]["keypoint"])
    assert history[-1]["keypoint"] < 0.6 * history[0]["keypoint"]
    out = recipe.predict(result.model, np.stack([ex["image"] for ex in recipe.examples("train")]))
    assert out["keypoints"].shape == (4, 100, 5, 3)
    metrics = recipe.evaluate(result.model, split="train")
    # Box AP50 of this variant landed at 0.89 - 1.0 across processes (thread scheduling);
    # the mask variant above carries the > 0.9 overfit claim.
    report_figure("bbox/AP50", metrics["bbox/AP50"])
    report_figure("keypoints/AP50", metrics["keypoints/AP50"])
    assert metrics["bbox/AP50"] > 0.85, metrics
    assert metrics["keypoints/AP50"] > 0.5, metrics


@pytest.mark.slow
def test_two_replica_train_step(two_cpu_strategy):
    _, logs, changed = run_distributed_train_step(two_cpu_strategy, tiny_recipe(batch_size=4),
                                                  watch=lambda model: model.mask_head.trainable_variables)
    assert np.isfinite(logs["loss"]) and logs["mask"] > 0
    assert changed
