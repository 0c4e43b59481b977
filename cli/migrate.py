"""``vireid gallery migrate``: copy an embedded gallery into Milvus with a progress bar, then check the copy."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tqdm import tqdm


def add_migrate(gsub: Any) -> None:
    """Register ``vireid gallery migrate`` under ``vireid gallery``."""
    p = gsub.add_parser(
        "migrate",
        help="copy an embedded gallery (stop its service first) into Milvus, keeping ids; safe to re-run",
    )
    p.add_argument("--from-data-dir", type=Path, required=True, help="the FAISS + SQLite gallery folder")
    p.add_argument(
        "--to-index",
        required=True,
        help='the target as VIREID_INDEX takes it, e.g. \'{"kind": "milvus", "uri": "http://127.0.0.1:19530"}\'',
    )
    p.add_argument("--batch", type=int, default=1000, help="items per write (default %(default)s)")
    p.add_argument("--samples", type=int, default=20, help="searches compared after the copy (default %(default)s)")
    p.set_defaults(func=cmd_gallery_migrate)


def cmd_gallery_migrate(args: argparse.Namespace) -> int:
    """Copy, check, print the report; 0 when the check passed, 2 when it failed."""
    from index.errors import GalleryError
    from index.migrate import check_copy, copy_batches, open_pair
    from index.milvus.config import MilvusConfig

    config = MilvusConfig.model_validate(json.loads(args.to_index))
    try:
        source, target = open_pair(args.from_data_dir, config)
    except GalleryError as exc:
        print(f"error: {exc}")  # noqa: T201
        return 2
    try:
        total = sum(source.counts().values())
        with tqdm(total=total, unit="item", desc=f"to {target.collection}") as bar:
            for n in copy_batches(source, target, args.batch):
                bar.update(n)
        report = check_copy(source, target, args.samples)
    except GalleryError as exc:
        print(f"error: {exc}")  # noqa: T201
        return 2
    finally:
        source.close()
        target.close()
    counts = {m.value: n for m, n in report.target_counts.items()}
    print(  # noqa: T201
        f"copied {total} items to {config.uri} collection {target.collection}: counts {counts} match the source; "
        f"{report.self_found}/{report.samples} sampled items found themselves, top-10 overlap {report.overlap:.3f}"
    )
    return 0
