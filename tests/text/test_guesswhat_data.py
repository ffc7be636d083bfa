"""guesswhat data: the synthetic generator's dialogues are truthful and end when the target is identified,
the JSONL loader on a tiny file, the spatial features on a hand case."""

import gzip
import json
import re

import numpy as np
import pytest

from kerasnets.data.guesswhat import (ANSWERS, CATEGORIES, COLOURS, format_dialogue, guesswhat_path,
                                      load_guesswhat_jsonl, rule_answer, synthetic_games)
from kerasnets.models.guesswhat import spatial_features


def parse_question(text):
    m = re.fullmatch(r"is it a (\w+)\?", text)
    if m:
        return "category", CATEGORIES.index(m.group(1)) + 1
    m = re.fullmatch(r"is it (\w+)\?", text)
    if m and m.group(1) in COLOURS:
        return "colour", COLOURS.index(m.group(1))
    for kind in ("left", "right", "top", "bottom"):
        if text.endswith(f" {kind}?"):
            return kind, None
    raise AssertionError(f"unexpected question {text!r}")


def test_synthetic_dialogues_are_truthful_and_identify_the_target():
    games = synthetic_games(300, seed=3, max_questions=8)
    identified = 0
    for i in range(len(games)):
        n = int(games.object_mask[i].sum())
        t = int(games.target[i])
        objs = [(int(games.categories[i, j]), int(games.colours[i, j]), games.boxes[i, j]) for j in range(n)]
        candidates = set(range(n))
        k = int((games.answers[i] >= 0).sum())
        for q in range(k):
            kind, value = parse_question(games.questions[i, q])
            cat, col, box = objs[t]
            assert games.answers[i, q] == rule_answer(kind, value, cat, col, box, games.image_size[i])
            before = len(candidates)
            candidates = {j for j in candidates
                          if rule_answer(kind, value, *objs[j], games.image_size[i]) == games.answers[i, q]}
            assert t in candidates and len(candidates) < before  # each question splits the candidates
        if k < 8:  # the questioner stopped: only the target is left (or no question can split further)
            identified += len(candidates) == 1
        assert (games.questions[i, k:] == "").all() and (games.answers[i, k:] == -1).all()
    assert identified > 0.9 * len(games)
    # Deterministic by seed, different across seeds.
    again = synthetic_games(300, seed=3, max_questions=8)
    assert list(again.dialogues) == list(games.dialogues)
    assert list(synthetic_games(300, seed=4).dialogues) != list(games.dialogues)
    assert set(np.unique(games.answers[games.answers >= 0])) == {0, 1, 2}
    assert games.object_mask.sum(1).min() >= 3 and games.object_mask.sum(1).max() <= 8


def test_rule_answer_hand_cases():
    size = (100, 50)
    assert rule_answer("left", None, 1, 0, (0, 0, 20, 10), size) == 0  # centre x 10 %
    assert rule_answer("right", None, 1, 0, (0, 0, 20, 10), size) == 1
    assert rule_answer("left", None, 1, 0, (40, 0, 20, 10), size) == 2  # centre 50 %: n/a
    assert rule_answer("top", None, 1, 0, (0, 40, 10, 10), size) == 1  # centre y 90 % from the top
    assert rule_answer("bottom", None, 1, 0, (0, 40, 10, 10), size) == 0
    assert rule_answer("category", 3, 3, 0, (0, 0, 1, 1), size) == 0
    assert rule_answer("colour", 2, 3, 1, (0, 0, 1, 1), size) == 1
    assert format_dialogue(["Is it a cup?", "red?", ""], [0, 2, -1]) == "Is it a cup? <yes> red? <n/a>"


