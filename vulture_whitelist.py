"""Names ``vulture`` reports as unused (60 % confidence) that are used from outside our code: reviewed, one reason each.

``scripts/test.sh`` runs ``vulture`` with the paths and threshold of ``[tool.vulture]`` in ``pyproject.toml``; a name
belongs here only when a framework, a file format or the public API uses it. Anything else it reports is dead code:
delete it.
"""

from types import SimpleNamespace

_ = SimpleNamespace()

# torch: nn.Module.__call__ runs forward; print(module) calls extra_repr; conv layers read .stride.
_.forward
_.extra_repr
_.stride

# pydantic: model_config configures a model; model_validator methods run on validation.
_.model_config
_._check_nprobe  # index/config.py: IndexConfig
_._sorted_milestones  # training/config.py: ScheduleConfig
_._check_queue  # service/settings.py: Settings
_._check_providers  # service/settings.py: Settings

# Fields serialised to JSON (response bodies, manifest.json, synth.json) and read by clients and tests.
_.created_at  # index/manifest.py
_.target_modality  # service/schemas.py: SearchResponse
_.reranked  # service/schemas.py: SearchResponse
_.rerank_distance  # service/schemas.py: MatchOut
_.num_visible  # training/synth.py: SynthSummary
_.num_infrared

# Attributes of C++ objects read by the library: faiss search parameters, ONNX Runtime session options, ONNX protobuf.
_.rangestat_arg
_.sel
_.intra_op_num_threads
_.producer_name
_.producer_version

# FastAPI route handlers: registered by their decorators, called by the router.
_.add_items
_.list_items
_.get_item
_.delete_item
_.healthz
_.readyz
_.search_by_embedding
_.get_thumbnail

# Public API: the SYSU-MM01 query/gallery lists in the public AGW protocol code's own form and names, which the
# parity tests compare list for list (tests/training/test_sysu.py).
_.process_query_sysu
_.process_gallery_sysu

_._ordered_ranges  # training/config.py: AugmentConfig (pydantic validator)
# Response fields of /readyz's same-person status (service.schemas.SamePersonStatus): set by keyword, read by clients.
_.positive_pairs
_.negative_pairs
# Public API: export a checkpoint from Python (tests/conftest.py); onnxruntime calls a calibration reader's get_next.
_.export_checkpoint
_.get_next
