"""Command line: `python -m orq_core models|chat|emulator|lab|compare|batch|notebook`.

Connection from the environment: ORQ_API_KEY and ORQ_BASE_URL; with no key, the local router.
Errors print one line to stderr and exit non-zero; the key never appears in output.
"""

from __future__ import annotations

import argparse
import json
import sys

from .catalog import DEFAULT_MODEL, catalog
from .connection import add_local_option
from .cost import cost_of
from .errors import OrqError, describe
from .types import Completion, Done, ReasoningDelta, TextDelta


def _models(args: argparse.Namespace) -> int:
    cat = catalog()
    if args.json:
        rows = [{
            "id": m.id, "label": m.label, "context_window": m.context_window, "max_output": m.max_output,
            "prices_usd_per_mtok": {k: float(getattr(m.prices, k)) for k in
                                    ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")},
            "min_cacheable": m.min_cacheable, "thinking": m.thinking, "vision": m.vision, "pdf": m.pdf,
            "tools": m.tools, "slugs": [cat.provider(p).prefix + m.id for p in m.providers],
        } for m in cat.models]
        print(json.dumps({"prices_read_on": cat.prices_read_on, "models": rows}, indent=2))
        return 0
    print(f"Prices read on {cat.prices_read_on} (USD per million tokens)")
    print(f"{'model':<30} {'ctx':>7} {'in':>6} {'out':>6} {'w5m':>6} {'w1h':>6} {'read':>6} {'min cache':>9}")
    for m in cat.models:
        p = m.prices
        print(f"{m.id:<30} {m.context_window // 1000:>6}K {p.input:>6} {p.output:>6} {p.cache_write_5m:>6}"
              f" {p.cache_write_1h:>6} {p.cache_read:>6} {m.min_cacheable:>9}")
    print("providers: " + ", ".join(p.prefix for p in cat.providers))
    return 0


def completion_json(completion: Completion, write_ttl: str) -> dict:
    try:
        cost = cost_of(completion.usage, completion.model, write_ttl).to_dict()
    except ValueError:
        cost = {"total": 0.0}
    return {
        "text": completion.text,
        "reasoning": completion.reasoning,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in completion.tool_calls],
        "finish_reason": completion.finish_reason,
        "model": completion.model,
        "usage": completion.usage.to_dict(),
        "cost_usd": cost,
        "ttft_ms": completion.ttft_ms,
        "latency_ms": completion.latency_ms,
        "raw_usage": completion.usage.raw,
        "cache": cache_json(completion.cache),
    }


def cache_json(check) -> dict | None:
    """The cache doctor's prediction for the request, and how the router's usage compared."""
    if check is None:
        return None
    return {"expected_read_tokens": check.expected_read_tokens, "expected_write_tokens": check.expected_write_tokens,
            "why": check.sentence()}


def _chat(args: argparse.Namespace) -> int:
    from .connection import make_client, resolve_connection
    from .conversation import blank_message_problem
    from .request import ChatParams, build_payload, cache_write_ttl, system_message, user_message

    blank = blank_message_problem(args.prompt)
    if blank:
        raise ValueError(blank.replace("type some text and send again", "give --prompt some text"))
    messages = []
    if args.system:
        messages.append(system_message(args.system, cache_ttl=args.cache_ttl if args.cache_system else None))
    messages.append(user_message(args.prompt))
    params = ChatParams(model=args.model, max_tokens=args.max_tokens, thinking_budget=args.thinking_budget,
                        temperature=args.temperature, stream=args.stream)
    payload = build_payload(params, messages)
    connection = resolve_connection(force_local=args.local)
    if connection.local and not args.json:
        print("[answers come from the local router: synthetic text, no key needed]", file=sys.stderr)
    client = make_client(connection, page="cli")
    try:
        if args.stream:
            completion = None
            for event in client.stream(payload):
                if isinstance(event, (TextDelta, ReasoningDelta)) and not args.json:
                    print(event.text, end="", flush=True, file=sys.stdout if isinstance(event, TextDelta) else sys.stderr)
                elif isinstance(event, Done):
                    completion = event.completion
            if not args.json:
                print()
        else:
            completion = client.create(payload)
            if not args.json:
                print(completion.text)
    finally:
        client.close()
    if completion.error:
        print(f"error: {completion.error}", file=sys.stderr)
    if args.json:
        print(json.dumps(completion_json(completion, cache_write_ttl(payload)), indent=2))
    return 1 if completion.error else 0


def _emulator(args: argparse.Namespace) -> int:
    from .emulator.server import run_forever

    run_forever(port=args.port, host=args.host, time_scale=args.time_scale, api_key=args.api_key)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orq_core", description="Claude on Orq's AI Router, from the shell.")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list the model catalog and prices")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=_models)

    chat = sub.add_parser("chat", help="send one request")
    chat.add_argument("--model", default=DEFAULT_MODEL)
    chat.add_argument("--prompt", required=True)
    chat.add_argument("--system")
    chat.add_argument("--cache-system", action="store_true", help="put a cache breakpoint on the system prompt")
    chat.add_argument("--cache-ttl", choices=["5m", "1h"], default="5m")
    chat.add_argument("--max-tokens", type=int, default=1024)
    chat.add_argument("--thinking-budget", type=int)
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--stream", action="store_true")
    chat.add_argument("--json", action="store_true", help="print one JSON object")
    add_local_option(chat)
    chat.set_defaults(func=_chat)

    emulator = sub.add_parser("emulator", help="run the local router alone")
    emulator.add_argument("--port", type=int, default=8787)
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--time-scale", type=float, default=1.0, help="0 = answer with no simulated waiting")
    emulator.add_argument("--api-key", help="accept only this bearer key (default: any non-empty key)")
    emulator.set_defaults(func=_emulator)

    from .lab import add_lab_arguments, cli_lab

    lab = sub.add_parser("lab", help="run a Caching Lab experiment headless")
    add_lab_arguments(lab)
    lab.set_defaults(func=cli_lab)

    from .compare import add_compare_arguments, cli_compare

    compare = sub.add_parser("compare", help="one prompt to several models or providers")
    add_compare_arguments(compare)
    compare.set_defaults(func=cli_compare)

    from .batch_cli import add_batch_arguments, cli_batch

    batch = sub.add_parser("batch", help="one prompt template over a CSV/JSONL dataset, across targets")
    add_batch_arguments(batch)
    batch.set_defaults(func=cli_batch)

    from .notebook_cli import add_notebook_arguments

    add_notebook_arguments(sub.add_parser("notebook", help="write the demo notebook, or run a notebook headless"))
    return parser


def _file_problem(error: OSError) -> str:
    """A file named on the command line that cannot be read or written, as a sentence (no errno)."""
    if error.filename is None:
        return str(error)
    return f"Cannot use the file {str(error.filename)!r}: {error.strerror or 'it cannot be opened'}. Check the path and try again."


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OrqError as error:
        print(f"error: {describe(error)}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {_file_problem(error)}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
