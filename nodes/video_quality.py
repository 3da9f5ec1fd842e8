"""VBench-style quality numbers for a video, weight-free: flow, interpolation, SSIM and frame statistics.

Every output is a number a sweep can optimise. All are in [0, 1] with higher better, except
`dynamic_degree` (how much the video moves, >= 0). What each measures and how it relates to
VBench (Huang et al., 2024), whose published numbers use learned models:

- `dynamic_degree`: the mean, over consecutive frame pairs, of the top 5% optical-flow magnitudes
  (Farneback), in pixels per frame at a 256-pixel short side. VBench computes the same statistic
  with RAFT and calls a video dynamic above 6 at that scale; this is a proxy of the statistic
  (a different flow estimator), and a still video scores exactly 0.
- `motion_smoothness`: every odd frame is predicted from its two neighbours by flow-based
  mid-point interpolation and compared with the real one: 1 - mean absolute error / 255, VBench's
  formula with OpenCV flow in place of the AMT interpolation network (a proxy).
- `subject_consistency`, `background_consistency`: VBench's consistency formula (similarity to the
  first and the previous frame) with SSIM on the central box and on the frame's border instead
  of DINO and CLIP features (proxies; the learned versions are the `video_subject_consistency`
  and `video_text_alignment` agents).
- `temporal_flicker`: 1 - mean absolute error / 255 between each frame and its predecessor
  warped onto it by optical flow, so motion is not counted as flicker. On a still camera this is
  VBench's temporal-flickering score (comparable); with camera motion it is a proxy.
- `imaging_quality`: a no-reference proxy for MUSIQ: detail (mean gradient after a light blur)
  times a noise penalty (Immerkaer's noise estimate); not comparable with VBench's numbers.
"""
from __future__ import annotations

import itertools
from typing import Any

from mora.engine.cache.media import number_blob, read_artifact_frames
from mora.engine.graph.agent import Agent, Port, RunContext
from mora.engine.ports import PortType
from mora.nodes.video_signals import centre_mask, consistency, flow, luma, ssim_map, warp, work_size

OUTPUTS = {
    "dynamic_degree": "motion: top-5% optical-flow magnitude, pixels per frame at a 256-px short side (0: still)",
    "motion_smoothness": "1 - error of flow interpolation of each odd frame from its neighbours (1: smooth)",
    "subject_consistency": "VBench consistency with SSIM over the central box (1: unchanging subject)",
    "background_consistency": "VBench consistency with SSIM over the frame's border (1: unchanging background)",
    "temporal_flicker": "1 - error between each frame and its flow-warped predecessor (1: no flicker)",
    "imaging_quality": "detail times noise penalty, a weight-free proxy for MUSIQ (higher: sharper, cleaner)",
}


def dynamic_degree(grey: Any, forward: list[Any]) -> float:
    import numpy as np

    if len(grey) < 2:
        return 0.0
    scale = 256 / min(grey.shape[1:3])
    tops = []
    for f in forward:
        magnitude = np.linalg.norm(f, axis=-1).ravel()
        k = max(1, int(0.05 * magnitude.size))
        tops.append(float(np.partition(magnitude, -k)[-k:].mean()))
    return float(np.mean(tops)) * scale


def motion_smoothness(frames: Any, grey: Any) -> float:
    import numpy as np

    errors = []
    for t in range(1, len(frames) - 1, 2):
        f = flow(grey[t - 1], grey[t + 1])
        middle = (warp(frames[t - 1], -0.5 * f) + warp(frames[t + 1], 0.5 * f)) / 2
        errors.append(float(np.abs(middle - frames[t].astype(np.float32)).mean()))
    return 1.0 - float(np.mean(errors)) / 255 if errors else 1.0


def temporal_flicker(frames: Any, forward: list[Any]) -> float:
    import numpy as np

    errors = []
    for t in range(1, len(frames)):
        # frame t predicted from t - 1 along the forward flow, read at the target pixel (smooth-flow approximation)
        predicted = warp(frames[t - 1], -forward[t - 1])
        errors.append(float(np.abs(predicted - frames[t].astype(np.float32)).mean()))
    return 1.0 - float(np.mean(errors)) / 255 if errors else 1.0


def region_consistency(grey: Any, centre: Any) -> tuple[float, float]:
    """Subject (central box) and background (border) consistency, from one SSIM map per frame pair."""
    cache: dict[tuple[int, int], tuple[float, float]] = {}

    def sims(i: int, j: int) -> tuple[float, float]:
        if (i, j) not in cache:
            m = ssim_map(grey[i], grey[j])
            cache[(i, j)] = (float(m[centre].mean()), float(m[~centre].mean()))
        return cache[(i, j)]

    return consistency(len(grey), lambda i, j: sims(i, j)[0]), consistency(len(grey), lambda i, j: sims(i, j)[1])


def imaging_quality(grey: Any) -> float:
    import cv2
    import numpy as np

    scores = []
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    for g in grey.astype(np.float64):
        h, w = g.shape
        # Immerkaer (1996): noise sigma from the response to a Laplacian difference kernel
        noise = float(np.sqrt(np.pi / 2) * np.abs(cv2.filter2D(g, -1, kernel)[1:-1, 1:-1]).sum()
                      / (6 * max(1, (w - 2) * (h - 2))))
        smooth = cv2.GaussianBlur(g, (5, 5), 1.0)
        detail = float(np.hypot(cv2.Sobel(smooth, cv2.CV_64F, 1, 0), cv2.Sobel(smooth, cv2.CV_64F, 0, 1)).mean()) / 255
        scores.append(detail / (detail + 0.05) * float(np.exp(-noise / 10)))
    return float(np.mean(scores))


def measure(frames: Any) -> dict[str, float]:
    """Every output of the agent for uint8 T x H x W x 3 frames."""
    frames = work_size(frames)
    grey = luma(frames)
    forward = [flow(a, b) for a, b in itertools.pairwise(grey)]
    subject, background = region_consistency(grey, centre_mask(*grey.shape[1:3]))
    return {
        "dynamic_degree": dynamic_degree(grey, forward),
        "motion_smoothness": motion_smoothness(frames, grey),
        "subject_consistency": subject,
        "background_consistency": background,
        "temporal_flicker": temporal_flicker(frames, forward),
        "imaging_quality": imaging_quality(grey),
    }


def run(ctx: RunContext, inputs: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    # 1. check inputs
    frames = read_artifact_frames(inputs["video"]).array
    # 2. run
    values = measure(frames)
    # 3. return artifacts
    return {name: number_blob(value) for name, value in values.items()}


AGENT = Agent(
    type="video_quality",
    version=1,
    description="VBench-style numbers without model weights: dynamic degree, smoothness, consistency, flicker.",
    run=run,
    inputs=(Port("video", PortType.VIDEO, "the video to measure"),),
    outputs=tuple(Port(name, PortType.NUMBER, text) for name, text in OUTPUTS.items()),
    libraries=("numpy", "opencv-python-headless"),
)

