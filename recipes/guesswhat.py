"""GuessWhat?! (de Vries, Strub, Chandar, Pietquin, Larochelle, Courville, CVPR 2017, arXiv:1611.08481) with the
REINFORCE questioner of Strub, de Vries, Mary, Piot, Courville, Pietquin (IJCAI 2017, arXiv:1703.05423).

Two players find an object in a scene: the questioner asks yes/no questions,
the oracle (who knows the target) answers, the questioner's guesser then picks
the object. Networks in `kerasnets.models.guesswhat`:

    oracle   p(a | q, c*, s*)     = softmax(MLP([LSTM(q); E_c(c*); s*]))              a in {yes, no, n/a}
    guesser  p(o_i | dialogue)    = softmax_i(MLP([E_c(c_i); s_i]) . LSTM(dialogue))   over the scene's objects
    qgen     p(w_t | w_<t, scene) = softmax(W h_t),  h_t = LSTM([E_w(w_{t-1}); scene])  over the dialogue stream

`s` is GuessWhat's 8-d spatial feature of a box (x_left, y_lower, x_right,
y_upper, x_center, y_center scaled to [-1, 1], w and h scaled by 2 / size).

Stages (`stages=`, run in this order within one run, `steps` in total):

1. supervised (`oracle`, `guesser`, `qgen`, any subset): cross-entropy on the
   games' question/answer pairs (oracle), targets (guesser) and question
   tokens (qgen, teacher forcing; answers are inputs, not targets), Adam,
   per-tensor gradient clipping at 5 (paper: Adam 1e-4, 20-30 epochs);
2. `reinforce` (the last `reinforce_steps` steps): the generator plays
   `max_questions` questions of <= `max_question_tokens` tokens against the
   trained oracle, the trained guesser guesses; reward R = 1 if the guess is
   the target, else 0, copied to every generated token (gamma = 1); a
   baseline b_t = MLP(100 ReLU -> 1 ReLU) on the stop-gradient LSTM outputs;
   `kerasnets.losses.reinforce`:

       L_pg = mean_batch sum_t -log pi(w_t) (R - b_t)      L_b = mean_batch sum_t (R - b_t)^2

   both minimized by plain SGD (paper: lr 1e-3, clip 5, batch 64, 5 questions,
   12 tokens). Oracle and guesser stay fixed; the supervised generator is kept
   (`model.qgen_supervised`) so `evaluate` compares the two.

`stages=reinforce` alone (or a subset) continues from `init_from=<run dir>`.
The step schedule is a `tf.cond` on the step counter; every optimizer update
is outside it (the supervised Adam's learning rate is 0 in the REINFORCE phase
and the SGD gets zero gradients in the supervised one, so neither moves).

Evaluation (`evaluate`, the paper's metrics): oracle error on the test
questions, guesser error on the test games' dialogues, and the end-to-end game
success rate (qgen -> oracle -> guesser on new games) with greedy and sampled
decoding, supervised vs REINFORCE. Paper: oracle 21.5 % test error, guesser
38.7 % (reference code README: 21.1 %, 35.8 %); success with the supervised
generator ~40-47 %, after REINFORCE ~53-60 % depending on decoding (reference
README: sampling 39.2 -> 56.5 %, greedy 40.8 -> 58.4 %).

Default run (embedded data, 2,500 supervised + 1,500 REINFORCE steps; 450 s of CPU time in all, evaluation
included): oracle error 9.5 %, guesser error 38.9 %, chance success 20.4 %; game success supervised -> REINFORCE
greedy 40.0 -> 81.9 %, sampled 52.2 -> 78.5 % (2,000 new games, 5 questions). The synthetic oracle errs less
than the paper's because only the colour questions need the image here.

Data: `embedded` = synthetic scenes with rule-questioner dialogues
(`kerasnets.data.guesswhat.synthetic_games`); `guesswhat` = the released
`guesswhat.{train,valid,test}.jsonl.gz` in `data_dir` (images not needed).

Export: `serving_default` = the oracle on raw inputs (`question` string,
`category` int32, `bbox` [x, y, w, h] pixels, `image_size` [W, H]) ->
`probabilities` [N, 3], `answer` string; `guesser` (`dialogue` string in
GuessWhat's format "is it a cup ? <yes> ...", per-object `categories`,
`bboxes`, `object_mask`, `image_size`) -> `probabilities` [N, O], `guess`;
`question_generator` (same inputs; the dialogue so far) -> the greedy next
`question` of the REINFORCE-trained generator. String ops are not TFLite
builtins: no TFLite export.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Literal, Optional

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import streams
from kerasnets.data.guesswhat import Games, guesswhat_path, load_guesswhat_jsonl, synthetic_games
from kerasnets.errors import ConfigError
from kerasnets.losses.reinforce import baseline_loss, reinforce_loss
from kerasnets.models.guesswhat import (Guesser, Oracle, QuestionGenerator, build_vocabulary, next_question,
                                        play_games, sequence_log_probs, spatial_features)
from kerasnets.distribute import replica_seed
from kerasnets.optimization import scaled_gradients
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.utils.plots import plot_history
from kerasnets.models.recipe_model import RecipeModel

STAGES = ("oracle", "guesser", "qgen", "reinforce")
SUPERVISED = ("oracle", "guesser", "qgen")
COCO_CATEGORIES = 91  # COCO category ids 1..90, row 0 unknown/padding


@dataclasses.dataclass
class GuessWhatConfig(RecipeConfig):
    """Defaults: all four stages on the embedded games, CPU-sized networks (paper sizes in the help)."""

    steps: int = param(4000, help="training steps in total (supervised + REINFORCE)", min=1)
    batch_size: int = param(64, help="global batch size in games (paper: 64, qgen 32)", min=1)
    data: Literal["embedded", "guesswhat"] = param(
        "embedded", help="embedded: synthetic scenes and dialogues; guesswhat: guesswhat.*.jsonl.gz in data_dir")
    stages: tuple[str, ...] = param(STAGES, help="stages to run, from oracle, guesser, qgen, reinforce")
    reinforce_steps: int = param(1500, help="the last N steps are REINFORCE (when supervised stages run too)",
                                 min=1)
    init_from: Optional[str] = param(None, help="run directory whose latest checkpoint initializes the networks")
    # data
    num_train: int = param(20000, help="embedded: training games", min=1)
    num_test: int = param(2000, help="embedded: test games", min=1)
    min_objects: int = param(3, help="embedded: fewest objects in a scene (GuessWhat: 3)", min=2)
    max_objects: int = param(8, help="embedded: most objects in a scene (GuessWhat: 20)", min=2)
    colour_question_rate: float = param(
        0.2, help="embedded: share of colour questions (not answerable from category + box)", min=0.0, max=1.0)
    dialogue_max_questions: int = param(8, help="questions kept per training dialogue", min=1)
    max_train: Optional[int] = param(None, help="guesswhat: use at most this many training games", min=1)
    max_test: Optional[int] = param(None, help="guesswhat: use at most this many test games", min=1)
    successful_only: bool = param(False, help="guesswhat: train on games the humans won only")
    min_word_count: int = param(1, help="minimal word count for the vocabulary (GuessWhat: 3)", min=1)
    # networks
    word_dim: int = param(64, help="word embedding size (paper: oracle 300, guesser/qgen 512)", min=1)
    oracle_units: int = param(128, help="oracle question LSTM units (paper: 512)", min=1)
    guesser_units: int = param(128, help="guesser dialogue LSTM units (paper: 512)", min=1)
    qgen_units: int = param(128, help="question generator LSTM units (paper: 1024)", min=1)
    category_dim: int = param(64, help="category embedding size (paper: oracle 512, guesser 256)", min=1)
    hidden_units: int = param(128, help="oracle MLP and guesser object-MLP units (paper: 512)", min=1)
    scene_dim: int = param(64, help="qgen scene embedding size (paper: 512 from VGG fc8)", min=1)
    use_scene: bool = param(True, help="condition the question generator on the scene's objects")
    # optimization
    learning_rate: float = param(1e-3, help="supervised Adam lr (paper: 1e-4 over 20-30 epochs)", min=0.0)
    clip_norm: float = param(5.0, help="per-tensor gradient norm clip (paper: 5)", min=0.0)
    rl_learning_rate: float = param(1e-3, help="REINFORCE SGD lr for generator and baseline (paper: 1e-3)",
                                    min=0.0)
    baseline_units: int = param(100, help="baseline MLP hidden units (paper: 100)", min=1)
    max_questions: int = param(5, help="questions per self-played game (paper: 5)", min=1)
    max_question_tokens: int = param(12, help="tokens per generated question (paper: 12)", min=1)
    num_eval_games: int = param(2000, help="test games played to measure the success rate", min=1)
    log_every: int = param(50, help="log every N steps", min=1)

    def validate(self) -> None:
        super().validate()
        bad = [s for s in self.stages if s not in STAGES]
        if bad or not self.stages:
            raise ConfigError(f"bad value for 'stages': {self.stages!r}; expected a non-empty subset of "
                              f"{', '.join(STAGES)}")
        if len(set(self.stages)) != len(self.stages):
            raise ConfigError(f"bad value for 'stages': {self.stages!r} repeats a stage")
        if "reinforce" in self.stages:
            missing = [s for s in SUPERVISED if s not in self.stages]
            if missing and self.init_from is None:
                raise ConfigError(f"stage 'reinforce' needs trained {', '.join(missing)}: add them to 'stages' "
                                  "or set 'init_from' to a run that trained them")
            if self.supervised_stages and self.reinforce_steps >= self.steps:
                raise ConfigError(f"bad value for 'reinforce_steps': {self.reinforce_steps} leaves no supervised "
                                  f"steps out of steps={self.steps}")
        if self.min_objects > self.max_objects:
            raise ConfigError(f"min_objects ({self.min_objects}) > max_objects ({self.max_objects})")

    @property
    def supervised_stages(self) -> tuple[str, ...]:
        return tuple(s for s in self.stages if s in SUPERVISED)

    @property
    def supervised_steps(self) -> int:
        if not self.supervised_stages:
            return 0
        return self.steps - self.reinforce_steps if "reinforce" in self.stages else self.steps


class PhaseLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """`lr` for optimizer steps `< until`, 0 afterwards (the supervised optimizer in the REINFORCE phase)."""

    def __init__(self, lr: float, until: int):
        self.lr, self.until = float(lr), int(until)

    def __call__(self, step):
        return tf.where(tf.cast(step, tf.int64) < self.until, self.lr, 0.0)

    def get_config(self):
        return {"lr": self.lr, "until": self.until}


def _dense(grads, variables):
    """Dense gradients (zeros for None): `tf.cond` branches need identical structures."""
    return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, variables)]


class GuessWhatTrainer(RecipeModel):
    """Oracle, guesser, generator (+ its supervised snapshot), baseline and the two optimizers."""

    def __init__(self, oracle, guesser, qgen, qgen_supervised, baseline, optimizer, rl_optimizer, config,
                 **kwargs):
        super().__init__(**kwargs)
        self.oracle, self.guesser, self.qgen, self.qgen_supervised = oracle, guesser, qgen, qgen_supervised
        self.baseline = baseline
        self.optimizer, self.rl_optimizer = optimizer, rl_optimizer
        self.cfg = config
        self.stages = tuple(config.stages)
        self.supervised_steps = config.supervised_steps
        self.seed_generator = keras.random.SeedGenerator(config.seed, name="rollout_seed")
        self.step_counter = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False,
                                            aggregation="only_first_replica", name="step_counter")
        nets = {"oracle": oracle, "guesser": guesser, "qgen": qgen}
        self.supervised_nets = [nets[s] for s in config.supervised_stages]
        self.supervised_vars = [v for net in self.supervised_nets for v in net.trainable_variables]
        self.rl_nets = [qgen, baseline]
        self.rl_vars = qgen.trainable_variables + baseline.trainable_variables
        # Every sub-network builds its weights in its constructor; marked built so the SavedModel export
        # tracks the whole model (its lookup tables included).
        self.built = True

    def call(self, inputs, training=False):
        return self.guesser(inputs, training=training)

    # ------------------------------------------------------------ losses
    @staticmethod
    def spatial(batch):
        return spatial_features(batch["boxes"], batch["image_size"][:, None, :])

    def oracle_loss(self, batch, spatial, training=False):
        """Mean cross-entropy and error over the batch's question/answer pairs."""
        q = tf.shape(batch["answers"])[1]
        target = batch["target"]
        answers = tf.reshape(batch["answers"], [-1])
        valid = answers >= 0  # only the asked questions (dialogues are padded to the longest)
        cat = tf.repeat(tf.gather(batch["categories"], target, batch_dims=1), q)
        spat = tf.repeat(tf.gather(spatial, target, batch_dims=1), q, axis=0)
        questions = tf.boolean_mask(tf.reshape(batch["questions"], [-1]), valid)
        answers = tf.boolean_mask(answers, valid)
        logits = self.oracle({"question": questions, "category": tf.boolean_mask(cat, valid),
                              "spatial": tf.boolean_mask(spat, valid)}, training=training)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=answers, logits=logits)
        wrong = tf.cast(tf.argmax(logits, -1, output_type=tf.int32) != answers, tf.float32)
        n = tf.maximum(tf.cast(tf.size(answers), tf.float32), 1.0)
        return tf.reduce_sum(ce) / n, tf.reduce_sum(wrong) / n

    def guesser_loss(self, batch, spatial, training=False):
        log_p = self.guesser({"dialogue": batch["dialogue"], "categories": batch["categories"], "spatial": spatial,
                              "object_mask": batch["object_mask"]}, training=training)
        target = batch["target"]
        ce = -tf.reduce_mean(tf.gather(log_p, target, batch_dims=1))
        error = tf.reduce_mean(tf.cast(tf.argmax(log_p, -1, output_type=tf.int32) != target, tf.float32))
        return ce, error

    def qgen_loss(self, batch, spatial, training=False):
        """Token cross-entropy on generated tokens (questions, `?`, `<stop_dialogue>`), answers excluded."""
        ids = self.qgen.sequence_ids(batch["dialogue"])
        scene = self.qgen.scene_embedding(batch["categories"], spatial, batch["object_mask"])
        logits, _ = self.qgen.teacher_forced(ids, scene, training=training)
        mask = self.qgen.loss_mask(ids[:, 1:])
        log_p = sequence_log_probs(logits, ids[:, 1:])
        return -tf.reduce_sum(log_p * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)

    def reinforce_losses(self, batch, spatial, seed):
        """Self-play a batch (no gradient), then the REINFORCE and baseline losses on the played tokens."""
        games = play_games(self.qgen, self.oracle, self.guesser, batch["categories"], spatial,
                           batch["object_mask"], batch["target"], max_questions=self.cfg.max_questions,
                           max_tokens=self.cfg.max_question_tokens, greedy=False, seed=seed)
        ids = tf.stop_gradient(games["dialogue"])
        reward = tf.stop_gradient(games["success"])
        scene = self.qgen.scene_embedding(batch["categories"], spatial, batch["object_mask"])
        logits, hidden = self.qgen.teacher_forced(ids, scene, training=True)
        mask = games["generated"][:, 1:]
        log_p = sequence_log_probs(logits, ids[:, 1:])
        b = self.baseline(tf.stop_gradient(hidden))[..., 0]
        pg = reinforce_loss(log_p, reward, b, mask)
        bl = baseline_loss(reward, b, mask)
        stats = {"reward": tf.reduce_mean(reward),
                 "baseline": tf.reduce_sum(b * mask) / tf.maximum(tf.reduce_sum(mask), 1.0),
                 "questions": tf.reduce_mean(tf.cast(games["num_questions"], tf.float32))}
        return pg, bl, stats

    # -------------------------------------------------------------- steps
    _SUP_KEYS = ("oracle_loss", "oracle_error", "guesser_loss", "guesser_error", "qgen_loss")
    _RL_KEYS = ("pg_loss", "baseline_loss", "reward", "baseline", "questions")

    def _supervised_branch(self, batch):
        spatial = self.spatial(batch)
        logs = {}
        with tf.GradientTape() as tape:
            total = tf.constant(0.0)
            if "oracle" in self.stages:
                logs["oracle_loss"], logs["oracle_error"] = self.oracle_loss(batch, spatial, training=True)
                total += logs["oracle_loss"]
            if "guesser" in self.stages:
                logs["guesser_loss"], logs["guesser_error"] = self.guesser_loss(batch, spatial, training=True)
                total += logs["guesser_loss"]
            if "qgen" in self.stages:
                logs["qgen_loss"] = self.qgen_loss(batch, spatial, training=True)
                total += logs["qgen_loss"]
        # Gradients here, applied after the tf.cond (both optimizers step every step).
        _, grads = scaled_gradients(tape, total, self.supervised_vars, self.optimizer, model=self.supervised_nets)
        grads = _dense(grads, self.supervised_vars)
        rl_grads = [tf.zeros_like(v) for v in self.rl_vars]
        return grads, rl_grads, self._all_logs(logs, phase=0.0)

    def _reinforce_branch(self, batch, seed):
        spatial = self.spatial(batch)
        with tf.GradientTape() as tape:
            pg, bl, stats = self.reinforce_losses(batch, spatial, seed)
            # The advantage and the baseline's input are stop-gradients: d(pg)/d(baseline) = 0 and
            # d(bl)/d(qgen) = 0, so one sum trains each network on its own loss.
            total = pg + bl
        _, rl_grads = scaled_gradients(tape, total, self.rl_vars, self.rl_optimizer, model=self.rl_nets)
        rl_grads = _dense(rl_grads, self.rl_vars)
        grads = [tf.zeros_like(v) for v in self.supervised_vars]
        return grads, rl_grads, self._all_logs({"pg_loss": pg, "baseline_loss": bl, **stats}, phase=1.0)

    def _all_logs(self, logs, phase):
        keys = [k for k in self._SUP_KEYS if self._logged(k)] + (list(self._RL_KEYS) if self.has_rl else [])
        out = {k: tf.cast(logs.get(k, 0.0), tf.float32) for k in keys}
        out["phase"] = tf.constant(phase, tf.float32)
        return out

    def _logged(self, key):
        return key.split("_")[0] in self.stages

    @property
    def has_rl(self):
        return "reinforce" in self.stages

    def train_step(self, batch):
        step = self.step_counter.value
        if self.supervised_steps and self.has_rl:
            seed = replica_seed(self.seed_generator)
            grads, rl_grads, logs = tf.cond(step < self.supervised_steps,
                                            lambda: self._supervised_branch(batch),
                                            lambda: self._reinforce_branch(batch, seed))
        elif self.has_rl:
            grads, rl_grads, logs = self._reinforce_branch(batch, replica_seed(self.seed_generator))
        else:
            grads, rl_grads, logs = self._supervised_branch(batch)
        if self.supervised_vars:
            self.optimizer.apply(grads, self.supervised_vars)
        if self.has_rl:
            self.rl_optimizer.apply(rl_grads, self.rl_vars)
            if "qgen" in self.stages:
                # Keep the supervised generator: copy it while the supervised phase runs.
                keep = step < self.supervised_steps
                for snap, live in zip(self.qgen_supervised.weights, self.qgen.weights):
                    snap.assign(tf.where(keep, live.value, snap.value))
        self.step_counter.assign_add(1)
        return logs


