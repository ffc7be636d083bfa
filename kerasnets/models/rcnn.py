"""Networks of R-CNN (Girshick et al. 2014) and Fast R-CNN (Girshick 2015), small enough for a CPU.

Both papers use ImageNet-pretrained CNNs (CaffeNet/AlexNet, VGG_CNN_M_1024,
VGG16). VGG16 as Fast R-CNN uses it::

    conv1: 2 x conv3x3-64,  maxpool 2x2       conv4: 3 x conv3x3-512, maxpool 2x2
    conv2: 2 x conv3x3-128, maxpool 2x2       conv5: 3 x conv3x3-512  (stride 16)
    conv3: 3 x conv3x3-256, maxpool 2x2       pool5 -> RoI max pooling 7x7 (spatial scale 1/16)
    fc6: 4096, ReLU, dropout 0.5; fc7: 4096, ReLU, dropout 0.5
    cls_score: K + 1 (softmax), bbox_pred: 4 (K + 1) (class-specific deltas)

and R-CNN runs the same trunk (with its own pool5) on each 227x227 warped
window, takes fc7 features for the SVMs and pool5 for box regression.

Here the trunk is the same pattern at CPU size (`vgg_features`): blocks of
3x3 convolutions with 2x2 max pooling between them (not after the last one),
so its stride is `2 ** (len(widths) - 1)`; 8 with the default 4 blocks, to keep
a 16x16 conv map on 128-pixel images. There is no ImageNet pretraining (no
download), so the convolutions get batch normalization to train from scratch
(a documented deviation; VGG16 has none). Weight decay is a coupled L2
kernel regularizer, as Caffe's `weight_decay`. Initialisation as in the
papers' heads: classifier `N(0, 0.01)`, box regressor `N(0, 0.001)`, biases 0.
"""

from __future__ import annotations

import keras

from kerasnets.layers import RoIPool


def _l2(weight_decay):
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


def vgg_features(x, widths=(32, 64, 128, 128), convs_per_block=(2, 2, 2, 2), batch_norm: bool = True,
                 weight_decay: float = 5e-4, seed: int = 0, name: str = "conv"):
    """VGG-style trunk: per block `convs` x (conv3x3 [+ BN] + ReLU), 2x2 max pool between blocks.

    Returns the last block's map (stride `2 ** (len(widths) - 1)`).
    """
    if len(widths) != len(convs_per_block) or not widths:
        raise ValueError(f"widths {widths} and convs_per_block {convs_per_block} must be non-empty, same length")
    reg = _l2(weight_decay)
    for b, (width, convs) in enumerate(zip(widths, convs_per_block)):
        if b > 0:
            x = keras.layers.MaxPooling2D(2, name=f"{name}{b}_pool")(x)
        for i in range(convs):
            x = keras.layers.Conv2D(
                width, 3, padding="same", use_bias=not batch_norm, kernel_regularizer=reg,
                kernel_initializer=keras.initializers.HeNormal(seed=seed + 10 * b + i), name=f"{name}{b + 1}_{i + 1}",
            )(x)
            if batch_norm:
                x = keras.layers.BatchNormalization(name=f"{name}{b + 1}_{i + 1}_bn")(x)
            x = keras.layers.ReLU(name=f"{name}{b + 1}_{i + 1}_relu")(x)
    return x


def _fc_layers(x, fc_dim, dropout, weight_decay, seed, prefix=""):
    reg = _l2(weight_decay)
    for i in (6, 7):
        x = keras.layers.Dense(fc_dim, activation="relu", kernel_regularizer=reg,
                               kernel_initializer=keras.initializers.GlorotUniform(seed=seed + i), name=f"{prefix}fc{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, seed=seed + i, name=f"{prefix}drop{i}")(x)
    return x


def _heads(x, num_classes, weight_decay, seed):
    reg = _l2(weight_decay)
    logits = keras.layers.Dense(
        num_classes + 1, kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01, seed=seed + 100),
        kernel_regularizer=reg, name="cls_score",
    )(x)
    deltas = keras.layers.Dense(
        4 * (num_classes + 1), kernel_initializer=keras.initializers.RandomNormal(0.0, 0.001, seed=seed + 101),
        kernel_regularizer=reg, name="bbox_pred",
    )(x)
    return logits, deltas


def build_fast_rcnn_network(
    image_size: int,
    num_classes: int,
    widths=(32, 64, 128, 128),
    convs_per_block=(2, 2, 2, 2),
    pool_size: int = 7,
    fc_dim: int = 256,
    dropout: float = 0.5,
    batch_norm: bool = True,
    weight_decay: float = 5e-4,
    seed: int = 0,
) -> keras.Model:
    """Fast R-CNN: conv trunk on the whole image, RoI max pooling, fc6/fc7, sibling heads.

    Inputs: `images [B, S, S, 3]` float, `rois [B, R, 4]` xyxy image pixels.
    Outputs: `{"class_logits": [B, R, K + 1], "box_deltas": [B, R, K + 1, 4]}`
    (deltas with weights 10, 10, 5, 5, slot 0 = background, unused).
    """
    images = keras.Input((image_size, image_size, 3), name="images")
    rois = keras.Input((None, 4), name="rois")
    features = vgg_features(images, widths, convs_per_block, batch_norm, weight_decay, seed)
    stride = 2 ** (len(widths) - 1)
    pooled = RoIPool(pool_size, 1.0 / stride, name="roi_pool")(features, rois)  # [B, R, P, P, C]
    flat = keras.layers.Reshape((-1, pool_size * pool_size * widths[-1]), name="roi_flatten")(pooled)
    x = _fc_layers(flat, fc_dim, dropout, weight_decay, seed)
    logits, deltas = _heads(x, num_classes, weight_decay, seed)
    deltas = keras.layers.Reshape((-1, num_classes + 1, 4), name="bbox_pred_reshape")(deltas)
    return keras.Model([images, rois], {"class_logits": logits, "box_deltas": deltas}, name="fast_rcnn")


