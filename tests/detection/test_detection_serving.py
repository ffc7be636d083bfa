"""The post-processing ops serve: a SavedModel (uint8 image -> decoded, NMS'd boxes + pasted masks) built from
kerasnets.ops runs in a fresh process without kerasnets and matches the in-process outputs."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.data import shapes
from kerasnets.export.verify import verify_saved_model
from kerasnets.ops import anchors as anchor_ops
from kerasnets.ops import masks as mask_ops
from kerasnets.ops import nms as nms_ops


class TinyDetector(tf.Module):
    """A fixed random 'head' on 8x8 pooled pixels, then SSD post-processing and mask pasting."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.default_boxes = tf.constant(anchor_ops.ssd_default_boxes([8], 64, [(2,)], scales=[0.3, 0.5]))
        self.w_cls = tf.Variable(rng.normal(size=(3, 4 * 4)).astype(np.float32))
        self.w_box = tf.Variable(0.1 * rng.normal(size=(3, 4 * 4)).astype(np.float32))
        yy, xx = np.mgrid[0:28, 0:28]
        self.mask = tf.constant((((yy - 13.5) ** 2 + (xx - 13.5) ** 2) < 12**2).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.uint8, name="images")])
    def serve(self, images):
        x = tf.nn.avg_pool2d(tf.cast(images, tf.float32) / 255.0, 8, 8, "VALID")  # [B, 8, 8, 3]
        batch = tf.shape(images)[0]
        logits = tf.reshape(tf.einsum("bhwc,cd->bhwd", x, self.w_cls) * 4.0, [batch, -1, 4])
        deltas = tf.reshape(tf.einsum("bhwc,cd->bhwd", x, self.w_box), [batch, -1, 4])
        out = nms_ops.ssd_postprocess(logits, deltas, self.default_boxes, (64, 64), max_detections=20)
        masks = tf.broadcast_to(self.mask, [batch, 20, 28, 28])
        pasted = mask_ops.paste_masks(masks, out["boxes"], (64, 64))
        return {"boxes": out["boxes"], "scores": out["scores"], "classes": out["classes"],
                "num_detections": out["num_detections"], "masks": pasted}


@pytest.mark.slow
def test_postprocessing_saved_model_runs_without_kerasnets(tmp_path):
    module = TinyDetector()
    path = str(tmp_path / "detector")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    images = np.stack([shapes.shapes_example(i, image_size=64)["image"] for i in range(2)])
    expected = {k: v.numpy() for k, v in module.serve(tf.constant(images)).items()}
    assert np.all(expected["num_detections"] > 0)
    errors = verify_saved_model(path, {"images": images}, expected, atol=1e-4)
    assert set(errors) == {"boxes", "scores", "classes", "num_detections", "masks"}
