"""BEGAN: Boundary Equilibrium Generative Adversarial Networks (Berthelot, Schumm, Metz 2017).

The discriminator is an auto-encoder; instead of telling real from fake it
reconstructs images, and the players fight over reconstruction losses
(`kerasnets.losses.boundary_equilibrium`):

    L(v)    = mean |v - D(v)|                                   (eta = 1)
    L_D     = L(x) - k_t L(G(z_D))          -> theta_D
    L_G     = L(G(z_G))                     -> theta_G
    k_{t+1} = clip(k_t + lambda_k (gamma L(x) - L(G(z_G))), 0, 1),   k_0 = 0
    M       = L(x) + |gamma L(x) - L(G(z_G))|                   (convergence measure)

Architecture: `kerasnets.models.began` (3x3 convs + ELU, nearest upsampling,
`n` filters, `h` embedding, optional skip connections). Optimiser: Adam,
learning rate 1e-4, halved when M stalls (the paper), with a floor; an
optional fixed-step halving as in carpedm20's reference code.

Default data (`data="embedded"`): scikit-learn's 8x8 digits (shipped with
scikit-learn, no download) upscaled to 16x16 in [-1, 1], one channel; the
default run (`kerasnets train recipe=began`) fits the 10-minute CPU budget.
Real data: `data=celeb_a` (tfds, 64 or 128 px, center crop).

Defaults that differ from the paper's face runs, all measured on the digits
(sample diversity = mean per-pixel std over 64 samples, real digits 0.37):

* `gamma=1.0` (paper: 0.5 on faces). The default run with `gamma=0.5`
  collapses to one blob (diversity 0.05, k_t 0.007 after 4000 steps), and so
  did every 0.5 variant we tried (lambda_k 0.01/0.05, beta_1 0.5, skip,
  lr 5e-4, h 16/64: 0.04-0.10), as users report for BEGAN on MNIST
  (carpedm20/BEGAN-tensorflow#12). With 1.0: diversity 0.20, k_t 0.098,
  recognisable digits; 0.7 gave 0.14. Use `gamma=0.5` for faces.
* `skip=True`, `beta_1=0.5` (the paper gives no betas), `n=h=32` at 16x16
  (the paper: n=64-128, h=64 at 32-128 px) so 4000 steps fit on 2 cores.

Open investigation (issue 16; scored by `tools/checks/began_samples.py`:
classifier IS on 1000 samples, real digits 6.0; seed 0, one run each):
today's default reaches IS 1.31 / 1.76 / 1.86 at 1000 / 2000 / 4000 steps
(225 CPU-s), largest digit share 0.62 / 0.60 / 0.39: G barely uses z while
k_t is still climbing (0.04 -> 0.10) at lambda_k = 0.001. A faster
controller is the biggest lever measured so far: lambda_k = 0.01 gives IS
3.40 at 1000 steps (max share 0.21, k_t 0.22) and 2.80 at 2000; 0.05 gives
3.40 / 2.59; gamma 0.7 with 0.01: 2.76 at 1000. batch 64: worse (1.43 at
4000 steps, max share 0.88, 3x the CPU). `augment_copies` (an embedded
set of deformed digits, `kerasnets.data.digits.augment_digits`) with
lambda_k 0.01: IS 3.44 at 1000 steps, max share 0.19. Defaults unchanged
until a variant meets IS >= 4.5 on seeds 0 and 1.

Reference:
    Berthelot, Schumm, Metz. "BEGAN: Boundary Equilibrium Generative
    Adversarial Networks." arXiv:1703.10717, 2017.
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
from kerasnets.errors import ConfigError
from kerasnets.losses.boundary_equilibrium import (
    boundary_equilibrium_losses,
    convergence_measure,
    reconstruction_loss,
    update_k,
)
from kerasnets.models.began import build_began_discriminator, build_began_generator, num_downsamplings
from kerasnets.distribute import replica_seed
from kerasnets.optimization import minimize
from kerasnets.training.recipe import Endpoint, Recipe
from kerasnets.utils.images import image_grid, save_image
from kerasnets.models.recipe_model import RecipeModel


@dataclasses.dataclass
class BeganConfig(RecipeConfig):
    """BEGAN settings: the paper's lambda_k, Adam 1e-4 and batch 16; sizes and gamma for the CPU digits run."""

    steps: int = param(4000, help="training steps (global batches)", min=1)
    batch_size: int = param(16, help="global batch size (the paper uses 16)", min=1)
    data: Literal["embedded", "celeb_a"] = param(
        "embedded", help="embedded: sklearn digits upscaled (no download); celeb_a: tensorflow-datasets CelebA"
    )
    augment_copies: int = param(
        0, help="embedded data: add this many randomly deformed copies of each training digit", min=0, max=100
    )
    image_size: int = param(16, help="image side, a power of two >= 8 (celeb_a: 64 or 128 in the paper)", min=8, max=256)
    n: int = param(32, help="conv filters n (the paper: 64 or 128)", min=1)
    h: int = param(32, help="embedding size Nh = noise size Nz (the paper: 64)", min=1)
    skip: bool = param(True, help="skip connections: concat upsampled h0 after every upsampling")
    gamma: float = param(
        1.0,
        help="diversity ratio E[L(G(z))] / E[L(x)] (paper: 0.5 on faces; the digits collapse at 0.5)",
        min=0.0,
        max=1.0,
    )
    lambda_k: float = param(0.001, help="proportional gain of the k_t controller", min=0.0, max=1.0)
    learning_rate: float = param(1e-4, help="Adam learning rate of both players", min=0.0)
    beta_1: float = param(0.5, help="Adam beta_1 (paper: unstated; carpedm20's config says 0.5)", min=0.0, max=1.0)
    beta_2: float = param(0.999, help="Adam beta_2", min=0.0, max=1.0)
    lr_floor: float = param(2e-5, help="the learning rate is never halved below this", min=0.0)
    lr_patience: int = param(
        500, help="M-stall window in steps: halve lr if a window's mean M did not improve; 0 = off", min=0
    )
    lr_min_improvement: float = param(
        0.01, help="relative improvement of the window-mean M that counts as progress", min=0.0, max=1.0
    )
    lr_halve_every: int = param(0, help="also halve lr every N steps (carpedm20: 100000); 0 = off", min=0)
    sample_every: int = param(500, help="write a sample grid (PNG + TensorBoard) every N steps", min=1)
    num_samples: int = param(64, help="images in a sample grid (a square number looks best)", min=1, max=1024)
    eval_images: int = param(2000, help="held-out images used by evaluate (celeb_a)", min=1)
    log_every: int = param(10, help="write metrics every N steps", min=1)
    checkpoint_every: int = param(500, help="save a checkpoint every N steps (and at the end)", min=1)

    def validate(self) -> None:
        super().validate()
        try:
            num_downsamplings(self.image_size)
        except ValueError as exc:
            raise ConfigError(f"bad value for 'image_size': {exc}") from None
        if self.data == "celeb_a" and self.image_size > 128:
            raise ConfigError(
                f"bad value for 'image_size': {self.image_size}; celeb_a is cropped to 128x128, so at most 128"
            )
        if self.sample_every % self.log_every:
            raise ConfigError(
                f"bad value for 'sample_every': {self.sample_every}; must be a multiple of log_every ({self.log_every}),"
                " samples are written at logging steps"
            )
        if self.lr_floor > self.learning_rate:
            raise ConfigError(
                f"bad value for 'lr_floor': {self.lr_floor}; must not exceed learning_rate ({self.learning_rate})"
            )

    @property
    def channels(self) -> int:
        return 1 if self.data == "embedded" else 3


