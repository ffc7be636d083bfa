"""HRNet: parameter counts, builtin-op TFLite export, recipe config, COCO-format loader, tiny engine run."""

import os

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.data import coco_keypoints, skeleton
from kerasnets.errors import ConfigError
from kerasnets.models.hrnet import HRNET_W32, build_hrnet
from kerasnets.recipes.hrnet import HRNetConfig, HRNetRecipe
from kerasnets.training import engine

TINY = dict(
    image_height=32, image_width=32, width=4, num_modules=(1,), num_blocks=1, stage1_planes=8, stage1_blocks=1,
    batch_size=8, num_train=32, num_val=8, strategy="default", log_every=1, checkpoint_every=1000,
)  # fmt: skip


def _trainable(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def test_hrnet_w32_parameter_count_is_the_papers():
    model = build_hrnet((256, 192, 3), **HRNET_W32)
    # README: 28.5M; the reference implementation's exact count.
    assert _trainable(model) == 28_536_113
    assert model.output_shape == (None, 64, 48, 17)


def test_hrnet_structure_and_bad_sizes():
    model = build_hrnet((64, 64, 3), width=8, num_modules=(1, 1, 1), num_blocks=1)
    names = [layer.name for layer in model.layers]
    # 4 branches in stage 4, last module fuses only into branch 0: no output for branch 1..3.
    assert "stage4_m0_sum0" in names and "stage4_m0_sum1" not in names
    assert "stage3_m0_sum2" in names
    widths = {layer.name: layer.filters for layer in model.layers if hasattr(layer, "filters")}
    assert widths["transition3_b3_0_conv"] == 64 and widths["stage3_m0_b2_blk0_1_conv"] == 32
    with pytest.raises(ValueError, match="multiples of 4"):
        build_hrnet((66, 64, 3))


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"image_height": "66"}, "multiples of 4"),
        ({"data": "coco"}, "data_dir"),
        ({"num_modules": "(1, 1, 1, 1)"}, "num_modules"),
        ({"lr_decay_at": "(0.9, 0.5)"}, "increasing"),
        ({"data": "mpii"}, "data"),
    ],
)
def test_bad_config_is_a_config_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(HRNetConfig(), overrides)


def test_defaults_follow_the_reference():
    c = HRNetConfig()
    assert (c.learning_rate, c.sigma, c.flip_test) == (1e-3, 2.0, True)
    assert c.lr_decay_at == pytest.approx((170 / 210, 200 / 210))


def test_coco_format_loader_crops_people(tmp_path):
    scenes = skeleton.generate_scenes(3, height=96, width=96, seed=2)
    skeleton.write_coco_keypoint_dir(str(tmp_path), scenes, split="val2017")
    data = coco_keypoints.load_coco_people(str(tmp_path), "val2017", (64, 48))
    assert data["images"].shape == (3, 64, 48, 3) and data["images"].dtype == np.uint8
    # Crop keypoints map back onto the file's keypoints.
    for kp_crop, affine, kp_file in zip(data["keypoints"], data["to_image"], scenes.keypoints):
        vis = kp_crop[:, 2] > 0
        back = coco_keypoints.apply_affine(kp_crop[vis, :2] + 0.5, affine)
        np.testing.assert_allclose(back, kp_file[vis, :2], atol=1e-3)
    # The box, grown to the crop's aspect ratio, fills 1 / 1.25 of the crop: w = 48 / 1.25 or h = 64 / 1.25.
    fill = np.maximum(data["boxes"][:, 2] / (48 / 1.25), data["boxes"][:, 3] / (64 / 1.25))
    np.testing.assert_allclose(fill, 1.0, atol=1e-3)
    # The ground truth mapped through the evaluation path scores AP 1 against the file.
    from kerasnets.metrics.pose import oks_ap

    in_image = np.stack([coco_keypoints.apply_affine(k[:, :2] + 0.5, a) for k, a in zip(data["keypoints"],
                                                                                      data["to_image"])])
    ap = oks_ap(in_image, np.ones(3), None, None, None, image_ids=data["image_ids"],
                ground_truth=data["ground_truth"])
    assert ap["AP"] == pytest.approx(1.0)
    with pytest.raises(FileNotFoundError, match="person_keypoints_train2017"):
        coco_keypoints.load_coco_people(str(tmp_path), "train2017", (64, 48))


