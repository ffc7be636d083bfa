"""Tasks: what a family of recipes shares (data, evaluation, export), as Model Garden's tasks.

A recipe (`recipes/<name>.py`) subclasses one of these when its paper belongs to
a family, and then carries only its paper's part:

* `detection` -- `DetectionRecipe` / `DetectionConfig`: detection data
  (`kerasnets.data.detection_inputs`), COCO evaluation in original pixels, the
  letterbox serving endpoints (`kerasnets.export.detection_serving`);
* `proposal_detection` -- `ProposalDetectionRecipe`: detection on external
  region proposals (R-CNN, Fast R-CNN);
* `image_classification` -- in-memory image classification data, accuracy and
  the classifier serving endpoint (ResNet, edge-popup, supermask);
* `subnet_classification` -- `SubnetRecipeBase`: a masked random-weight net
  trained next to its dense twin (edge-popup, supermask);
* `adversarial` -- `AttackRecipeBase`: classifiers trained to be attacked
  (L-BFGS, bit-flip, GAT).

The engine and the Recipe contract stay in `kerasnets.training`.
"""
