"""Container health probe: ``python -m service.healthcheck [URL]`` exits 0 when ``GET URL`` answers 200.

Standard library only, so a probe every few seconds costs a bare interpreter start. The serving image's
HEALTHCHECK runs it; ``vireid healthcheck`` (package ``cli``) runs the same check.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

DEFAULT_URL = "http://127.0.0.1:8000/healthz"


def probe(url: str, timeout: float = 5.0) -> int | None:
    """HTTP status of ``GET url``; None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def check(url: str, timeout: float = 5.0) -> int:
    """Exit status of a health check: 0 when ``url`` answers 200, else 1 with the reason on stderr."""
    status = probe(url, timeout=timeout)
    if status != 200:
        sys.stderr.write(f"unhealthy: GET {url} -> {status or 'no answer'}\n")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m service.healthcheck``."""
    parser = argparse.ArgumentParser(prog="python -m service.healthcheck", description=__doc__.split("\n")[0])
    parser.add_argument("url", nargs="?", default=DEFAULT_URL, help="default %(default)s")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: check the URL given on the command line."""
    args = build_parser().parse_args(argv)
    return check(args.url, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