@pytest.mark.slow
def test_tiny_run_loss_falls(tmp_path):
    recipe = HRNetRecipe(HRNetConfig(steps=40, seed=1, **TINY))
    result = engine.train(recipe, str(tmp_path / "run"))
    losses = [row["loss"] for row in result.history]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    for key in ("pck", "pck_flip", "oks_ap", "oks_ap_flip"):
        assert 0.0 <= result.summary[key] <= 1.0
    assert os.path.exists(result.summary["predictions_png"])
    # The flip-augmented batch: mirrored images carry mirrored, swapped keypoints.
    images, target, weight = next(iter(recipe.build_dataset("train")))
    assert images.shape == (8, 32, 32, 3) and target.shape == (8, 8, 8, 17) and weight.shape == (8, 17)


@pytest.mark.slow
def test_flip_augmentation_mirrors_targets():
    recipe = HRNetRecipe(HRNetConfig(steps=1, **TINY))
    plain = HRNetRecipe(HRNetConfig(steps=1, flip_augment=False, **TINY))
    for (im_a, t_a, _), (im_b, t_b, _) in zip(recipe.build_dataset("train").take(2), plain.build_dataset("train").take(2)):
        for i in range(8):
            if np.array_equal(im_a[i], im_b[i]):
                continue
            np.testing.assert_array_equal(im_a[i], im_b[i][:, ::-1])
            # heatmap of the mirrored right wrist = mirrored heatmap of the left wrist (up to HRNet's rounding).
            ya, xa = np.unravel_index(np.argmax(t_a[i, :, :, 10]), (8, 8))
            yb, xb = np.unravel_index(np.argmax(t_b[i, :, :, 9]), (8, 8))
            if t_b[i, :, :, 9].numpy().max() > 0:
                assert ya == yb and abs(xa - (7.75 - xb)) <= 1.0


@pytest.mark.slow
def test_int8_tflite_export_is_fully_integer_with_builtin_ops(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from kerasnets.export import export_run, run_tflite

    recipe = HRNetRecipe(HRNetConfig(steps=1, **TINY))
    model = recipe.build_model()
    report = export_run(recipe, model, formats=["tflite", "tflite-int8"], export_root=str(tmp_path))
    path = report.tflite["tflite-int8"]
    interpreter = Interpreter(model_path=path)
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "CONV_2D" in ops and "RESIZE_NEAREST_NEIGHBOR" in ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    runner = interpreter.get_signature_runner("serving_default")
    assert runner.get_input_details()["images"]["dtype"] == np.int8
    # Every conv runs in int8: its weights are int8 tensors.
    weights = [t for t in interpreter.get_tensor_details() if "conv" in t["name"].lower() and len(t["shape"]) == 4]
    assert weights and all(t["dtype"] == np.int8 for t in weights)
    images = next(recipe.representative_dataset(1))["images"]
    out = run_tflite(path, {"images": images})
    assert out["keypoints"].shape == (1, 17, 2) and out["heatmaps"].shape == (1, 8, 8, 17)
    assert os.path.getsize(path) < os.path.getsize(report.tflite["tflite"]) / 2.5
    # The LiteRT demo runs the file on a synthetic image and writes the drawing.
    import importlib.util

    demo_path = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "pose_tflite_demo.py")
    spec = importlib.util.spec_from_file_location("pose_tflite_demo", demo_path)
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    png = str(tmp_path / "demo.png")
    assert demo.main([path, "--out", png]) == 0
    from PIL import Image

    assert Image.open(png).size[0] >= 64
