"""The base class of every typed configuration model (network, training, gallery index)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Immutable config model; unknown keys are an error, not a silent default."""

    model_config = ConfigDict(frozen=True, extra="forbid")
