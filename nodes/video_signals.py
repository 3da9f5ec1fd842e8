"""Weight-free measurements of video frames (NumPy and OpenCV), shared by the video_quality agents.

Frames are uint8 T x H x W x 3 arrays. Optical flow is OpenCV's Farneback method, computed at a
working size whose short side is at most `WORK_SIDE` pixels and reported in pixels at a
256-pixel short side, so one threshold serves every resolution (VBench's dynamic-degree
threshold is stated at that scale). SSIM is Wang et al.'s (Gaussian window, sigma 1.5) on the
luma channel. `consistency` is VBench's formula for subject and background consistency: for
each frame after the first, the mean of its similarity to the first frame and to the previous one.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

WORK_SIDE = 256
REFERENCE_SIDE = 256


def work_size(frames: np.ndarray) -> np.ndarray:
    """Frames resized (area filter) so the short side is at most WORK_SIDE; uint8 kept."""
    import cv2
    import numpy as np

    h, w = frames.shape[1:3]
    scale = WORK_SIDE / min(h, w)
    if scale >= 1:
        return frames
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames])


def luma(frames: np.ndarray) -> np.ndarray:
    """uint8 grey frames (BT.601 luma)."""
    import cv2
    import numpy as np

    return np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])


def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense optical flow from grey frame a to grey frame b (H x W x 2, pixels); zero for identical frames."""
    import cv2
    import numpy as np

    if np.array_equal(a, b):
        return np.zeros((*a.shape, 2), np.float32)
    return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def warp(image: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """`image` sampled at x + displacement(x) (bilinear, edges replicated), as float32."""
    import cv2
    import numpy as np

    h, w = displacement.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image.astype(np.float32), gx + displacement[..., 0], gy + displacement[..., 1],
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The SSIM map of two grey uint8 images (values in [-1, 1])."""
    import cv2
    import numpy as np

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    x, y = a.astype(np.float32), b.astype(np.float32)

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (7, 7), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def consistency(count: int, similarity: Callable[[int, int], float]) -> float:
    """VBench's consistency: mean over frames t >= 1 of (sim(0, t) + sim(t - 1, t)) / 2; 1.0 for one frame."""
    if count < 2:
        return 1.0
    return sum((similarity(0, t) + similarity(t - 1, t)) / 2 for t in range(1, count)) / (count - 1)


def centre_mask(h: int, w: int) -> np.ndarray:
    """True on the central box holding half the frame's area (where a subject usually is)."""
    import numpy as np

    mask = np.zeros((h, w), bool)
    dh, dw = round(h * (1 - 0.5**0.5) / 2), round(w * (1 - 0.5**0.5) / 2)
    mask[dh:h - dh, dw:w - dw] = True
    return mask


def sample_indices(count: int, most: int) -> list[int]:
    """`most` evenly spaced frame indices, first and last included (all of them when most is 0 or more than count)."""
    import numpy as np

    if most <= 0 or most >= count:
        return list(range(count))
    return [int(i) for i in np.unique(np.linspace(0, count - 1, most).round().astype(int))]


def cosine_consistency(features: np.ndarray) -> float:
    """VBench's consistency over L2-normalised feature rows, cosine similarity clamped at 0 as VBench does."""
    import numpy as np

    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return consistency(len(unit), lambda i, j: max(0.0, float(unit[i] @ unit[j])))
