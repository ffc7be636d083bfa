"""Show, Attend and Tell model: attention normalisation, the doubly stochastic penalty and the caption NLL on
hand cases, beam search bookkeeping (width 1 == greedy, scores, exhaustive optimum)."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.data.captions import END_ID, PAD_ID, START_ID, CaptionVocabulary
from kerasnets.models.show_attend_tell import (
    ShowAttendTell,
    build_small_encoder,
    build_vgg19_encoder,
    caption_nll,
    doubly_stochastic_penalty,
)


def make_model(words=("a", "red", "circle", "blue", "square"), logit_scale=1.0, seed=0, **kwargs):
    import keras

    keras.utils.set_random_seed(seed)
    vocab = CaptionVocabulary(list(words))
    model = ShowAttendTell(vocab.tokens, build_small_encoder(16, (8, 8)), image_size=16, embed_dim=8, units=16,
                           attention_units=8, **kwargs)
    if logit_scale != 1.0:
        # Large logit gaps: float noise between two graphs cannot flip an argmax.
        for v in model.out_logits.weights:
            v.assign(v * logit_scale)
    return model, vocab


def images(n=3, size=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_attention_weights_sum_to_one_at_every_step():
    model, _ = make_model()
    a = model.encode(images())
    assert a.shape == (3, 64, 8)  # 16x16 -> 8x8 grid, D = 8
    ids = tf.constant([[START_ID, 4, 5, 6, END_ID]] * 3)
    logits, alphas, betas = model.teacher_forcing(a, ids)
    assert logits.shape == (3, 5, 9) and alphas.shape == (3, 5, 64) and betas.shape == (3, 5)
    np.testing.assert_allclose(alphas.numpy().sum(-1), 1.0, atol=1e-5)
    assert ((betas.numpy() > 0) & (betas.numpy() < 1)).all()


def test_doubly_stochastic_penalty_hand_case():
    # B = 1, T = 3 (last step padding), L = 2: sum_t alpha = (0.5 + 0.9, 0.5 + 0.1) = (1.4, 0.6)
    # penalty = (1 - 1.4)^2 + (1 - 0.6)^2 = 0.32; the padded step (0.0, 1.0) is ignored.
    alphas = tf.constant([[[0.5, 0.5], [0.9, 0.1], [0.0, 1.0]]])
    mask = tf.constant([[True, True, False]])
    np.testing.assert_allclose(doubly_stochastic_penalty(alphas, mask).numpy(), [0.32], atol=1e-6)
    # without the mask the last step counts: (1 - 1.4)^2 + (1 - 1.6)^2 = 0.52
    np.testing.assert_allclose(doubly_stochastic_penalty(alphas, tf.ones([1, 3], tf.bool)).numpy(), [0.52], atol=1e-6)


def test_penalty_gradient_matches_the_t_over_l_target_through_the_softmax():
    # (1 - s_i)^2 and (T/L - s_i)^2 differ by a per-step constant in dL/dalpha, which the softmax removes.
    logits = tf.Variable(tf.random.stateless_normal([2, 4, 5], seed=[1, 2]))
    mask = tf.ones([2, 4], tf.bool)
    with tf.GradientTape(persistent=True) as tape:
        alphas = tf.nn.softmax(logits)
        ours = tf.reduce_sum(doubly_stochastic_penalty(alphas, mask))
        total = tf.reduce_sum(alphas, axis=1)
        ratio = tf.reduce_sum(tf.square(4 / 5 - total))
    np.testing.assert_allclose(tape.gradient(ours, logits).numpy(), tape.gradient(ratio, logits).numpy(), atol=1e-6)


def test_caption_nll_hand_case():
    logits = tf.math.log(tf.constant([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]]]))
    targets = tf.constant([[0, 1, 2]])
    mask = tf.constant([[True, True, False]])
    np.testing.assert_allclose(caption_nll(logits, targets, mask).numpy(), [-np.log(0.5) - np.log(0.8)], rtol=1e-5)


def test_beam_width_one_is_greedy():
    model, vocab = make_model(logit_scale=30.0, seed=1)
    x = images(6, seed=1)
    g_ids, g_alpha = model.greedy_decode(x, max_length=7)
    b_ids, b_alpha, _ = model.beam_search(x, max_length=7, beam_width=1)
    np.testing.assert_array_equal(b_ids.numpy(), g_ids.numpy())
    np.testing.assert_allclose(b_alpha.numpy(), g_alpha.numpy(), atol=1e-6)
    ids = g_ids.numpy()
    assert ids.shape == (6, 8)
    assert not np.isin(ids, [START_ID]).any()
    for row in ids:  # <pad> only after <end>
        ends = np.flatnonzero(row == END_ID)
        if len(ends):
            assert (row[ends[0] + 1:] == PAD_ID).all() and (row[: ends[0]] != PAD_ID).all()
        else:
            assert (row != PAD_ID).all()


def sequence_log_prob(model, x, ids):
    """Teacher-forced log p of each decoded sequence up to and including its <end>."""
    ids = np.asarray(ids)
    inputs = np.concatenate([np.full((len(ids), 1), START_ID), ids[:, :-1]], 1)
    logits, _, _ = model.teacher_forcing(model.encode(x), tf.constant(inputs, tf.int32))
    logp = tf.nn.log_softmax(logits).numpy()
    picked = np.take_along_axis(logp, ids[..., None], -1)[..., 0]
    return np.where(ids != PAD_ID, picked, 0.0).sum(1)


@pytest.mark.parametrize("width,normalize", [(2, False), (4, False), (4, True)])
def test_beam_scores_are_the_log_probabilities_of_the_returned_captions(width, normalize):
    model, _ = make_model(logit_scale=3.0, seed=2)
    x = images(4, seed=2)
    ids, alphas, score = model.beam_search(x, max_length=6, beam_width=width, length_normalize=normalize)
    np.testing.assert_allclose(score.numpy(), sequence_log_prob(model, x, ids.numpy()), atol=1e-4)
    # attention rows of real steps sum to 1, rows after <end> are zero
    sums = alphas.numpy().sum(-1)
    np.testing.assert_allclose(np.where(ids.numpy() != PAD_ID, sums, 1.0), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.where(ids.numpy() == PAD_ID, sums, 0.0), 0.0, atol=1e-6)


def test_wide_beam_finds_the_exhaustive_optimum():
    # Vocabulary: 4 specials + 2 words; generable tokens <end>, <unk>, w1, w2. With max_length 2
    # (3 decoding steps) there are at most 4^3 candidates, so width 16 keeps every prefix.
    model, _ = make_model(words=("x", "y"), logit_scale=2.0, seed=3)
    x = images(2, seed=3)
    ids, _, score = model.beam_search(x, max_length=2, beam_width=16)
    seqs = []
    for seq in itertools.product([END_ID, 3, 4, 5], repeat=3):
        seq = list(seq)
        if END_ID in seq:
            k = seq.index(END_ID)
            seq = seq[: k + 1] + [PAD_ID] * (2 - k)
        seqs.append(seq)
    seqs = np.array(seqs)
    best = [sequence_log_prob(model, np.repeat(x[i : i + 1], len(seqs), 0), seqs).max() for i in range(2)]
    np.testing.assert_allclose(score.numpy(), best, atol=1e-4)


def test_images_of_any_size_are_resized_in_graph():
    model, _ = make_model()
    big = model.encode(images(2, size=40))
    assert big.shape == (2, 64, 8)
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        model.encode(np.zeros((2, 16, 16), np.uint8))


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        build_small_encoder(30, (8, 8, 8))
    with pytest.raises(ValueError, match="beam_width"):
        make_model()[0].beam_search(images(1), 3, beam_width=0)
    with pytest.raises(ValueError, match="preprocessing"):
        make_model(preprocessing="imagenet")


def test_vgg19_encoder_gives_the_papers_14x14x512_annotations():
    encoder = build_vgg19_encoder(224)
    assert encoder.output_shape == (None, 14, 14, 512)  # L = 196, D = 512
