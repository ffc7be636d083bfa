"""kerasnets.ops: tensor functions shared by recipes (TensorFlow backend).

Detection, in the order a two-stage detector uses them:

* `anchors`: Faster R-CNN / FPN anchors and SSD default boxes (static NumPy arrays);
* `boxes`: xyxy/cxcywh/xywh formats, area, pairwise IoU, clipping, the box coder
  with weights (10, 10, 5, 5) and the log(1000/16) clamp;
* `matching`: IoU matcher (thresholds, low-quality matches), SSD matching;
* `sampling`: balanced positive/negative sampling (RPN 256 @ 50 %, RoIs 512 @ 25 %);
* `targets`: RPN / SSD / RoI training targets from padded ground truth;
* `proposals`: RPN proposals (top-k, decode, clip, NMS 0.7);
* `roi_align`, `roi_pool`, `multilevel_roi_align` (FPN level assignment), with shared argument
  handling in `roi_common` (`roi` re-exports them);
* `masks`: Mask R-CNN 28x28 mask targets and pasting masks into the image;
* `keypoints`: keypoint heatmap targets and decoding;
* `nms`: fixed-size (per-class) NMS for eager, `tf.function`, XLA and SavedModel; SSD post-processing.

Losses live in `kerasnets.losses.detection`, data in `kerasnets.data.{shapes,coco,detection}`,
COCO evaluation in `kerasnets.metrics.coco`.
"""
