"""``vireid``: run the service, fill its gallery from a folder, search it, check its health, or run the demo.

    vireid serve --model-dir models/ --data-dir gallery/ --host 0.0.0.0 --port 8000
    vireid gallery add crops/day/ --modality vis --label-from-dir --camera cam1
    vireid gallery migrate --from-data-dir gallery/ --to-index '{"kind": "milvus", "uri": "http://milvus:19530"}'
    vireid search crops/night/0042_0001.jpg --modality ir --top-k 5
    vireid search crops/night/0042_0001.jpg crops/night/0042_0002.jpg --modality ir --rerank
    vireid healthcheck --url http://127.0.0.1:8000/healthz
    vireid demo --workdir demo/

Heavy imports (uvicorn, the app, httpx) happen inside the commands, so ``vireid healthcheck`` starts fast; nothing
here imports torch: ``demo`` runs the training steps as ``python -m training...`` subprocesses.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.migrate import add_migrate
from common.modality import Modality

if TYPE_CHECKING:
    from cli.demo import DemoSetup

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"


def _modality(value: str) -> Modality:
    """argparse type: a modality as the API accepts it (``vis``/``ir`` and aliases such as ``visible``, ``nir``)."""
    try:
        return Modality.parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _client_options(parser: argparse.ArgumentParser, api_key: bool = False) -> None:
    """``--url`` (and ``--api-key``) shared by the commands that talk to a running service."""
    parser.add_argument(
        "--url",
        default=os.environ.get("VIREID_URL", DEFAULT_URL),
        help="service base URL (env VIREID_URL; default %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default %(default)s)")
    if api_key:
        parser.add_argument(
            "--api-key", default=os.environ.get("VIREID_API_KEY"), help="sent as X-API-Key (env VIREID_API_KEY)"
        )


def _add_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (uvicorn, app from service.app:create_app)")
    p.add_argument("--host", help="bind address (VIREID_HOST; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (VIREID_PORT; default 8000)")
    p.add_argument("--model-dir", type=Path, help="folder with encoder_vis.onnx and encoder_ir.onnx (VIREID_MODEL_DIR)")
    p.add_argument("--data-dir", type=Path, help="gallery folder, created if missing (VIREID_DATA_DIR)")
    p.add_argument("--api-key", help="require this X-API-Key on writes (VIREID_API_KEY)")
    p.add_argument("--cpu", action="store_true", help="ONNX Runtime on CPU only, even where CUDA is available")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)


def _add_gallery(sub: Any) -> None:
    gallery = sub.add_parser("gallery", help="manage the gallery of a running service")
    gsub = gallery.add_subparsers(dest="gallery_command", required=True, metavar="{add,migrate}")
    p = gsub.add_parser("add", help="upload the images under a folder (recursively) to POST /gallery")
    p.add_argument("path", type=Path, metavar="DIR", help="folder of crops (or one image file)")
    p.add_argument("--modality", type=_modality, required=True, help="vis or ir")
    label = p.add_mutually_exclusive_group()
    label.add_argument("--label-from-dir", action="store_true", help="person label = the image's parent folder name")
    label.add_argument("--label", help="person label for every image")
    p.add_argument("--camera", help="camera name for every image")
    p.add_argument("--batch", type=int, default=16, help="images per request (default %(default)s)")
    _client_options(p, api_key=True)
    p.set_defaults(func=cmd_gallery_add)
    add_migrate(gsub)


def _add_search(sub: Any) -> None:
    p = sub.add_parser(
        "search", help="search the gallery with one image, or several crops of one person fused (POST /search)"
    )
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="query image(s) of one person")
    p.add_argument("--modality", type=_modality, required=True, help="modality of the query image: vis or ir")
    p.add_argument("--top-k", type=int, default=5, help="matches to show (default %(default)s)")
    p.add_argument("--target", help="modality to search: vis, ir or any (default: the other one)")
    p.add_argument("--json", action="store_true", help="print the service's JSON answer")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking of the matches")
    _client_options(p, api_key=True)  # a service with VIREID_AUTH_READS=true needs a key (the read key will do)
    p.set_defaults(func=cmd_search)


def _add_healthcheck(sub: Any) -> None:
    p = sub.add_parser("healthcheck", help="exit 0 when GET URL answers 200 (container health checks)")
    p.add_argument("--url", default=f"{DEFAULT_URL}/healthz", help="default %(default)s")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_healthcheck)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="synthetic data -> tiny training -> ONNX -> service with a filled gallery (needs the train extra)"
    )
    p.add_argument("--workdir", type=Path, default=Path("demo"), help="where every step writes (default %(default)s)")
    p.add_argument("--config", type=Path, help="training config (default: configs/tiny.yaml of this checkout)")
    p.add_argument("--host", default="127.0.0.1", help="address the demo service binds (default %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="port of the demo service (default %(default)s)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="training-config override, repeatable (e.g. --set schedule.epochs=3)",
    )
    p.add_argument("--queries", type=int, default=10, help="infrared queries checked at the end (default %(default)s)")
    p.add_argument(
        "--exit-after-setup",
        "--no-serve",
        action="store_true",
        dest="exit_after_setup",
        help="stop the service and exit once everything is set up and checked",
    )
    p.set_defaults(func=cmd_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``vireid`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="vireid", description="Visible-infrared person re-identification service.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_serve, _add_gallery, _add_search, _add_healthcheck, _add_demo):
        add(sub)
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    """Build Settings from VIREID_* and the flags, then run uvicorn on the app factory."""
    import uvicorn

    from common.providers import CPU_PROVIDER
    from service.app import create_app
    from service.settings import Settings

    overrides: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "model_dir": args.model_dir,
        "data_dir": args.data_dir,
        "api_key": args.api_key,
        "providers": (CPU_PROVIDER,) if args.cpu else None,
    }
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    logger.info("serving models from %s, gallery in %s", settings.model_dir, settings.data_dir)
    uvicorn.run(
        lambda: create_app(settings), factory=True, host=settings.host, port=settings.port, log_level=args.log_level
    )
    return 0


def cmd_gallery_add(args: argparse.Namespace) -> int:
    """Upload a folder of crops with a progress bar; exit 1 if the service refused any file."""
    from tqdm import tqdm

    from cli.client import find_images, folder_items, make_client, upload

    if args.batch < 1:
        raise SystemExit("--batch must be at least 1")
    paths = find_images(args.path)
    if not paths:
        raise SystemExit(f"no images (.jpg, .png, ...) under {args.path}")
    items = folder_items(args.path, paths, label_from_dir=args.label_from_dir, label=args.label, camera=args.camera)
    with (
        make_client(args.url, args.api_key, args.timeout) as client,
        tqdm(total=len(items), unit="img", desc=f"gallery {args.modality.value}") as bar,
    ):
        report = upload(client, items, args.modality, batch_size=args.batch, progress=bar.update)
    print(f"added {len(report.ids)} {args.modality.value} images to {args.url}")  # noqa: T201
    for path, reason in report.failed:
        print(f"refused {path}: {reason}", file=sys.stderr)  # noqa: T201
    return 1 if report.failed else 0


def format_matches(result: dict[str, Any]) -> str:
    """A ranked, aligned table of a /search answer."""
    target = result.get("target_modality") or "any"
    lines = [f"query {result['query_modality']} -> {target} (model {result['model_version']})"]
    if result.get("query_images", 1) > 1 or result.get("reranked"):
        how = " (k-reciprocal re-ranked; score is the similarity)" if result.get("reranked") else ""
        lines[0] += f": {result.get('query_images', 1)} query images fused{how}"
    calibrated = any(m.get("p_same") is not None for m in result["matches"])
    lines.append(
        f"{'rank':>4}  {'score':>7}  "
        + (f"{'p_same':>6}  {'same':<4}  " if calibrated else "")
        + f"{'id':>8}  {'label':<12} {'camera':<10} source"
    )
    for rank, match in enumerate(result["matches"], start=1):
        meta = match["metadata"]
        lines.append(
            f"{rank:>4}  {match['score']:>7.4f}  "
            + (_same_person_cells(match) if calibrated else "")
            + f"{match['id']:>8}  {meta.get('label') or '-':<12} "
            f"{meta.get('camera') or '-':<10} {meta.get('source') or '-'}"
        )
    if not result["matches"]:
        lines.append("   (no matches: is the gallery empty for that modality?)")
    return "\n".join(lines)


def _same_person_cells(match: dict[str, Any]) -> str:
    """The ``p_same`` and ``same`` cells of a match row (``-`` where the service left them null)."""
    p_same, same = match.get("p_same"), match.get("same_person")
    verdict = "-" if same is None else ("yes" if same else "no")
    return (f"{p_same:>6.3f}" if p_same is not None else f"{'-':>6}") + f"  {verdict:<4}  "


def cmd_search(args: argparse.Namespace) -> int:
    """Search with one image (or the fused crops of one person) and print the ranked matches."""
    import json

    from cli.client import make_client, search_images

    with make_client(args.url, args.api_key, args.timeout) as client:
        result = search_images(
            client, args.images, args.modality, top_k=args.top_k, target=args.target, rerank=args.rerank
        )
    print(json.dumps(result, indent=2) if args.json else format_matches(result))  # noqa: T201
    return 0


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """0 when the URL answers 200, 1 otherwise (stdlib only: ``service.healthcheck``)."""
    from service.healthcheck import check

    return check(args.url, timeout=args.timeout)


def format_demo(setup: DemoSetup) -> str:
    """What the demo set up, the self-check of a few infrared queries, and commands to paste."""
    lines = [
        "",
        f"vireid demo is serving at {setup.url}  (model: {setup.model_dir}, service log: {setup.log_file})",
        f"gallery: {setup.counts.get('vis', 0)} visible, {setup.counts.get('ir', 0)} infrared crops"
        + (f"; reused steps: {', '.join(setup.skipped)}" if setup.skipped else ""),
        f"self-check: {setup.rank1_hits}/{len(setup.queries)} infrared queries rank the right identity first",
    ]
    for q in setup.queries:
        score = f"{q.top_score:.3f}" if q.top_score is not None else "-"
        lines.append(f"  {'ok  ' if q.hit else 'miss'} id {q.pid} -> top {q.top_label or '-'} ({score})  {q.image}")
    example = f": search with an infrared crop such as {setup.queries[0].image}" if setup.queries else ""
    lines += ["", f"web page: {setup.url}/  (search, browse and add in the browser{example})"]
    lines += ["", "Try it:"] + [f"  {cmd}" for cmd in setup.curl_examples()]
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the one-command demo (cli/demo.py), print how to use it, serve until Ctrl-C."""
    from cli.demo import DemoError, DemoOptions, prepare_demo

    options = DemoOptions(
        workdir=args.workdir,
        config=args.config,
        host=args.host,
        port=args.port,
        queries=args.queries,
        serve=not args.exit_after_setup,
        overrides=tuple(args.overrides),
    )
    try:
        setup = prepare_demo(options)
    except DemoError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    try:
        print(format_demo(setup), flush=True)  # noqa: T201
        if options.serve:
            print("\nServing until Ctrl-C.", flush=True)  # noqa: T201
            setup.process.wait()
            return 0 if setup.process.returncode in (0, -2, -15) else 1
    except KeyboardInterrupt:
        print("\nstopping the service", file=sys.stderr)  # noqa: T201
    finally:
        setup.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vireid`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "healthcheck":
        return cmd_healthcheck(args)  # stdlib only: runs every few seconds in containers
    logging.getLogger("httpx").setLevel(logging.WARNING)
    import httpx

    from cli.client import ServiceError

    try:
        return int(args.func(args))
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except httpx.TransportError as exc:
        print(f"error: cannot reach the service at {getattr(args, 'url', '?')}: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
