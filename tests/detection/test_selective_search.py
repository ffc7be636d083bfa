"""Selective-search proposals (kerasnets.data.proposals): format, determinism, recall, cache."""

import os
import subprocess
import sys

import numpy as np
import pytest

from kerasnets.data import proposals, shapes

pytest.importorskip("cv2.ximgproc")


def _two_squares():
    """Flat grey image with a red and a blue square at known places."""
    image = np.full((96, 128, 3), 128, np.uint8)
    image[10:40, 20:60] = (220, 30, 30)  # rows 10..39, cols 20..59 -> xyxy (20, 10, 60, 40)
    image[50:90, 70:120] = (30, 30, 220)  # -> (70, 50, 120, 90)
    return image


def test_boxes_are_xyxy_pixels_and_find_known_objects():
    image = _two_squares()
    boxes = proposals.selective_search(image)
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 2
    # xyxy inside the image, positive size
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert boxes[:, [0, 1]].min() >= 0 and boxes[:, 2].max() <= 128 and boxes[:, 3].max() <= 96
    rows = {tuple(b) for b in boxes.astype(int).tolist()}
    # the two uniform squares are segments of their own: exact boxes (x + w, y + h)
    assert (20, 10, 60, 40) in rows
    assert (70, 50, 120, 90) in rows
    assert len(rows) == len(boxes)  # duplicates removed


def test_deterministic_across_processes_and_max_count(tmp_path):
    image = shapes.shapes_example(3, image_size=96)["image"]
    first = proposals.selective_search(image, seed=7)
    second = proposals.selective_search(image, seed=7)
    np.testing.assert_array_equal(first, second)
    # another process (fresh C rand state, fresh OpenCV) gives the same ordered list
    code = (
        "import numpy as np, sys; from kerasnets.data import proposals, shapes; "
        "b = proposals.selective_search(shapes.shapes_example(3, image_size=96)['image'], seed=7); "
        "np.save(sys.argv[1], b)"
    )
    out = str(tmp_path / "boxes.npy")
    subprocess.run([sys.executable, "-c", code, out], check=True, capture_output=True, timeout=120)
    np.testing.assert_array_equal(np.load(out), first)
    top = proposals.selective_search(image, seed=7, max_proposals=5)
    np.testing.assert_array_equal(top, first[:5])
    # another seed: same set of boxes, other ranking
    other = proposals.selective_search(image, seed=8)
    assert {tuple(b) for b in other.tolist()} == {tuple(b) for b in first.tolist()}


def test_recall_on_shapes():
    from kerasnets.ops import boxes as box_ops

    best = []
    for i in range(4):
        ex = shapes.shapes_example(i, image_size=96)
        boxes = proposals.selective_search(ex["image"])
        best.extend(np.max(box_ops.pairwise_iou(ex["boxes"], boxes).numpy(), axis=1))
    assert np.mean(np.asarray(best) >= 0.5) >= 0.9


def test_bad_input():
    with pytest.raises(ValueError, match="RGB uint8"):
        proposals.selective_search(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="mode"):
        proposals.selective_search(_two_squares(), mode="slow")
    with pytest.raises(ValueError, match="max_proposals"):
        proposals.selective_search(_two_squares(), max_proposals=0)


def test_cache_round_trip_and_fingerprint(tmp_path):
    examples = shapes.generate_shapes(3, image_size=64)
    path = tmp_path / "props.npz"
    cache = proposals.ProposalCache(path, max_proposals=20)
    computed = cache(examples)
    assert path.exists() and all(len(p) <= 20 for p in computed)
    loaded = proposals.ProposalCache(path, max_proposals=20).load(examples)
    for a, b in zip(computed, loaded):
        np.testing.assert_array_equal(a, b)
    # other images or other parameters: the file is not used
    assert proposals.ProposalCache(path, max_proposals=20).load(shapes.generate_shapes(3, image_size=64, seed=1)) is None
    assert proposals.ProposalCache(path, max_proposals=10).load(examples) is None
    # a folder: one file per fingerprint
    folder = proposals.ProposalCache(str(tmp_path / "cache") + "/", max_proposals=20)
    folder(examples)
    assert folder.file_for(examples).startswith(str(tmp_path / "cache")) and os.path.exists(folder.file_for(examples))
    assert len(os.listdir(tmp_path / "cache")) == 1


def test_pad_and_jitter():
    boxes, counts = proposals.pad_proposals([np.ones((3, 4)), np.ones((7, 4))], 5)
    assert boxes.shape == (2, 5, 4) and counts.tolist() == [3, 5]
    assert np.all(boxes[0, 3:] == 0)
    jit = proposals.jittered_gt_proposals([[10, 10, 30, 40]], (64, 48), 16, seed=0)
    assert jit.shape == (16, 4)
    assert jit[:, 0::2].max() <= 48 and jit[:, 1::2].max() <= 64 and jit.min() >= 0
