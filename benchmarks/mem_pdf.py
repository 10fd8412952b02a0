"""Benchmark: peak memory of preparing and sending a 30 MB PDF through orq_core to the local router.

    python benchmarks/mem_pdf.py [--mb 30] [--router process|thread]

The PDF (a few pages of text plus an incompressible embedded file, so it really weighs --mb MB)
is made in a child process, so making it does not count. This process then reads it and, step by
step as the Vision page does it: inspects it (``DocumentSession.add_file``: type, pages, text),
estimates, builds the payload (the base64 data URL, built once per file), runs the spend guard
(which counts the prompt as the router will), streams the answer, then asks a follow-up question.

For each step: tracemalloc's peak above the baseline (the file's bytes already held) and what
stays held after it, in MB and in multiples of the file size. Then the whole run's peak and
the ru_maxrss delta (the process's resident high-water mark, which also sees non-Python memory).

The last question holds non-ASCII text: ``OrqClient`` sends ASCII-only JSON, streamed in slices
(``client.JSONBody``), so that step checks that one emoji in a conversation no longer widens a
large file's body to 2 or 4 bytes per character.

``--router process`` (default) runs the local router in its own process, so the figures are the
playground's own path; ``--router thread`` runs it in this process as the Streamlit app does, so
they include the router receiving, parsing and decoding the request.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "anthropic/claude-sonnet-4-5-20250929"
MB = 1024 * 1024


def make_pdf(path: Path, size_mb: float) -> None:
    """A valid PDF of about ``size_mb``: 5 text pages and a random (incompressible) attachment."""
    from fpdf import FPDF
    from pypdf import PdfReader, PdfWriter

    doc = FPDF()
    doc.set_title("Memory benchmark")
    doc.set_font("helvetica", size=11)
    for page in range(5):
        doc.add_page()
        doc.multi_cell(0, 6, f"Page {page + 1}. " + "Prompt caching keeps a prefix of the prompt. " * 30)
    writer = PdfWriter(clone_from=PdfReader(__import__("io").BytesIO(bytes(doc.output()))))
    writer.add_attachment("payload.bin", os.urandom(int(size_mb * MB) - 40_000))
    with open(path, "wb") as out:
        writer.write(out)


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_router(mode: str):
    """(base_url, api_key, stop)"""
    if mode == "thread":
        from orq_core.emulator import EmulatorSettings, start_local_router

        router = start_local_router(EmulatorSettings(time_scale=0))
        return router.base_url, router.api_key, router.stop
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "orq_core", "emulator", "--port", str(port), "--time-scale", "0"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise SystemExit("the local router did not start")

    def stop():
        proc.terminate()
        proc.wait(10)

    from orq_core.emulator import LOCAL_API_KEY

    return f"http://127.0.0.1:{port}/v2/router", LOCAL_API_KEY, stop


class Steps:
    """tracemalloc peak and held memory per step, relative to a baseline."""

    def __init__(self, size: int, baseline: int):
        self.size = size
        self.rows: list[tuple[str, float, float, float]] = []
        self.overall_peak = 0
        self.baseline = baseline

    def run(self, name: str, action):
        gc.collect()
        tracemalloc.reset_peak()
        started = time.perf_counter()
        result = action()
        seconds = time.perf_counter() - started
        current, peak = tracemalloc.get_traced_memory()
        self.overall_peak = max(self.overall_peak, peak)
        self.rows.append((name, (peak - self.baseline) / MB, (current - self.baseline) / MB, seconds))
        return result

    def table(self) -> str:
        lines = ["| step | peak above baseline | held after | time |", "|---|---:|---:|---:|"]
        for name, peak, held, seconds in self.rows:
            lines.append(f"| {name} | {peak:,.1f} MB ({peak * MB / self.size:.2f}×) | "
                         f"{held:,.1f} MB ({held * MB / self.size:.2f}×) | {seconds:.2f} s |")
        return "\n".join(lines)


def measure(path: Path, mode: str) -> None:
    from orq_core import vision
    from orq_core.budget import check_budget
    from orq_core.catalog import catalog
    from orq_core.client import OrqClient
    from orq_core.types import Done

    base_url, api_key, stop = start_router(mode)
    client = OrqClient(base_url, api_key)
    model = catalog().resolve(MODEL).model
    try:
        vision.inspect_file("warm-up.pdf", path.read_bytes()[:0])  # nothing: imports happen below
        import PIL.Image  # noqa: F401  (imported lazily by media; not part of the figures)
        import pypdf  # noqa: F401

        rss_before = maxrss_mb()
        tracemalloc.start()
        session = vision.DocumentSession()
        steps = Steps(path.stat().st_size, tracemalloc.get_traced_memory()[0])
        data = steps.run("read the file", path.read_bytes)
        size = len(data)

        def send(question: str):
            payload = steps.run(f"payload ({question})", lambda: session.payload(MODEL, question))
            steps.run(f"spend guard ({question})", lambda: check_budget(payload, 0.0, 100.0))

            def stream():
                return next(e for e in client.stream(payload, page="bench") if isinstance(e, Done)).completion

            completion = steps.run(f"send + stream ({question})", stream)
            if completion.error:
                raise SystemExit(f"the request failed: {completion.error}")
            session.record(question, completion, "5m")
            return completion

        item = steps.run("inspect (type, pages, text)", lambda: session.add_file(path.name, data))
        assert item.ok, item.problem
        del data  # the session holds the bytes now
        steps.run("estimate", lambda: session.estimate(model, "What is in it?"))
        first = send("What is in it?")
        send("And on page 2?")
        send("Et la page 3 ? 🙂")  # non-ASCII text in the conversation (see the docstring)
        tracemalloc.stop()
        rss_delta = maxrss_mb() - rss_before
    finally:
        client.close()
        stop()

    peak = (steps.overall_peak - steps.baseline) / MB
    print(f"\nmem_pdf: {size / MB:.1f} MB PDF ({item.pages} pages, ≈ {item.tokens:,} tokens), router in a "
          f"{mode}; Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs\n")
    print(steps.table())
    print(f"\nFigures are above what was traced before reading the file. A checked PDF is held as its "
          f"data URL only ({item.encoded_size / MB:.1f} MB = {item.encoded_size / size:.2f}×): the raw bytes are "
          "released once it is built.")
    print(f"overall tracemalloc peak above baseline: {peak:,.1f} MB = {peak * MB / size:.2f}× the file")
    print(f"ru_maxrss delta: {rss_delta:,.1f} MB = {rss_delta * MB / size:.2f}× the file")
    print(f"first answer: {first.usage.prompt_tokens:,} prompt tokens; {first.text[:100]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=30.0, help="PDF size in MB (at most 32)")
    parser.add_argument("--router", choices=("process", "thread"), default="process")
    parser.add_argument("--make", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        make_pdf(Path(args.make), args.mb)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.pdf"
        subprocess.run([sys.executable, __file__, "--make", str(path), "--mb", str(args.mb)], check=True)
        measure(path, args.router)


if __name__ == "__main__":
    main()
