"""Mora's agents, one per module; each module defines `AGENT` and imports without torch."""

BUILTIN_AGENTS: tuple[str, ...] = (
    "nodes.text_template",
    "nodes.style_cue",
    "nodes.frame_pick",
    "nodes.video_concat",
    "nodes.image_resize",
    "nodes.video_metrics",
    "nodes.prompt",
    "nodes.text_to_image",
    "nodes.image_edit",
    "nodes.image_to_image",
    "nodes.image_to_video",
    "nodes.decode_video",
    "nodes.connect_videos",
)
