"""Caption data: the synthetic scenes and their captions, the vocabulary, the COCO captions loader."""

import json

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.data.captions import (
    COLOURS,
    END_ID,
    PAD_ID,
    START_ID,
    UNK_ID,
    CaptionVocabulary,
    caption_example,
    captions_for,
    load_coco_captions,
    load_coco_captions_file,
    synthetic_captions,
    tokenize,
)


def test_synthetic_set_is_deterministic_by_seed_and_split():
    a_im, a_cap = synthetic_captions(6, seed=1)
    b_im, b_cap = synthetic_captions(6, seed=1)
    np.testing.assert_array_equal(a_im, b_im)
    assert a_cap == b_cap
    c_im, _ = synthetic_captions(6, seed=2)
    v_im, _ = synthetic_captions(6, seed=1, split="val")
    assert not np.array_equal(a_im, c_im) and not np.array_equal(a_im, v_im)
    assert a_im.shape == (6, 32, 32, 3) and a_im.dtype == np.uint8
    assert all(len(caps) == 5 for caps in a_cap)


def test_captions_describe_the_drawn_objects():
    for i in range(30):
        image, objects, caps = caption_example(np.random.default_rng([4, i]), 48)
        for o in objects:  # each named colour is present in its grid cell
            cell = image[o["row"] * 16:(o["row"] + 1) * 16, o["col"] * 16:(o["col"] + 1) * 16].reshape(-1, 3)
            target = np.asarray(COLOURS[o["colour"]], np.float32)
            assert (np.abs(cell.astype(np.float32) - target).max(-1) <= 16).sum() >= 10
            assert f"{o['colour']} {o['shape']}" in caps[0]
        assert len(set(caps)) == 5


def test_caption_templates_hand_case():
    objects = [{"colour": "red", "shape": "circle", "row": 0, "col": 0},
               {"colour": "blue", "shape": "square", "row": 1, "col": 0}]
    assert captions_for(objects) == [
        "a red circle above a blue square",
        "a blue square below a red circle",
        "a red circle in the top left and a blue square on the left",
        "a red circle and a blue square",
        "there is a red circle above a blue square",
    ]
    same_row = [{"colour": "red", "shape": "circle", "row": 2, "col": 0},
                {"colour": "green", "shape": "triangle", "row": 2, "col": 2}]
    assert captions_for(same_row)[0] == "a red circle to the left of a green triangle"
    assert captions_for(same_row)[1] == "a green triangle to the right of a red circle"


def test_tokenize_and_vocabulary():
    assert tokenize("A Man, riding a horse.") == ["a", "man", "riding", "a", "horse"]
    vocab = CaptionVocabulary.build([["b a a", "c a"], "b"], min_count=2)
    assert vocab.tokens == ["<pad>", "<start>", "<end>", "<unk>", "a", "b"]  # c seen once: dropped
    ids = vocab.encode(["a c b a a", "b"], max_length=3)
    np.testing.assert_array_equal(ids, [[START_ID, 4, UNK_ID, 5, END_ID], [START_ID, 5, END_ID, PAD_ID, PAD_ID]])
    assert vocab.decode(ids[0]) == "a <unk> b"
    decoded = vocab.decode_tf(tf.constant([[4, 5, END_ID, 4, 4], [5, PAD_ID, 4, END_ID, PAD_ID], [4, 4, 4, 4, 4]]))
    assert decoded.numpy().tolist() == [b"a b", b"b a", b"a a a a a"]
    with pytest.raises(ValueError, match="special"):
        CaptionVocabulary(["<end>"])
    with pytest.raises(ValueError, match="empty vocabulary"):
        CaptionVocabulary.build(["a"], min_count=2)


def _write_coco(root, split="train"):
    from PIL import Image

    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / f"{split}2017").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(root / f"{split}2017" / "000000000009.jpg")
    Image.fromarray(np.full((50, 20, 3), 200, np.uint8)).save(root / f"{split}2017" / "000000000025.jpg")
    data = {
        "info": {}, "licenses": [],
        "images": [{"id": 25, "file_name": "000000000025.jpg", "height": 50, "width": 20},
                   {"id": 9, "file_name": "000000000009.jpg", "height": 30, "width": 40},
                   {"id": 30, "file_name": "000000000030.jpg", "height": 5, "width": 5}],  # no caption: skipped
        "annotations": [{"id": 3, "image_id": 25, "caption": "A giraffe standing."},
                        {"id": 1, "image_id": 9, "caption": "Plates of food. "},
                        {"id": 2, "image_id": 9, "caption": "A meal on a table"}],
    }
    (root / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(data))


def test_coco_captions_loader_on_a_tiny_file(tmp_path):
    _write_coco(tmp_path)
    images, captions = load_coco_captions(tmp_path, "train", image_size=16)[:2]
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    assert captions == [["Plates of food.", "A meal on a table"], ["A giraffe standing."]]  # image ids 9, 25
    np.testing.assert_array_equal(images[1], 200)  # 20 x 50 -> 16 x 40 -> centre crop
    images, captions, ids = load_coco_captions(tmp_path, "train", image_size=16, max_images=1)
    assert ids == [9] and len(images) == 1


def test_coco_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="captions_val2017.json"):
        load_coco_captions(tmp_path, "val")
    with pytest.raises(ValueError, match="data_dir"):
        load_coco_captions(None)
    (tmp_path / "bad.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="not a COCO captions file"):
        load_coco_captions_file(tmp_path / "bad.json", tmp_path)
