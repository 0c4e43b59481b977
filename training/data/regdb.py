"""RegDB: one of ten fixed train/test identity splits, read from the ``idx/`` lists of the AGW release."""

from __future__ import annotations

import logging
from pathlib import Path

from common.modality import Modality
from training.data.base import EvalSplit, Sample, VIReIDDataset
from training.data.layout import listed_samples, relabel, require_dirs

logger = logging.getLogger(__name__)

TRIALS = range(1, 11)
CAMIDS: dict[Modality, int] = {Modality.VISIBLE: 1, Modality.INFRARED: 2}  # one camera per modality
_FILE_MODALITY: dict[Modality, str] = {Modality.VISIBLE: "visible", Modality.INFRARED: "thermal"}


class RegDB(VIReIDDataset):
    """RegDB (Nguyen et al., "Person Recognition System Based on a Combination of Body Images from Visible Light
    and Thermal Cameras", Sensors 2017), with the ten random identity splits of the AGW release.

    URL: http://dm.dongguk.edu/link.html (by request); split lists from github.com/mangye16/Cross-Modal-Re-ID-baseline.
    Statistics: 412 ids, 10 visible + 10 thermal images each (8,240); per trial 206 training and 206 test ids
        (2,060 test images per modality).
    Layout: <root>/idx/{train,test}_{visible,thermal}_{trial}.txt with lines ``<relative path> <label>`` (trials
        1..10), images under <root>/Visible/ and <root>/Thermal/ as the lists name them.
    Evaluation: visible->thermal and thermal->visible over the test ids of the trial (``eval_regdb``).
    ``camid`` is 1 for visible and 2 for thermal images.
    """

    name = "regdb"

    def __init__(self, root: str | Path, trial: int = 1) -> None:
        if trial not in TRIALS:
            raise ValueError(f"RegDB trial must be in 1..10, got {trial}")
        self.root = Path(root)
        self.trial = trial
        require_dirs(self.root, ["idx"], "RegDB")
        train = {m: self._read("train", m) for m in Modality}
        self._test = {m: self._read("test", m) for m in Modality}
        self.train_visible, self.train_infrared = relabel(train[Modality.VISIBLE], train[Modality.INFRARED], self.name)
        logger.info("RegDB trial %d: %d training ids", trial, self.num_train_pids)

    def _read(self, subset: str, modality: Modality) -> tuple[Sample, ...]:
        index_file = self.root / "idx" / f"{subset}_{_FILE_MODALITY[modality]}_{self.trial}.txt"
        return listed_samples(self.root, index_file, modality, lambda _: CAMIDS[modality])

    def test_samples(self, modality: Modality) -> tuple[Sample, ...]:
        """Test images of one modality in list order, with their original labels."""
        return self._test[modality]

    def eval_splits(self) -> list[EvalSplit]:
        """``regdb/vis2ir/trial{t}`` (visible queries, thermal gallery) and ``regdb/ir2vis/trial{t}``."""
        vis, ir = self.test_samples(Modality.VISIBLE), self.test_samples(Modality.INFRARED)
        return [
            EvalSplit("regdb", "vis2ir", self.trial, vis, ir),
            EvalSplit("regdb", "ir2vis", self.trial, ir, vis),
        ]
