"""rcnn recipe: SVM negatives (IoU < 0.3), hard negative mining, ridge box regression, warping, tiny overfit, export."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.errors import ConfigError
from kerasnets.models.rcnn import dilate_for_context, warp_regions
from kerasnets.recipes import rcnn
from kerasnets.recipes.rcnn import RCNNConfig, RCNNRecipe

pytest.importorskip("cv2.ximgproc")


def tiny_recipe(tmp_path, **overrides):
    base = dict(strategy="default", num_train_images=4, num_val_images=2, image_size=96, batch_size=2,
                widths=(16, 32, 48), convs_per_block=(1, 1, 1), fc_dim=64, windows_per_image=32, steps=2,
                warp_size=24, context_padding=2, log_every=20, proposal_cache_dir=str(tmp_path / "proposals"))
    base.update(overrides)
    return RCNNRecipe(RCNNConfig(**base))


def test_svm_negatives_are_proposals_below_0p3_with_every_instance_of_the_class():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 12]], np.float32)
    classes = np.array([1, 2, 1])
    props = np.array([
        [0, 0, 10, 10],   # = first class-1 box
        [0, 0, 10, 20],   # IoU 0.5 / 0.6 with the class-1 boxes
        [0, 0, 10, 40],   # IoU 0.25 / 0.3 with the class-1 boxes: 0.3 -> not a negative (needs < 0.3)
        [0, 0, 10, 50],   # IoU 0.2 / 0.24: negative for class 1
        [20, 20, 30, 30],  # the class-2 box: an ordinary negative for classes 1 and 3
        [60, 60, 70, 70],  # background
    ], np.float32)
    neg = rcnn.svm_negatives(props, gt, classes, num_classes=3, negative_iou=0.3)
    assert neg.shape == (6, 3)
    np.testing.assert_array_equal(neg[:, 0], [False, False, False, True, True, True])
    np.testing.assert_array_equal(neg[:, 1], [True, True, True, True, False, True])
    np.testing.assert_array_equal(neg[:, 2], [True] * 6)  # no instance of class 3
    # no ground truth at all: everything is a negative
    assert rcnn.svm_negatives(props, np.zeros((0, 4)), np.zeros(0), 2).all()


def test_hard_negative_mining_caches_violators_and_evicts_easy_negatives():
    rng = np.random.default_rng(0)
    pos = rng.normal(0, 0.3, (30, 5)) + [3, 0, 0, 0, 0]
    easy = rng.normal(0, 0.3, (400, 5)) - [3, 0, 0, 0, 0]
    hard = rng.normal(0, 0.3, (20, 5)) + [0.5, 0, 0, 0, 0]  # near the boundary
    chunks = [np.concatenate([easy[i::4], hard[i::4]]) for i in range(4)]
    w, b, info = rcnn.train_svm_with_hard_negatives(pos, chunks, c=1.0, passes=2)
    # at w = 0 every negative of the first chunk is "hard"; after mining the easy ones are evicted
    assert info["hard_remaining"] == 0  # no uncached negative violates the margin
    assert info["cache_size"] < len(easy) // 2
    assert info["retrains"] >= 2
    assert np.all(pos @ w + b > 0) and np.all(easy @ w + b < -1)
    # the cache holds the hard negatives
    cached_scores = np.concatenate(chunks) @ w + b
    assert np.sum(cached_scores > -1.2) <= info["cache_size"]


def test_linear_svm_matches_liblinear_settings():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(1, 1, (50, 3)), rng.normal(-1, 1, (50, 3))])
    y = np.array([1] * 50 + [0] * 50)
    w, b = rcnn.train_linear_svm(x, y, c=0.5, positive_weight=2.0, bias_multiplier=10.0)
    from sklearn.svm import LinearSVC

    ref = LinearSVC(C=0.5, loss="hinge", class_weight={1: 2.0, 0: 1.0}, intercept_scaling=10.0, max_iter=20000,
                    random_state=0).fit(x, y)
    np.testing.assert_allclose(w, ref.coef_[0], rtol=1e-4)
    np.testing.assert_allclose(b, ref.intercept_[0], rtol=1e-4)


def test_ridge_regression_matches_sklearn_ridge():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(2)
    x = rng.normal(size=(40, 6))
    t = x @ rng.normal(size=(6, 4)) + rng.normal(0, 0.1, (40, 4)) + 3.0
    w, b = rcnn.ridge_regression(x, t, 10.0)
    ref = Ridge(alpha=10.0).fit(x, t)
    np.testing.assert_allclose(w, ref.coef_.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b, ref.intercept_, rtol=1e-4, atol=1e-5)


def test_warp_samples_pixel_centres_with_context_padding():
    # image value = column index: a warped row reads the sampled x positions
    image = np.tile(np.arange(32, dtype=np.float32)[None, :, None], (32, 1, 3))[None]
    boxes = np.array([[[4, 4, 12, 12]]], np.float32)
    out = warp_regions(image, boxes, warp_size=8, context_padding=0).numpy()
    np.testing.assert_allclose(out[0, 3, :, 0], 4 + np.arange(8), atol=1e-5)  # centre of pixel 4 + i
    # p = 2 at size 8: the box grows by 8 / (8 - 4) = 2 about its centre -> [0, 16)
    np.testing.assert_allclose(dilate_for_context(boxes, 8, 2).numpy(), [[[0, 0, 16, 16]]])
    out = warp_regions(image, boxes, warp_size=8, context_padding=2).numpy()
    np.testing.assert_allclose(out[0, 3, :, 0], 2 * np.arange(8) + 0.5, atol=1e-5)
    # the paper's setting: 16 px of context at 227 -> factor 227 / 195
    grown = dilate_for_context(np.array([[0, 0, 195, 195]], np.float32), 227, 16).numpy()
    np.testing.assert_allclose(grown, [[-16, -16, 211, 211]], atol=1e-4)
    # outside the image: the fill value (the mean after mean subtraction)
    out = warp_regions(image, np.array([[[-40, 0, -20, 8]]], np.float32), 4, 0, fill_value=0.0).numpy()
    assert np.all(out == 0)


def test_config_errors_are_named():
    with pytest.raises(ConfigError, match="context_padding"):
        RCNNConfig(warp_size=16, context_padding=8).validate()
    with pytest.raises(ConfigError, match="warp_size"):
        RCNNConfig(warp_size=8, widths=(4, 4, 4, 4), convs_per_block=(1, 1, 1, 1)).validate()


@pytest.mark.slow
def test_overfits_trains_svms_and_exports_a_standalone_saved_model(tmp_path):
    from kerasnets.data.proposals import selective_search
    from kerasnets.export import export_saved_model, run_saved_model_in_subprocess
    from kerasnets.testing import report_figure
    from kerasnets.training import engine

    recipe = tiny_recipe(tmp_path, steps=160, learning_rate=0.02, dropout=0.0)
    result = engine.train(recipe, str(tmp_path / "run"))
    losses = [h["loss"] for h in result.history]
    report_figure("loss_ratio", np.mean(losses[-3:]) / losses[0])
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
    model = result.model
    assert float(model.svm_trained.numpy()) == 1.0
    assert np.abs(model.svm.get_weights()[0]).sum() > 0 and np.abs(model.bbox_regressor.get_weights()[0]).sum() > 0
    assert result.summary["svm1_positives"] > 0
    metrics = recipe.evaluate(model, "train")
    report_figure("bbox/AP50", metrics["bbox/AP50"])
    assert metrics["bbox/AP50"] > 0.9, metrics

    # the final checkpoint holds the SVMs (what `kerasnets evaluate/export` restore)
    restored, step = engine.build_and_restore(recipe, str(tmp_path / "run"))
    assert step == 160 and float(restored.svm_trained.numpy()) == 1.0
    np.testing.assert_allclose(restored.svm.get_weights()[0], model.svm.get_weights()[0])

    # serving: raw uint8 image of another size + its selective-search boxes, process without kerasnets
    from PIL import Image

    raw = np.asarray(recipe.split_data("train")["examples"][0]["image"])
    size = recipe.config.image_size
    big = np.asarray(Image.fromarray(raw).resize((size * 3 // 2, size * 3 // 2), Image.BILINEAR))[None]
    props = selective_search(big[0])[None]
    path = export_saved_model(recipe, model, str(tmp_path / "export"))
    fn = recipe.export_endpoints(model)["serving_default"].fn
    expected = {k: v.numpy() for k, v in fn(tf.constant(big), tf.constant(props)).items()}
    got = run_saved_model_in_subprocess(path, {"serving_default": {"images": big, "proposals": props}})
    got = got["serving_default"]
    n = int(expected["num_detections"][0])
    assert n >= 1 and int(got["num_detections"][0]) == n
    np.testing.assert_allclose(got["boxes"][0, :n], expected["boxes"][0, :n], atol=1e-3)
    np.testing.assert_allclose(got["scores"][0, :n], expected["scores"][0, :n], atol=1e-4)
