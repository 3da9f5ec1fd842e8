"""Port and parameter types of the graph language.

Ports carry artifacts between nodes (text, image, latent, video, number and lists of them);
parameters are scalars known before the run (they take part in cache keys and batching).
"""
from __future__ import annotations

import enum


class PortType(str, enum.Enum):
    """The type of a node input or output; `list[...]` types take several artifacts."""

    TEXT = "text"
    NUMBER = "number"
    IMAGE = "image"
    LATENT = "latent"
    VIDEO = "video"
    TEXT_LIST = "list[text]"
    NUMBER_LIST = "list[number]"
    IMAGE_LIST = "list[image]"
    LATENT_LIST = "list[latent]"
    VIDEO_LIST = "list[video]"

    @property
    def is_list(self) -> bool:
        return self.value.startswith("list[")

    @property
    def item(self) -> PortType:
        """The element type of a list type (the type itself otherwise)."""
        return PortType(self.value[5:-1]) if self.is_list else self

    def accepts(self, other: PortType) -> bool:
        """Whether an output of type `other` may feed an input of this type."""
        return self == other


FILE_KINDS = frozenset({PortType.IMAGE, PortType.VIDEO, PortType.LATENT})
"""Port types whose graph inputs are given as file paths and ingested into the store."""
