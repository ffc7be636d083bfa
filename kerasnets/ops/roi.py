"""Region-of-interest ops under their former module name.

Each op has its own module: `kerasnets.ops.roi_align`, `kerasnets.ops.roi_pool` and
`kerasnets.ops.multilevel_roi_align` (FPN level assignment); shared argument handling is
`kerasnets.ops.roi_common`. This module re-exports their public names so that
``from kerasnets.ops.roi import roi_align`` keeps working.
"""

from kerasnets.ops.multilevel_roi_align import fpn_levels, multilevel_roi_align, select_levels
from kerasnets.ops.roi_align import IMPLEMENTATIONS, roi_align
from kerasnets.ops.roi_common import check_spatial_scale, normalize_output_size
from kerasnets.ops.roi_pool import JIT_COMPILE_MODES, check_jit_compile, roi_pool, round_half_away_from_zero

__all__ = [
    "IMPLEMENTATIONS",
    "JIT_COMPILE_MODES",
    "check_jit_compile",
    "check_spatial_scale",
    "fpn_levels",
    "multilevel_roi_align",
    "normalize_output_size",
    "roi_align",
    "roi_pool",
    "round_half_away_from_zero",
    "select_levels",
]
