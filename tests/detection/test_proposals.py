"""RPN proposal generation: per-level top-k, decoding, small-box removal, per-level NMS, static shapes."""

import numpy as np
import tensorflow as tf

from kerasnets.ops import proposals as proposal_ops

# level 0: three anchors (two nearly identical), level 1: two anchors (one tiny)
ANCHORS = np.array([[0, 0, 20, 20], [1, 1, 21, 21], [40, 40, 60, 60], [0, 0, 20, 20], [50, 50, 50.0005, 50.0005]],
                   np.float32)


def test_proposals_hand_case():
    logits = np.array([[3.0, 2.0, 1.0, 0.5, 4.0]], np.float32)
    deltas = np.zeros((1, 5, 4), np.float32)
    out = proposal_ops.generate_proposals(logits, deltas, ANCHORS, (64, 64), level_counts=[3, 2], post_nms_top_k=6)
    assert out["boxes"].shape == (1, 6, 4)
    # anchor 1 suppressed by anchor 0 (same level, IoU 0.82); anchor 3 survives (other level);
    # anchor 4 is smaller than min_size even though it scores highest.
    assert int(out["num_proposals"][0]) == 3
    np.testing.assert_allclose(out["boxes"][0, :3], ANCHORS[[0, 2, 3]])  # by objectness: 3 > 1 > 0.5
    np.testing.assert_allclose(out["scores"][0, :3], 1 / (1 + np.exp(-np.array([3.0, 1.0, 0.5]))), rtol=1e-6)
    np.testing.assert_array_equal(out["valid"][0], [True, True, True, False, False, False])


def test_pre_nms_top_k_deltas_and_clipping_in_tf_function():
    logits = np.array([[3.0, 2.0, 1.0, 0.5, 4.0]], np.float32)
    deltas = np.zeros((1, 5, 4), np.float32)
    deltas[0, 2] = [1.0, 0, 0, 0]  # shift anchor 2 right by its width -> clipped at x = 64
    fn = tf.function(lambda l, d: proposal_ops.generate_proposals(l, d, ANCHORS, (64, 64), [3, 2], pre_nms_top_k=1,
                                                                   post_nms_top_k=4))
    out = fn(logits, deltas)
    # top-1 per level: anchor 0 (level 0) and anchor 4 (tiny, removed)
    assert int(out["num_proposals"][0]) == 1
    np.testing.assert_allclose(out["boxes"][0, 0], ANCHORS[0])
    out = proposal_ops.generate_proposals(logits, deltas, ANCHORS, (64, 64), [3, 2], pre_nms_top_k=3)
    assert out["boxes"].shape == (1, 2000, 4)
    boxes = out["boxes"].numpy()[0, : int(out["num_proposals"][0])]
    assert [60.0, 40.0, 64.0, 60.0] in boxes.tolist()
