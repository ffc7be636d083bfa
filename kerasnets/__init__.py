"""kerasnets: classic deep-learning papers as Keras 3 layers, losses and recipes.

Importing the top-level package is cheap (no TensorFlow); import the
sub-packages (`kerasnets.layers`, `kerasnets.losses`, ...) for the Keras pieces.
"""

__version__ = "0.1.0"
