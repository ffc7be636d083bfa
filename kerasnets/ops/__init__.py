"""kerasnets.ops: tensor functions shared by recipes (detection boxes, anchors, matching, NMS, RoI ops)."""