class BeganModel(RecipeModel):
    """Generator + auto-encoder discriminator + the equilibrium controller and lr schedule.

    State (all checkpointed, so a resumed run continues exactly): the two Adam
    optimizers, `k_t`, the learning rate `lr` the schedule halves, the M-stall
    window (`m_window_sum`, `m_window_count`, `m_best`), the step counter and
    the noise seed generator. Scalar state uses `aggregation="mean"`; every
    replica computes the same new value from all-reduced losses, so the mean
    is that value.

    Update order (one `train_step`): one forward pass draws `z ~ U(-1, 1)`,
    computes `G(z)`, `D(x)` and `D(G(z))`, then both players' gradients from
    it (the same fakes serve as `z_D` and `z_G`); Adam updates D with
    `grad L_D` and G with `grad L_G`, and only then `k_t` moves with that
    step's `L(x)` and `L(G(z))`. This is the paper's simultaneous system
    (all three right-hand sides at time t) and what carpedm20's reference
    code does (`k_t` updated under a dependency on both optimizer steps).
    """

    def __init__(
        self,
        generator,
        discriminator,
        *,
        gamma=0.5,
        lambda_k=0.001,
        learning_rate=1e-4,
        lr_floor=2e-5,
        lr_patience=0,
        lr_min_improvement=0.01,
        lr_halve_every=0,
        beta_1=0.9,
        beta_2=0.999,
        seed=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.gamma = float(gamma)
        self.lambda_k = float(lambda_k)
        self.lr_floor = float(lr_floor)
        self.lr_patience = int(lr_patience)
        self.lr_min_improvement = float(lr_min_improvement)
        self.lr_halve_every = int(lr_halve_every)
        self.latent_dim = int(generator.input_shape[-1])
        self.seed_generator = keras.random.SeedGenerator(seed)

        def scalar(name, value):
            return self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(value),
                trainable=False,
                aggregation="mean",
                name=name,
            )

        self.k_t = scalar("k_t", 0.0)  # k_0 = 0
        self.lr = scalar("learning_rate", learning_rate)
        self.step_count = scalar("step_count", 0.0)
        self.m_window_sum = scalar("m_window_sum", 0.0)
        self.m_window_count = scalar("m_window_count", 0.0)
        self.m_best = scalar("m_best", np.finfo(np.float32).max)
        # Both optimizers read the schedule's variable (a callable learning rate).
        self.d_optimizer = keras.optimizers.Adam(learning_rate=self._current_lr, beta_1=beta_1, beta_2=beta_2)
        self.g_optimizer = keras.optimizers.Adam(learning_rate=self._current_lr, beta_1=beta_1, beta_2=beta_2)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)
        self.built = True

    def _current_lr(self):
        return self.lr.value

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def _schedule(self, measure):
        """New learning rate after this step (M-stall halving + optional fixed-step halving)."""
        step = self.step_count + 1.0
        window_sum = self.m_window_sum + measure
        window_count = self.m_window_count + 1.0
        lr = self.lr.value
        halve = tf.constant(False)
        if self.lr_patience > 0:
            window_end = window_count >= float(self.lr_patience)
            window_mean = window_sum / window_count
            improved = window_mean < self.m_best * (1.0 - self.lr_min_improvement)
            halve = tf.logical_and(window_end, tf.logical_not(improved))
            self.m_best.assign(tf.where(tf.logical_and(window_end, improved), window_mean, self.m_best))
            self.m_window_sum.assign(tf.where(window_end, 0.0, window_sum))
            self.m_window_count.assign(tf.where(window_end, 0.0, window_count))
        if self.lr_halve_every > 0:
            fixed = tf.equal(tf.math.floormod(step, float(self.lr_halve_every)), 0.0)
            halve = tf.logical_or(halve, fixed)
        self.step_count.assign(step)
        self.lr.assign(tf.where(halve, tf.maximum(lr * 0.5, self.lr_floor), lr))

    def train_step(self, images):
        images = tf.convert_to_tensor(images)
        batch = tf.shape(images)[0]
        z = tf.random.stateless_uniform(
            [batch, self.latent_dim], seed=replica_seed(self.seed_generator), minval=-1.0, maxval=1.0
        )
        k_t = self.k_t.value
        lr = self.lr.value
        with tf.GradientTape(persistent=True) as tape:
            fakes = self.generator(z, training=True)
            rec = self.discriminator(tf.concat([images, fakes], axis=0), training=True)
            rec_real, rec_fake = rec[:batch], rec[batch:]
            loss_real = reconstruction_loss(images, rec_real)  # L(x)
            loss_fake = reconstruction_loss(fakes, rec_fake)  # L(G(z))
            loss_d, loss_g = boundary_equilibrium_losses(loss_real, loss_fake, loss_fake, k_t)
        minimize(tape, loss_d, self.discriminator.trainable_variables, self.d_optimizer, model=self.discriminator)
        minimize(tape, loss_g, self.generator.trainable_variables, self.g_optimizer, model=self.generator)
        del tape

        # The controller and M use the global batch's losses (mean over
        # replicas), so every replica computes the same k_{t+1}: the result
        # equals a one-device step on the global batch.
        ctx = tf.distribute.get_replica_context()
        global_real, global_fake = loss_real, loss_fake
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            global_real, global_fake = ctx.all_reduce(tf.distribute.ReduceOp.MEAN, [loss_real, loss_fake])
        self.k_t.assign(update_k(k_t, global_real, global_fake, self.gamma, self.lambda_k))
        measure = convergence_measure(global_real, global_fake, self.gamma)
        self._schedule(measure)
        return {
            "loss_real": loss_real,
            "loss_fake": loss_fake,
            "L_D": loss_d,
            "L_G": loss_g,
            "k_t": self.k_t.value,
            "M": measure,
            "lr": lr,
        }


