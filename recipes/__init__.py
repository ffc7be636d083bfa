"""Built-in recipes, one module per paper (installed as `kerasnets.recipes`)."""
