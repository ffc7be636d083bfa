"""VideoPose3D: 3-D human pose from 2-D keypoint sequences with dilated temporal convolutions.

Pavllo, Feichtenhofer, Grangier, Auli. 3D human pose estimation in video with
temporal convolutions and semi-supervised training. CVPR 2019, arXiv:1811.11742.

Model (`kerasnets.models.videopose3d`): 2-D keypoints `[B, T, 17, 2]` in
normalised screen coordinates (`X / w * 2 - [1, h / w]`) -> root-relative 3-D
joints in camera space (metres) by valid temporal convolutions with filter
widths `filter_widths` (dilations 1, 3, 9, ...; receptive field 243 frames
for 3,3,3,3,3), `channels` channels, BN + ReLU + dropout 0.25, sliced
residuals; `causal=True` estimates the last frame of the window instead of
the centre. Training runs the *strided* single-frame model on the same
weights (one example = one frame with its receptive-field window, edge-padded
at the sequence ends as the reference's generator does); evaluation and
export run the dilated model over whole sequences.

Supervised objective (Sec. 3): `L = MPJPE(f(x), y) = mean_j ||f(x)_j - y_j||`
on root-relative targets (root joint = 0).

Semi-supervised (`semi_supervised=True`, Sec. 4): labelled subjects
(`labelled_subjects`) keep their 3-D; the other training subjects only give
2-D sequences and their cameras. A second model of the same architecture
(`J_out = 1`) regresses the root's camera-space position; both share one
optimiser, each batch concatenates labelled and unlabelled windows, and

    L = MPJPE(P_lab, y) + mean(1/z_gt * ||r_lab - r_gt||)
        + [MPJPE_2D(proj(P_unlab + r_unlab), x_unlab) + L_bone]   (after warm-up)

with the reprojection through the sample's camera (intrinsics and distortion,
`kerasnets.ops.camera.project_to_2d`) and the bone-length term matching the
unlabelled poses' mean bone lengths to the labelled batch's
(`kerasnets.losses.pose3d.back_projection_losses`); the first `warmup_epochs`
are supervised only.

Update (the reference's `run.py`): Adam with `amsgrad=True`, lr 1e-3 times
0.95 after every epoch (`epoch_steps` steps: the labelled training frames
divided by the batch size, unless set); BN momentum (PyTorch convention)
annealed per epoch `0.1 exp(-e / E ln(0.1 / 0.001))` from 0.1 to 0.001 (Keras
momentum `1 -` that); horizontal-flip augmentation (x -> -x on 2-D, 3-D,
trajectory and the camera's `c_x`, `p_1`, left/right joints swapped) and
flip test-time averaging.

Metrics (millimetres): MPJPE (protocol 1), P-MPJPE (protocol 2), N-MPJPE and
MPJVE, pooled over all frames of the test subjects' sequences.

Data: `embedded` generates Human3.6M-like synthetic motion seen by 4 cameras
with noisy projected 2-D "detections" (`kerasnets.data.human36m`); `h36m`
reads VideoPose3D's `data_3d_h36m.npz` + `data_2d_h36m_<source>.npz` and a
`cameras_h36m.json` calibration from `data_dir`, without pickle: convert the
reference's pickled npz files once with `python -m kerasnets.data.human36m
convert --i-trust-this-file FILE` (see `kerasnets.data.human36m`).

Reference numbers (README, Human3.6M, S9/S11): CPN detections (fine-tuned),
243 frames: 46.8 mm MPJPE, 36.5 mm P-MPJPE; ground-truth 2-D: 37.2 mm.
Parameters: 8.56M (27 frames), 12.75M (81), 16.95M (243).

Measured here (synthetic data, 2-D noise 4 px + 1 % outliers on 1000 px
images, test subjects S9/S11, 16,000 frames): the default run
(`kerasnets train recipe=videopose3d`: 81 frames, 256 channels, 1500 steps
of 256 frames, 0.83M parameters) reaches MPJPE 50.6 mm, P-MPJPE 39.9 mm,
N-MPJPE 47.6 mm, MPJVE 8.0 mm in 5.1 CPU-minutes (309 s user; 22 min wall
on a 2-core machine shared with other jobs). With 3-D labels from S1 only
(`train_subjects="('S1',)"`, 400 steps of 128): 120.5 mm MPJPE; the
semi-supervised run on the same budget (`semi_supervised=True`, S1
labelled, S5-S8 unlabelled, 400 steps of 128 + 128) did *not* beat it
(137.3 mm with the reference's 1-epoch warm-up; 271.2 mm with 4 epochs):
when the back-projection starts, the labelled MPJPE rises (148 -> 360 mm
in the 4-epoch run) -- the trajectory model learnt from one subject's
cameras does not transfer (0.8-1.1 m root error on the test subjects), so
the reprojection term pulls the poses the wrong way. Not a reproduction of
the paper's semi-supervised gain; the formulas are checked by hand tests.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Literal

import keras
import numpy as np
import tensorflow as tf

from kerasnets.config import RecipeConfig, param
from kerasnets.data import human36m
from kerasnets.data.streams import stream_indices
from kerasnets.errors import ConfigError
from kerasnets.losses import pose3d as pose_losses
from kerasnets.metrics import pose3d as pose_metrics
from kerasnets.models import videopose3d as vp
from kerasnets.optimization import minimize
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.models.recipe_model import RecipeModel

#: Reference BN momentum (PyTorch convention) at the first and after the last epoch.
BN_MOMENTUM_START, BN_MOMENTUM_END = 0.1, 0.001


@dataclasses.dataclass
class VideoPose3DConfig(RecipeConfig):
    """VideoPose3D hyper-parameters; defaults: an 81-frame, 256-channel model on embedded synthetic motion."""

    steps: int = param(1500, help="training steps (reference: 80 epochs of Human3.6M at 1024 frames)", min=1)
    batch_size: int = param(256, help="global batch size in frames (reference 1024)", min=1)
    filter_widths: tuple[int, ...] = param((3, 3, 3, 3), help="odd filter widths; 3,3,3,3,3 = 243 frames (reference)", min=1)
    channels: int = param(256, help="convolution channels (reference 1024)", min=1)
    dropout: float = param(0.25, help="dropout after every ReLU (reference 0.25)", min=0.0, max=0.95)
    causal: bool = param(False, help="estimate the last frame of each window (real-time, no future frames)")
    learning_rate: float = param(1e-3, help="Adam learning rate (reference 1e-3)", min=0.0)
    lr_decay: float = param(0.95, help="lr multiplier after every epoch (reference 0.95)", min=0.0, max=1.0)
    amsgrad: bool = param(True, help="AMSGrad variant of Adam (reference: on)")
    epoch_steps: int = param(0, help="steps per epoch for lr/BN schedules; 0 = labelled frames / batch_size", min=0)
    bn_momentum_schedule: bool = param(True, help="anneal BN momentum 0.1 -> 0.001 (PyTorch convention) over training")
    flip_augment: bool = param(True, help="random horizontal flips in training (reference: on)")
    flip_test: bool = param(True, help="average with the flipped input's prediction at test time (reference: on)")
    data: Literal["embedded", "h36m"] = param("embedded", help="embedded: synthetic motion; h36m: VideoPose3D npz files in data_dir")
    source: str = param("cpn_ft_h36m_dbb", help="h36m: 2-D source, file data_2d_h36m_<source>.npz")
    train_subjects: tuple[str, ...] = param(human36m.TRAIN_SUBJECTS, help="training subjects (reference S1 S5 S6 S7 S8)")
    test_subjects: tuple[str, ...] = param(human36m.TEST_SUBJECTS, help="evaluation subjects (reference S9 S11)")
    actions_per_subject: int = param(4, help="embedded: actions per subject", min=1)
    num_frames: int = param(500, help="embedded: frames per action (50 fps)", min=2)
    noise_px: float = param(4.0, help="embedded: std of the 2-D detection noise in pixels (1000x1000 images)", min=0.0)
    outlier_rate: float = param(0.01, help="embedded: share of 2-D joints displaced by up to 40 px", min=0.0, max=1.0)
    semi_supervised: bool = param(False, help="add the trajectory model and back-projection loss on unlabelled subjects")
    labelled_subjects: tuple[str, ...] = param(("S1",), help="semi-supervised: subjects whose 3-D is used")
    warmup_epochs: int = param(1, help="semi-supervised: supervised-only epochs first (reference 1)", min=0)
    use_projection: bool = param(True, help="semi-supervised: 2-D reprojection loss (reference --no-proj turns off)")
    use_bone_length: bool = param(True, help="semi-supervised: bone-length loss (reference --no-bone-length turns off)")
    linear_projection: bool = param(False, help="semi-supervised: ignore lens distortion in the reprojection")
    eval_max_sequences: int = param(0, help="evaluate on at most this many test sequences (0 = all)", min=0)

    def validate(self) -> None:
        super().validate()
        try:
            vp.receptive_field(self.filter_widths)
        except ValueError as exc:
            raise ConfigError(f"bad value for 'filter_widths': {self.filter_widths!r}; {exc}") from None
        if not self.train_subjects or not self.test_subjects:
            raise ConfigError("train_subjects and test_subjects must each name at least one subject")
        if set(self.train_subjects) & set(self.test_subjects):
            raise ConfigError(f"train_subjects and test_subjects overlap: {sorted(set(self.train_subjects) & set(self.test_subjects))}")
        if self.data == "h36m" and not self.data_dir:
            raise ConfigError("data='h36m' needs data_dir=<folder with data_3d_h36m.npz, data_2d_h36m_<source>.npz, cameras_h36m.json>")
        if self.semi_supervised:
            labelled = set(self.labelled_subjects)
            if not labelled or not labelled <= set(self.train_subjects):
                raise ConfigError(f"labelled_subjects {self.labelled_subjects!r} must be a non-empty subset of train_subjects")
            if labelled == set(self.train_subjects):
                raise ConfigError("semi_supervised needs at least one unlabelled training subject (not in labelled_subjects)")

    def receptive_field(self) -> int:
        return vp.receptive_field(self.filter_widths)


# ------------------------------------------------------------------------ data


def sequence_padding(receptive_field: int, causal: bool) -> tuple[int, int]:
    """Edge padding `(before, after)` so every frame gets a full window aligned with it."""
    before = receptive_field - 1 if causal else (receptive_field - 1) // 2
    return before, receptive_field - 1 - before


def frame_windows(sequences, receptive_field: int, causal: bool) -> dict:
    """Per-frame training arrays of a list of `human36m.Sequence`.

    Returns `padded_2d [P, 17, 2]` (every sequence edge-padded and
    concatenated), `start [N]` (each frame's window start in `padded_2d`),
    and per frame `pose [N, 17, 3]`, `trajectory [N, 1, 3]`, `camera [N, 9]`,
    `keypoints_2d [N, 17, 2]` (the frame's own 2-D input).
    """
    before, after = sequence_padding(receptive_field, causal)
    padded, starts, offset = [], [], 0
    for seq in sequences:
        t = len(seq.keypoints_2d)
        padded.append(np.pad(seq.keypoints_2d, ((before, after), (0, 0), (0, 0)), mode="edge"))
        starts.append(offset + np.arange(t))
        offset += t + before + after
    cat = lambda name: np.concatenate([getattr(s, name) for s in sequences]).astype(np.float32)  # noqa: E731
    return {
        "padded_2d": np.concatenate(padded).astype(np.float32),
        "start": np.concatenate(starts).astype(np.int64),
        "pose": cat("pose_3d"),
        "trajectory": cat("trajectory"),
        "camera": np.concatenate([np.repeat(s.camera[None], len(s.keypoints_2d), 0) for s in sequences]).astype(np.float32),
        "keypoints_2d": cat("keypoints_2d"),
    }


def flip_keypoints(x, perm):
    """Mirror `[..., J, C]` poses: negate x, swap left/right joints (TF)."""
    sign = tf.constant([-1.0] + [1.0] * (x.shape[-1] - 1), x.dtype)
    return tf.gather(x, perm, axis=-2) * sign


def flip_cameras(camera):
    """Negate `c_x` and `p_1` of `[..., 9]` normalised intrinsics (TF; see `kerasnets.ops.camera.flip_camera`)."""
    sign = tf.constant([1, 1, -1, 1, 1, 1, 1, -1, 1], camera.dtype)
    return camera * sign


# ----------------------------------------------------------------------- model


class VideoPose3DModel(RecipeModel):
    """Dilated pose (and trajectory) models, their strided training twins and the shared Adam."""

    def __init__(self, pose_model, trajectory_model, optimizer, *, epoch_steps, total_steps, warmup_steps,
                 semi_supervised, bn_schedule, loss_flags, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.pose_model = pose_model
        self.trajectory_model = trajectory_model
        self.pose_train = vp.build_strided_videopose3d(pose_model)
        self.trajectory_train = vp.build_strided_videopose3d(trajectory_model) if trajectory_model is not None else None
        self.optimizer = optimizer
        self.epoch_steps = int(epoch_steps)
        self.total_epochs = max(1, math.ceil(total_steps / self.epoch_steps))
        self.warmup_steps = int(warmup_steps)
        self.semi_supervised = bool(semi_supervised)
        self.bn_schedule = bool(bn_schedule)
        self.loss_flags = dict(loss_flags)
        self.blocks = vp.temporal_blocks(pose_model) + (
            vp.temporal_blocks(trajectory_model) if trajectory_model is not None else []
        )

    def call(self, keypoints_2d, training=False):
        return self.pose_model(keypoints_2d, training=training)

    def trainable_parts(self):
        variables = list(self.pose_model.trainable_variables)
        if self.trajectory_model is not None:
            variables += self.trajectory_model.trainable_variables
        return variables

    def bn_momentum(self, iterations):
        """Keras BN momentum at optimizer step `iterations`: `1 - 0.1 exp(-e/E ln(0.1/0.001))`, e = epoch."""
        epoch = tf.cast(iterations // self.epoch_steps, tf.float32)
        torch_m = BN_MOMENTUM_START * tf.exp(-epoch / self.total_epochs * math.log(BN_MOMENTUM_START / BN_MOMENTUM_END))
        return 1.0 - torch_m

    def train_step(self, batch):
        if self.bn_schedule:
            momentum = self.bn_momentum(self.optimizer.iterations)
            for block in self.blocks:
                block.set_bn_momentum(momentum)
        windows, target = batch["windows"], batch["pose"]
        n_lab = tf.shape(windows)[0]
        logs = {}
        with tf.GradientTape() as tape:
            if not self.semi_supervised:
                pred = self.pose_train(windows, training=True)
                loss = pose_losses.mpjpe_loss(pred, target)
                logs["mpjpe"] = loss
            else:
                both = tf.concat([windows, batch["unlabelled_windows"]], axis=0)
                pose_all = self.pose_train(both, training=True)
                traj_all = self.trajectory_train(both, training=True)
                terms = pose_losses.back_projection_losses(
                    pose_all[:n_lab], traj_all[:n_lab], target, batch["trajectory"],
                    pose_all[n_lab:], traj_all[n_lab:], batch["unlabelled_camera"], batch["unlabelled_keypoints_2d"],
                    human36m.PARENTS, **self.loss_flags,
                )  # fmt: skip
                after_warmup = tf.cast(self.optimizer.iterations >= self.warmup_steps, terms["total"].dtype)
                loss = terms["pose"] + terms["trajectory"] + after_warmup * (terms["projection"] + terms["bone_length"])
                logs.update({"mpjpe": terms["pose"], "trajectory": terms["trajectory"],
                             "projection": terms["projection"], "bone_length": terms["bone_length"]})  # fmt: skip
        lr = self.optimizer.learning_rate
        minimize(tape, loss, self.trainable_parts(), self.optimizer, 
                 model=[m for m in (self.pose_model, self.trajectory_model) if m is not None])
        logs["loss"] = loss
        logs["learning_rate"] = tf.cast(lr, tf.float32)
        return logs


class VideoPose3DRecipe(Recipe):
    name = "videopose3d"
    paper = ("Pavllo, Feichtenhofer, Grangier, Auli 2019. 3D human pose estimation in video with temporal "
             "convolutions and semi-supervised training. arXiv:1811.11742")  # fmt: skip
    summary = "2-D keypoint sequences -> 3-D pose: dilated temporal convs, MPJPE / P-MPJPE, semi-supervised back-projection"
    config_class = VideoPose3DConfig
    key_metrics = ("mpjpe", "loss", "learning_rate")

    def __init__(self, config: VideoPose3DConfig | None = None):
        super().__init__(config)
        self.config.validate()
        self._dataset = None
        self._splits: dict = {}
        self._predict = (None, None)

    # -------------------------------------------------------------------- data
    def motion_data(self) -> human36m.MotionDataset:
        if self._dataset is None:
            c = self.config
            subjects = tuple(c.train_subjects) + tuple(c.test_subjects)
            if c.data == "embedded":
                self._dataset = human36m.synthetic_dataset(
                    subjects, c.actions_per_subject, c.num_frames, seed=c.seed,
                    noise_px=c.noise_px, outlier_rate=c.outlier_rate,
                )  # fmt: skip
            else:
                self._dataset = human36m.load_videopose3d(c.data_dir, c.source, subjects)
        return self._dataset

    def sequences(self, split: str) -> list:
        """`human36m.Sequence`s of `"labelled"`, `"unlabelled"` (semi-supervised) or `"test"`."""
        if split not in self._splits:
            c = self.config
            if split == "test":
                subjects = c.test_subjects
            elif split == "labelled":
                subjects = c.labelled_subjects if c.semi_supervised else c.train_subjects
            elif split == "unlabelled":
                if not c.semi_supervised:
                    raise ValueError("the unlabelled split exists only with semi_supervised=True")
                subjects = tuple(s for s in c.train_subjects if s not in c.labelled_subjects)
            else:
                raise ValueError(f"split must be 'labelled', 'unlabelled' or 'test', got {split!r}")
            # As the reference, S11 "Directions" (corrupted in Human3.6M) is not evaluated.
            exclude = human36m.CORRUPTED_ACTIONS if split == "test" else ()
            self._splits[split] = human36m.camera_sequences(self.motion_data(), subjects, exclude=exclude)
        return self._splits[split]

    def _windows(self, split):
        c = self.config
        return frame_windows(self.sequences(split), c.receptive_field(), c.causal)

    def epoch_steps(self) -> int:
        c = self.config
        if c.epoch_steps:
            return c.epoch_steps
        frames = sum(len(s.keypoints_2d) for s in self.sequences("labelled"))
        return max(1, frames // c.batch_size)

    def build_dataset(self, split: str = "train", start_step: int = 0) -> tf.data.Dataset:
        """Train: endless dicts `windows [B, RF, 17, 2]`, `pose [B, 1, 17, 3]`, `trajectory [B, 1, 1, 3]`
        (+ `unlabelled_windows`, `unlabelled_camera`, `unlabelled_keypoints_2d` when semi-supervised).
        Other splits: one pass over the test frames."""
        c = self.config
        rf = c.receptive_field()
        perm = tf.constant(human36m.flip_permutation(), tf.int32)
        offsets = tf.range(rf, dtype=tf.int64)

        def gather(arrays, idx):
            windows = tf.gather(arrays["padded_2d"], tf.gather(arrays["start"], idx)[:, None] + offsets[None])
            return windows, {k: tf.gather(arrays[k], idx) for k in ("pose", "trajectory", "camera", "keypoints_2d")}

        def maybe_flip(windows, frame, step, salt):
            if not c.flip_augment:
                return windows, frame
            flip = tf.random.stateless_uniform([tf.shape(windows)[0]], seed=tf.stack([tf.cast(c.seed, tf.int64) * 7 + salt, step])) < 0.5
            f4 = flip[:, None, None, None]
            windows = tf.where(f4, flip_keypoints(windows, perm), windows)
            frame = dict(frame)
            frame["pose"] = tf.where(flip[:, None, None], flip_keypoints(frame["pose"], perm), frame["pose"])
            frame["keypoints_2d"] = tf.where(flip[:, None, None], flip_keypoints(frame["keypoints_2d"], perm),
                                             frame["keypoints_2d"])  # fmt: skip
            frame["trajectory"] = tf.where(flip[:, None, None], flip_keypoints(frame["trajectory"], tf.constant([0])),
                                           frame["trajectory"])  # fmt: skip
            frame["camera"] = tf.where(flip[:, None], flip_cameras(frame["camera"]), frame["camera"])
            return windows, frame

        if split != "train":
            arrays = {k: tf.constant(v) for k, v in self._windows("test").items()}
            n = int(arrays["start"].shape[0])
            return tf.data.Dataset.range(0, n, c.batch_size).map(
                lambda i: gather(arrays, tf.range(i, tf.minimum(i + c.batch_size, n)))
            )

        lab = {k: tf.constant(v) for k, v in self._windows("labelled").items()}
        n_lab = int(lab["start"].shape[0])
        steps = tf.data.Dataset.range(start_step, 2**62)
        streams = [stream_indices(n_lab, c.batch_size, c.seed, start_step)]
        unlab = None
        if c.semi_supervised:
            unlab = {k: tf.constant(v) for k, v in self._windows("unlabelled").items()}
            n_unlab = int(unlab["start"].shape[0])
            streams.append(stream_indices(n_unlab, c.batch_size, c.seed + 1, start_step))

        def make(step, idx_lab, idx_unlab=None):
            windows, frame = maybe_flip(*gather(lab, idx_lab), step, 0)
            out = {"windows": windows, "pose": frame["pose"][:, None], "trajectory": frame["trajectory"][:, None]}
            if idx_unlab is not None:
                u_windows, u_frame = maybe_flip(*gather(unlab, idx_unlab), step, 1)
                out.update({"unlabelled_windows": u_windows, "unlabelled_camera": u_frame["camera"],
                            "unlabelled_keypoints_2d": u_frame["keypoints_2d"][:, None]})  # fmt: skip
            return out

        ds = tf.data.Dataset.zip((steps, *streams)).map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    # ------------------------------------------------------------------- model
    def build_model(self) -> VideoPose3DModel:
        c = self.config
        common = dict(filter_widths=c.filter_widths, channels=c.channels, dropout=c.dropout, causal=c.causal)
        pose_model = vp.build_videopose3d(seed=c.seed, name="pose_model", **common)
        traj_model = None
        if c.semi_supervised:
            traj_model = vp.build_videopose3d(num_joints_out=1, seed=c.seed + 1000, name="trajectory_model", **common)
        epoch_steps = self.epoch_steps()
        schedule = keras.optimizers.schedules.ExponentialDecay(c.learning_rate, epoch_steps, c.lr_decay, staircase=True)
        optimizer = keras.optimizers.Adam(learning_rate=schedule, amsgrad=c.amsgrad)
        model = VideoPose3DModel(
            pose_model, traj_model, optimizer,
            epoch_steps=epoch_steps, total_steps=c.steps, warmup_steps=c.warmup_epochs * epoch_steps,
            semi_supervised=c.semi_supervised, bn_schedule=c.bn_momentum_schedule,
            loss_flags={"use_projection": c.use_projection, "use_bone_length": c.use_bone_length,
                        "linear_projection": c.linear_projection},
            name="videopose3d",
        )  # fmt: skip
        rf = c.receptive_field()
        dummy = tf.zeros((1, rf, human36m.NUM_JOINTS, 2))
        model.pose_train(dummy)
        if traj_model is not None:
            model.trajectory_train(dummy)
            traj_model(dummy)
        model(dummy)
        optimizer.build(model.trainable_parts())
        return model

    # -------------------------------------------------------------- prediction
    def _predict_fn(self, model):
        cached, fn = self._predict
        if cached is not model:
            spec = tf.TensorSpec([None, None, human36m.NUM_JOINTS, 2], tf.float32)

            @tf.function(input_signature=[spec], autograph=False)  # no tensor-dependent Python control flow
            def fn(keypoints_2d):
                return self.lift(model, keypoints_2d, flip=self.config.flip_test)

            self._predict = (model, fn)
        return fn

    def lift(self, model, keypoints_2d, flip: bool = False):
        """Edge-pad `[B, T, 17, 2]` and run the dilated models: `{"pose": [B, T, 17, 3], "trajectory"?}`.

        `flip=True` averages with the mirrored input's mirrored-back prediction.
        """
        c = self.config
        before, after = sequence_padding(c.receptive_field(), c.causal)
        x = tf.convert_to_tensor(keypoints_2d, tf.float32)
        x = tf.concat([tf.repeat(x[:, :1], before, axis=1), x, tf.repeat(x[:, -1:], after, axis=1)], axis=1)
        perm = tf.constant(human36m.flip_permutation(), tf.int32)
        out = {"pose": model.pose_model(x, training=False)}
        if model.trajectory_model is not None:
            out["trajectory"] = model.trajectory_model(x, training=False)
        if flip:
            xf = flip_keypoints(x, perm)
            out["pose"] = 0.5 * (out["pose"] + flip_keypoints(model.pose_model(xf, training=False), perm))
            if "trajectory" in out:
                back = flip_keypoints(model.trajectory_model(xf, training=False), tf.constant([0]))
                out["trajectory"] = 0.5 * (out["trajectory"] + back)
        return out

    def predict_sequences(self, model, sequences):
        fn = self._predict_fn(model)
        return [{k: v.numpy()[0] for k, v in fn(tf.constant(s.keypoints_2d[None])).items()} for s in sequences]

    def evaluate(self, model) -> dict[str, float]:
        """MPJPE, P-MPJPE, N-MPJPE and MPJVE in millimetres over all test frames (+ trajectory error)."""
        c = self.config
        seqs = self.sequences("test")
        if c.eval_max_sequences:
            seqs = seqs[: c.eval_max_sequences]
        preds = self.predict_sequences(model, seqs)
        pred = np.concatenate([p["pose"] for p in preds])
        gt = np.concatenate([s.pose_3d for s in seqs])
        out = {
            "mpjpe_mm": 1000 * pose_metrics.mpjpe(pred, gt),
            "p_mpjpe_mm": 1000 * pose_metrics.p_mpjpe(pred, gt),
            "n_mpjpe_mm": 1000 * pose_metrics.n_mpjpe(pred, gt),
            # velocity error within each sequence, frame-weighted
            "mpjve_mm": 1000 * float(np.average(
                [pose_metrics.mean_velocity_error(p["pose"], s.pose_3d) for p, s in zip(preds, seqs)],
                weights=[len(s.pose_3d) - 1 for s in seqs])),
            "test_frames": int(len(gt)),
        }  # fmt: skip
        if model.trajectory_model is not None:
            traj = np.concatenate([p["trajectory"] for p in preds])
            out["trajectory_mpjpe_mm"] = 1000 * pose_metrics.mpjpe(traj, np.concatenate([s.trajectory for s in seqs]))
        return out

    def on_train_end(self, model, run_dir, history):
        from kerasnets.utils.plots import plot_history

        summary = {
            "receptive_field": self.config.receptive_field(),
            "trainable_params": int(sum(np.prod(v.shape) for v in model.pose_model.trainable_variables)),
            **self.evaluate(model),
        }
        keys = ("mpjpe", "projection", "bone_length") if self.config.semi_supervised else ("mpjpe",)
        curve = plot_history(history, keys, os.path.join(run_dir, "plots", "training.png"), title="VideoPose3D", log_y=True)
        if curve:
            summary["training_png"] = curve
        png = self._plot_prediction(model, os.path.join(run_dir, "plots", "prediction.png"))
        if png:
            summary["prediction_png"] = png
        return summary

    def _plot_prediction(self, model, path):
        """Side view of a test sequence: ground truth and prediction at a few frames."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        seq = self.sequences("test")[0]
        pred = self.predict_sequences(model, [seq])[0]["pose"]
        frames = np.linspace(0, len(seq.pose_3d) - 1, 5).astype(int)
        fig, axes = plt.subplots(1, len(frames), figsize=(3 * len(frames), 3.4), subplot_kw={"projection": "3d"})
        for ax, f in zip(axes, frames):
            for pose, colour in ((seq.pose_3d[f], "tab:blue"), (pred[f], "tab:red")):
                for j, p in enumerate(human36m.PARENTS):
                    if p >= 0:  # camera space: x right, y down, z forward -> plot x, z, -y
                        ax.plot(*[[pose[j, a] * s, pose[p, a] * s] for a, s in ((0, 1), (2, 1), (1, -1))], c=colour)
            ax.set_title(f"frame {f}")
            ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
            ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
        fig.suptitle("blue: ground truth, red: prediction (camera space, root-relative)")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fig.savefig(path, dpi=80)
        plt.close(fig)
        return path

    # ------------------------------------------------------------------ export
    def export_endpoints(self, model):
        """`serving_default`: `keypoints_2d` float32 `[N, T, 17, 2]` -> 3-D per input frame.

        Input: Human3.6M-order 2-D keypoints (`kerasnets.data.human36m.JOINT_NAMES`)
        in normalised screen coordinates `xy / w * 2 - [1, h / w]` for a
        `w x h` image; any `T >= 1` (the sequence is edge-padded by the
        receptive field inside the graph, so short clips work too).

        Outputs: `joints_3d [N, T, 17, 3]` root-relative camera-space joints
        in metres (x right, y down, z forward) for every input frame (the
        centre of its window; with `causal=True` the last frame of a window
        that holds no later frame); `trajectory [N, T, 1, 3]` the root's
        camera-space position when the recipe was trained semi-supervised.
        No flip test in the graph.
        """

        def serve(keypoints_2d):
            out = self.lift(model, keypoints_2d, flip=False)
            result = {"joints_3d": out["pose"]}
            if "trajectory" in out:
                result["trajectory"] = out["trajectory"]
            return result

        spec = tf.TensorSpec([None, None, human36m.NUM_JOINTS, 2], tf.float32, name="keypoints_2d")
        return {"serving_default": Endpoint(serve, [spec])}

    def representative_dataset(self, num_samples: int = 64):
        seqs = self.sequences("test")
        length = min(len(s.keypoints_2d) for s in seqs)
        window = min(length, self.config.receptive_field() + 15)
        for i in range(num_samples):
            seq = seqs[i % len(seqs)]
            start = (i * 37) % (len(seq.keypoints_2d) - window + 1)
            yield {"keypoints_2d": seq.keypoints_2d[None, start : start + window]}
