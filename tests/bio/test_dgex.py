"""dgex: MAE by hand, standardization, LR baseline, file loaders, D-GEX beats LR, export of raw values."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.config import apply_overrides
from kerasnets.data.gene_expression import (
    Standardizer,
    load_expression_files,
    load_gene_expression,
    synthetic_expression,
)
from kerasnets.errors import ConfigError
from kerasnets.metrics.regression import mae_per_gene, mean_gene_mae
from kerasnets.models.dgex import build_dgex, fit_linear_regression
from kerasnets.recipes.dgex import DGEXConfig, DGEXRecipe
from kerasnets.training import engine


def tiny(**overrides):
    base = dict(n_samples=1500, n_landmarks=30, n_targets=60, hidden_units=(128,), steps=250, batch_size=100,
                learning_rate=5e-3, monitor_every=50, log_every=50, checkpoint_every=10**6, strategy="default")
    base.update(overrides)
    return DGEXConfig(**base)


def test_mae_by_hand():
    y = np.array([[1.0, 2.0], [3.0, -1.0]])
    p = np.array([[0.5, 2.0], [3.0, 1.0]])
    # gene 0: (0.5 + 0) / 2 = 0.25; gene 1: (0 + 2) / 2 = 1.0; mean 0.625
    np.testing.assert_allclose(mae_per_gene(y, p), [0.25, 1.0])
    assert mean_gene_mae(y, p) == pytest.approx(0.625)
    with pytest.raises(ValueError, match="same shape"):
        mae_per_gene(y, p[:, :1])


def test_standardization_round_trip_and_formula():
    x = np.random.default_rng(0).normal(5.0, 2.0, size=(50, 4)).astype("float32")
    s = Standardizer.fit(x)
    np.testing.assert_allclose(s.mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(s.scale, x.std(0) + 1e-3, rtol=1e-5)
    z = s.transform(x)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(s.inverse(z), x, rtol=1e-5, atol=1e-5)


def test_standardizer_fitted_on_train_split_only():
    recipe = DGEXRecipe(tiny())
    sx, sy = recipe.standardizers()
    x_tr, y_tr = recipe.splits().train
    np.testing.assert_allclose(sx.mean, x_tr.mean(0), rtol=1e-5)
    np.testing.assert_allclose(sy.scale, y_tr.std(0) + 1e-3, rtol=1e-4)
    all_x = np.concatenate([recipe.splits().train[0], recipe.splits().test[0]])
    assert not np.allclose(sx.mean, all_x.mean(0), rtol=1e-6)


def test_linear_regression_is_least_squares():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    w_true, b_true = rng.normal(size=(5, 3)), rng.normal(size=3)
    w, b = fit_linear_regression(x, x @ w_true + b_true)
    np.testing.assert_allclose(w, w_true, atol=1e-4)
    np.testing.assert_allclose(b, b_true, atol=1e-4)
    # Noisy targets: same solution as numpy's lstsq with an intercept column.
    y = x @ w_true + rng.normal(size=(200, 3))
    w, b = fit_linear_regression(x, y)
    ref = np.linalg.lstsq(np.c_[x, np.ones(200)], y, rcond=None)[0]
    np.testing.assert_allclose(w, ref[:5], atol=1e-4)
    np.testing.assert_allclose(b, ref[5], atol=1e-4)


def test_synthetic_is_deterministic_and_split():
    a = synthetic_expression(n_samples=40, n_landmarks=6, n_targets=9, seed=3)
    b = synthetic_expression(n_samples=40, n_landmarks=6, n_targets=9, seed=3)
    c = synthetic_expression(n_samples=40, n_landmarks=6, n_targets=9, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (40, 6) and a[1].shape == (40, 9)
    assert not np.allclose(a[1], c[1])
    s = load_gene_expression("embedded", n_samples=100, n_landmarks=6, n_targets=9)
    assert [len(p[0]) for p in (s.train, s.val, s.test)] == [80, 10, 10]


def test_architecture_and_dropout_placement():
    net = build_dgex(94, 952, (300, 300), dropout=0.25)
    dense = [l for l in net.layers if isinstance(l, __import__("keras").layers.Dense)]
    assert [d.units for d in dense] == [300, 300, 952]
    assert [d.activation.__name__ for d in dense] == ["tanh", "tanh", "linear"]
    # Dropout on the hidden activations only (inputs of h2 and y), not on the landmarks.
    names = [l.name for l in net.layers]
    assert names.index("dropout_1") > names.index("hidden_1") and "dropout_out" in names
    assert net.layers[1].name == "hidden_1"
    assert np.abs(net.get_layer("targets").kernel.numpy()).max() <= 1e-4
    with pytest.raises(ValueError, match="dropout"):
        build_dgex(3, 3, (4,), dropout=1.0)


def test_bad_config():
    with pytest.raises(ConfigError, match="hidden_units"):
        apply_overrides(DGEXConfig(), {"hidden_units": "()"})
    with pytest.raises(ConfigError, match="data"):
        apply_overrides(DGEXConfig(), {"data": "geo"})


def test_tsv_loader_with_gene_lists(tmp_path):
    rng = np.random.default_rng(0)
    genes = ["g1", "g2", "g3", "g4", "g5"]
    values = rng.normal(size=(5, 30)).round(4)
    with open(tmp_path / "expression.tsv", "w") as f:
        f.write("gene\t" + "\t".join(f"s{j}" for j in range(30)) + "\n")
        for g, row in zip(genes, values):
            f.write(g + "\t" + "\t".join(str(v) for v in row) + "\n")
    (tmp_path / "map_lm.txt").write_text("g4\tlandmark\ng1\n")
    (tmp_path / "map_tg.txt").write_text("g5\ng2\ng3\n")
    s = load_expression_files(str(tmp_path))
    assert s.landmark_genes == ["g4", "g1"] and s.target_genes == ["g5", "g2", "g3"]
    x = np.concatenate([s.train[0], s.val[0], s.test[0]])
    y = np.concatenate([s.train[1], s.val[1], s.test[1]])
    assert x.shape == (30, 2) and y.shape == (30, 3)
    # Columns are the listed genes (samples permuted by the split).
    np.testing.assert_allclose(np.sort(x[:, 0]), np.sort(values[3]), atol=1e-6)
    np.testing.assert_allclose(np.sort(y[:, 2]), np.sort(values[2]), atol=1e-6)
    (tmp_path / "map_tg.txt").write_text("g9\n")
    with pytest.raises(ValueError, match="not rows"):
        load_expression_files(str(tmp_path))


def test_npz_loader_with_split(tmp_path):
    x, y = np.ones((10, 3), "float32"), np.arange(40, dtype="float32").reshape(10, 4)
    split = np.array([0] * 6 + [1] * 2 + [2] * 2)
    np.savez(tmp_path / "expression.npz", landmarks=x, targets=y, split=split)
    s = load_expression_files(str(tmp_path))
    np.testing.assert_array_equal(s.test[1], y[8:])
    assert len(s.train[0]) == 6
    np.savez(tmp_path / "expression.npz", landmarks=x)
    with pytest.raises(ValueError, match="targets"):
        load_expression_files(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="expression.npz"):
        load_expression_files(str(tmp_path / "nowhere"))


@pytest.mark.slow
def test_dgex_beats_linear_baseline_and_exports_raw_values(tmp_path):
    from kerasnets.export import export_run

    recipe = DGEXRecipe(tiny())
    result = engine.train(recipe, str(tmp_path / "run"))
    s = result.summary
    assert s["test_mae_dgex"] < 0.9 * s["test_mae_lr"], s
    assert s["genes_better_fraction"] > 0.9
    # Evaluate = hand MAE of the standardized predictions.
    x, y = recipe.standardized("test")
    assert s["test_mae_dgex"] == pytest.approx(np.abs(result.model.net(x).numpy() - y).mean(), rel=1e-5)

    report = export_run(recipe, result.model, export_root=str(tmp_path / "sm"))
    assert report.signatures["serving_default"] == ["landmarks"]
    raw_x, raw_y = recipe.splits().test
    out = recipe.export_endpoints(result.model)["serving_default"].fn(landmarks=tf.constant(raw_x))["targets"]
    sy = recipe.standardizers()[1]
    np.testing.assert_allclose(out.numpy(), sy.inverse(result.model.net(x).numpy()), rtol=1e-4, atol=1e-4)
    # Raw-unit error is the standardized error times each gene's scale.
    np.testing.assert_allclose(np.abs(out.numpy() - raw_y).mean(0) / sy.scale,
                               mae_per_gene(y, result.model.net(x).numpy()), rtol=1e-3)
    reloaded = tf.saved_model.load(report.saved_model_dir)
    got = reloaded.signatures["serving_default"](landmarks=tf.constant(raw_x[:3]))["targets"]
    np.testing.assert_allclose(got.numpy(), out.numpy()[:3], rtol=1e-5, atol=1e-5)


def test_lr_decays_when_monitor_mae_increases():
    recipe = DGEXRecipe(tiny(learning_rate=1e-3, min_learning_rate=5e-4))
    model = recipe.build_model()
    model.last_monitor.assign(0.0)  # any measured MAE is an "increase"
    assert float(model.update_learning_rate(True)) > 0
    assert float(model.lr_scale) == pytest.approx(0.9)
    model.last_monitor.assign(0.0)
    model.update_learning_rate(True)
    model.last_monitor.assign(0.0)
    model.update_learning_rate(True)  # 0.9 * 0.9 * 0.9 = 0.729, still above the floor 5e-4 / 1e-3 = 0.5
    assert float(model.lr_scale) == pytest.approx(0.729)
    for _ in range(10):
        model.last_monitor.assign(0.0)
        model.update_learning_rate(True)
    assert float(model.lr_scale) == pytest.approx(0.5)
    model.last_monitor.assign(1e9)  # a decrease keeps the rate
    model.update_learning_rate(True)
    assert float(model.lr_scale) == pytest.approx(0.5)
    model.lr_scale.assign(1.0)
    model.last_monitor.assign(0.0)
    assert float(model.update_learning_rate(False)) == 0.0  # not a monitoring step: nothing changes
    assert float(model.lr_scale) == 1.0 and float(model.last_monitor) == 0.0


def test_registered():
    from kerasnets import registry

    assert registry.get("dgex") is DGEXRecipe


@pytest.mark.slow
def test_two_replicas_run(tmp_path):
    from kerasnets.testing import fresh_mirrored_strategy

    recipe = DGEXRecipe(tiny(steps=20, monitor_every=10, log_every=10, strategy="mirrored"))
    result = engine.train(recipe, str(tmp_path / "run"), strategy=fresh_mirrored_strategy())
    assert np.isfinite(result.history[-1]["loss"]) and result.history[-1]["monitor_mae"] > 0
    assert result.summary["test_mae_dgex"] > 0
