"""GAT losses against hand computation."""

import numpy as np
import pytest

from kerasnets.losses.gat import gat_classifier_loss, gat_generator_loss


def test_classifier_loss_mixes_clean_and_adversarial_cross_entropy():
    clean = np.array([0.2, 1.0], "float32")
    adv = np.array([2.0, 0.5], "float32")
    # alpha=0.3: mean(0.3*[0.2,1.0] + 0.7*[2.0,0.5]) = mean([1.46, 0.65]) = 1.055
    assert float(gat_classifier_loss(clean, adv, 0.3)) == pytest.approx(1.055)
    assert float(gat_classifier_loss(clean, adv, 1.0)) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="alpha"):
        gat_classifier_loss(clean, adv, 1.5)


def test_generator_loss_is_cg_squared_norm_minus_adversarial_ce():
    pert = np.array([[[0.1, -0.2], [0.0, 0.2]], [[0.3, 0.0], [0.0, -0.4]]], "float32")  # ||.||^2 = 0.09, 0.25
    ce = np.array([1.0, 3.0], "float32")
    # c_g = 2: mean([2*0.09 - 1, 2*0.25 - 3]) = mean([-0.82, -2.5]) = -1.66
    assert float(gat_generator_loss(ce, pert, 2.0)) == pytest.approx(-1.66, rel=1e-5)
    with pytest.raises(ValueError, match="c_g"):
        gat_generator_loss(ce, pert, -1.0)