def test_spatial_features_hand_case():
    # Image 200 x 100, COCO box x=20, y_top=10, w=40, h=30.
    # y from the bottom: y_upper = 100 - 10 = 90, y_lower = 60; x_left 20, x_right 60, centre (40, 75).
    got = spatial_features(np.array([[20.0, 10.0, 40.0, 30.0]]), np.array([[200.0, 100.0]])).numpy()[0]
    want = [20 / 100 - 1, 60 / 50 - 1, 60 / 100 - 1, 90 / 50 - 1, 40 / 100 - 1, 75 / 50 - 1, 2 * 40 / 200,
            2 * 30 / 100]
    np.testing.assert_allclose(got, want, atol=1e-6)
    whole = spatial_features(np.array([[0.0, 0.0, 200.0, 100.0]]), np.array([[200.0, 100.0]])).numpy()[0]
    np.testing.assert_allclose(whole, [-1, -1, 1, 1, 0, 0, 2, 2], atol=1e-6)
    # Per-object boxes against one image size per game.
    many = spatial_features(np.zeros((2, 3, 4)), np.array([[10.0, 10.0], [20.0, 20.0]])[:, None, :])
    assert many.shape == (2, 3, 8)


def _game(i, answers=("Yes", "No"), status="success", n_objects=3):
    objects = [{"id": 100 + j, "category_id": [1, 18, 62][j % 3], "category": ["person", "dog", "chair"][j % 3],
                "bbox": [10.0 * j, 5.0, 30.0, 40.0], "area": 1200.0} for j in range(n_objects)]
    return {"id": i, "image": {"id": 7, "width": 640, "height": 480, "coco_url": "x"},
            "qas": [{"question": f"Is it a person {k}?", "answer": a, "id": k} for k, a in enumerate(answers)],
            "objects": objects, "object_id": 101, "status": status}


def _write(path, games, gz=True):
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as f:
        for g in games:
            f.write(json.dumps(g) + "\n")


def test_jsonl_loader_on_a_tiny_file(tmp_path):
    _write(tmp_path / "guesswhat.train.jsonl.gz",
           [_game(0), _game(1, ("N/A",), "failure", 5), _game(2, (), "success", 4)])
    path = guesswhat_path(str(tmp_path), "train")
    games = load_guesswhat_jsonl(path)
    assert len(games) == 3
    assert games.categories.shape == (3, 5) and games.object_mask.sum(1).tolist() == [3, 5, 4]
    assert games.categories[0].tolist() == [1, 18, 62, 0, 0] and games.target.tolist() == [1, 1, 1]
    assert games.answers.tolist() == [[0, 1], [2, -1], [-1, -1]]
    assert games.dialogues[0] == "Is it a person 0? <yes> Is it a person 1? <no>"
    assert games.dialogues[2] == ""
    np.testing.assert_allclose(games.boxes[0, 1], [10, 5, 30, 40])
    np.testing.assert_allclose(games.image_size[0], [640, 480])
    assert games.category_names == {1: "person", 18: "dog", 62: "chair"}
    assert games.colours is None
    assert len(load_guesswhat_jsonl(path, successful_only=True)) == 2
    assert len(load_guesswhat_jsonl(path, max_games=1)) == 1
    assert load_guesswhat_jsonl(path, max_questions=1).answers.shape == (3, 1)
    # Uncompressed files work too.
    _write(tmp_path / "guesswhat.test.jsonl", [_game(0)], gz=False)
    assert len(load_guesswhat_jsonl(guesswhat_path(str(tmp_path), "test"))) == 1


def test_jsonl_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="guesswhat.valid.jsonl.gz"):
        guesswhat_path(str(tmp_path), "valid")
    with pytest.raises(ValueError, match="unknown split"):
        guesswhat_path(str(tmp_path), "dev")
    _write(tmp_path / "bad.jsonl.gz", [_game(0, ("Maybe",))])
    with pytest.raises(ValueError, match=r"bad.jsonl.gz:1: unknown answer 'Maybe'"):
        load_guesswhat_jsonl(str(tmp_path / "bad.jsonl.gz"))
    game = _game(0)
    game["object_id"] = 999
    _write(tmp_path / "bad2.jsonl.gz", [game])
    with pytest.raises(ValueError, match="object_id 999"):
        load_guesswhat_jsonl(str(tmp_path / "bad2.jsonl.gz"))
    del game["objects"]
    _write(tmp_path / "bad3.jsonl.gz", [game])
    with pytest.raises(ValueError, match="not a GuessWhat"):
        load_guesswhat_jsonl(str(tmp_path / "bad3.jsonl.gz"))


def test_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="min_objects"):
        synthetic_games(3, min_objects=5, max_objects=4)
    with pytest.raises(ValueError, match="num_games"):
        synthetic_games(0)
    assert ANSWERS == ("yes", "no", "n/a")
