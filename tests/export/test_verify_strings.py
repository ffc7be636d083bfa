"""Fresh-process verification of SavedModels with string outputs (captions, labels)."""

import numpy as np
import pytest
import tensorflow as tf

from kerasnets.export.verify import VerificationError, output_errors, verify_saved_model


def test_string_outputs_compare_exactly():
    want = np.array([b"a red circle", b"two squares"], dtype=object)
    assert output_errors({"captions": want.astype(np.bytes_)}, {"captions": want}) == {"captions": 0.0}
    assert output_errors({"captions": np.array(["a red circle", "two squares"])}, {"captions": want})["captions"] == 0.0
    wrong = np.array([b"a red circle", b"two circles"])
    assert output_errors({"captions": wrong}, {"captions": want})["captions"] == float("inf")


@pytest.mark.slow
def test_saved_model_with_string_output_verifies_in_a_fresh_process(tmp_path):
    class Captioner(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="ids")])
        def serve(self, ids):
            words = tf.constant(["zero", "one", "two"])
            return {"captions": tf.strings.join(["it is", tf.gather(words, ids)], separator=" "), "ids": ids * 2}

    module = Captioner()
    path = str(tmp_path / "model")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    ids = np.array([2, 0], np.int32)
    expected = {"captions": np.array([b"it is two", b"it is zero"], dtype=object), "ids": ids * 2}
    errors = verify_saved_model(path, {"ids": ids}, expected)
    assert errors == {"captions": 0.0, "ids": 0.0}
    with pytest.raises(VerificationError, match="captions"):
        verify_saved_model(path, {"ids": ids}, {**expected, "captions": np.array([b"it is one", b"it is zero"])})
