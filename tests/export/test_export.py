"""Export: TF Serving layout, atomic versions, models.config, TFLite modes, offline verification.

One classifier export (all TFLite modes) and one generator export are shared
by the module: every fresh-process SavedModel load costs a TensorFlow import.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from export_toys import ToyClassifierRecipe
from export_toys import ToyGeneratorRecipe
from export_toys import ToyGeneratorSampleTFLite
from kerasnets import export
from kerasnets.export import saved_model as saved_model_lib
from kerasnets.training.recipe import Endpoint

pytestmark = pytest.mark.slow

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


@pytest.fixture(scope="module")
def classifier():
    recipe = ToyClassifierRecipe()
    model = recipe.build_model()
    # Non-trivial BatchNorm statistics, so inference mode matters.
    bn = [layer for layer in model.layers if "batch_normalization" in layer.name][0]
    bn.moving_mean.assign(np.full((4,), 0.2, "float32"))
    bn.moving_variance.assign(np.full((4,), 0.5, "float32"))
    return recipe, model


@pytest.fixture(scope="module")
def classifier_export(classifier, tmp_path_factory):
    recipe, model = classifier
    root = str(tmp_path_factory.mktemp("export_root"))
    report = export.export_run(recipe, model, formats=["tflite", "tflite-fp16", "tflite-int8"], export_root=root)
    return root, report


@pytest.fixture(scope="module")
def generator_export(tmp_path_factory):
    recipe = ToyGeneratorRecipe()
    model = recipe.build_model()
    root = str(tmp_path_factory.mktemp("gen_root"))
    report = export.export_run(recipe, model, formats="tflite", export_root=root)
    return root, recipe, model, report


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, 8, 8, 1)).astype("float32")


def _keras_reference(model, images):
    logits = model(images, training=False).numpy()
    return {"logits": logits, "probs": tf.nn.softmax(logits).numpy()}


# ------------------------------------------------------------------ SavedModel


def test_layout_is_tf_serving_versioned(classifier_export):
    root, report = classifier_export
    assert report.saved_model_dir == os.path.join(root, "toy_classifier", "1")
    assert report.version == 1
    assert os.path.isfile(os.path.join(report.saved_model_dir, "saved_model.pb"))
    assert os.path.isdir(os.path.join(report.saved_model_dir, "variables"))
    children = os.listdir(os.path.join(root, "toy_classifier"))
    # Only the version and the (non-integer) tflite folder; no temp leftovers.
    assert sorted(children) == ["1", "tflite"]


def test_savedmodel_reloaded_without_kerasnets_matches(classifier_export, classifier):
    root, report = classifier_export
    errors = report.errors["savedmodel"]
    assert set(errors) == {"logits", "probs"}
    assert max(errors.values()) <= 1e-5
    # Independent inputs (batch 3) against the Keras model, through the public helper.
    _, model = classifier
    images = _images(3, seed=11)
    errors = export.verify_saved_model(report.saved_model_dir, {"images": images}, _keras_reference(model, images))
    assert max(errors.values()) <= 1e-5

    # The same check must fail when the reference is off (the child's outputs
    # are replayed, to spare a second TensorFlow start-up).
    from kerasnets.export import verify

    outputs = {"serving_default": _keras_reference(model, images)}
    wrong = {k: v.copy() for k, v in outputs["serving_default"].items()}
    wrong["logits"][1, 2] += 1e-3
    replay = lambda path, calls: outputs  # noqa: E731
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verify, "run_saved_model_in_subprocess", replay)
        with pytest.raises(export.VerificationError, match=r"atol=1e-05 \(logits: 0.001\)"):
            export.verify_saved_model(report.saved_model_dir, {"images": images}, wrong)
        with pytest.raises(export.VerificationError, match="keys"):
            export.verify_saved_model(report.saved_model_dir, {"images": images}, {"logits": wrong["logits"]})


def test_verification_process_refuses_kerasnets(classifier_export, tmp_path, monkeypatch):
    # If anything in the child imported kerasnets (here: a sitecustomize), the
    # check must fail instead of silently "proving" a standalone artefact.
    _, report = classifier_export
    (tmp_path / "sitecustomize.py").write_text("import kerasnets\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + os.pathsep + REPO)
    with pytest.raises(export.VerificationError, match="imported kerasnets"):
        export.run_saved_model_in_subprocess(report.saved_model_dir, {"serving_default": {"images": _images(1)}})


def test_saved_model_cli_lists_named_inputs_and_outputs(classifier_export):
    _, report = classifier_export
    proc = subprocess.run(
        [
            "saved_model_cli",
            "show",
            "--dir",
            report.saved_model_dir,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "inputs['images'] tensor_info" in out
    assert "shape: (-1, 8, 8, 1)" in out
    assert "outputs['logits'] tensor_info" in out and "outputs['probs'] tensor_info" in out
    assert "tensorflow/serving/predict" in out


def test_generator_serving_default_takes_z(generator_export):
    root, recipe, model, report = generator_export
    assert report.signatures == {"serving_default": ["z"], "sample": ["n", "seed"]}
    assert max(report.errors["savedmodel"].values()) <= 1e-5
    # Extra endpoint with in-graph noise works in the SavedModel (not in TFLite).
    # (Loaded in this process: the fresh-process check ran in export_run.)
    z = np.random.default_rng(5).standard_normal((2, 4)).astype("float32")
    loaded = tf.saved_model.load(report.saved_model_dir)
    np.testing.assert_allclose(loaded.signatures["serving_default"](z=z)["images"], model(z).numpy(), atol=1e-5)
    sampled = loaded.signatures["sample"](n=tf.constant(3), seed=tf.constant(9))
    assert sampled["images"].shape == (3, 8, 8, 1)
    np.testing.assert_allclose(sampled["images"], model(sampled["z"]).numpy(), atol=1e-5)
    # The generator's float TFLite model, with z as its only input.
    assert report.max_error("tflite") <= 1e-4
    tfl = export.run_tflite(report.tflite["tflite"], {"z": z})
    np.testing.assert_allclose(tfl["images"], model(z).numpy(), atol=1e-4)


# ---------------------------------------------------------------------- TFLite


def test_tflite_float32_matches(classifier_export, classifier):
    _, report = classifier_export
    path = report.tflite["tflite"]
    assert path.endswith(os.path.join("toy_classifier", "tflite", "toy_classifier_v1_float32.tflite"))
    assert report.max_error("tflite") <= 1e-4
    _, model = classifier
    images = _images(5, seed=3)  # batch differs from the converted shape: runner resizes
    err = export.verify_tflite(path, {"images": images}, _keras_reference(model, images), atol=1e-4)
    assert err <= 1e-4


def test_tflite_fp16_runs(classifier_export, classifier):
    _, report = classifier_export
    path = report.tflite["tflite-fp16"]
    _, model = classifier
    images = _images(2, seed=4)
    err = export.verify_tflite(path, {"images": images}, _keras_reference(model, images))
    # float16 weights: close, but not float32-exact on these logits.
    assert 0 <= err < 1e-2
    assert report.tolerances["tflite-fp16"] is None


def test_tflite_int8_runs_with_int8_io_and_reported_error(classifier_export, classifier):
    from ai_edge_litert.interpreter import Interpreter

    _, report = classifier_export
    path = report.tflite["tflite-int8"]
    runner = Interpreter(model_path=path).get_signature_runner("serving_default")
    assert runner.get_input_details()["images"]["dtype"] == np.int8
    assert runner.get_output_details()["logits"]["dtype"] == np.int8
    scale, _ = runner.get_input_details()["images"]["quantization"]
    assert scale > 0
    _, model = classifier
    images = _images(4, seed=6)
    expected = _keras_reference(model, images)
    outputs = export.run_tflite(path, {"images": images})
    assert outputs["probs"].dtype == np.float32
    err = export.verify_tflite(path, {"images": images}, expected)
    assert np.isfinite(err)
    # Dequantized outputs land within a few quantization steps of the float
    # ones (a wrong zero point or scale would be off by the whole output range).
    # Per output: a few of its own quantization steps.
    errors = export.tflite_output_errors(path, {"images": images}, expected)
    for name, detail in runner.get_output_details().items():
        step = detail["quantization"][0]
        assert 0 < step < 0.05
        assert errors[name] <= 8 * step, (name, errors[name], step)
        assert report.errors["tflite-int8"][name] <= 8 * step
    assert err == max(errors.values())
    assert any("tflite-int8" in line for line in report.lines())


def test_tflite_rejects_non_builtin_ops(generator_export):
    _, _, _, report = generator_export
    recipe = ToyGeneratorSampleTFLite()
    with pytest.raises(export.ExportError, match="not TFLite builtins: .*StatelessRandom"):
        export.export_tflite(recipe, report.saved_model_dir, "tflite", out_path=os.path.join(HERE, "never.tflite"))
    assert not os.path.exists(os.path.join(HERE, "never.tflite"))


def test_tflite_bad_mode_and_calibration_keys(generator_export, tmp_path):
    _, recipe, _, report = generator_export
    with pytest.raises(export.ExportArgumentError, match="unknown TFLite mode 'tflite-int4'"):
        export.export_tflite(recipe, report.saved_model_dir, "tflite-int4")

    class WrongKeys(ToyGeneratorRecipe):
        def representative_dataset(self, num_samples=64):
            yield {"latent": np.zeros((1, 4), "float32")}

    with pytest.raises(export.ExportError, match=r"keys \['latent'\] do not match the signature inputs \['z'\]"):
        export.export_tflite(WrongKeys(), report.saved_model_dir, "tflite-int8", out_path=str(tmp_path / "x.tflite"))
    assert not (tmp_path / "x.tflite").exists()


# ------------------------------------------------------------- versions, atomicity


def test_version_numbering(classifier, tmp_path):
    recipe, model = classifier
    root = str(tmp_path / "root")
    first = export.export_saved_model(recipe, model, export_root=root)
    second = export.export_saved_model(recipe, model, export_root=root)
    assert [os.path.basename(first), os.path.basename(second)] == ["1", "2"]
    assert os.path.basename(export.export_saved_model(recipe, model, export_root=root, version=7)) == "7"
    assert os.path.basename(export.export_saved_model(recipe, model, export_root=root)) == "8"
    with pytest.raises(export.VersionExistsError, match="never overwritten"):
        export.export_saved_model(recipe, model, export_root=root, version=2)
    for bad in (0, -1, "3", True):
        with pytest.raises(export.ExportArgumentError, match="positive integer"):
            export.export_saved_model(recipe, model, export_root=root, version=bad)
    assert export.existing_versions(os.path.join(root, "toy_classifier")) == [1, 2, 7, 8]


def test_export_root_from_environment(classifier, tmp_path, monkeypatch):
    recipe, model = classifier
    monkeypatch.setenv("KERASNETS_EXPORT_ROOT", str(tmp_path / "env_root"))
    path = export.export_saved_model(recipe, model)
    assert path == str(tmp_path / "env_root" / "toy_classifier" / "1")
    monkeypatch.delenv("KERASNETS_EXPORT_ROOT")
    monkeypatch.chdir(tmp_path)
    assert export.resolve_export_root() == "saved_models"


def test_failed_export_leaves_no_version(classifier, tmp_path, monkeypatch):
    recipe, model = classifier
    root = str(tmp_path / "root")

    def crash(tmp_dir):
        assert os.path.isfile(os.path.join(tmp_dir, "saved_model.pb"))  # halfway: written, not renamed
        raise RuntimeError("disk full")

    monkeypatch.setattr(saved_model_lib, "_write_hook", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export.export_saved_model(recipe, model, export_root=root)
    assert os.listdir(os.path.join(root, "toy_classifier")) == []


def test_sigkilled_export_leaves_no_version_and_next_export_cleans_up(classifier, tmp_path):
    root = tmp_path / "root"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {HERE!r})
        from export_toys import ToyClassifierRecipe
        from kerasnets.export import saved_model as sm

        def hang(tmp_dir):
            print("WRITTEN", tmp_dir, flush=True)
            time.sleep(600)

        sm._write_hook = hang
        recipe = ToyClassifierRecipe()
        sm.export_saved_model(recipe, recipe.build_model(), export_root={str(root)!r})
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    try:
        deadline = time.time() + 300
        line = ""
        while time.time() < deadline:
            line = proc.stdout.readline()
            if line.startswith("WRITTEN") or not line:
                break
        assert line.startswith("WRITTEN"), "the export child died before writing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    base = root / "toy_classifier"
    left = os.listdir(base)
    assert left and all(name.startswith(".tmp-") for name in left), left  # partial export, hidden name
    assert export.existing_versions(base) == []
    # TF Serving only loads integer children: nothing to load.
    assert not [n for n in left if n.isdigit()]
    # The next export removes the dead process' leftovers and takes version 1.
    recipe, model = classifier
    path = export.export_saved_model(recipe, model, export_root=str(root))
    assert os.path.basename(path) == "1"
    assert sorted(os.listdir(base)) == ["1"]


def test_stale_tmp_of_live_process_is_kept(tmp_path):
    base = tmp_path / "m"
    base.mkdir()
    hex32 = "0123456789abcdef" * 2
    live = base / f".tmp-{os.getppid()}-{hex32}"
    own = base / f".tmp-{os.getpid()}-{hex32}"
    dead = base / f".tmp-999999999-{hex32}"
    dead_file = base / f".tmp-999999998-{hex32}"
    not_ours = base / ".tmp-999999999-notours"
    for d in (live, own, dead, not_ours):
        d.mkdir()
    dead_file.write_text("partial models.config")
    removed = saved_model_lib.clean_stale_tmp_dirs(str(base))
    assert sorted(removed) == sorted([str(dead), str(dead_file)])
    assert live.exists() and own.exists() and not_ours.exists()
    assert not dead.exists() and not dead_file.exists()


# ------------------------------------------------------------------ models.config


def test_models_config_lists_models_with_base_path(classifier_export, generator_export):
    root, _ = classifier_export
    text = open(os.path.join(root, "models.config")).read()
    pattern = r'config \{\s*name: "([^"]+)"\s*base_path: "([^"]+)"\s*model_platform: "tensorflow"\s*\}'
    configs = re.findall(pattern, text)
    assert configs == [("toy_classifier", "/models/toy_classifier")]
    assert text.startswith("model_config_list {") and text.rstrip().endswith("}")
    gen_root = generator_export[0]
    gen_text = open(os.path.join(gen_root, "models.config")).read()
    assert '"/models/toy_generator"' in gen_text


def test_models_config_several_models_and_serving_base(classifier, tmp_path):
    recipe, model = classifier

    class Other(ToyClassifierRecipe):
        name = "other"

    root = str(tmp_path / "root")
    export.export_saved_model(recipe, model, export_root=root)
    export.export_saved_model(Other(), model, export_root=root, serving_base="/srv/models/")
    os.makedirs(os.path.join(root, "empty_model"))  # no version: not listed
    text = open(os.path.join(root, "models.config")).read()
    assert re.findall(r'name: "([^"]+)"\s*base_path: "([^"]+)"', text) == [
        ("other", "/srv/models/other"),
        ("toy_classifier", "/srv/models/toy_classifier"),
    ]
    assert not [n for n in os.listdir(root) if n.startswith(".tmp-")]


def test_models_config_parses_as_model_server_config():
    # Optional: tensorflow-serving-api is not a dependency (its wheel pins the
    # full `tensorflow`); when it is installed, the text must parse.
    pb2 = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")
    from google.protobuf import text_format

    text = export.models_config_text(["began", "resnet"])
    parsed = text_format.Parse(text, pb2.ModelServerConfig())
    assert [(c.name, c.base_path, c.model_platform) for c in parsed.model_config_list.config] == [
        ("began", "/models/began", "tensorflow"),
        ("resnet", "/models/resnet", "tensorflow"),
    ]


def test_models_config_text_escapes_and_validates():
    assert 'base_path: "/models/a.b-c_1"' in export.models_config_text(["a.b-c_1"])
    with pytest.raises(export.ExportArgumentError, match="cannot be a model directory name"):
        export.models_config_text(['bad"name'])


# ------------------------------------------------------------------ bad input


class _Recipe(ToyClassifierRecipe):
    def __init__(self, endpoints):
        super().__init__()
        self._endpoints = endpoints

    def export_endpoints(self, model):
        return self._endpoints


@pytest.mark.parametrize(
    "endpoints, message",
    [
        ({}, "non-empty dict"),
        ({"predict": Endpoint(lambda x: {"y": x}, [tf.TensorSpec((None, 2), name="x")])}, "no 'serving_default'"),
        ({"serving_default": Endpoint(lambda x: {"y": x}, [tf.TensorSpec((None, 2))])}, "needs a name"),
        ({"serving_default": Endpoint(lambda x: {"y": x}, [])}, "non-empty list"),
        ({"serving_default": (lambda x: x,)}, r"Endpoint\(fn, input_signature\)"),
        (
            {
                "serving_default": Endpoint(
                    lambda x, y: {"y": x}, [tf.TensorSpec((2,), name="x"), tf.TensorSpec((2,), name="x")]
                )
            },
            "duplicate input name 'x'",
        ),
        (
            {"serving_default": Endpoint(lambda x: x, [tf.TensorSpec((None, 2), name="x")])},
            "must return a non-empty dict",
        ),
    ],
)
def test_bad_endpoints_are_clear_errors_and_write_nothing(classifier, tmp_path, endpoints, message):
    _, model = classifier
    root = tmp_path / "root"
    with pytest.raises(export.ExportError, match=message):
        export.export_saved_model(_Recipe(endpoints), model, export_root=str(root))
    versions = export.existing_versions(root / "toy_classifier")
    assert versions == []
    assert not (root / "toy_classifier").exists() or os.listdir(root / "toy_classifier") == []


def test_export_run_bad_format_and_inputs_write_nothing(classifier, tmp_path):
    recipe, model = classifier
    root = tmp_path / "root"
    with pytest.raises(export.ExportArgumentError, match="unknown export format 'onnx'"):
        export.export_run(recipe, model, formats=["savedmodel", "onnx"], export_root=str(root))
    with pytest.raises(export.ExportError, match=r"missing \['images'\]"):
        export.export_run(recipe, model, export_root=str(root), sample_inputs={"x": np.zeros((1, 8, 8, 1))})
    with pytest.raises(export.ExportError, match="has shape"):
        export.export_run(recipe, model, export_root=str(root), sample_inputs={"images": np.zeros((1, 4, 4, 1))})
    assert not root.exists()


class _Wrapper:
    """A subclassed keras.Model around a built network, itself never called (not `built`)."""

    def __new__(cls, net):
        import keras

        class Wrapper(keras.Model):
            def __init__(self, net):
                super().__init__()
                self.net = net

            def call(self, x):
                return self.net(x)

        return Wrapper(net)


def test_unbuilt_wrapper_of_built_network_exports_its_weights(classifier, tmp_path):
    recipe, model = classifier
    wrapper = _Wrapper(model)
    assert not wrapper.built

    class WrapperRecipe(ToyClassifierRecipe):
        def export_endpoints(self, m):
            return {"serving_default": Endpoint(lambda images: {"logits": m.net(images)}, [
                tf.TensorSpec((None, 8, 8, 1), tf.float32, name="images")])}

    path = export.export_saved_model(WrapperRecipe(), wrapper, export_root=str(tmp_path))
    images = _images(2, seed=8)
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_default"](images=images)["logits"].numpy()
    np.testing.assert_allclose(got, model(images, training=False).numpy(), atol=1e-6)


def test_variables_created_while_tracing_are_an_error(tmp_path):
    import keras

    lazy = _Wrapper(keras.layers.Dense(2))  # Dense never built: tracing would create fresh weights

    class LazyRecipe(ToyClassifierRecipe):
        def export_endpoints(self, m):
            spec = tf.TensorSpec((None, 3), tf.float32, name="x")
            return {"serving_default": Endpoint(lambda x: {"y": m(x)}, [spec])}

    with pytest.raises(export.ExportError, match=r"created 2 new variable\(s\).*exported untrained"):
        export.export_saved_model(LazyRecipe(), lazy, export_root=str(tmp_path))
    assert export.existing_versions(tmp_path / "toy_classifier") == []


def test_export_run_tolerance_overrides(classifier, tmp_path):
    recipe, model = classifier
    with pytest.raises(export.ExportArgumentError, match="unknown format 'onnx'"):
        export.export_run(recipe, model, export_root=str(tmp_path), tolerances={"onnx": 1.0})
    with pytest.raises(export.ExportArgumentError, match="non-negative number or None"):
        export.export_run(recipe, model, export_root=str(tmp_path), tolerances={"tflite": -1})
    assert not os.listdir(tmp_path)


def test_report_enforces_tolerance_and_prints_lines(tmp_path):
    report = export.ExportReport(
        recipe="m",
        version=3,
        saved_model_dir=str(tmp_path / "m" / "3"),
        models_config=str(tmp_path / "models.config"),
        signatures={"serving_default": ["z"]},
        tflite={"tflite": str(tmp_path / "m.tflite")},
        errors={"savedmodel": {"images": 0.0}, "tflite": {"images": 2e-4}},
        tolerances={"savedmodel": 1e-5, "tflite": 1e-4},
    )
    export._enforce(report, "savedmodel")
    with pytest.raises(export.VerificationError, match=r"tflite export at .*m.tflite .*atol=0.0001 \(images: 0.0002\)"):
        export._enforce(report, "tflite")
    text = "\n".join(report.lines())
    assert "serving_default(z)" in text and "max |err| 0.0002 vs SavedModel (<= 0.0001)" in text
    assert f"-v {tmp_path / 'm'}:/models/m -e MODEL_NAME=m tensorflow/serving" in text
    body = """'{"signature_name":"serving_default","inputs":{"z":[...]}}'"""
    assert f"curl -d {body} localhost:8501/v1/models/m:predict" in text


def test_importing_export_package_does_not_import_tensorflow():
    code = "import sys, kerasnets.export; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=REPO)


def test_string_inputs_cross_to_the_verification_process_without_pickle(tmp_path):
    import numpy as np

    from kerasnets.export.verify import _savable

    path = tmp_path / "in.npz"
    np.savez(path, a=_savable(np.array([b"good movie", "caf\u00e9".encode()], dtype=object)), b=_savable(np.array(["x"])))
    loaded = np.load(path, allow_pickle=False)
    assert loaded["a"].tolist() == [b"good movie", "caf\u00e9".encode()]
    assert loaded["b"].tolist() == [b"x"]


class _PerModeRecipe(ToyClassifierRecipe):
    """fp16 converts a second endpoint; the recipe loosens its own SavedModel tolerance."""

    tflite_endpoints = {"tflite-fp16": "logits_only"}
    export_tolerances = {"savedmodel": 0.5}

    def export_endpoints(self, model):
        endpoints = super().export_endpoints(model)
        spec = [tf.TensorSpec((None, 8, 8, 1), tf.float32, name="images")]
        endpoints["logits_only"] = Endpoint(lambda images: {"only": model(images, training=False)}, spec)
        return endpoints


@pytest.mark.slow
def test_recipe_tolerances_and_per_mode_tflite_endpoint(classifier, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    _, model = classifier
    recipe = _PerModeRecipe()
    report = export.export_run(recipe, model, formats=("tflite-fp16",), export_root=str(tmp_path),
                               tolerances={"tflite-fp16": 0.1})
    assert report.tolerances == {"savedmodel": 0.5, "tflite-fp16": 0.1}  # recipe's, then the caller's
    assert list(Interpreter(model_path=report.tflite["tflite-fp16"]).get_signature_list()) == ["logits_only"]
    assert set(report.errors["tflite-fp16"]) == {"only"}

    class Missing(_PerModeRecipe):
        tflite_endpoints = {"tflite-fp16": "nope"}

    with pytest.raises(export.ExportError, match="tflite-fp16 endpoint 'nope'"):
        export.export_run(Missing(), model, formats=("tflite-fp16",), export_root=str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x")


def test_unbuilt_wrapper_keeps_the_lookup_tables_of_its_built_parts(tmp_path):
    import keras

    lookup = keras.layers.StringLookup(vocabulary=["cup", "red", "left"], name="words")
    lookup(tf.constant(["cup"]))

    class Words(keras.Model):  # never called itself: not built, but its lookup is
        def __init__(self):
            super().__init__()
            self.lookup = lookup

        def call(self, x):
            return self.lookup(x)

    wrapper = Words()
    assert not wrapper.built and lookup.built

    class WordsRecipe(ToyClassifierRecipe):
        name = "toy_words"

        def export_endpoints(self, m):
            return {"serving_default": Endpoint(lambda text: {"ids": m.lookup(text)}, [
                tf.TensorSpec((None,), tf.string, name="text")])}

    path = export.export_saved_model(WordsRecipe(), wrapper, export_root=str(tmp_path))
    got = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(["red", "dog"]))["ids"]
    np.testing.assert_array_equal(got.numpy(), [2, 0])
