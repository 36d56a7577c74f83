"""`evoforge env ...`: tools for environment authors."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evoforge env", description="Environment tools.")
    sub = p.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="list the available environments, or a run's environment library")
    lst.add_argument("--run", help="a self-play run directory (or a library folder): list its library")
    show = sub.add_parser("show", help="print a library environment's source and history")
    show.add_argument("name")
    show.add_argument("--run", required=True, help="a self-play run directory (or a library folder)")
    check = sub.add_parser("check", help="run the static admission gates (L1-L3) on an environment file")
    check.add_argument("path", help="an environment .py file")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--backend", default="auto", help="sandbox backend: auto (= bwrap), bwrap, docker, process")
    check.add_argument("--allow-unisolated", action="store_true",
                       help="with --backend process: run the file as a plain process, NOT isolated")
    check.add_argument("--seeds", type=int, default=8, help="instances per difficulty (default 8)")
    check.add_argument("--difficulties", default="1,2,3,5", help="comma-separated difficulties (default 1,2,3,5)")
    check.add_argument("--wall-s", type=float, default=5.0, help="wall-clock limit per sandboxed call")
    check.add_argument("--bound", type=float, default=0.05, help="L3: highest mean score for probe answers")
    return p


def _library(run: str):
    from envs.library import Library

    folder = Path(run)
    if (folder / "library").is_dir():
        folder = folder / "library"
    return Library.load(folder)


def _list_library(run: str) -> int:
    from envs.library import recent_pass_rate

    lib = _library(run)
    print(f"library {lib.folder} (version {lib.version}): {len(lib.all())} environments, "
          f"{len(lib.active())} active")
    print(f"{'name':30s} {'kind':9s} {'status':8s} {'admitted':>8s} {'difficulty':>10s} {'calib p':>7s} "
          f"{'recent p':>8s} {'uses':>5s}  lineage")
    for e in lib.all():
        p = recent_pass_rate(e, 5)
        calib = e.calibration.get("p")
        print(f"{e.name:30s} {e.kind:9s} {e.status:8s} {e.admitted_step:8d} "
              f"{str(e.calibration.get('difficulty', '-')):>10s} {'-' if calib is None else f'{calib:.2f}':>7s} "
              f"{'-' if p is None else f'{p:.2f}':>8s} {len(e.usage):5d}  {', '.join(e.lineage) or '-'}")
    return 0


def _show(name: str, run: str) -> int:
    lib = _library(run)
    if name not in lib:
        names = ", ".join(e.name for e in lib.all())
        print(f"evoforge env show: no environment {name!r} in {lib.folder}; it holds: {names}", file=sys.stderr)
        return 2
    e = lib.get(name)
    print(f"# {e.name} ({e.kind}, {e.status}; admitted at step {e.admitted_step}"
          f"{'' if e.retired_step is None else f', retired at step {e.retired_step}'})")
    print(f"# lineage: {', '.join(e.lineage) or '-'}")
    for g in e.gates:
        print(f"# gate {g['gate']}: {'PASS' if g['passed'] else 'FAIL'} {g['reason']}")
    if e.calibration:
        print(f"# calibration: {json.dumps(e.calibration, sort_keys=True)}")
    for u in e.usage:
        print(f"# used at step {u['step']}: pass rate {u['pass_rate']:.3f} over {u['count']} rollouts")
    print(e.source.rstrip())
    return 0


def _list() -> int:
    from envs.registry import builtin_environments, seed_environments

    for kind, table in (("builtin", builtin_environments()), ("seed", seed_environments("puzzles")),
                        ("starter", seed_environments("starters"))):
        for name, path in table.items():
            print(f"{name:34s} {kind:8s} {path}")
    return 0


def _check(args) -> int:
    from envs.gates import CheckConfig, check_environment, report_dict
    from envs.sandbox.limits import Limits
    from envs.errors import SandboxUnavailable
    from envs.sandbox.backends import make_pool

    path = Path(args.path)
    if not path.is_file():
        print(f"evoforge env check: no such file: {path}", file=sys.stderr)
        return 2
    try:
        source = path.read_text(encoding="utf-8")
        difficulties = [int(d) for d in args.difficulties.split(",")]
    except (UnicodeDecodeError, ValueError) as e:
        print(f"evoforge env check: {e}", file=sys.stderr)
        return 2
    cfg = CheckConfig(seeds_per_difficulty=args.seeds, difficulties=difficulties, bound=args.bound)
    try:
        pool = make_pool(args.backend, 2, Limits(wall_s=args.wall_s, cpu_s=max(1, int(args.wall_s))),
                         allow_unisolated=args.allow_unisolated)
    except SandboxUnavailable as e:
        print(f"evoforge env check: {str(e).replace('env.sandbox.allow_unisolated=true', '--allow-unisolated')}",
              file=sys.stderr)
        return 2
    with pool:
        results = check_environment(source, pool, cfg)
    report = report_dict(str(path), results)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for r in results:
            print(f"{'PASS' if r.passed else 'FAIL'}  {r.gate}  {r.reason}")
        skipped = [g for g in ("L1", "L2", "L3") if g not in {r.gate for r in results}]
        for g in skipped:
            print(f"SKIP  {g}  not run: an earlier gate failed")
        print("admitted" if report["admitted"] else "rejected")
    return 0 if report["admitted"] else 1


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse: usage errors exit 2, --help exits 0
        return int(e.code or 0)
    from envs.library import LibraryError

    try:
        if args.command == "list":
            return _list_library(args.run) if args.run else _list()
        if args.command == "show":
            return _show(args.name, args.run)
    except LibraryError as e:
        print(f"evoforge env {args.command}: {e}", file=sys.stderr)
        return 2
    return _check(args)