# ------------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=4)
def _digits(image_size, augment_copies=0):
    from kerasnets.data.digits import augment_digits, load_digits

    # Fixed split (seed 0), independent of the run's seed: 10 % held out for evaluate.
    (train, _), (test, _) = load_digits(test_fraction=0.1, seed=0, image_size=image_size, value_range=(-1.0, 1.0))
    if augment_copies:
        # Deformations scale with the image: +-1.5 px shift at 16x16.
        train = augment_digits(train, augment_copies, seed=0, max_shift=1.5 * image_size / 16,
                               max_rotation_deg=12.0, elastic_alpha=1.0 * image_size / 16,
                               elastic_sigma=2.0 * image_size / 16)
    return train, test


class BeganRecipe(Recipe):
    name = "began"
    paper = "Berthelot, Schumm, Metz 2017. BEGAN: Boundary Equilibrium Generative Adversarial Networks. arXiv:1703.10717"
    summary = "auto-encoder GAN with a k_t equilibrium controller and convergence measure M"
    config_class = BeganConfig
    key_metrics = ("M", "k_t", "loss_real", "loss_fake", "lr")
    tflite_endpoint = "serving_default"

    def __init__(self, config=None):
        super().__init__(config)
        #: Set by the caller (or `on_train_end`) to write sample PNGs as they are made;
        #: until then `on_log` keeps the grids and `on_train_end` writes them.
        self.run_dir = None
        self._pending_grids: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------ model
    def build_model(self):
        c = self.config
        generator = build_began_generator(c.image_size, c.n, c.h, c.channels, c.skip, seed=c.seed)
        discriminator = build_began_discriminator(c.image_size, c.n, c.h, c.channels, c.skip, seed=c.seed)
        return BeganModel(
            generator,
            discriminator,
            gamma=c.gamma,
            lambda_k=c.lambda_k,
            learning_rate=c.learning_rate,
            lr_floor=c.lr_floor,
            lr_patience=c.lr_patience,
            lr_min_improvement=c.lr_min_improvement,
            lr_halve_every=c.lr_halve_every,
            beta_1=c.beta_1,
            beta_2=c.beta_2,
            seed=c.seed,
            name="began",
        )

    # ------------------------------------------------------------------- data
    def build_dataset(self, split="train", start_step=0):
        c = self.config
        if c.data == "celeb_a":
            from kerasnets.data import celeb_a

            if split == "train":
                return celeb_a.celeb_a_train(
                    c.image_size, c.batch_size, c.seed, start_step, data_dir=c.data_dir, download=c.download
                )
            return celeb_a.celeb_a_eval(
                c.image_size,
                c.batch_size,
                split="validation",
                max_images=c.eval_images,
                data_dir=c.data_dir,
                download=c.download,
            )
        from kerasnets.data.streams import array_dataset, eval_dataset

        train, test = _digits(c.image_size, c.augment_copies)
        if split == "train":
            return array_dataset(train, c.batch_size, c.seed, start_step)
        return eval_dataset(test, c.batch_size)

    # ------------------------------------------------------------------ hooks
    def fixed_z(self, count=None):
        """The noise behind every sample grid of a run (same z, comparable grids)."""
        count = count or self.config.num_samples
        return np.random.default_rng([self.config.seed, 1]).uniform(-1, 1, (count, self.config.h)).astype("float32")

    def sample_grid(self, model):
        images = keras.ops.convert_to_numpy(model.generator(self.fixed_z(), training=False))
        return image_grid(images, value_range=(-1.0, 1.0))

    def _write_png(self, step, grid):
        # Grids of 16x16 digits are tiny: write them enlarged (nearest) so they can be looked at.
        save_image(grid, os.path.join(self.run_dir, "samples", f"step_{step:06d}.png"), scale=4)

    def on_log(self, model, step, writer):
        if step % self.config.sample_every:
            return
        grid = self.sample_grid(model)
        tf.summary.image("samples", grid[None].astype("float32") / 255.0, step=step)
        if self.run_dir is not None:
            self._write_png(step, grid)
        else:
            self._pending_grids[step] = grid

    def on_train_end(self, model, run_dir, history):
        self.run_dir = run_dir
        for step, grid in sorted(self._pending_grids.items()):
            self._write_png(step, grid)
        self._pending_grids.clear()
        last = history[-1]["step"] if history else self.config.steps
        final_png = os.path.join(run_dir, "samples", f"step_{last:06d}.png")
        if not os.path.exists(final_png):
            self._write_png(last, self.sample_grid(model))
        summary = {"samples": final_png, "generator_params": model.generator.count_params(),
                   "discriminator_params": model.discriminator.count_params()}
        if history:
            summary["plot"] = plot_convergence(history, os.path.join(run_dir, "plots", "convergence.png"))
            head, tail = history[: min(3, len(history))], history[-min(3, len(history)) :]
            summary["M_start"] = float(np.mean([r["M"] for r in head]))
            summary["M_end"] = float(np.mean([r["M"] for r in tail]))
            summary["k_t_end"] = float(history[-1]["k_t"])
            summary["lr_end"] = float(history[-1]["lr"])
        return summary

    def evaluate(self, model):
        """M and the reconstruction L1 on held-out images (fixed z for the fakes)."""
        real_sum, count = 0.0, 0
        for images in self.build_dataset("test"):
            rec = model.discriminator(images, training=False)
            per_image = reconstruction_loss(images, rec, axis=(1, 2, 3))
            real_sum += float(tf.reduce_sum(per_image))
            count += int(images.shape[0])
        if count == 0:
            raise ValueError("evaluate: the held-out split is empty")
        z = np.random.default_rng([self.config.seed, 2]).uniform(-1, 1, (count, self.config.h)).astype("float32")
        fake_sum = 0.0
        for start in range(0, count, self.config.batch_size):
            fakes = model.generator(z[start : start + self.config.batch_size], training=False)
            rec = model.discriminator(fakes, training=False)
            fake_sum += float(tf.reduce_sum(reconstruction_loss(fakes, rec, axis=(1, 2, 3))))
        loss_real, loss_fake = real_sum / count, fake_sum / count
        return {
            "M": float(convergence_measure(loss_real, loss_fake, self.config.gamma)),
            "reconstruction_l1": loss_real,
            "loss_fake": loss_fake,
            "k_t": float(model.k_t.numpy()),
            "num_images": count,
        }

    # ----------------------------------------------------------------- export
    def export_endpoints(self, model):
        c = self.config
        generator, discriminator = model.generator, model.discriminator

        def generate(z):
            return {"images": generator(z, training=False)}

        def reconstruct(images):
            rec = discriminator(images, training=False)
            return {"reconstructions": rec, "reconstruction_loss": reconstruction_loss(images, rec, axis=(1, 2, 3))}

        return {
            "serving_default": Endpoint(generate, [tf.TensorSpec([None, c.h], tf.float32, name="z")]),
            "reconstruct": Endpoint(
                reconstruct,
                [tf.TensorSpec([None, c.image_size, c.image_size, c.channels], tf.float32, name="images")],
            ),
        }

    def representative_dataset(self, num_samples=64):
        rng = np.random.default_rng([self.config.seed, 3])
        for _ in range(num_samples):
            yield {"z": rng.uniform(-1, 1, (1, self.config.h)).astype("float32")}


def plot_convergence(history, path):
    """M, k_t, L(x), L(G(z)) and the learning rate against the step, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    axes[0].plot(steps, [r["M"] for r in history])
    axes[0].set_title("convergence measure M")
    axes[1].plot(steps, [r["k_t"] for r in history], color="tab:orange")
    axes[1].set_title("k_t")
    axes[2].plot(steps, [r["loss_real"] for r in history], label="L(x)")
    axes[2].plot(steps, [r["loss_fake"] for r in history], label="L(G(z))")
    axes[2].set_title("reconstruction losses")
    axes[2].legend()
    axes[3].plot(steps, [r["lr"] for r in history], color="tab:green")
    axes[3].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
