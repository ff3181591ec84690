"""Reading a Label Studio labelling config: which tags FastSAM reads prompts from and writes masks to.

A config FastSAM can serve has an ``<Image name=... value="$key"/>`` and a ``<BrushLabels toName=...>`` pointing at
it (the masks go there); ``<KeyPointLabels>`` and ``<RectangleLabels>`` on the same image give the clicks and boxes
of interactive labelling. The ``<Label value=...>`` names of the BrushLabels tag are the labels FastSAM answers with.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .errors import LabelStudioError

__all__ = ["ControlTag", "LabelConfig", "parse_label_config"]

_EXAMPLE = '<BrushLabels name="mask" toName="image"><Label value="Object"/></BrushLabels>'


@dataclass(frozen=True)
class ControlTag:
    """A control tag: ``kind`` is its lower-case tag name (``brushlabels``, ``keypointlabels``, ...)."""

    name: str
    kind: str
    to_name: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class LabelConfig:
    """The parts of a labelling config FastSAM uses.

    Attributes:
        image: the ``name`` of the Image tag the brush masks belong to (the regions' ``to_name``).
        image_key: the task data key holding the image URL (``value="$image"`` -> ``"image"``).
        brush: the BrushLabels tag the masks are written to (the regions' ``from_name``).
        prompts: the KeyPointLabels / RectangleLabels (or KeyPoint / Rectangle) tags on the same image.
    """

    image: str
    image_key: str
    brush: ControlTag
    prompts: tuple[ControlTag, ...]

    def output_label(self, label: str | None, tag: str) -> str:
        """The BrushLabels label a prompt with ``label`` (from the tag named ``tag``) answers with.

        The same name (exactly, else ignoring case); with no label, or a BrushLabels tag of one label, that label.

        Raises:
            LabelStudioError: a label the BrushLabels tag does not have (and it has several).
        """
        labels = self.brush.labels
        if label is not None:
            if label in labels:
                return label
            folded = {name.lower(): name for name in labels}
            if label.lower() in folded:
                return folded[label.lower()]
        if len(labels) == 1 or (label is None and labels):
            return labels[0]
        raise LabelStudioError(
            f"label {label!r} of {tag} is not a label of BrushLabels '{self.brush.name}' (its labels: "
            f"{', '.join(labels) or 'none'}): give the prompt tag and the BrushLabels tag the same label names"
        )


def _labels(tag: ET.Element) -> tuple[str, ...]:
    return tuple(child.get("value", "") for child in tag if child.tag.lower() == "label" and child.get("value"))


@functools.lru_cache(maxsize=64)
def parse_label_config(xml: str) -> LabelConfig:
    """Parse a labelling config (the XML Label Studio sends as ``label_config`` or ``schema``).

    Raises:
        LabelStudioError: XML that does not parse, no Image tag, or no BrushLabels tag on an Image.
    """
    if not isinstance(xml, str) or not xml.strip():
        raise LabelStudioError("the request holds no labelling config (label_config / schema)")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise LabelStudioError(f"the labelling config is not valid XML ({err})") from None
    images = {tag.get("name"): tag for tag in root.iter() if tag.tag.lower() == "image" and tag.get("name")}
    if not images:
        raise LabelStudioError("the labelling config has no <Image> tag: FastSAM segments images")
    controls = [
        ControlTag(tag.get("name", ""), tag.tag.lower(), tag.get("toName", ""), _labels(tag))
        for tag in root.iter()
        if tag.tag.lower() in ("brushlabels", "keypointlabels", "rectanglelabels", "keypoint", "rectangle")
    ]
    brushes = [c for c in controls if c.kind == "brushlabels" and c.to_name in images]
    if not brushes:
        raise LabelStudioError(
            f"the labelling config has no <BrushLabels> tag on an <Image>: FastSAM answers with brush masks; add "
            f"one, e.g. {_EXAMPLE}"
        )
    brush = brushes[0]
    if not brush.labels:
        raise LabelStudioError(f"BrushLabels '{brush.name}' has no <Label value=...>: add the labels masks may take")
    value = images[brush.to_name].get("value", "")
    if not value.startswith("$") or len(value) < 2:
        raise LabelStudioError(f"<Image name=\"{brush.to_name}\"> needs value=\"$key\" naming the task field with the image URL")
    prompts = tuple(c for c in controls if c.kind != "brushlabels" and c.to_name == brush.to_name)
    return LabelConfig(image=brush.to_name, image_key=value[1:], brush=brush, prompts=prompts)
