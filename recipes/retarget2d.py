"""Motion retargeting in 2-D (Aberman, Wu, Lischinski, Chen, Cohen-Or, SIGGRAPH 2019).

A 2-D joint sequence is decomposed into a time-varying, character-agnostic
**motion** code and two time-invariant codes, **body** (skeleton
proportions) and **view** (camera yaw); recombining the motion of one clip
with the body and view of others retargets it without any 3-D
reconstruction. Architecture: `kerasnets.models.retarget2d` (the paper's
full 3-encoder model: motion 30-64-96-128 with k=8 stride 2, body
28-32-48-64 -> 16 max-pooled, view 28-32-48-64 -> 8 average-pooled, decoder
152-128-64-30 with nearest upsampling). Losses:
`kerasnets.losses.retarget2d` --

    L = sum_{mbv in {1,2}^3} MSE(D(M(x_m), B(x_b), V(x_v)), x_{mbv})          (self + cross reconstruction)
      + w_trip [T(M(x_122), M(x_1), M(x_2)) + T(M(x_211), M(x_2), M(x_1)) + same for B and V]
      + w_foot sum_{mbv} MSE(v_foot(out_{mbv}), v_foot(x_{mbv}))

with `T` the triplet margin loss (margin 1), `w_trip = 1`, `w_foot = 0.1`
(the reference code leaves the foot term off by default; `foot_velocity_weight=0`
does the same). Adam (lr 1e-3, PyTorch betas and epsilon), the learning rate
x0.99 per epoch (`ExponentialLR(0.99)`), batch 64, 64-frame windows.

Data (`data="embedded"`, `kerasnets.data.motion_pairs`): every synthetic
motion performed by every synthetic body (forward kinematics of shared
joint-angle curves) and seen from the paper's 7 views, projected
orthographically at 128 px per metre; the representation is the paper's
(root-relative joints + root velocity, 30 channels, per-channel mean/std
over the training clips). A training example is two clips `x_111` (motion
i, body a, view u) and `x_222` (motion j != i, body b != a, view w != u) with
the six mixed clips as ground truth. Held out: unseen motions (another seed)
on unseen bodies.

Evaluation (`evaluate`): retarget the motion of clip A to the body and view
of a clip B that performs another motion; compare with the true clip (A's
motion on B's body from B's view): MSE in normalised units (the training
loss's), and in pixels on the joints (root trajectory integrated from the
true first root position), for body-only, view-only and both changes. The
baseline copies the source with each 2-D limb scaled to the target clip's
limb lengths (`motion_pairs.limb_scale_baseline`); it cannot rotate views.

The paper reports no numeric retargeting error for its 2-D model on Mixamo
in a form comparable to this synthetic set; its comparisons are visual and
against per-frame 3-D lifting baselines, so no reference number is given
here.

Measured (default config, seed 0, 1200 steps at batch 32, 730 s wall on 2
shared CPU cores; 256 held-out pairs per setting, unseen motions and
bodies; local = root-relative joints, px at 128 px/m):

    setting   model MSE / local px / px    limb-scale baseline MSE / local px / px
    body      0.195 /  7.8 / 25.2          0.154 /  4.1 /  4.3
    view      0.219 /  8.2 / 26.3          1.402 / 16.5 / 98.2
    both      0.223 /  8.2 / 25.9          1.349 / 16.8 / 95.8

The network wins wherever the view changes (6x lower MSE, half the pose
error); for a body change alone in the same view the synthetic data favours
the baseline (orthographic projection of the same joint angles: scaled 2-D
limbs are nearly the truth), and the network's integrated root trajectory
drifts (px vs local px). With the paper's 11 training bodies instead of 32
the held-out body MSE was 0.27.

Reference:
    Aberman, Wu, Lischinski, Chen, Cohen-Or. Learning Character-Agnostic
    Motion for Motion Retargeting in 2D. ACM TOG 38(4) (SIGGRAPH 2019),
    arXiv:1905.01680. Reference code: ChrisWu1997/2D-Motion-Retargeting (MIT).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import motion_pairs as mp
from kerasnets.errors import ConfigError
from kerasnets.losses.retarget2d import COMBINATIONS, TRIPLETS, retargeting_losses
from kerasnets.models.retarget2d import Retarget2D, check_frames
from kerasnets.optimization import minimize
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.models.recipe_model import RecipeModel

#: Seed offsets of the held-out motions and bodies (disjoint from training).
_TEST_SEED_OFFSET = 7919


@dataclasses.dataclass
class Retarget2DConfig(RecipeConfig):
    """Aberman et al.'s full (motion + body + view) model; defaults sized for a ~10-minute CPU run."""

    steps: int = param(1200, help="training steps (reference: 300 epochs of Mixamo at batch 64)", min=1)
    batch_size: int = param(32, help="global batch size (reference: 64; 32 keeps the default run near 10 CPU-minutes)", min=1)
    data: Literal["embedded"] = param(
        "embedded", help="embedded: synthetic motions x bodies x views (Mixamo is not downloadable offline)"
    )
    window: int = param(64, help="frames per clip (reference: 64 for training); multiple of 8, >= 16", min=16)
    train_motions: int = param(160, help="synthetic training motions", min=2)
    train_bodies: int = param(
        32, help="training characters (reference: the 11 Mixamo has; synthetic bodies are free and generalise better)", min=2
    )
    test_motions: int = param(32, help="held-out motions (another seed)", min=2)
    test_bodies: int = param(4, help="held-out characters (reference: 4)", min=2)
    views: tuple[float, ...] = param(mp.VIEW_ANGLES, help="view angles in degrees about the vertical axis", min=-180.0, max=180.0)
    motion_channels: tuple[int, ...] = param((30, 64, 96, 128), help="motion encoder widths (input 30 first)", min=1)
    body_channels: tuple[int, ...] = param((28, 32, 48, 64, 16), help="body encoder widths; last = code size", min=1)
    view_channels: tuple[int, ...] = param((28, 32, 48, 64, 8), help="view encoder widths; last = code size", min=1)
    decoder_channels: tuple[int, ...] = param((152, 128, 64, 30), help="decoder widths (first = sum of code sizes)", min=1)
    motion_kernel: int = param(8, help="motion encoder kernel (even; stride 2)", min=2)
    static_kernel: int = param(7, help="body/view encoder kernel (odd)", min=1)
    decoder_kernel: int = param(7, help="decoder kernel (odd)", min=1)
    dropout: float = param(0.2, help="decoder dropout after its first two convs", min=0.0, max=0.9)
    learning_rate: float = param(1e-3, help="Adam learning rate (reference 1e-3)", min=0.0)
    lr_decay: float = param(0.99, help="learning-rate factor per epoch (reference ExponentialLR(0.99))", min=0.0, max=1.0)
    triplet_weight: float = param(1.0, help="weight of the six triplet terms (reference 1; 0 = off)", min=0.0)
    triplet_margin: float = param(1.0, help="triplet margin (reference 1)", min=0.0)
    foot_velocity_weight: float = param(0.1, help="foot-velocity loss weight (reference 0.1 when on; 0 = off)", min=0.0)
    eval_pairs: int = param(256, help="retargeting pairs per setting in evaluate", min=1)
    demo_examples: int = param(3, help="examples in the retargeting demo PNG/GIF", min=1, max=8)
    log_every: int = param(50, help="write metrics every N steps", min=1)
    checkpoint_every: int = param(1000, help="save a checkpoint every N steps (and at the end)", min=1)

    def validate(self) -> None:
        super().validate()
        try:
            check_frames(self.window)
        except ValueError as exc:
            raise ConfigError(f"bad value for 'window': {exc}") from None
        if len(self.views) < 2:
            raise ConfigError(f"bad value for 'views': {self.views}; need at least 2 views to pair different views")
        if len(set(self.views)) != len(self.views):
            raise ConfigError(f"bad value for 'views': {self.views}; views must be distinct")
        m, b, v, d = self.motion_channels, self.body_channels, self.view_channels, self.decoder_channels
        if m[0] != mp.NUM_CHANNELS or d[-1] != mp.NUM_CHANNELS:
            raise ConfigError(
                f"bad value for 'motion_channels'/'decoder_channels': the representation has {mp.NUM_CHANNELS} channels,"
                f" got input {m[0]} and output {d[-1]}"
            )
        if b[0] != mp.NUM_CHANNELS - 2 or v[0] != mp.NUM_CHANNELS - 2:
            raise ConfigError(
                f"bad value for 'body_channels'/'view_channels': static encoders read {mp.NUM_CHANNELS - 2} channels,"
                f" got {b[0]} and {v[0]}"
            )
        if len(b) < 3 or len(v) < 3:
            raise ConfigError("bad value for 'body_channels'/'view_channels': need input, >= 1 conv and the code size")
        if d[0] != m[-1] + b[-1] + v[-1]:
            raise ConfigError(
                f"bad value for 'decoder_channels': first entry {d[0]} must equal the code sizes"
                f" {m[-1]} + {b[-1]} + {v[-1]} = {m[-1] + b[-1] + v[-1]}"
            )
        if len(d) != len(m):
            raise ConfigError(
                f"bad value for 'decoder_channels': {len(d) - 1} upsampling levels must match the motion encoder's"
                f" {len(m) - 1} downsampling levels"
            )
        if 2 ** (len(m) - 1) != 8:
            raise ConfigError("bad value for 'motion_channels': the recipe's windows assume 3 stride-2 levels (x8)")
        if self.motion_kernel % 2:
            raise ConfigError(f"bad value for 'motion_kernel': {self.motion_kernel}; must be even")
        if self.static_kernel % 2 == 0 or self.decoder_kernel % 2 == 0:
            raise ConfigError("bad value for 'static_kernel'/'decoder_kernel': must be odd")

    def steps_per_epoch(self) -> int:
        """Training clips (motions x bodies x views) / batch: one 'epoch' of the lr decay."""
        return max(1, (self.train_motions * self.train_bodies * len(self.views)) // self.batch_size)


# ----------------------------------------------------------------------------- data


@functools.lru_cache(maxsize=4)
def _banks(window, train_motions, train_bodies, test_motions, test_bodies, seed):
    train = mp.make_bank(train_motions, train_bodies, window, seed=seed)
    test = mp.make_bank(test_motions, test_bodies, window, seed=seed + _TEST_SEED_OFFSET)
    return train, test


@functools.lru_cache(maxsize=4)
def _stats(window, train_motions, train_bodies, test_motions, test_bodies, seed, views):
    train, _ = _banks(window, train_motions, train_bodies, test_motions, test_bodies, seed)
    # One view at a time (all views at once would hold M x B x V clips in memory).
    total, total_sq, count = np.zeros(mp.NUM_CHANNELS), np.zeros(mp.NUM_CHANNELS), 0
    for view in views:
        local = mp.localize(mp.project(train.joints3d, view)).reshape(-1, mp.NUM_CHANNELS)
        total += local.sum(0)
        total_sq += np.square(local).sum(0)
        count += len(local)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std[std < 1e-6] = 1e-9  # the reference's zero-std guard (float rounding can leave ~1e-8 here)
    return mean.astype(np.float32), std.astype(np.float32)


def _project_tf(joints3d, view_deg, unit=mp.UNIT):
    """TF twin of `motion_pairs.project` for `[N, T, 15, 3]` and per-clip angles `[N]`."""
    theta = view_deg * (np.pi / 180.0)
    c, s = tf.cos(theta)[:, None, None], tf.sin(theta)[:, None, None]
    x = c * joints3d[..., 0] - s * joints3d[..., 1]
    return tf.stack([x, -joints3d[..., 2]], -1) * unit


def _distinct_pair(key, n, batch):
    """Two index vectors `[batch]` in [0, n) with `first != second` everywhere."""
    first = tf.random.stateless_uniform([batch], seed=key[0], maxval=n, dtype=tf.int32)
    shift = tf.random.stateless_uniform([batch], seed=key[1], minval=1, maxval=n, dtype=tf.int32)
    return first, (first + shift) % n


class Retarget2DTrainer(RecipeModel):
    """Wraps `Retarget2D` with the paper's training step (Adam on the full loss)."""

    def __init__(self, net, optimizer, *, triplet_weight=1.0, margin=1.0, foot_velocity_weight=0.1, **kwargs):
        super().__init__(**kwargs)
        self.net = net
        self.optimizer = optimizer
        self.triplet_weight = float(triplet_weight)
        self.margin = float(margin)
        self.foot_velocity_weight = float(foot_velocity_weight)

    def call(self, inputs, training=False):
        return self.net(inputs, training=training)

    def forward(self, clips, training=True):
        """Outputs for the 8 combinations and the codes of the triplet terms, in batched passes."""
        net = self.net
        n = tf.shape(clips["111"])[0]
        use_triplet = self.triplet_weight > 0

        def encode(fn, keys):
            out = fn(tf.concat([clips[k] for k in keys], 0), training=training)
            return dict(zip(keys, tf.split(out, len(keys), 0))) if len(keys) > 1 else {keys[0]: out}

        m_keys = ["111", "222"] + (["122", "211"] if use_triplet else [])
        b_keys = ["111", "222"] + (["212", "121"] if use_triplet else [])
        v_keys = ["111", "222"] + (["221", "112"] if use_triplet else [])
        m = encode(net.encode_motion, m_keys)
        b = encode(net.encode_body, b_keys)
        v = encode(net.encode_view, v_keys)
        pick = {"1": "111", "2": "222"}
        mc = tf.concat([m[pick[k[0]]] for k in COMBINATIONS], 0)
        bc = tf.concat([b[pick[k[1]]] for k in COMBINATIONS], 0)
        vc = tf.concat([v[pick[k[2]]] for k in COMBINATIONS], 0)
        decoded = tf.split(net.decode(mc, bc, vc, training=training), len(COMBINATIONS), 0)
        outputs = dict(zip(COMBINATIONS, decoded))
        codes = {}
        for prefix, table in (("m", m), ("b", b), ("v", v)):
            for key, code in table.items():
                codes[prefix + key] = code
        del n
        return outputs, codes

    def compute_losses(self, clips, training=True):
        outputs, codes = self.forward(clips, training)
        return retargeting_losses(
            outputs,
            clips,
            codes,
            triplet_weight=self.triplet_weight,
            margin=self.margin,
            foot_velocity_weight=self.foot_velocity_weight,
        )

    def train_step(self, clips):
        with tf.GradientTape() as tape:
            losses = self.compute_losses(clips, training=True)
        lr = self.optimizer.learning_rate
        minimize(tape, losses["loss"], self.net.trainable_variables, self.optimizer, model=self.net)
        cross = tf.add_n([losses[f"rec_{k}"] for k in COMBINATIONS if k not in ("111", "222")]) / 6.0
        logs = {
            "loss": losses["loss"],
            "rec": losses["rec"],
            "rec_self": (losses["rec_111"] + losses["rec_222"]) / 2.0,
            "rec_cross": cross,
            "lr": tf.cast(lr, tf.float32),
        }
        if "triplet" in losses:
            logs["triplet"] = losses["triplet"]
        if "foot_vel" in losses:
            logs["foot_vel"] = losses["foot_vel"]
        return logs


class Retarget2DRecipe(Recipe):
    name = "retarget2d"
    paper = (
        "Aberman, Wu, Lischinski, Chen, Cohen-Or 2019. Learning Character-Agnostic Motion for Motion Retargeting"
        " in 2D. SIGGRAPH 2019, arXiv:1905.01680"
    )
    summary = "2-D motion retargeting: motion/body/view encoders, cross reconstruction, triplet and foot-velocity losses"
    config_class = Retarget2DConfig
    key_metrics = ("loss", "rec_cross", "triplet", "lr")

    # -------------------------------------------------------------------- data
    def _key(self):
        c = self.config
        return (c.window, c.train_motions, c.train_bodies, c.test_motions, c.test_bodies, c.seed)

    def banks(self):
        """`(train, test)` `MotionBank`s (cached per config)."""
        return _banks(*self._key())

    def stats(self):
        """Per-channel `(mean, std)` `[30]` of the training clips."""
        return _stats(*self._key(), tuple(float(v) for v in self.config.views))

    def clips_tf(self, joints3d, motion_idx, body_idx, view_deg):
        """Normalised clips `[N, T, 30]` of (motion, body, view) index triples, in TF."""
        mean, std = self.stats()
        joints = tf.gather_nd(joints3d, tf.stack([motion_idx, body_idx], -1))
        return (mp.localize(_project_tf(joints, view_deg)) - mean) / std

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        """Endless dict batches `{"111": x, "222": x, "121": x, ...}` of normalised `[batch, T, 30]` clips.

        Batch `s` is drawn statelessly from `(seed, s)`: motions `i != j`,
        bodies `a != b`, views `u != w`; clip `"mbv"` shows motion `m`'s index,
        body `b`'s, view `v`'s. `split="test"` draws from the held-out bank
        (unseen motions and bodies).
        """
        c = self.config
        if split not in ("train", "test", "validation"):
            raise ValueError(f"unknown split {split!r}; use 'train' or 'test'")
        train, test = self.banks()
        bank = train if split == "train" else test
        joints3d = tf.constant(bank.joints3d)
        views = tf.constant(np.asarray(c.views, np.float32))
        n_motions, n_bodies, n_views = bank.joints3d.shape[0], bank.joints3d.shape[1], len(c.views)
        batch = c.batch_size
        base_seed = c.seed if split == "train" else c.seed + _TEST_SEED_OFFSET

        def make(step):
            keys = tf.random.experimental.stateless_split(tf.stack([tf.cast(base_seed, tf.int64), step]), 6)
            keys = tf.cast(keys, tf.int32)
            mi = _distinct_pair(keys[0:2], n_motions, batch)
            bi = _distinct_pair(keys[2:4], n_bodies, batch)
            vi = _distinct_pair(keys[4:6], n_views, batch)
            out = {}
            for key in COMBINATIONS:
                m, b, v = (int(ch) - 1 for ch in key)
                out[key] = self.clips_tf(joints3d, mi[m], bi[b], tf.gather(views, vi[v]))
            return out

        return tf.data.Dataset.range(start_step, 2**62).map(make, num_parallel_calls=1).prefetch(2)

    # ------------------------------------------------------------------- model
    def build_net(self) -> Retarget2D:
        c = self.config
        net = Retarget2D(
            c.motion_channels,
            c.body_channels,
            c.view_channels,
            c.decoder_channels,
            c.motion_kernel,
            c.static_kernel,
            c.decoder_kernel,
            c.dropout,
            seed=c.seed,
            name="retarget2d",
        )
        dummy = np.zeros((1, c.window, mp.NUM_CHANNELS), np.float32)
        net((dummy, dummy, dummy))
        mean, std = self.stats()
        net.norm_mean.assign(mean)
        net.norm_std.assign(std)
        return net

    def build_model(self) -> Retarget2DTrainer:
        c = self.config
        net = self.build_net()
        schedule = keras.optimizers.schedules.ExponentialDecay(
            c.learning_rate, decay_steps=c.steps_per_epoch(), decay_rate=c.lr_decay, staircase=True
        )
        # PyTorch Adam's defaults (the reference): betas (0.9, 0.999), eps 1e-8.
        optimizer = keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        optimizer.build(net.trainable_variables)
        return Retarget2DTrainer(
            net,
            optimizer,
            triplet_weight=c.triplet_weight,
            margin=c.triplet_margin,
            foot_velocity_weight=c.foot_velocity_weight,
            name="retarget2d_trainer",
        )

    # -------------------------------------------------------------- evaluation
    def eval_pairs(self, setting: str, num: int | None = None):
        """Fixed held-out retargeting pairs for `setting` in {"body", "view", "both"}.

        Returns index arrays: source `(i, a, u)`, reference `(j, b, w)` with
        `j != i`; "body": `b != a, w = u`; "view": `b = a, w != u`; "both":
        `b != a, w != u`. The ground truth is `(i, b, w)`.
        """
        if setting not in ("body", "view", "both"):
            raise ValueError(f"unknown setting {setting!r}; use 'body', 'view' or 'both'")
        c = self.config
        num = num or c.eval_pairs
        _, test = self.banks()
        n_m, n_b = test.joints3d.shape[:2]
        n_v = len(c.views)
        rng = np.random.default_rng([c.seed, {"body": 1, "view": 2, "both": 3}[setting]])
        i = rng.integers(n_m, size=num)
        j = (i + rng.integers(1, n_m, size=num)) % n_m
        a = rng.integers(n_b, size=num)
        u = rng.integers(n_v, size=num)
        b = (a + rng.integers(1, n_b, size=num)) % n_b if setting != "view" else a
        w = (u + rng.integers(1, n_v, size=num)) % n_v if setting != "body" else u
        return (i, a, u), (j, b, w)

    def _test_clips(self, idx):
        """Pixel clips `[N, T, 15, 2]` of held-out (motion, body, view-index) triples."""
        _, test = self.banks()
        m, b, v = idx
        views = np.asarray(self.config.views, np.float64)[v]
        return mp.project(test.joints3d[m, b], views).astype(np.float32)

    def retarget(self, model, source, body, view, batch_size=256):
        """Pixel clips in, retargeted pixel joints out (root starting at the source's), via the model."""
        net = getattr(model, "net", model)
        outs = []
        for s in range(0, len(source), batch_size):
            sl = slice(s, s + batch_size)
            outs.append(_retarget_pixels(net, source[sl], body[sl], view[sl], training=False).numpy())
        return np.concatenate(outs)

    def evaluate(self, model) -> dict[str, float]:
        """Retargeting error on held-out motions and bodies, the model vs the limb-scaling baseline.

        For each setting: `<setting>_mse` (normalised 30-channel units, the
        training loss's), `<setting>_mse_px` (pixels^2 on joint coordinates,
        trajectory integrated from the true first root), `<setting>_mpjpe_px`
        (mean joint distance, pixels), and `baseline_<...>` for the baseline.
        """
        mean, std = self.stats()
        out = {}
        for setting in ("body", "view", "both"):
            src_idx, ref_idx = self.eval_pairs(setting)
            source = self._test_clips(src_idx)
            reference = self._test_clips(ref_idx)
            truth = self._test_clips((src_idx[0], ref_idx[1], ref_idx[2]))
            pred = self.retarget(model, source, reference, reference)
            base = np.stack([mp.limb_scale_baseline(s, r) for s, r in zip(source, reference)]).astype(np.float32)
            for prefix, clip in (("", pred), ("baseline_", base)):
                errors = retargeting_errors(clip, truth, mean, std)
                for k, v in errors.items():
                    out[f"{prefix}{setting}_{k}"] = v
        return out

    # ------------------------------------------------------------------- hooks
    def demo(self, model, num=None):
        """`(source, reference, retargeted, truth, baseline)` pixel clips of `num` held-out 'both' pairs."""
        num = num or self.config.demo_examples
        src_idx, ref_idx = self.eval_pairs("both", num)
        source = self._test_clips(src_idx)
        reference = self._test_clips(ref_idx)
        truth = self._test_clips((src_idx[0], ref_idx[1], ref_idx[2]))
        pred = self.retarget(model, source, reference, reference)
        base = np.stack([mp.limb_scale_baseline(s, r) for s, r in zip(source, reference)])
        return source, reference, pred, truth, base

    def on_train_end(self, model, run_dir, history):
        from kerasnets.utils.plots import plot_history

        clips = self.demo(model)
        png, gif = write_demo(clips, os.path.join(run_dir, "plots", "retargeting"))
        summary = {
            "demo_png": png,
            "demo_gif": gif,
            "trainable_params": int(sum(np.prod(v.shape) for v in model.net.trainable_variables)),
            **self.evaluate(model),
        }
        curve = plot_history(
            history, ("loss", "rec_self", "rec_cross", "triplet", "foot_vel", "lr"),
            os.path.join(run_dir, "plots", "training.png"), title="retarget2d", log_y=True,
        )  # fmt: skip
        if curve:
            summary["training_png"] = curve
        return summary

    # ------------------------------------------------------------------ export
    def export_endpoints(self, model):
        """`serving_default`: retarget `source`'s motion to `body`'s skeleton seen from `view`'s camera.

        Inputs (float32 pixels, image y down, OpenPose BODY_25's first 15
        joints with neck and mid-hip at the shoulder/hip midpoints; see
        `kerasnets.data.motion_pairs.load_openpose_json_dir`):
            source: `[N, T, 15, 2]`, `body`: `[N, T_b, 15, 2]`, `view`:
            `[N, T_v, 15, 2]`; each at least 16 frames. The source is
            trimmed to a multiple of 8 frames, `T' = 8 * floor(T / 8)`.
        Outputs:
            joints: `[N, T', 15, 2]` pixels, the root trajectory integrated
                from the source's first root position;
            motion: `[N, T', 30]` the decoder's normalised output.
        The paper's optional Gaussian smoothing (sigma 2 frames) of the
        output is left to the client. The same endpoint converts to a float32
        TFLite model of builtin ops (`format=tflite`, tested); int8 is not
        tested.
        """
        net = getattr(model, "net", model)

        def serve(source, body, view):
            for name, clip in (("source", source), ("body", body), ("view", view)):
                tf.debugging.assert_greater_equal(
                    tf.shape(clip)[1], 16, message=f"{name} needs at least 16 frames"
                )
            joints, motion = _retarget_pixels(net, source, body, view, training=False, with_motion=True)
            return {"joints": joints, "motion": motion}

        spec = [
            tf.TensorSpec([None, None, mp.NUM_JOINTS, 2], tf.float32, name=name) for name in ("source", "body", "view")
        ]
        return {"serving_default": Endpoint(serve, spec)}

    def representative_dataset(self, num_samples: int = 64):
        src_idx, ref_idx = self.eval_pairs("both", num_samples)
        source = self._test_clips(src_idx)
        reference = self._test_clips(ref_idx)
        for k in range(num_samples):
            yield {"source": source[k : k + 1], "body": reference[k : k + 1], "view": reference[k : k + 1]}


def _retarget_pixels(net, source, body, view, training=False, with_motion=False):
    """Pixel clips -> normalised representation -> `net` -> pixel joints (root from the source's first frame)."""
    source = tf.convert_to_tensor(source, tf.float32)
    body = tf.convert_to_tensor(body, tf.float32)
    view = tf.convert_to_tensor(view, tf.float32)
    frames = (tf.shape(source)[1] // net.time_stride) * net.time_stride
    source = source[:, :frames]
    mean, std = net.norm_mean, net.norm_std

    def norm(clip):
        return (mp.localize(clip) - mean) / std

    motion = net((norm(source), norm(body), norm(view)), training=training)
    joints = mp.globalize(motion * std + mean, source[:, 0, mp.ROOT])
    return (joints, motion) if with_motion else joints


def retargeting_errors(pred, truth, mean, std) -> dict[str, float]:
    """Errors of predicted pixel clips `[N, T, 15, 2]` against the truth.

    `mse`: MSE of the normalised 30-channel representations; `mse_px`: MSE of
    joint coordinates (pixels^2) after re-integrating the prediction's root
    from the truth's first root position; `mpjpe_px`: the mean Euclidean
    joint error of the same (pixels); `mpjpe_local_px`: the mean joint error
    of root-relative joints (pixels), free of trajectory drift.
    """
    pred = np.asarray(pred, np.float64)
    truth = np.asarray(truth, np.float64)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ in shape")
    rep_p, rep_t = mp.localize(pred), mp.localize(truth)
    mse = float(np.mean(((rep_p - rep_t) / std) ** 2))
    aligned = mp.globalize(rep_p, truth[:, 0, mp.ROOT])
    diff = aligned - truth
    local = (pred - pred[..., mp.ROOT : mp.ROOT + 1, :]) - (truth - truth[..., mp.ROOT : mp.ROOT + 1, :])
    return {
        "mse": mse,
        "mse_px": float(np.mean(diff**2)),
        "mpjpe_px": float(np.mean(np.linalg.norm(diff, axis=-1))),
        "mpjpe_local_px": float(np.mean(np.linalg.norm(local, axis=-1))),
    }


def write_demo(clips, path_prefix, every: int = 8, panel=(96, 72)) -> tuple[str, str]:
    """Write `<prefix>.png` (rows: source / target body+view / retargeted / truth / baseline; columns:
    every `every`-th frame) and `<prefix>.gif` (the five panels side by side, every frame).

    Poses are drawn root-relative, one scale per example (all five rows share it)."""
    from PIL import Image, ImageDraw

    labels = ("source", "target body/view", "retargeted", "ground truth", "baseline")
    clips = [np.asarray(c, np.float64) for c in clips]
    num, frames = clips[0].shape[:2]
    h, w = panel
    os.makedirs(os.path.dirname(os.path.abspath(path_prefix)), exist_ok=True)
    rows = []
    boxes = []
    # Root-relative poses (the trajectory is in the numbers, not the picture): figures stay large.
    clips = [c - c[:, :, mp.ROOT : mp.ROOT + 1] for c in clips]
    for e in range(num):
        box = mp.clip_box(*(c[e] for c in clips))
        boxes.append(box)
        for k, c in enumerate(clips):
            tiles = [mp.draw_pose(c[e, t], size=(h, w), box=box) for t in range(0, frames, every)]
            row = np.concatenate(tiles, 1)
            label = Image.fromarray(np.full((h, 110, 3), 255, np.uint8))
            ImageDraw.Draw(label).text((4, h // 2 - 6), labels[k], fill=(0, 0, 0))
            rows.append(np.concatenate([np.asarray(label), row], 1))
        rows.append(np.full((6, rows[-1].shape[1], 3), 200, np.uint8))
    png = path_prefix + ".png"
    Image.fromarray(np.concatenate(rows, 0)).save(png)

    gif_frames = []
    for t in range(frames):
        grid = []
        for e in range(num):
            grid.append(np.concatenate([mp.draw_pose(c[e, t], size=(h, w), box=boxes[e]) for c in clips], 1))
        gif_frames.append(Image.fromarray(np.concatenate(grid, 0)))
    header = Image.new("RGB", (gif_frames[0].width, 14), (255, 255, 255))
    ImageDraw.Draw(header).text((2, 1), " | ".join(labels), fill=(0, 0, 0))
    gif_frames = [_stack(header, f) for f in gif_frames]
    gif = path_prefix + ".gif"
    gif_frames[0].save(gif, save_all=True, append_images=gif_frames[1:], duration=50, loop=0)
    return png, gif


def _stack(top, bottom):
    from PIL import Image

    out = Image.new("RGB", (bottom.width, top.height + bottom.height), (255, 255, 255))
    out.paste(top, (0, 0))
    out.paste(bottom, (0, top.height))
    return out
