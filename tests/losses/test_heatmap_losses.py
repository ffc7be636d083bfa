"""HRNet's JointsMSELoss against a hand-computed value."""

import numpy as np
import pytest

from kerasnets.losses.heatmaps import joints_mse_loss


def test_joints_mse_loss_hand_case():
    pred = np.zeros((1, 2, 2, 2), np.float32)
    gt = np.zeros_like(pred)
    pred[0, 0, 0, 0] = 2.0  # joint 0: squared error 4 in one of 4 pixels
    pred[0, 1, 1, 1] = 3.0  # joint 1: weighted 0
    w = np.array([[1.0, 0.0]], np.float32)
    # 1/K sum_k 0.5 * mean_px = 1/2 * (0.5 * 4/4 + 0) = 0.25
    assert float(joints_mse_loss(pred, gt, w)) == pytest.approx(0.25)
    w = np.array([[1.0, 1.0]], np.float32)
    assert float(joints_mse_loss(pred, gt, w)) == pytest.approx(0.5 * (0.5 * 1 + 0.5 * 9 / 4))
