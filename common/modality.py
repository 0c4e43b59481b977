"""The two imaging modalities of VI-ReID."""

from __future__ import annotations

from enum import StrEnum


class Modality(StrEnum):
    """Imaging modality; the values are the short wire names used in URLs, configs and metadata."""

    VISIBLE = "vis"
    INFRARED = "ir"

    @classmethod
    def parse(cls, value: str | Modality) -> Modality:
        """Parse a modality from its wire value or a common alias (``visible``, ``infrared``, ``thermal``, ``nir``)."""
        if isinstance(value, Modality):
            return value
        key = value.strip().lower()
        if key in _ALIASES:
            return _ALIASES[key]
        raise ValueError(f"unknown modality {value!r}; expected one of: {', '.join(sorted(_ALIASES))}")

    @property
    def other(self) -> Modality:
        """The opposite modality (the default search target)."""
        return Modality.INFRARED if self is Modality.VISIBLE else Modality.VISIBLE


_ALIASES: dict[str, Modality] = {
    "vis": Modality.VISIBLE,
    "visible": Modality.VISIBLE,
    "rgb": Modality.VISIBLE,
    "ir": Modality.INFRARED,
    "infrared": Modality.INFRARED,
    "thermal": Modality.INFRARED,
    "nir": Modality.INFRARED,
}

MODALITY_NAMES: tuple[str, ...] = tuple(_ALIASES)  # every name ``Modality.parse`` accepts (any case, padded)
