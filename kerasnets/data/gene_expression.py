"""Gene expression data for D-GEX (Chen et al. 2016): landmark genes -> target genes.

Arrays are **samples x genes** float32: `landmarks [N, n_landmarks]`,
`targets [N, n_targets]` (raw expression values, e.g. log2 quantile-normalized
intensities). Per-gene standardization is fitted on the training split only
(`Standardizer`), as the paper's `*_norm.py` scripts do with the training
profiles: `(x - mean) / (std + 1e-3)`.

Sources:

* `embedded` (`synthetic_expression`): no download. A latent program
  `z ~ N(0, I_rank)` per sample drives both gene sets:

      landmarks = mu_l + s_l * (z A + noise_l * eps)                (low-rank, linear)
      targets   = mu_t + s_t * (tanh(gain * z B1) B2 + noise_t * eps)   (low-rank, nonlinear)

  `mu ~ U(4, 12)` and `s ~ U(0.3, 2)` per gene mimic log2 expression levels.
  Targets are a nonlinear function of the same latent factors that the
  landmarks measure linearly, so a linear regression recovers only the
  linear part of `tanh` and a tanh MLP has something to gain.
  Deterministic by `seed`.
* `files` (`load_expression_files(data_dir)`): the paper's data after its
  preprocessing (dedup, quantile normalization). The D-GEX repository works on
  GCTX (HDF5) matrices (`bgedv2_QNORM.gctx`, GTEx, 1000G) with the landmark /
  target lists `map_lm.txt` (943 genes) and `map_tg.txt` (9,520 genes) and
  writes NumPy arrays for training. Supported here (GCTX needs `cmapPy`/`h5py`:
  convert it first, e.g. `cmapPy.pandasGEXpress.parse(path).data_df.to_csv(sep="\\t")`):

  1. `<data_dir>/expression.npz` with `landmarks [N, L]` and `targets [N, T]`
     (samples x genes), optionally `split [N]` int (0 train, 1 val, 2 test);
  2. `<data_dir>/expression.tsv`: tab-separated **genes x samples** matrix,
     header row `gene<TAB>sample ids...`, one row per gene (id, then values),
     plus `<data_dir>/map_lm.txt` and `<data_dir>/map_tg.txt`: gene ids, one per
     line (first whitespace-separated column, as in the D-GEX repo), giving the
     landmark and target genes in output order. Every listed id must be a row.

  Without a `split` array, samples are split at random (seeded) into
  train/val/test fractions (the paper's GEO split is ~80/10/10:
  88,807 / 11,101 / ~11.1K profiles).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

#: The paper's sizes (GEO L1000 landmarks -> target genes).
PAPER_LANDMARKS = 943
PAPER_TARGETS = 9520
#: Added to the std in the reference normalization scripts (avoids dividing by ~0 for flat genes).
STD_EPSILON = 1e-3


@dataclasses.dataclass
class ExpressionSplits:
    """Raw (unstandardized) arrays per split; `*_genes` are ids when known."""

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    landmark_genes: list[str] | None = None
    target_genes: list[str] | None = None

    @property
    def n_landmarks(self) -> int:
        return int(self.train[0].shape[1])

    @property
    def n_targets(self) -> int:
        return int(self.train[1].shape[1])


@dataclasses.dataclass
class Standardizer:
    """Per-gene `(x - mean) / (std + eps)`, fitted on training samples (axis 0)."""

    mean: np.ndarray
    scale: np.ndarray  # std + eps

    @classmethod
    def fit(cls, x, eps: float = STD_EPSILON) -> "Standardizer":
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"Standardizer.fit needs a [samples, genes] array with >= 2 samples, got shape {x.shape}")
        return cls(x.mean(0).astype("float32"), (x.std(0) + eps).astype("float32"))

    def transform(self, x):
        return ((np.asarray(x, np.float32) - self.mean) / self.scale).astype("float32")

    def inverse(self, z):
        return (np.asarray(z, np.float32) * self.scale + self.mean).astype("float32")


def synthetic_expression(
    n_samples: int = 6000,
    n_landmarks: int = 100,
    n_targets: int = 1000,
    rank: int = 10,
    hidden: int = 32,
    gain: float = 2.0,
    landmark_noise: float = 0.1,
    target_noise: float = 0.1,
    seed: int = 0,
):
    """`(landmarks, targets)` raw float32 `[n, L]`, `[n, T]` with the structure described in the module doc."""
    for name, v in (("n_samples", n_samples), ("n_landmarks", n_landmarks), ("n_targets", n_targets),
                    ("rank", rank), ("hidden", hidden)):
        if int(v) < 1:
            raise ValueError(f"synthetic_expression: {name} must be >= 1, got {v}")
    rng = np.random.default_rng(seed)
    # Gene-level structure first, so the same seed gives the same genes for any n_samples.
    a = rng.standard_normal((rank, n_landmarks)) / np.sqrt(rank)
    b1 = rng.standard_normal((rank, hidden)) * gain / np.sqrt(rank)
    b2 = rng.standard_normal((hidden, n_targets)) / np.sqrt(hidden)
    mu_l, s_l = rng.uniform(4, 12, n_landmarks), rng.uniform(0.3, 2.0, n_landmarks)
    mu_t, s_t = rng.uniform(4, 12, n_targets), rng.uniform(0.3, 2.0, n_targets)
    z = rng.standard_normal((n_samples, rank))
    lm = z @ a + landmark_noise * rng.standard_normal((n_samples, n_landmarks))
    tg = np.tanh(z @ b1) @ b2 + target_noise * rng.standard_normal((n_samples, n_targets))
    return (mu_l + s_l * lm).astype("float32"), (mu_t + s_t * tg).astype("float32")


def random_split(n: int, fractions=(0.8, 0.1, 0.1), seed: int = 0):
    """Index arrays `(train, val, test)` of a seeded permutation of `range(n)`."""
    fractions = np.asarray(fractions, float)
    if fractions.shape != (3,) or np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {tuple(fractions)}")
    perm = np.random.default_rng(seed + 7919).permutation(n)
    n_tr = int(round(fractions[0] * n))
    n_va = int(round(fractions[1] * n))
    out = perm[:n_tr], perm[n_tr : n_tr + n_va], perm[n_tr + n_va :]
    if min(len(out[0]), len(out[2])) < 2:
        raise ValueError(f"{n} samples are too few for a train/val/test split with fractions {tuple(fractions)}")
    return tuple(np.sort(i) for i in out)


def _splits_from(landmarks, targets, split=None, seed=0, lm_genes=None, tg_genes=None) -> ExpressionSplits:
    landmarks = np.asarray(landmarks, np.float32)
    targets = np.asarray(targets, np.float32)
    if landmarks.ndim != 2 or targets.ndim != 2 or len(landmarks) != len(targets):
        raise ValueError(
            f"expected landmarks [N, L] and targets [N, T] with the same N, got {landmarks.shape} and {targets.shape}"
        )
    if not (np.all(np.isfinite(landmarks)) and np.all(np.isfinite(targets))):
        raise ValueError("expression values contain NaN or inf")
    if split is None:
        idx = random_split(len(landmarks), seed=seed)
    else:
        split = np.asarray(split).astype(int).reshape(-1)
        if len(split) != len(landmarks) or not set(np.unique(split)) <= {0, 1, 2}:
            raise ValueError("'split' must hold one of 0 (train), 1 (val), 2 (test) per sample")
        idx = tuple(np.flatnonzero(split == k) for k in range(3))
    parts = [(landmarks[i], targets[i]) for i in idx]
    return ExpressionSplits(*parts, landmark_genes=lm_genes, target_genes=tg_genes)


def _read_gene_list(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"gene list '{path}' not found (one gene id per line, as the D-GEX repo's map_lm.txt)")
    with open(path) as f:
        genes = [line.split()[0] for line in f if line.strip()]
    if not genes:
        raise ValueError(f"gene list '{path}' is empty")
    return genes


def read_expression_tsv(path: str):
    """`(gene_ids, sample_ids, values [genes, samples])` from a tab-separated genes x samples matrix."""
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        genes, rows = [], []
        for lineno, line in enumerate(f, start=2):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) != len(header):
                raise ValueError(f"{path}:{lineno}: {len(fields)} fields, header has {len(header)}")
            genes.append(fields[0])
            try:
                rows.append([float(v) for v in fields[1:]])
            except ValueError:
                raise ValueError(f"{path}:{lineno}: non-numeric expression value") from None
    if not rows:
        raise ValueError(f"{path}: no gene rows")
    return genes, header[1:], np.asarray(rows, np.float32)


def load_expression_files(data_dir: str, seed: int = 0) -> ExpressionSplits:
    """The paper's preprocessed matrices from `data_dir` (formats in the module doc)."""
    if not data_dir:
        raise ValueError("data='files' needs data_dir=<folder with expression.npz or expression.tsv + map_lm/map_tg>")
    npz = os.path.join(data_dir, "expression.npz")
    tsv = os.path.join(data_dir, "expression.tsv")
    if os.path.isfile(npz):
        with np.load(npz) as f:
            missing = {"landmarks", "targets"} - set(f.files)
            if missing:
                raise ValueError(f"{npz} lacks arrays {sorted(missing)} (has {f.files})")
            split = f["split"] if "split" in f.files else None
            return _splits_from(f["landmarks"], f["targets"], split, seed)
    if os.path.isfile(tsv):
        genes, _, values = read_expression_tsv(tsv)
        row = {g: i for i, g in enumerate(genes)}
        lm = _read_gene_list(os.path.join(data_dir, "map_lm.txt"))
        tg = _read_gene_list(os.path.join(data_dir, "map_tg.txt"))
        absent = [g for g in lm + tg if g not in row]
        if absent:
            raise ValueError(f"{len(absent)} listed genes are not rows of {tsv}, e.g. {absent[:3]}")
        return _splits_from(values[[row[g] for g in lm]].T, values[[row[g] for g in tg]].T, None, seed, lm, tg)
    raise FileNotFoundError(
        f"no expression.npz or expression.tsv in '{data_dir}' (see kerasnets.data.gene_expression for the formats)"
    )


def load_gene_expression(source: str = "embedded", data_dir=None, seed: int = 0, **synthetic) -> ExpressionSplits:
    """`ExpressionSplits` from `embedded` (synthetic, kwargs to `synthetic_expression`) or `files`."""
    if source == "embedded":
        lm, tg = synthetic_expression(seed=seed, **synthetic)
        return _splits_from(lm, tg, None, seed)
    if source == "files":
        return load_expression_files(data_dir, seed)
    raise ValueError(f"unknown gene expression source '{source}'; expected 'embedded' or 'files'")
