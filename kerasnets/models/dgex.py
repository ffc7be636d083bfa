"""D-GEX (Chen, Li, Narayan, Subramanian, Xie 2016, Bioinformatics 32(12)): landmark -> target genes.

A fully connected network on per-gene standardized expression:

    h_1 = tanh(W_1 x + b_1),  h_k = tanh(W_k dropout(h_{k-1}) + b_k),  y = W_o dropout(h_K) + b_o

with 1-3 hidden layers of 3000, 6000 or 9000 units in the paper (943 -> 9520,
each reference script trains half of the targets), dropout 0/10/25 % on the
*hidden* activations (pylearn2 `input_include_probs` on the inputs of h2, h3
and y; not on the landmark inputs), Glorot-uniform hidden weights and the
output layer initialized U(+-1e-4).

The linear-regression baseline (`fit_linear_regression`) is ordinary least
squares per target gene with an intercept, in closed form on the same
standardized data (the LINCS approach the paper compares against).
"""

from __future__ import annotations

import keras
import numpy as np


def build_dgex(n_landmarks: int, n_targets: int, hidden_units=(3000,), dropout: float = 0.1,
               output_init: float = 1e-4, seed: int = 0, name: str = "dgex") -> keras.Model:
    """The D-GEX MLP, standardized landmarks `[N, L]` -> standardized targets `[N, T]`."""
    if n_landmarks < 1 or n_targets < 1:
        raise ValueError(f"n_landmarks and n_targets must be >= 1, got {n_landmarks}, {n_targets}")
    hidden_units = tuple(int(u) for u in hidden_units)
    if not hidden_units or min(hidden_units) < 1:
        raise ValueError(f"hidden_units must be one or more positive sizes, got {hidden_units}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    x = inputs = keras.Input((n_landmarks,), name="landmarks")
    for i, units in enumerate(hidden_units):
        if i > 0 and dropout > 0:
            x = keras.layers.Dropout(dropout, seed=seed * 10 + i, name=f"dropout_{i}")(x)
        x = keras.layers.Dense(units, activation="tanh",
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed * 10 + i),
                               name=f"hidden_{i + 1}")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, seed=seed * 10 + len(hidden_units), name="dropout_out")(x)
    init = keras.initializers.RandomUniform(-output_init, output_init, seed=seed * 10 + 9)
    outputs = keras.layers.Dense(n_targets, kernel_initializer=init, bias_initializer="zeros", name="targets")(x)
    return keras.Model(inputs, outputs, name=name)


def fit_linear_regression(x, y, l2: float = 0.0):
    """Least squares `y ~ x W + b` per target column, closed form: `(W [L, T], b [T])`.

    Solved on centred data, `W = (Xc^T Xc + l2 I)^+ Xc^T Yc`, `b = mean(y) - mean(x) W`
    (`l2 = 0`: plain ordinary least squares, as the paper's LR baseline).
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"expected x [N, L] and y [N, T] with the same N, got {x.shape}, {y.shape}")
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    if l2 > 0:
        w = np.linalg.solve(xc.T @ xc + l2 * np.eye(x.shape[1]), xc.T @ yc)
    else:
        w = np.linalg.lstsq(xc, yc, rcond=None)[0]
    return w.astype("float32"), (my - mx @ w).astype("float32")
