"""REINFORCE with a learned baseline (Strub et al. 2017): hand values, gradient sign on a toy reward, baseline
regression, and one policy-gradient step on the question generator."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnets.losses.reinforce import baseline_loss, reinforce_loss


def test_losses_hand_values():
    log_p = np.array([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]], np.float32)
    rewards = np.array([1.0, 0.0], np.float32)
    b = np.array([[0.25, 0.5, 9.0], [0.5, 0.0, 0.0]], np.float32)
    mask = np.array([[1, 1, 0], [1, 1, 0]], np.float32)
    # game 0: -(-1)(0.75) - (-2)(0.5) = 1.75; game 1: -(-0.5)(-0.5) - (-0.5)(0) = -0.25; mean 0.75
    assert float(reinforce_loss(log_p, rewards, b, mask)) == pytest.approx(0.75)
    # game 0: 0.75^2 + 0.5^2 = 0.8125; game 1: 0.25 + 0; mean 0.53125
    assert float(baseline_loss(rewards, b, mask)) == pytest.approx(0.53125)


def test_policy_loss_does_not_train_the_baseline():
    b = tf.Variable([[0.3, 0.6]])
    log_p = tf.Variable([[-1.0, -2.0]])
    with tf.GradientTape(persistent=True) as tape:
        pg = reinforce_loss(log_p, [1.0], b, [[1.0, 1.0]])
        bl = baseline_loss([1.0], b, [[1.0, 1.0]])
    assert tape.gradient(pg, b) is None
    np.testing.assert_allclose(tape.gradient(pg, log_p).numpy(), [[-0.7, -0.4]], rtol=1e-6)  # -(R - b)
    np.testing.assert_allclose(tape.gradient(bl, b).numpy(), [[-1.4, -0.8]], rtol=1e-6)  # -2 (R - b)


@pytest.mark.parametrize("reward, baseline, direction", [(1.0, 0.5, +1), (0.0, 0.5, -1), (1.0, 0.0, +1)])
def test_gradient_sign_on_a_toy_reward(reward, baseline, direction):
    """One SGD step: an action whose reward beats the baseline becomes more likely, otherwise less likely."""
    logits = tf.Variable(tf.zeros([1, 4]))
    action = 2
    opt = keras.optimizers.SGD(0.1)

    def log_prob():
        return tf.nn.log_softmax(logits)[:, action]

    before = float(log_prob()[0])
    with tf.GradientTape() as tape:
        loss = reinforce_loss(log_prob()[:, None], [reward], [[baseline]], [[1.0]])
    opt.apply_gradients([(tape.gradient(loss, logits), logits)])
    after = float(log_prob()[0])
    assert np.sign(after - before) == direction
    # Hand value: d loss / d logit_a = -(R - b)(1 - p_a), p_a = 1/4; one step of lr 0.1.
    assert float(logits[0, action]) == pytest.approx(0.1 * (reward - baseline) * 0.75, rel=1e-5)


def test_baseline_regresses_the_expected_reward():
    """The baseline MLP (100 ReLU -> 1 ReLU) trained on L_b learns E[R | state] (here P(x_0 > 0) = 0/1)."""
    rng = np.random.default_rng(0)
    states = rng.normal(size=(512, 3, 8)).astype("float32")
    states[:, :, 0] = states[:, :1, 0]  # every step of a game sees the feature the reward depends on
    rewards = (states[:, 0, 0] > 0).astype("float32")
    mask = np.ones((512, 3), np.float32)
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.layers.Dense(100, activation="relu"), keras.layers.Dense(1, activation="relu")])
    net.build((None, None, 8))
    opt = keras.optimizers.Adam(1e-2)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = baseline_loss(rewards, net(states)[..., 0], mask)
        opt.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
        return loss

    first = float(step())
    for _ in range(300):
        last = float(step())
    # A constant baseline can do no better than Var(R) = 0.25 per step, 0.75 for 3 steps.
    assert last < 0.5 * 0.75 < first
    b = net(states)[..., 0].numpy()
    assert abs(b[rewards == 1].mean() - 1) < 0.2 and b[rewards == 0].mean() < 0.2


@pytest.fixture(scope="module")
def tiny_players():
    from kerasnets.data.guesswhat import synthetic_games
    from kerasnets.models.guesswhat import Guesser, Oracle, QuestionGenerator, build_vocabulary

    games = synthetic_games(16, seed=0)
    words = build_vocabulary(games.questions.ravel())
    keras.utils.set_random_seed(1)
    return (games, QuestionGenerator(words, 9, 8, 16, 4), Oracle(words, 9, 8, 8, 4, 8),
            Guesser(words, 9, 8, 8, 4, 8))


def test_reinforce_step_on_the_generator_moves_the_played_dialogue(tiny_players):
    """A rewarded dialogue (R = 1 > b) gets more likely after one step, an unrewarded one (R = 0 < b) less."""
    from kerasnets.models.guesswhat import play_games, sequence_log_probs, spatial_features

    games, qgen, oracle, guesser = tiny_players
    spatial = spatial_features(games.boxes, games.image_size[:, None, :])
    played = play_games(qgen, oracle, guesser, games.categories, spatial, games.object_mask, games.target,
                        max_questions=2, max_tokens=4, greedy=False, seed=[3, 4])
    ids, mask = played["dialogue"], played["generated"][:, 1:]
    scene = qgen.scene_embedding(games.categories, spatial, games.object_mask)

    def total_log_p():
        logits, _ = qgen.teacher_forced(ids, scene)
        return tf.reduce_sum(sequence_log_probs(logits, ids[:, 1:]) * mask, axis=1)

    weights = [w.numpy() for w in qgen.trainable_variables]
    for reward, sign in ((1.0, +1), (0.0, -1)):
        for w, v in zip(qgen.trainable_variables, weights):
            w.assign(v)
        before = total_log_p().numpy()
        with tf.GradientTape() as tape:
            logits, _ = qgen.teacher_forced(ids, scene)
            loss = reinforce_loss(sequence_log_probs(logits, ids[:, 1:]), tf.fill([16], reward),
                                  tf.fill(tf.shape(mask), 0.5), mask)
        grads = tape.gradient(loss, qgen.trainable_variables)
        keras.optimizers.SGD(0.05).apply_gradients(zip(grads, qgen.trainable_variables))
        change = (total_log_p().numpy() - before).sum()
        assert np.sign(change) == sign
    for w, v in zip(qgen.trainable_variables, weights):
        w.assign(v)
