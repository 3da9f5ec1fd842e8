"""Mora's agents, one per module; each module defines `AGENT` and imports without torch."""

BUILTIN_AGENTS: tuple[str, ...] = (
    "mora.nodes.text_template",
    "mora.nodes.style_cue",
    "mora.nodes.frame_pick",
    "mora.nodes.video_concat",
    "mora.nodes.image_resize",
    "mora.nodes.video_quality",
    "mora.nodes.video_connection",
    "mora.nodes.video_text_alignment",
    "mora.nodes.video_subject_consistency",
    "mora.nodes.prompt_select",
    "mora.nodes.text_to_image",
    "mora.nodes.image_edit",
    "mora.nodes.image_to_image",
    "mora.nodes.image_to_video",
    "mora.nodes.decode_video",
    "mora.nodes.connect_videos",
)
