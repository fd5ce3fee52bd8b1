"""The ``cascadia-ensemble`` command: a thin shell over the Python API."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from rich.console import Console

from cascadia import __version__

#: Exit status for bad input (as argparse uses for usage errors).
EXIT_USAGE = 2

console = Console(stderr=True)


def _fail(message: str) -> int:
    print(f"cascadia-ensemble: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _synth(args: argparse.Namespace) -> int:
    import fsspec

    from cascadia.synthetic.presets import PRESETS
    from cascadia.synthetic.world import MANIFEST, WorldExistsError, build_world

    if args.preset not in PRESETS:
        return _fail(f"unknown preset {args.preset!r}; expected one of: {', '.join(PRESETS)}")
    started = time.perf_counter()
    try:
        with console.status("building the twin world") as status:

            def step(text: str) -> None:
                status.update(f"[bold]{args.preset}[/] world: {text}")
                console.log(text)

            manifest = build_world(
                args.out, args.preset, args.seed, overwrite=args.overwrite, step=step
            )
    except (WorldExistsError, NotADirectoryError, PermissionError, OSError) as exc:
        if isinstance(exc, WorldExistsError | NotADirectoryError | PermissionError):
            return _fail(f"cannot write the world to {args.out}: {exc}")
        _discard(args.out, fsspec)
        return _fail(f"writing the world to {args.out} failed: {exc}")
    except BaseException:
        _discard(args.out, fsspec)
        raise
    elapsed = time.perf_counter() - started
    out = args.out.rstrip("/")
    print(f"twin world ({args.preset}, seed {args.seed}) written to {out} in {elapsed:.1f} s")
    print(f"  manifest      {out}/{MANIFEST}")
    for name in manifest["collections"]:
        print(f"  collection    {out}/{name}")
    for name in manifest["catalogs"]:
        print(f"  run catalog   {out}/{name}")
    print(f"  observations  {out}/{manifest['observations']} (and .csv)")
    print(f"  truth         {out}/{manifest['truth']}")
    print(f"  figure        {out}/figures/winters.png")
    return 0


def _discard(out: str, fsspec_module: object) -> None:
    """Remove a half-written world so nothing incomplete is left behind."""
    try:
        fs, path = fsspec_module.core.url_to_fs(out)  # type: ignore[attr-defined]
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except Exception as exc:  # cleanup must never hide the original error
        print(f"cascadia-ensemble: warning: could not remove {out}: {exc}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cascadia-ensemble",
        description="Dense shelf water cascading in the Gulf of Lion from atmospheric "
        "predictors: twin world, predictors, deep ensemble, runs.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser(
        "synth",
        help="build the synthetic Gulf of Lion twin world",
        description="Build the twin world (reanalysis and projection stores, mooring, "
        "truth, intake-esm collections and run catalogs) under a folder or fsspec URL.",
    )
    synth.add_argument("--out", required=True, help="output folder or fsspec URL")
    synth.add_argument("--preset", default="demo", help="tiny | demo | full (default: demo)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument(
        "--overwrite", action="store_true", help="replace the contents of a non-empty output folder"
    )
    synth.set_defaults(handler=_synth)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
