"""Benchmark: the demo notebook, run headless against the local router at time_scale 0, then exported.

    python benchmarks/bench_notebook.py [--runs 5]

Medians over runs of: Run all of the demo (15 requests: 2 prompts, a 2-target compare, an 8-request lab,
a 3-row batch), the .ipynb export, the HTML report (plotly.js inlined), and the .ipynb import.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orq_core.client import OrqClient  # noqa: E402
from orq_core.emulator import EmulatorSettings, start_local_router  # noqa: E402
from orq_core.notebook import RunContext, demo_notebook, run_all  # noqa: E402
from orq_core.notebook_export import export_ipynb, import_ipynb  # noqa: E402
from orq_core.notebook_report import export_html  # noqa: E402


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    value = action()
    return (time.perf_counter() - started) * 1000, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("ORQ_PLAYGROUND_DB", str(Path(tempfile.mkdtemp()) / "bench.db"))
    router = start_local_router(EmulatorSettings(time_scale=0))
    figures: dict[str, list[float]] = {"run": [], "ipynb": [], "html": [], "import": []}
    sizes: dict[str, int] = {}
    requests = 0
    try:
        with OrqClient(router.base_url, router.api_key) as client:
            for _ in range(args.runs):
                nb = demo_notebook()  # fresh ids: every run starts cold in the router's cache
                ms, _ = timed(lambda: list(run_all(nb, RunContext(client, local=True))))
                figures["run"].append(ms)
                requests = nb.totals().requests
                ms, ipynb = timed(lambda: export_ipynb(nb))
                figures["ipynb"].append(ms)
                ms, html = timed(lambda: export_html(nb))
                figures["html"].append(ms)
                ms, _ = timed(lambda: import_ipynb(ipynb))
                figures["import"].append(ms)
                sizes = {"ipynb": len(ipynb.encode()), "html": len(html.encode())}
    finally:
        router.stop()
    med = {k: statistics.median(v) for k, v in figures.items()}
    print(f"| notebook measure (median of {args.runs}) | figure |")
    print("| --- | ---: |")
    print(f"| demo Run all, {requests} requests, time_scale 0 | {med['run']:.0f} ms |")
    print(f"| demo Run all per request | {med['run'] / max(requests, 1):.1f} ms |")
    print(f"| export .ipynb | {med['ipynb']:.0f} ms ({sizes['ipynb'] / 1024:.0f} KiB) |")
    print(f"| export HTML report | {med['html']:.0f} ms ({sizes['html'] / 1024 / 1024:.1f} MiB) |")
    print(f"| import .ipynb | {med['import']:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