def _copy_weights(src, dst):
    for d, s in zip(dst.weights, src.weights):
        d.assign(s.value)


class GuessWhatRecipe(Recipe):
    name = "guesswhat"
    paper = ("de Vries, Strub, Chandar, Pietquin, Larochelle, Courville 2017. GuessWhat?! Visual object discovery "
             "through multi-modal dialogue. CVPR, arXiv:1611.08481; Strub et al. 2017. End-to-end optimization of "
             "goal-driven and visually grounded dialogue systems. IJCAI, arXiv:1703.05423")
    summary = "GuessWhat?!: oracle, guesser, question generator, REINFORCE self-play; raw strings in"
    config_class = GuessWhatConfig
    key_metrics = ("oracle_loss", "guesser_loss", "qgen_loss", "reward")

    def __init__(self, config: GuessWhatConfig | None = None):
        super().__init__(config)
        self.config.validate()
        self._data = None
        self._words = None
        self._play_fns = {}

    # ------------------------------------------------------------------ data
    def data(self) -> tuple[Games, Games]:
        """(train, test) games."""
        if self._data is None:
            c = self.config
            if c.data == "embedded":
                kw = dict(min_objects=c.min_objects, max_objects=c.max_objects,
                          max_questions=c.dialogue_max_questions, colour_question_rate=c.colour_question_rate)
                train = synthetic_games(c.num_train, seed=c.seed, **kw)
                test = synthetic_games(c.num_test, seed=c.seed + 10_000_019, **kw)
            else:
                if not c.data_dir:
                    raise ConfigError("data=guesswhat needs data_dir (the folder with guesswhat.*.jsonl.gz)")
                train = load_guesswhat_jsonl(guesswhat_path(c.data_dir, "train"), c.max_train, c.successful_only,
                                             c.dialogue_max_questions)
                test = load_guesswhat_jsonl(guesswhat_path(c.data_dir, "test"), c.max_test, False,
                                            c.dialogue_max_questions)
            if len(train) < c.batch_size:
                raise ConfigError(f"batch_size {c.batch_size} is larger than the training set ({len(train)} games)")
            self._data = (train, test)
        return self._data

    def num_categories(self) -> int:
        train, test = self.data()
        if self.config.data == "guesswhat":
            return max(COCO_CATEGORIES, train.num_categories, test.num_categories)
        return train.num_categories

    def vocabulary(self) -> list[str]:
        if self._words is None:
            self._words = build_vocabulary(self.data()[0].questions.ravel(), self.config.min_word_count)
        return self._words

    @staticmethod
    def _arrays(games: Games) -> dict:
        return {
            "dialogue": games.dialogues.astype(str).astype(bytes),
            "questions": games.questions.astype(str).astype(bytes),
            "answers": games.answers,
            "categories": games.categories,
            "boxes": games.boxes,
            "object_mask": games.object_mask,
            "image_size": games.image_size,
            "target": games.target,
        }

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        train, test = self.data()
        if split == "train":
            return streams.array_dataset(self._arrays(train), self.config.batch_size, self.config.seed, start_step)
        if split == "test":
            return streams.eval_dataset(self._arrays(test), 500)
        raise ValueError(f"unknown split '{split}'; expected 'train' or 'test'")

    # ----------------------------------------------------------------- model
    def build_model(self) -> GuessWhatTrainer:
        c = self.config
        words, k = self.vocabulary(), self.num_categories()
        oracle = Oracle(words, k, c.word_dim, c.oracle_units, c.category_dim, c.hidden_units, name="oracle")
        guesser = Guesser(words, k, c.word_dim, c.guesser_units, c.category_dim, c.hidden_units, name="guesser")
        qgen_kw = dict(word_dim=c.word_dim, lstm_units=c.qgen_units, scene_dim=c.scene_dim, use_scene=c.use_scene)
        qgen = QuestionGenerator(words, k, name="qgen", **qgen_kw)
        qgen_supervised = QuestionGenerator(words, k, name="qgen_supervised", **qgen_kw)
        qgen_supervised.trainable = False
        baseline = keras.Sequential([keras.layers.Dense(c.baseline_units, activation="relu"),
                                     keras.layers.Dense(1, activation="relu")], name="baseline")
        baseline.build((None, None, c.qgen_units))
        clip = c.clip_norm if c.clip_norm > 0 else None
        optimizer = keras.optimizers.Adam(PhaseLearningRate(c.learning_rate, max(c.supervised_steps, 0)),
                                          clipnorm=clip)
        rl_optimizer = keras.optimizers.SGD(c.rl_learning_rate, clipnorm=clip)
        model = GuessWhatTrainer(oracle, guesser, qgen, qgen_supervised, baseline, optimizer, rl_optimizer, c,
                                 name="guesswhat")
        optimizer.build(model.supervised_vars)
        rl_optimizer.build(model.rl_vars)
        if c.init_from:
            self._restore(model, c.init_from)
        _copy_weights(qgen, qgen_supervised)
        return model

    @staticmethod
    def _restore(model, run_dir):
        latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")) or tf.train.latest_checkpoint(
            run_dir)
        if latest is None:
            raise ConfigError(f"init_from: no checkpoint in {run_dir!r} (expected <run>/checkpoints)")
        nets = {k: getattr(model, k) for k in ("oracle", "guesser", "qgen", "baseline")}
        try:
            tf.train.Checkpoint(model=tf.train.Checkpoint(**nets)).read(latest).expect_partial()
        except (ValueError, tf.errors.InvalidArgumentError) as e:
            raise ConfigError(f"init_from {run_dir!r} does not match this config (same data and network sizes "
                              f"are needed): {e}") from None

    def checkpoint_items(self, model):
        return {"model": model, "optimizer": model.optimizer, "rl_optimizer": model.rl_optimizer}

    # ------------------------------------------------------------ evaluation
    def _trained(self, net: str) -> bool:
        return net in self.config.stages or self.config.init_from is not None

    def evaluate(self, model) -> dict[str, float]:
        """Oracle error, guesser error, game success (greedy and sampled) of the supervised and REINFORCE qgen."""
        c = self.config
        out: dict[str, float] = {}
        if ("oracle", id(model)) not in self._play_fns:
            self._play_fns["oracle", id(model)] = tf.function(lambda b: model.oracle_loss(b, model.spatial(b)))
            self._play_fns["guesser", id(model)] = tf.function(lambda x: model.guesser_loss(x, model.spatial(x)))
        oracle_fn, guesser_fn = self._play_fns["oracle", id(model)], self._play_fns["guesser", id(model)]
        wrong_o = n_o = wrong_g = n_g = 0.0
        for batch in self.build_dataset("test"):
            if self._trained("oracle"):
                valid = float(tf.reduce_sum(tf.cast(batch["answers"] >= 0, tf.float32)))
                wrong_o += float(oracle_fn(batch)[1]) * valid
                n_o += valid
            if self._trained("guesser"):
                size = float(batch["target"].shape[0])
                wrong_g += float(guesser_fn(batch)[1]) * size
                n_g += size
        if n_o:
            out["oracle_error"] = wrong_o / n_o
        if n_g:
            out["guesser_error"] = wrong_g / n_g
        if not (self._trained("oracle") and self._trained("guesser") and self._trained("qgen")):
            return out
        test = self.data()[1]
        games = test.subset(slice(0, min(c.num_eval_games, len(test))))
        out["chance_success"] = float(np.mean(1.0 / games.object_mask.sum(1)))
        if "reinforce" in c.stages:
            generators = {"supervised": model.qgen_supervised, "reinforce": model.qgen}
        else:
            generators = {"supervised" if c.init_from is None else "generator": model.qgen}
        for label, qgen in generators.items():
            for greedy in (True, False):
                rate, questions = self.success_rate(model, qgen, games, greedy)
                mode = "greedy" if greedy else "sampled"
                out[f"success_{label}_{mode}"] = rate
                out[f"questions_{label}_{mode}"] = questions
        return out

    def success_rate(self, model, qgen, games: Games, greedy: bool, batch_size: int = 500):
        """Fraction of `games` won by qgen -> oracle -> guesser, and the mean number of questions asked."""
        c = self.config
        key = (id(model), id(qgen), greedy)
        if key not in self._play_fns:
            @tf.function
            def play(cats, boxes, size, mask, target, seed):
                spatial = spatial_features(boxes, size[:, None, :])
                r = play_games(qgen, model.oracle, model.guesser, cats, spatial, mask, target,
                               max_questions=c.max_questions, max_tokens=c.max_question_tokens, greedy=greedy,
                               seed=seed)
                return r["success"], r["num_questions"]

            self._play_fns[key] = play
        play = self._play_fns[key]
        wins, asked = [], []
        for i in range(0, len(games), batch_size):
            g = games.subset(slice(i, i + batch_size))
            s, q = play(g.categories, g.boxes, g.image_size, g.object_mask, g.target,
                        tf.constant([c.seed, i], tf.int32))
            wins.append(s.numpy())
            asked.append(q.numpy())
        return float(np.concatenate(wins).mean()), float(np.concatenate(asked).mean())

    def on_train_end(self, model, run_dir, history):
        summary = dict(self.evaluate(model))
        summary["vocabulary_size"] = len(self.vocabulary()) + 8
        sup = [h for h in history if h.get("phase", 0.0) == 0.0]
        rl = [h for h in history if h.get("phase", 0.0) == 1.0]
        keys = [k for k in GuessWhatTrainer._SUP_KEYS if sup and k in sup[0]]
        if keys:
            plot = plot_history(sup, keys, os.path.join(run_dir, "plots", "supervised.png"),
                                title="GuessWhat?! supervised stages")
            if plot:
                summary["plot_supervised"] = plot
        if rl:
            plot = plot_history(rl, ["reward", "baseline", "questions"],
                                os.path.join(run_dir, "plots", "reinforce.png"), title="REINFORCE self-play")
            if plot:
                summary["plot_reinforce"] = plot
        return summary

    # ---------------------------------------------------------------- export
    def export_endpoints(self, model):
        """Oracle (`serving_default`), `guesser` and `question_generator` on raw inputs (module doc)."""
        c = self.config
        answers = tf.constant(["yes", "no", "n/a"])

        def oracle(question, category, bbox, image_size):
            logits = model.oracle({"question": question, "category": category,
                                   "spatial": spatial_features(bbox, image_size)})
            idx = tf.argmax(logits, -1)
            return {"probabilities": tf.nn.softmax(logits), "answer": tf.gather(answers, idx)}

        def guesser(dialogue, categories, bboxes, image_size, object_mask):
            spatial = spatial_features(bboxes, image_size[:, None, :])
            log_p = model.guesser({"dialogue": dialogue, "categories": categories, "spatial": spatial,
                                   "object_mask": object_mask > 0})
            return {"probabilities": tf.exp(log_p), "guess": tf.argmax(log_p, -1)}

        def generator(dialogue, categories, bboxes, image_size, object_mask):
            spatial = spatial_features(bboxes, image_size[:, None, :])
            q = next_question(model.qgen, dialogue, categories, spatial, object_mask > 0,
                              max_tokens=c.max_question_tokens)
            return {"question": q}

        objects = [tf.TensorSpec([None], tf.string, name="dialogue"),
                   tf.TensorSpec([None, None], tf.int32, name="categories"),
                   tf.TensorSpec([None, None, 4], tf.float32, name="bboxes"),
                   tf.TensorSpec([None, 2], tf.float32, name="image_size"),
                   tf.TensorSpec([None, None], tf.int32, name="object_mask")]
        return {
            "serving_default": Endpoint(oracle, [tf.TensorSpec([None], tf.string, name="question"),
                                                 tf.TensorSpec([None], tf.int32, name="category"),
                                                 tf.TensorSpec([None, 4], tf.float32, name="bbox"),
                                                 tf.TensorSpec([None, 2], tf.float32, name="image_size")]),
            "guesser": Endpoint(guesser, objects),
            "question_generator": Endpoint(generator, objects),
        }

    def representative_dataset(self, num_samples: int = 64):
        test = self.data()[1]
        for i in range(min(num_samples, len(test))):
            t = int(test.target[i])
            yield {"question": np.array([str(test.questions[i, 0])], dtype=np.bytes_),
                   "category": test.categories[i:i + 1, t].astype(np.int32),
                   "bbox": test.boxes[i:i + 1, t].astype(np.float32),
                   "image_size": test.image_size[i:i + 1].astype(np.float32)}

    def guesser_inputs(self, games: Games) -> dict:
        """Inputs of the exported `guesser` / `question_generator` endpoints for `games`."""
        return {"dialogue": games.dialogues.astype(str).astype(np.bytes_),
                "categories": games.categories.astype(np.int32),
                "bboxes": games.boxes.astype(np.float32),
                "image_size": games.image_size.astype(np.float32),
                "object_mask": games.object_mask.astype(np.int32)}
