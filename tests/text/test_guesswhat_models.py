"""guesswhat networks: in-graph tokenization, the guesser's masked softmax, the generator's loss mask, and the
step decoder agreeing with teacher forcing (self-play tokens are the argmax of the teacher-forced logits)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.data.guesswhat import synthetic_games
from kerasnets.models.guesswhat import (PAD_ID, DialogueVocabulary, Guesser, Oracle, QuestionGenerator,
                                        build_vocabulary, next_question, play_games, scene_features,
                                        spatial_features)


@pytest.fixture(scope="module")
def setup():
    games = synthetic_games(24, seed=5)
    words = build_vocabulary(games.questions.ravel())
    keras.utils.set_random_seed(2)
    spatial = spatial_features(games.boxes, games.image_size[:, None, :])
    return games, words, spatial


def test_vocabulary_tokenizes_raw_strings():
    vocab = DialogueVocabulary(["is", "it", "a", "cup"])
    ids = vocab.tokenize(tf.constant(["Is it a CUP? <Yes>", "is it a zebra?", ""])).numpy()
    assert ids.shape == (3, 6)
    assert ids[0].tolist() == [vocab.id(w) for w in ["is", "it", "a", "cup", "?", "<yes>"]]
    assert ids[1, 3] == 1  # <unk>
    assert ids[2].tolist() == [PAD_ID] * 6
    assert vocab.detokenize(ids).numpy().tolist() == [b"is it a cup ? <yes>", b"is it a <unk> ?", b""]
    assert vocab.tokenize(tf.constant(["", ""])).shape == (2, 1)  # an all-empty batch keeps one column
    assert build_vocabulary(["Is it a cup?", "is it red?"]) == ["is", "it", "a", "cup", "red"]
    assert build_vocabulary(["Is it a cup?", "is it red?"], min_count=2) == ["is", "it"]


def test_guesser_softmax_masks_padded_objects(setup):
    games, words, spatial = setup
    guesser = Guesser(words, 9, 8, 16, 4, 16)
    mask = games.object_mask
    log_p = guesser({"dialogue": games.dialogues.astype(str), "categories": games.categories, "spatial": spatial,
                     "object_mask": mask}).numpy()
    p = np.exp(log_p)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    assert (p[~mask] == 0).all() and (p[mask] > 0).all()
    # The padded objects' features do not matter; hand check of one game's scores.
    noisy = np.where(mask[..., None], spatial.numpy(), 123.0)
    cats = np.where(mask, games.categories, 7)
    again = guesser({"dialogue": games.dialogues.astype(str), "categories": cats, "spatial": noisy,
                     "object_mask": mask}).numpy()
    np.testing.assert_allclose(again[mask], log_p[mask], atol=1e-5)
    ids = guesser.vocab.tokenize(games.dialogues[:1].astype(str))
    h = guesser.lstm(guesser.word_embedding(ids), mask=ids != 0).numpy()[0]
    emb = guesser.object_embeddings(games.categories[:1], spatial[:1]).numpy()[0]
    scores = emb @ h
    n = int(mask[0].sum())
    want = np.exp(scores[:n] - scores[:n].max())
    np.testing.assert_allclose(p[0, :n], want / want.sum(), rtol=1e-4)


def test_oracle_and_scene_features(setup):
    games, words, spatial = setup
    oracle = Oracle(words, 9, 8, 8, 4, 8)
    t = games.target
    logits = oracle({"question": games.questions[:, 0].astype(str), "category": games.categories[np.arange(24), t],
                     "spatial": spatial.numpy()[np.arange(24), t]})
    assert logits.shape == (24, 3)
    cats = np.array([[1, 1, 2, 0]])
    sp = np.zeros((1, 4, 8), np.float32)
    sp[0, :, 4] = [0.5, -0.5, 0.2, 9.0]
    f = scene_features(cats, sp, np.array([[True, True, True, False]]), 3).numpy()[0]
    np.testing.assert_allclose(f[:3], [0, 2 / 3, 1 / 3], atol=1e-6)  # category histogram (padding excluded)
    np.testing.assert_allclose(f[3:].reshape(3, 2)[1], [0.0, 0.0], atol=1e-6)  # mean centre of the two 1s
    np.testing.assert_allclose(f[3:].reshape(3, 2)[2], [0.2, 0.0], atol=1e-6)


def test_generator_loss_mask_and_stream(setup):
    games, words, _ = setup
    qgen = QuestionGenerator(words, 9, 8, 16, 4)
    ids = qgen.sequence_ids(tf.constant(["is it a cup? <yes> is it red? <n/a>", ""])).numpy()
    v = qgen.vocab
    assert ids[0].tolist() == [v.id(w) for w in ["<start>", "is", "it", "a", "cup", "?", "<yes>", "is", "it",
                                                  "red", "?", "<n/a>", "<stop_dialogue>"]]
    assert ids[1, :2].tolist() == [v.id("<start>"), v.id("<stop_dialogue>")] and (ids[1, 2:] == 0).all()
    mask = qgen.loss_mask(ids[:, 1:]).numpy()
    assert mask[0].tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1]  # answers are not generated
    assert mask[1].tolist() == [1] + [0] * 11


def test_self_play_matches_teacher_forcing(setup):
    """Greedy self-play tokens are the argmax of the teacher-forced logits on the played stream, and the
    answers in the stream are the oracle's argmax on each question."""
    games, words, spatial = setup
    keras.utils.set_random_seed(3)
    qgen = QuestionGenerator(words, 9, 8, 16, 4)
    oracle = Oracle(words, 9, 8, 8, 4, 8)
    guesser = Guesser(words, 9, 8, 8, 4, 8)
    out = play_games(qgen, oracle, guesser, games.categories, spatial, games.object_mask, games.target,
                     max_questions=3, max_tokens=5, greedy=True)
    ids = out["dialogue"].numpy()
    gen = out["generated"].numpy()
    scene = qgen.scene_embedding(games.categories, spatial, games.object_mask)
    logits, _ = qgen.teacher_forced(tf.constant(ids), scene)
    argmax = tf.argmax(logits, -1).numpy()
    generated = gen[:, 1:] == 1
    assert generated.sum() > 0
    np.testing.assert_array_equal(argmax[generated], ids[:, 1:][generated])
    # Answers are answer tokens, placed right after the questions they answer.
    answer_ids = set(qgen.answer_ids)
    answers = (gen == 0) & (ids != 0)
    answers[:, 0] = False
    assert set(ids[answers].tolist()) <= answer_ids
    assert out["num_questions"].numpy().max() <= 3
    assert ((out["success"].numpy() == 1) == (out["guess"].numpy() == games.target)).all()
    # Sampling is deterministic by seed.
    a = play_games(qgen, oracle, guesser, games.categories, spatial, games.object_mask, games.target,
                   max_questions=2, max_tokens=4, greedy=False, seed=[1, 2])["dialogue"].numpy()
    b = play_games(qgen, oracle, guesser, games.categories, spatial, games.object_mask, games.target,
                   max_questions=2, max_tokens=4, greedy=False, seed=[1, 2])["dialogue"].numpy()
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="seed"):
        play_games(qgen, oracle, guesser, games.categories, spatial, games.object_mask, games.target, greedy=False)
    # next_question after a dialogue prefix = the question self-play asks next (same stream, greedy).
    first = next_question(qgen, tf.constant([""] * 24), games.categories, spatial, games.object_mask,
                          max_tokens=5).numpy()
    first_question = np.zeros((24, 5), np.int32)
    for i in range(24):
        j = 1
        while j < ids.shape[1] and gen[i, j] == 1 and j <= 5:  # generated tokens up to the first answer
            first_question[i, j - 1] = ids[i, j]
            j += 1
    assert first.tolist() == qgen.vocab.detokenize(first_question).numpy().tolist()
