"""8-bit symmetric per-layer weight quantization, as attacked by the Bit-Flip Attack (Rakin et al. 2019).

Per quantized layer (every Dense / Conv kernel; biases stay float):

    step = max|W| / (2^(N-1) - 1)          (N = 8 bits: step = max|W| / 127)
    q    = round(W / step)  in [-127, 127], stored as int8 (two's complement)
    W_q  = q * step                          (dequantized weights the network runs with)

Round-to-nearest gives |W - W_q| <= step / 2. The stored byte of q is its
two's-complement code: bit i (i = 0..6) is worth 2^i and bit 7 is worth -128,
so `q = -128 * b7 + sum_i 2^i * b_i`. A bit flip can therefore also produce
-128, which is outside the symmetric range but a valid int8.

`QuantizedModel` holds a *copy* of a Keras model whose kernels are the
dequantized int8 values (an ordinary Keras model you can export), plus the
int8 tensors and steps (`save` / `load` as `.npz`). `flip_bit` changes one bit
of one weight and updates the model.
"""

from __future__ import annotations

import numpy as np

NUM_BITS = 8
LEVELS = 2 ** (NUM_BITS - 1) - 1  # 127
#: value of bit i of an int8 in two's complement: 1, 2, ..., 64, -128
BIT_VALUES = np.array([1, 2, 4, 8, 16, 32, 64, -128], dtype="int64")


def quantize_symmetric(weights, num_bits: int = NUM_BITS):
    """`(q, step)`: int8 codes and the float step of symmetric uniform quantization.

    An all-zero tensor gets step 1.0 (every code is 0).
    """
    if num_bits != 8:
        raise ValueError(f"only 8-bit quantization is supported (int8 storage), got num_bits={num_bits}")
    w = np.asarray(weights, "float32")
    max_abs = float(np.max(np.abs(w))) if w.size else 0.0
    step = max_abs / LEVELS if max_abs > 0 else 1.0
    q = np.clip(np.round(w / step), -LEVELS, LEVELS).astype(np.int8)
    return q, np.float32(step)


def dequantize(q, step):
    """`q * step` as float32."""
    return np.asarray(q, np.int8).astype("float32") * np.float32(step)


def bits_of(q) -> np.ndarray:
    """Two's-complement bits of int8 codes: array `q.shape + (8,)` of 0/1, bit 0 first."""
    u = np.asarray(q, np.int8).view(np.uint8)
    return ((u[..., None] >> np.arange(NUM_BITS, dtype=np.uint8)) & 1).astype(np.uint8)


def flip_bit_value(q, flat_index: int, bit: int) -> np.ndarray:
    """A copy of int8 array `q` with bit `bit` of element `flat_index` flipped."""
    if not 0 <= bit < NUM_BITS:
        raise ValueError(f"bit must be in [0, {NUM_BITS - 1}], got {bit}")
    out = np.array(q, np.int8, copy=True)
    flat = out.reshape(-1).view(np.uint8)
    flat[flat_index] ^= np.uint8(1 << bit)
    return out


def hamming_distance(a: dict, b: dict) -> int:
    """Number of differing bits between two `{layer: int8 array}` dicts."""
    total = 0
    for name in a:
        x = np.asarray(a[name], np.int8).view(np.uint8) ^ np.asarray(b[name], np.int8).view(np.uint8)
        total += int(np.unpackbits(x.reshape(-1)).sum())
    return total


def _quantizable(model):
    import keras

    return [
        layer
        for layer in model.layers
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D))
    ]


class QuantizedModel:
    """A copy of `model` whose Dense/Conv kernels run on dequantized 8-bit codes.

    Attributes:
        model: the quantized Keras model (kernels = `q * step`), exportable as is.
        layer_names: names of the quantized layers, in model order.
        q: `{layer_name: int8 array}` (the attack edits these).
        steps: `{layer_name: float32 step}`.
    """

    def __init__(self, model, q: dict, steps: dict):
        self.model = model
        self.layer_names = tuple(q)
        self.q = {k: np.array(v, np.int8) for k, v in q.items()}
        self.steps = {k: np.float32(v) for k, v in steps.items()}
        for name in self.layer_names:
            self._assign(name)

    @classmethod
    def from_model(cls, model) -> "QuantizedModel":
        """Quantize every Dense/Conv kernel of a copy of `model` (the original is untouched)."""
        import keras

        clone = keras.models.clone_model(model)
        clone.set_weights(model.get_weights())
        layers = _quantizable(clone)
        if not layers:
            raise ValueError(f"model '{model.name}' has no Dense/Conv layer to quantize")
        q, steps = {}, {}
        for layer in layers:
            q[layer.name], steps[layer.name] = quantize_symmetric(keras.ops.convert_to_numpy(layer.kernel))
        return cls(clone, q, steps)

    # ------------------------------------------------------------------ state
    def kernel_variable(self, name):
        return self.model.get_layer(name).kernel

    def _assign(self, name):
        self.kernel_variable(name).assign(dequantize(self.q[name], self.steps[name]))

    def set_codes(self, name: str, codes) -> None:
        """Replace the int8 codes of one layer (and its kernel)."""
        codes = np.asarray(codes, np.int8)
        if codes.shape != self.q[name].shape:
            raise ValueError(f"codes for '{name}' have shape {codes.shape}, expected {self.q[name].shape}")
        self.q[name] = codes.copy()
        self._assign(name)

    def flip_bit(self, name: str, flat_index: int, bit: int) -> tuple[int, int]:
        """Flip one bit of one weight; returns `(old_code, new_code)`."""
        if name not in self.q:
            raise ValueError(f"'{name}' is not a quantized layer; layers: {', '.join(self.layer_names)}")
        size = self.q[name].size
        if not 0 <= flat_index < size:
            raise ValueError(f"flat_index {flat_index} out of range for layer '{name}' ({size} weights)")
        old = int(self.q[name].reshape(-1)[flat_index])
        self.q[name] = flip_bit_value(self.q[name], flat_index, bit)
        self._assign(name)
        return old, int(self.q[name].reshape(-1)[flat_index])

    def snapshot(self) -> dict:
        return {k: v.copy() for k, v in self.q.items()}

    def restore(self, codes: dict) -> None:
        for name, value in codes.items():
            self.set_codes(name, value)

    @property
    def num_weights(self) -> int:
        return int(sum(v.size for v in self.q.values()))

    @property
    def num_bits(self) -> int:
        return NUM_BITS * self.num_weights

    # ------------------------------------------------------------------ files
    def save(self, path: str) -> None:
        """Write the int8 codes and steps to an `.npz` (`<layer>/q`, `<layer>/step`)."""
        arrays = {}
        for name in self.layer_names:
            arrays[f"{name}/q"] = self.q[name]
            arrays[f"{name}/step"] = np.asarray(self.steps[name], "float32")
        np.savez(path, **arrays)

    @staticmethod
    def load_codes(path: str) -> tuple[dict, dict]:
        """`(q, steps)` dicts from a file written by `save`."""
        data = np.load(path)
        q, steps = {}, {}
        for key in data.files:
            name, _, kind = key.rpartition("/")
            if kind == "q":
                q[name] = data[key].astype(np.int8)
            elif kind == "step":
                steps[name] = np.float32(data[key])
        return q, steps
