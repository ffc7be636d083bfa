"""Progressive bit search: in-layer candidate rule, monotone loss, stopping, random baseline."""

import keras
import numpy as np
import pytest

from kerasnets.attacks.bit_flip import candidate_bits, make_accuracy_fn, progressive_bit_search, random_bit_flips
from kerasnets.attacks.quantization import QuantizedModel, hamming_distance
from kerasnets.data.image_classification import load_image_classification
from kerasnets.models.small_classifiers import build_mlp_classifier, predict_labels


def test_candidate_bits_follow_the_bit_gradient_sign():
    # two weights; q = [5, -3]; step 0.5; dL/dW = [+2, -1]
    codes = np.array([5, -3], np.int8)
    grad = np.array([2.0, -1.0])
    cands = candidate_bits(grad, codes, 0.5, k_top=2, n_bits=100)
    # dL/db_i = g * step * v_i. For q=5 (bits 1,0,1,0,0,0,0,0) with g>0: raising q helps,
    # so 0->1 flips of bits 1,3,4,5,6 (v>0) and the 1->0 flips lower q (bad); bit 7 (v=-128, bit 0)
    # 0->1 lowers q by 128 (bad).
    got0 = sorted(b for i, b, _ in cands if i == 0)
    assert got0 == [1, 3, 4, 5, 6]
    # q=-3 = 0b11111101: g<0 wants q lower: 1->0 of bits with v>0 (0, 2..6) and 0->1 of nothing else;
    # bit 7 is already 1 (1->0 would add 128: bad); bit 1 is 0 (0->1 adds 2: bad)
    got1 = sorted(b for i, b, _ in cands if i == 1)
    assert got1 == [0, 2, 3, 4, 5, 6]
    # scores are |dL/db| = |g| * step * |v|, sorted descending
    scores = [s for _, _, s in cands]
    assert scores == sorted(scores, reverse=True)
    assert cands[0][:2] == (0, 6) and cands[0][2] == pytest.approx(2.0 * 0.5 * 64)
    # top-k restricts to the largest |dL/dW|
    assert {i for i, _, _ in candidate_bits(grad, codes, 0.5, k_top=1, n_bits=100)} == {0}
    assert candidate_bits(np.zeros(2), codes, 0.5, k_top=2, n_bits=3) == []


@pytest.fixture(scope="module")
def trained():
    (x_tr, y_tr), (x_te, y_te) = load_image_classification(max_train=400, max_test=150)
    keras.utils.set_random_seed(0)
    model = build_mlp_classifier((8, 8, 1), hidden=(32,))
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_tr, y_tr, epochs=15, batch_size=64, verbose=0)
    return model, x_tr, x_te, y_te


@pytest.mark.slow
def test_bfa_raises_the_loss_every_iteration_and_flips_are_recorded(trained):
    model, x_tr, x_te, y_te = trained
    qm = QuantizedModel.from_model(model)
    clean = qm.snapshot()
    xa = x_tr[:64]
    ya = predict_labels(qm.model, xa)
    acc = make_accuracy_fn(qm, x_te, y_te)
    start = acc()
    res = progressive_bit_search(qm, xa, ya, accuracy_fn=acc, target_accuracy=0.0, max_flips=12, k_top=5)
    assert len(res.loss) >= 4
    assert all(b > a for a, b in zip(res.loss, res.loss[1:])), res.loss
    assert res.num_flips == hamming_distance(clean, qm.q) or res.num_flips > hamming_distance(clean, qm.q)
    assert res.num_flips == sum(res.flips_per_iteration) == res.cumulative_flips[-1]
    assert res.num_flips <= 12
    assert res.accuracy[0] == pytest.approx(start) and res.accuracy[-1] < start
    # each recorded flip is one bit: replaying them on the clean codes gives the attacked codes
    replay = QuantizedModel.from_model(model)
    for name, idx, bit, old, new in res.flips:
        assert replay.flip_bit(name, idx, bit) == (old, new)
    assert hamming_distance(replay.q, qm.q) == 0


@pytest.mark.slow
def test_bfa_stops_at_the_target_accuracy(trained):
    model, x_tr, x_te, y_te = trained
    qm = QuantizedModel.from_model(model)
    acc = make_accuracy_fn(qm, x_te, y_te)
    target = acc() - 0.05
    res = progressive_bit_search(qm, x_tr[:64], predict_labels(qm.model, x_tr[:64]), accuracy_fn=acc,
                                 target_accuracy=target, max_flips=50)
    assert res.stopped == "target_accuracy"
    assert res.accuracy[-1] <= target < min(res.accuracy[:-1])
    # without an accuracy function it runs to the budget
    qm2 = QuantizedModel.from_model(model)
    res2 = progressive_bit_search(qm2, x_tr[:64], predict_labels(qm2.model, x_tr[:64]), max_flips=3)
    assert res2.num_flips == 3 and res2.stopped == "max_flips"


@pytest.mark.slow
def test_random_flips_are_single_bits_and_reproducible(trained):
    model, _, x_te, y_te = trained
    runs = []
    for _ in range(2):
        qm = QuantizedModel.from_model(model)
        clean = qm.snapshot()
        accs, flips = random_bit_flips(qm, make_accuracy_fn(qm, x_te, y_te), max_flips=20, seed=3)
        assert len(accs) == 21 and len(flips) == 20
        assert hamming_distance(clean, qm.q) <= 20
        runs.append(flips)
    assert runs[0] == runs[1]
