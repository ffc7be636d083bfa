"""One decorator that registers a layer, loss or model for `.keras` files."""

import keras

PACKAGE = "kerasnets"


def register(cls):
    """Register `cls` as `kerasnets>ClassName` so saved models load it back.

    Classes must also implement `get_config()` (every kerasnets layer does and
    is round-trip tested).
    """
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
