"""External region proposals for R-CNN and Fast R-CNN: selective search, cached per data set.

R-CNN (Girshick et al. 2014, Sec. 2.1) and Fast R-CNN (Girshick 2015, Sec. 4)
take ~2000 class-independent proposals per image from selective search
(Uijlings et al. 2013) in its "fast" mode. Here they come from OpenCV's
implementation, `cv2.ximgproc.segmentation.createSelectiveSearchSegmentation`
with `switchToSelectiveSearchFast()` (package `opencv-contrib-python-headless`;
the plain `opencv-python` wheels lack `ximgproc`). On the 128x128 shapes images
fast mode returns ~60 boxes in ~0.14 s per image and every ground-truth box has
a proposal with IoU >= 0.7 (measured on 30 images); on a 500x375 photo it
returns ~500 boxes in ~1 s (`../shared/papers/detection.md` Sec. 5).

Determinism: the set of boxes OpenCV returns is a pure function of the image,
but their order is not: it ranks them by `rand() * hierarchy level` (the
paper's pseudo-random ranking), using the C library's `rand()`. `selective_search`
seeds that generator (`srand(seed)` through `ctypes`) and runs OpenCV single-
threaded, so the list, and therefore which boxes survive `max_proposals`, is
identical across runs and processes. Where the C library cannot be reached the
boxes are sorted lexicographically instead (deterministic, but no longer in
the pseudo-random rank order).

Boxes are float32 `[P, 4]` **xyxy pixel coordinates** of the image they were
computed on (`x2 = x + w`, the convention of `kerasnets.ops.boxes`).
`ProposalCache` computes them once per example list and keeps them in an `.npz`
file keyed by a fingerprint of the images and the parameters, so a second run
(or `kerasnets evaluate`/`export`) reads them back instead of recomputing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import os
from collections.abc import Sequence

import numpy as np

MODES = ("fast", "quality", "single")
#: R-CNN / Fast R-CNN use ~2000 selective-search boxes per image.
PAPER_MAX_PROPOSALS = 2000


def _import_cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "selective search needs OpenCV with the contrib modules: pip install opencv-contrib-python-headless"
        ) from e
    if not hasattr(cv2, "ximgproc"):
        raise ImportError(
            f"cv2 {cv2.__version__} has no ximgproc module (plain opencv-python is installed?); "
            "uninstall opencv-python / opencv-python-headless and pip install opencv-contrib-python-headless"
        )
    return cv2


def _libc():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else ctypes.CDLL(None)
    except OSError:  # pragma: no cover - Windows without a findable C library
        return None


@contextlib.contextmanager
def _single_threaded(cv2):
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def selective_search(
    image,
    mode: str = "fast",
    max_proposals: int | None = PAPER_MAX_PROPOSALS,
    min_size: float = 2.0,
    seed: int = 1,
) -> np.ndarray:
    """Selective-search proposals of one RGB uint8 image as `[P, 4]` float32 xyxy pixel boxes.

    Args:
        image: `[H, W, 3]` uint8 RGB.
        mode: `"fast"` (R-CNN's setting: HSV and Lab colour spaces, k = 50, 100;
            OpenCV's `switchToSelectiveSearchFast`), `"quality"` (more strategies,
            ~2x the boxes, ~3x slower) or `"single"` (one strategy, for speed).
        max_proposals: keep the first `max_proposals` boxes in selective
            search's ranking (2000 in the papers); `None` keeps all.
        min_size: drop boxes narrower or shorter than this many pixels.
        seed: seed of the pseudo-random ranking (see the module docstring).

    Returns:
        `[P, 4]` float32, duplicates removed, in ranking order.
    """
    if mode not in MODES:
        raise ValueError(f"selective search mode must be one of {MODES}, got '{mode}'")
    if max_proposals is not None and max_proposals < 1:
        raise ValueError(f"max_proposals must be >= 1 or None, got {max_proposals}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"selective search needs an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
    cv2 = _import_cv2()
    libc = _libc()
    with _single_threaded(cv2):
        search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
        search.setBaseImage(np.ascontiguousarray(image[..., ::-1]))  # OpenCV expects BGR
        if mode == "fast":
            search.switchToSelectiveSearchFast()
        elif mode == "quality":
            search.switchToSelectiveSearchQuality()
        else:
            search.switchToSingleStrategy()
        if libc is not None:
            libc.srand(int(seed))
        rects = search.process()
    rects = np.asarray(rects, np.float32).reshape(-1, 4)
    boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)
    if libc is None:  # pragma: no cover
        boxes = boxes[np.lexsort(boxes.T[::-1])]
    keep = (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
    boxes = boxes[keep]
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)]
    if max_proposals is not None:
        boxes = boxes[:max_proposals]
    return boxes.astype(np.float32)


def jittered_gt_proposals(gt_boxes, image_size, num_proposals: int, seed: int = 0, scale: float = 0.3):
    """Synthetic proposals around ground truth (a test/debug option, not a paper method).

    Each proposal is a ground-truth box with centre and size perturbed by up to
    `scale` of its size, plus random boxes anywhere in the image (half of them),
    clipped to `image_size = (H, W)`. Lets the Fast R-CNN / R-CNN heads be
    exercised without OpenCV; results with it say nothing about real proposals.
    """
    rng = np.random.default_rng(seed)
    height, width = image_size
    gt = np.asarray(gt_boxes, np.float32).reshape(-1, 4)
    out = []
    num_random = num_proposals // 2 if len(gt) else num_proposals
    for _ in range(num_proposals - num_random):
        x1, y1, x2, y2 = gt[rng.integers(len(gt))]
        w, h = x2 - x1, y2 - y1
        cx, cy = (x1 + x2) / 2 + rng.uniform(-scale, scale) * w, (y1 + y2) / 2 + rng.uniform(-scale, scale) * h
        w, h = w * np.exp(rng.uniform(-scale, scale)), h * np.exp(rng.uniform(-scale, scale))
        out.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    for _ in range(num_random):
        x = np.sort(rng.uniform(0, width, 2))
        y = np.sort(rng.uniform(0, height, 2))
        out.append([x[0], y[0], max(x[1], x[0] + 2), max(y[1], y[0] + 2)])
    boxes = np.asarray(out, np.float32).reshape(-1, 4)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    return boxes


def pad_proposals(proposals: Sequence[np.ndarray], max_proposals: int):
    """Stack per-image proposal lists into `boxes [N, P, 4]` (zero padding) and `num_proposals [N]`.

    Lists longer than `max_proposals` are truncated (they are in ranking order).
    """
    if max_proposals < 1:
        raise ValueError(f"max_proposals must be >= 1, got {max_proposals}")
    boxes = np.zeros((len(proposals), max_proposals, 4), np.float32)
    counts = np.zeros((len(proposals),), np.int32)
    for i, p in enumerate(proposals):
        p = np.asarray(p, np.float32).reshape(-1, 4)[:max_proposals]
        boxes[i, :len(p)] = p
        counts[i] = len(p)
    return boxes, counts


def _fingerprint(examples, params: dict) -> str:
    digest = hashlib.sha256(repr(sorted(params.items())).encode())
    for ex in examples:
        image = np.ascontiguousarray(ex["image"])
        digest.update(str(image.shape).encode())
        digest.update(image.tobytes())
    return digest.hexdigest()


class ProposalCache:
    """Selective-search proposals for a list of examples, computed once and cached in an `.npz` file.

    The file holds `boxes` (all proposals concatenated), `offsets` (`[N + 1]`)
    and `fingerprint` (SHA-256 of the images and parameters); a file whose
    fingerprint does not match is recomputed and overwritten, so a cache never
    serves proposals of other images.

    Args:
        path: `.npz` file (its folder is created); or an existing folder /
            a path ending in `/`, where the file is named after the
            fingerprint (`selective_search_<hash>.npz`, so several data sets
            share one folder); or `None` for no file.
        mode, max_proposals, min_size, seed: `selective_search` parameters.
    """

    def __init__(self, path=None, mode: str = "fast", max_proposals: int | None = PAPER_MAX_PROPOSALS,
                 min_size: float = 2.0, seed: int = 1):
        if mode not in MODES:
            raise ValueError(f"selective search mode must be one of {MODES}, got '{mode}'")
        self.path = None if path is None else os.fspath(path)
        self.params = {"mode": mode, "max_proposals": max_proposals, "min_size": float(min_size), "seed": int(seed)}

    def file_for(self, examples: Sequence[dict]) -> str | None:
        """The `.npz` path used for `examples` (None without a cache path)."""
        if self.path is None:
            return None
        if self.path.endswith(("/", os.sep)) or os.path.isdir(self.path):
            name = f"selective_search_{_fingerprint(examples, self.params)[:24]}.npz"
            return os.path.join(self.path, name)
        return self.path

    def load(self, examples: Sequence[dict]) -> list[np.ndarray] | None:
        """The cached proposals of `examples`, or None if the file is missing or for other images."""
        path = self.file_for(examples)
        if path is None or not os.path.exists(path):
            return None
        with np.load(path) as data:
            if str(data["fingerprint"]) != _fingerprint(examples, self.params):
                return None
            boxes, offsets = data["boxes"], data["offsets"]
        return [boxes[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]

    def __call__(self, examples: Sequence[dict]) -> list[np.ndarray]:
        """Per-example `[P_i, 4]` proposals (from the file when it matches, else computed and saved)."""
        cached = self.load(examples)
        if cached is not None:
            return cached
        proposals = [selective_search(ex["image"], **self.params) for ex in examples]
        path = self.file_for(examples)
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            offsets = np.concatenate([[0], np.cumsum([len(p) for p in proposals])]).astype(np.int64)
            boxes = np.concatenate(proposals, axis=0) if proposals else np.zeros((0, 4), np.float32)
            tmp = f"{path}.{os.getpid()}.tmp.npz"
            np.savez(tmp, boxes=boxes, offsets=offsets, fingerprint=np.array(_fingerprint(examples, self.params)))
            os.replace(tmp, path)
        return proposals
