"""kerasnets.layers."""

from kerasnets.layers.edge_popup_conv2d import EdgePopupConv2D  # noqa: E402
from kerasnets.layers.edge_popup_dense import EdgePopupDense  # noqa: E402
from kerasnets.layers.minibatch_discrimination import MinibatchDiscrimination  # noqa: E402
from kerasnets.layers.supermask_conv2d import SupermaskConv2D  # noqa: E402
from kerasnets.layers.supermask_dense import SupermaskDense  # noqa: E402
from kerasnets.layers.batch_renormalization import BatchRenormalization  # noqa: E402
from kerasnets.layers.bn_folding import fold_batch_norm  # noqa: E402
from kerasnets.layers.ghost_batch_normalization import GhostBatchNormalization  # noqa: E402
from kerasnets.layers.virtual_batch_normalization import VirtualBatchNormalization  # noqa: E402
from kerasnets.layers.zero_pad_shortcut import ZeroPadShortcut  # noqa: E402
from kerasnets.layers.roi_align import RoIAlign  # noqa: E402
from kerasnets.layers.roi_pool import RoIPool  # noqa: E402
from kerasnets.layers.multilevel_roi_align import MultiLevelRoIAlign  # noqa: E402
from kerasnets.layers.bounded_perturbation import BoundedPerturbation  # noqa: E402
from kerasnets.layers.hierarchical_softmax import HierarchicalSoftmax  # noqa: E402
from kerasnets.layers.soft_attention import SoftAttention  # noqa: E402
from kerasnets.layers.temporal_conv_block import TemporalConvBlock  # noqa: E402
from kerasnets.layers.reflection_padding1d import ReflectionPadding1D  # noqa: E402
from kerasnets.layers.mrf_spatial_model import MRFSpatialModel  # noqa: E402
