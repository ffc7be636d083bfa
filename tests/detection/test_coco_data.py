"""COCO-format files round trip (written from shapes into tmp_path) and tfds loaders on mocked data."""

import json

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.data import coco, shapes


def test_write_then_load_coco_round_trip(tmp_path):
    examples = shapes.generate_shapes(4, seed=1, image_size=48, max_objects=3)
    path, image_dir = coco.write_coco(examples, str(tmp_path), shapes.categories())
    loaded, categories = coco.load_coco(path, image_dir)
    assert [c["name"] for c in categories] == list(shapes.CLASS_NAMES)
    assert len(loaded) == 4
    for a, b in zip(examples, loaded):
        assert b["image_id"] == a["image_id"]
        np.testing.assert_array_equal(b["image"], a["image"])  # PNG is lossless
        np.testing.assert_allclose(b["boxes"], a["boxes"])
        np.testing.assert_array_equal(b["classes"], a["classes"])
        np.testing.assert_array_equal(b["masks"], a["masks"])
        np.testing.assert_allclose(b["keypoints"], a["keypoints"], atol=1e-4)


def test_load_coco_maps_sparse_ids_polygons_and_crowd(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.jpg")
    data = {
        "images": [{"id": 9, "file_name": "a.jpg", "height": 20, "width": 30}],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 9, "category_id": 90, "bbox": [2, 3, 10, 5], "area": 50, "iscrowd": 0,
             "segmentation": [[2, 3, 12, 3, 12, 8, 2, 8]]},
            {"id": 2, "image_id": 9, "category_id": 18, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 1,
             "segmentation": {"size": [20, 30], "counts": [0, 600]}},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    examples, categories = coco.load_coco(str(tmp_path / "ann.json"), str(tmp_path))
    assert [(c["id"], c["coco_id"], c["name"]) for c in categories] == [(1, 18, "dog"), (2, 90, "toothbrush")]
    ex = examples[0]
    np.testing.assert_array_equal(ex["classes"], [2])  # crowd skipped, id 90 -> 2
    np.testing.assert_allclose(ex["boxes"], [[2, 3, 12, 8]])
    assert ex["masks"].shape == (1, 20, 30) and 40 <= ex["masks"].sum() <= 70
    with pytest.raises(FileNotFoundError, match="not found"):
        coco.load_coco(str(tmp_path / "ann.json"), str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="categories"):
        coco.load_coco({"images": []}, None)


def _fake_tfds(builder, split, **kwargs):
    del builder, split, kwargs
    return tf.data.Dataset.from_tensor_slices({
        "image": tf.zeros([2, 40, 80, 3], tf.uint8),
        "image/id": tf.constant([11, 12], tf.int64),
        "objects": {
            "bbox": tf.constant([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.3, 0.3]]] * 2),
            "label": tf.constant([[3, 0, 7]] * 2, tf.int64),
            "is_crowd": tf.constant([[False, True, False]] * 2),
            "is_difficult": tf.constant([[False, True, False]] * 2),
        },
    })


@pytest.mark.parametrize("name", ["coco/2017", "voc/2007"])
def test_tfds_loader_on_mock_data(name, tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(as_dataset_fn=_fake_tfds):
        ds = coco.load_tfds_detection(name, "validation", data_dir=str(tmp_path), download=False,
                                      image_size=(20, 40), max_objects=4, skip_difficult=True)
        ex = next(iter(ds))
    assert ex["image"].shape == (20, 40, 3) and ex["image"].dtype == tf.uint8
    assert int(ex["num_objects"]) == 2 and int(ex["image_id"]) == 11
    # normalised [ymin, xmin, ymax, xmax] -> xyxy pixels of the resized image; label + 1
    np.testing.assert_allclose(ex["boxes"].numpy()[:2], [[8, 2, 24, 10], [8, 4, 12, 6]], rtol=1e-6)
    np.testing.assert_array_equal(ex["classes"], [4, 8, 0, 0])


def test_tfds_loader_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown tfds"):
        coco.load_tfds_detection("mnist", "train")
    with pytest.raises(FileNotFoundError, match="not prepared"):
        coco.load_tfds_detection("voc/2007", "test", data_dir=str(tmp_path), download=False)
