"""Is a match the same person? P(same person) and a verdict at ``VIREID_SAME_PERSON_FAR``, from the model card.

The calibration (``common.calibration``) was fitted at export on cross-modal pairs, so only a match of the other
modality than the query gets ``p_same`` and ``same_person``; a same-modality match (a search of ``target=any``)
and every match of a model exported without ``--score-calibration`` keep both null.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from common.calibration import ScoreCalibration
from common.modality import Modality
from common.model_card import ModelCard
from service.encoder import EncoderMismatchError
from service.schemas import SamePersonStatus, SearchResponse


@dataclass(frozen=True)
class SamePerson:
    """The loaded calibration with the score threshold of the configured false-accept rate."""

    calibration: ScoreCalibration
    far: float
    threshold: float

    @classmethod
    def from_cards(cls, cards: Mapping[Modality, ModelCard], far: float) -> SamePerson | None:
        """The calibration both encoders' cards carry (None when they carry none).

        Raises:
            EncoderMismatchError: the two cards carry different calibrations.
        """
        vis, ir = cards[Modality.VISIBLE].calibration, cards[Modality.INFRARED].calibration
        if vis != ir:
            raise EncoderMismatchError(
                "the visible and infrared encoders carry different score calibrations; export both from the same "
                "checkpoint with one `python -m training.export --score-calibration` run"
            )
        if vis is None:
            return None
        return cls(calibration=vis, far=far, threshold=vis.threshold(far))

    def judge(self, response: SearchResponse) -> SearchResponse:
        """``response`` with ``p_same`` and ``same_person`` set on each match of the other modality than the query."""
        cross = [i for i, m in enumerate(response.matches) if m.metadata.modality is not response.query_modality]
        if not cross:
            return response
        matches = list(response.matches)
        probabilities = self.calibration.p_same(np.array([matches[i].score for i in cross]))
        for i, p in zip(cross, probabilities.tolist(), strict=True):
            update = {"p_same": p, "same_person": matches[i].score >= self.threshold}
            matches[i] = matches[i].model_copy(update=update)
        return response.model_copy(update={"matches": matches})


def judged(response: SearchResponse, same_person: SamePerson | None) -> SearchResponse:
    """``response`` with same-person verdicts when the model is calibrated; unchanged otherwise."""
    return same_person.judge(response) if same_person is not None else response


def status(same_person: SamePerson | None, far: float) -> SamePersonStatus:
    """What /readyz says about the same-person calibration."""
    if same_person is None:
        return SamePersonStatus(calibrated=False, far=far)
    cal = same_person.calibration
    return SamePersonStatus(
        calibrated=True,
        far=far,
        threshold=same_person.threshold,
        identities=cal.identities,
        positive_pairs=cal.positives,
        negative_pairs=cal.negatives,
    )