def build_rcnn_network(
    warp_size: int,
    num_classes: int,
    widths=(32, 64, 128),
    convs_per_block=(1, 1, 1),
    fc_dim: int = 256,
    dropout: float = 0.5,
    batch_norm: bool = True,
    weight_decay: float = 5e-4,
    seed: int = 0,
) -> keras.Model:
    """R-CNN's window CNN: warped `[N, W, W, 3]` crops -> `{"pool5", "fc7", "class_logits"}`.

    `pool5` (flattened last conv block after a final 2x2 max pool) feeds the
    box regressor, `fc7` the linear SVMs, `class_logits` (K + 1) the
    fine-tuning softmax, as in the paper.
    """
    windows = keras.Input((warp_size, warp_size, 3), name="windows")
    x = vgg_features(windows, widths, convs_per_block, batch_norm, weight_decay, seed)
    pool5 = keras.layers.Flatten(name="pool5")(keras.layers.MaxPooling2D(2, name="pool5_pool")(x))
    fc7 = _fc_layers(pool5, fc_dim, dropout, weight_decay, seed)
    reg = _l2(weight_decay)
    logits = keras.layers.Dense(
        num_classes + 1, kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01, seed=seed + 100),
        kernel_regularizer=reg, name="cls_score",
    )(fc7)
    return keras.Model(windows, {"pool5": pool5, "fc7": fc7, "class_logits": logits}, name="rcnn_cnn")


def dilate_for_context(boxes, warp_size: int, context_padding: int):
    """Grow xyxy boxes about their centre so that, warped to `warp_size`, `context_padding` pixels surround the box.

    R-CNN (Sec. 2.1, appendix A): "we dilate the tight bounding box so that at
    the warped size there are exactly p pixels of warped image context around
    the original box (we use p = 16)" at 227 x 227: each side grows by the
    factor `warp_size / (warp_size - 2 p)`.
    """
    import tensorflow as tf

    if not 0 <= 2 * context_padding < warp_size:
        raise ValueError(f"context_padding {context_padding} must be >= 0 and < warp_size / 2 = {warp_size / 2}")
    boxes = tf.cast(boxes, tf.float32)
    factor = warp_size / (warp_size - 2.0 * context_padding)
    centre = (boxes[..., :2] + boxes[..., 2:]) * 0.5
    half = (boxes[..., 2:] - boxes[..., :2]) * 0.5 * factor
    return tf.concat([centre - half, centre + half], axis=-1)


def warp_regions(images, boxes, warp_size: int, context_padding: int = 0, fill_value: float = 0.0):
    """R-CNN's region warping: dilate each box for context, then warp it anisotropically to `warp_size^2`.

    Args:
        images: `[B, H, W, C]` float (already mean-subtracted: the paper fills
            pixels outside the image with the mean, i.e. `fill_value = 0`).
        boxes: `[B, N, 4]` xyxy pixels.

    Returns:
        `[B * N, warp_size, warp_size, C]` bilinear crops, image-major order.
        Sample `i` of a box spanning `[x1, x2)` sits at pixel-centre coordinate
        `x1 + (i + 0.5) (x2 - x1) / warp_size` (no half-pixel shift).
    """
    import tensorflow as tf

    boxes = dilate_for_context(boxes, warp_size, context_padding)
    shape = tf.shape(images)
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    x1, y1, x2, y2 = tf.unstack(tf.reshape(boxes, [-1, 4]), axis=-1)
    # crop_and_resize samples box coordinate v at pixel index v * (size - 1), endpoints included.
    sx, sy = (x2 - x1) / warp_size, (y2 - y1) / warp_size
    nx1 = (x1 + 0.5 * sx - 0.5) / tf.maximum(width - 1.0, 1.0)
    nx2 = (x2 - 0.5 * sx - 0.5) / tf.maximum(width - 1.0, 1.0)
    ny1 = (y1 + 0.5 * sy - 0.5) / tf.maximum(height - 1.0, 1.0)
    ny2 = (y2 - 0.5 * sy - 0.5) / tf.maximum(height - 1.0, 1.0)
    per_image = tf.shape(boxes)[1]
    indices = tf.repeat(tf.range(shape[0]), per_image)
    return tf.image.crop_and_resize(
        tf.cast(images, tf.float32), tf.stack([ny1, nx1, ny2, nx2], axis=-1), indices, [warp_size, warp_size],
        extrapolation_value=fill_value,
    )
