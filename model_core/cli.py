"""Command line: `python -m model_core generate | chat | inspect | convert | prepare-bundled`.

Exit status 0 on success, 2 on a usage or checkpoint error (printed as one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from model_core.errors import ModelCoreError


def _sampling(args: argparse.Namespace):  # noqa: ANN202 - SamplingParams, imported lazily
    from model_core.sampling import SamplingParams

    if args.greedy:
        return SamplingParams(max_tokens=args.max_new_tokens, greedy=True)
    extra = {k: v for k, v in (("temperature", args.temperature), ("top_p", args.top_p)) if v is not None}
    return SamplingParams(max_tokens=args.max_new_tokens, seed=args.seed, **extra)


def _prompt(engine, args: argparse.Namespace) -> list:  # noqa: ANN001
    if args.prompt_ids is not None:
        try:
            return [int(t) for t in args.prompt_ids.split(",") if t.strip()]
        except ValueError as exc:
            raise ValueError(f"--prompt-ids must be comma-separated integers ({exc})") from exc
    if args.messages is not None:
        try:
            messages = json.loads(Path(args.messages).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"--messages {args.messages}: cannot read a JSON list of messages ({exc})") from exc
        return messages
    # R1 speaks through the checkpoint's chat template; Zero takes raw text (ARCHITECTURE.md).
    if engine.profile.name == "r1" and engine.tokenizer.chat_template and not args.raw:
        return [{"role": "user", "content": args.prompt}]
    return engine.tokenizer.encode(args.prompt)


def _load(args: argparse.Namespace):  # noqa: ANN202
    from model_core.engine import Engine

    return Engine.load(args.model, profile=args.profile, dtype=args.dtype, device=args.device,
                       progress=not args.no_progress, quantize=args.quantize)


def cmd_generate(args: argparse.Namespace) -> int:
    engine = _load(args)
    params = _sampling(args)
    prompt = _prompt(engine, args)
    ids: list[int] = []
    parts: dict[str, list[str]] = {"answer": [], "reasoning": []}
    last = None
    for ev in engine.stream(prompt, params):
        ids.extend(ev.token_ids)
        if ev.kind == "finish":
            last = ev
            break
        parts[ev.kind].append(ev.text)
        if not args.json:
            stream = sys.stderr if ev.kind == "reasoning" else sys.stdout
            stream.write(ev.text)
            stream.flush()
    assert last is not None
    if args.json:
        print(json.dumps({"token_ids": ids, "text": "".join(parts["answer"]), "reasoning": "".join(parts["reasoning"]),
                          "finish_reason": last.finish_reason, "usage": last.usage, "timings": last.timings},
                         ensure_ascii=False))
    else:
        print()
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    engine = _load(args)
    params = _sampling(args)
    history: list[dict[str, str]] = []
    print(f"chatting with {engine.info['name']} ({engine.profile.name}); empty line or Ctrl-D quits", file=sys.stderr)
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            break
        if not line:
            break
        history.append({"role": "user", "content": line})
        answer = []
        for ev in engine.stream(history, params):
            if ev.kind == "finish":
                break
            if ev.kind == "answer":
                answer.append(ev.text)
            (sys.stderr if ev.kind == "reasoning" else sys.stdout).write(ev.text)
            sys.stdout.flush()
        print()
        history.append({"role": "assistant", "content": "".join(answer)})  # never the reasoning
    return 0


def inspect_checkpoint(path: Path) -> dict[str, Any]:
    """Architecture, sizes, dtypes, context and template of a checkpoint, without loading weights."""
    from model_core.config import config_from_hf

    if path.is_file():
        from gguf import GGUFReader

        from model_core.gguf_loader import build_tokenizer, config_from_gguf, read_metadata

        reader = GGUFReader(str(path))
        meta = read_metadata(reader)
        config = config_from_gguf(meta, {t.name for t in reader.tensors}, str(path))
        dtypes = dict(Counter(t.tensor_type.name for t in reader.tensors))
        template = build_tokenizer(meta, str(path)).chat_template
        fmt = "gguf"
    else:
        from safetensors import safe_open

        from model_core.checkpoint import _read_json, safetensors_files
        from model_core.tokenizer import Tokenizer

        config = config_from_hf(_read_json(path / "config.json"), str(path / "config.json"))
        counts: Counter[str] = Counter()
        for f in safetensors_files(path):
            with safe_open(str(f), framework="pt") as h:
                for name in h.keys():  # noqa: SIM118
                    counts[str(h.get_slice(name).get_dtype())] += 1
        dtypes = dict(counts)
        template = Tokenizer.from_dir(path).chat_template
        fmt = "hf"
    from model_core.chat import ChatFormat

    return {"path": str(path), "format": fmt, "architecture": config.architecture, "name": config.name,
            "parameters": config.num_parameters, "layers": config.num_layers, "hidden_size": config.hidden_size,
            "heads": config.num_heads, "kv_heads": config.num_kv_heads, "head_dim": config.head_dim,
            "vocab_size": config.vocab_size, "context_length": config.max_position_embeddings,
            "rope_theta": config.rope_theta, "rope_scaling": config.rope_scaling,
            "tied_embeddings": config.tie_word_embeddings, "tensor_dtypes": dtypes,
            "chat_template": bool(template), "is_r1": bool(template) and ChatFormat.detect_r1(template)}


def cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect_checkpoint(Path(args.path))
    if args.json:
        print(json.dumps(info))
    else:
        width = max(map(len, info))
        for key, value in info.items():
            print(f"{key:<{width}}  {value}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from model_core.convert import convert_gguf

    out = convert_gguf(args.src, args.dst, progress=not args.no_progress)
    print(f"wrote {out}")
    return 0


def cmd_prepare_bundled(args: argparse.Namespace) -> int:
    from model_core.convert import prepare_bundled

    dest, converted = prepare_bundled(args.dest, progress=not args.no_progress)
    print(f"{'converted the bundled SmolLM2 into' if converted else 'bundled SmolLM2 already present at'} {dest}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model_core", description="Verity's model engine")
    sub = parser.add_subparsers(dest="command", required=True)

    def engine_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", required=True, help="checkpoint directory or .gguf file")
        p.add_argument("--profile", choices=("r1", "zero"), default="r1")
        p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
        p.add_argument("--device", default="cpu")
        p.add_argument("--quantize", choices=("int8",), default=None, help="int8 weight-only (r1 profile)")
        p.add_argument("--max-new-tokens", type=int, default=256)
        p.add_argument("--greedy", action="store_true")
        p.add_argument("--temperature", type=float)
        p.add_argument("--top-p", type=float)
        p.add_argument("--seed", type=int)
        p.add_argument("--no-progress", action="store_true", help="no loading progress bar")

    gen = sub.add_parser("generate", help="complete one prompt")
    engine_args(gen)
    src = gen.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt text (a user message for R1 checkpoints with a chat template)")
    src.add_argument("--prompt-ids", help="comma-separated token ids")
    src.add_argument("--messages", help="JSON file with a list of {role, content} messages")
    gen.add_argument("--raw", action="store_true", help="send --prompt as raw text even in the r1 profile")
    gen.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    gen.set_defaults(func=cmd_generate)

    chat = sub.add_parser("chat", help="interactive streamed chat")
    engine_args(chat)
    chat.set_defaults(func=cmd_chat)

    ins = sub.add_parser("inspect", help="describe a checkpoint")
    ins.add_argument("path")
    ins.add_argument("--json", action="store_true")
    ins.set_defaults(func=cmd_inspect)

    conv = sub.add_parser("convert", help="GGUF file -> Hugging Face safetensors directory")
    conv.add_argument("src")
    conv.add_argument("dst")
    conv.add_argument("--no-progress", action="store_true")
    conv.set_defaults(func=cmd_convert)

    prep = sub.add_parser("prepare-bundled", help="convert the bundled SmolLM2 GGUF once")
    prep.add_argument("--dest", default="var/models/smollm2-135m-instruct")
    prep.add_argument("--no-progress", action="store_true")
    prep.set_defaults(func=cmd_prepare_bundled)

    from model_core.train.__main__ import register  # `train --recipe ...` and `eval` (issue 9)

    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ModelCoreError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
