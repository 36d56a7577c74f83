"""The `evoforge` command: a thin dispatcher over subcommands."""
from __future__ import annotations

import signal
import sys

HELP = """usage: evoforge <command> [args]

EvoForge: distributed RL post-training for language models that build the environments that train them.

commands:
  train [overrides]   run a training job (Hydra app over conf/; `evoforge train --help` lists every key)
                      same as `python -m cluster.train [overrides]`, the form for `ray job submit`
  eval [overrides]    held-out accuracy of a model or checkpoint on environments (`evoforge eval --help`)
  env list            list the available environments (--run DIR: a self-play run's environment library)
  env show NAME --run DIR   an environment of a run's library: source, gate reports, calibration, usage
  env check PATH      run the admission gates L1-L3 on an environment file in the sandbox (--json)
  report RUN          write RUN/report.html: one self-contained page of a finished run (--out PATH)
{family_commands}
examples:
  evoforge train                         GRPO on the tiny model, embedded local Ray cluster
  evoforge train model=smollm2 steps=50  SmolLM2-135M-Instruct
  evoforge train -m seed=0,1             a Hydra multirun sweep
  evoforge eval checkpoint=runs/X env=reasoning_gym env.name=leg_counting eval.instances=32
  evoforge report runs/X                 runs/X/report.html: plots, held-out table, funnel, library
"""


def usage() -> str:
    """HELP with the commands the episode families add (cluster/episodes/registry.py)."""
    import textwrap

    from cluster.episodes.registry import command_help

    lines = []
    for name, what in command_help():
        text = textwrap.wrap(what, 86)
        lines += [f"  {name:<18}  {text[0]}", *(f"  {'':<18}  {more}" for more in text[1:])]
    return HELP.replace("{family_commands}", "".join(line + "\n" for line in lines))


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `evoforge env list | head` ends quietly
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        sys.argv = ["evoforge-train", *rest]
        from cluster.train import main as train_main

        train_main()
        return 0
    if command == "eval":
        from cluster.evaluate import main as eval_main

        return eval_main(rest)
    if command == "env":
        from cluster.env_cli import main as env_main

        return env_main(rest)
    if command == "report":
        from cluster.reports.html import main as report_main

        return report_main(rest)
    from cluster.episodes.registry import commands

    family_commands = commands()
    if command in family_commands:
        return family_commands[command](rest)
    print(f"evoforge: unknown command {command!r}; try `evoforge --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
