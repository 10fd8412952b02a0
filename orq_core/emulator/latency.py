"""The local router's latency model, exposed as plain functions so the Caching Lab can predict
what it will measure.

    TTFT = base + uncached_tokens * prefill_cost + cached_tokens * cached_cost
    total = TTFT + output_tokens / output_rate

Tokens written to the cache are processed like uncached input (they are computed, then stored).

Calibration (Claude 3.5 Sonnet, Anthropic's prompt-caching announcement, 14 Aug 2024,
anthropic.com/news/prompt-caching): "Chat with a book (100,000 token cached prompt)": latency
11.5 s without caching, 2.4 s with it (-79%); "Many-shot prompting (10,000 token prompt)":
1.6 s -> 1.1 s. Fitting the uncached points gives base 0.5 s and 0.11 ms per uncached token
(0.5 + 100,000 x 0.11 ms = 11.5 s; 0.5 + 10,000 x 0.11 ms = 1.6 s); the cached book gives
0.019 ms per cached token (0.5 + 100,000 x 0.019 ms = 2.4 s). The 10K cached point comes out
at 0.69 s instead of 1.1 s: a two-parameter line cannot hit every published figure.

Other families scale the sonnet figures by guesses (no published per-family prefill numbers):
haiku prefills at half the cost, opus at 1.6x. Output rates are rough public observations of
Anthropic's API (third-party throughput dashboards, late 2025), rounded: haiku ~150 tok/s,
sonnet ~70 tok/s, opus ~45 tok/s. They are guesses, stated so the Lab can show them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..catalog import Model, catalog


@dataclass(frozen=True)
class LatencyProfile:
    base_ms: float
    uncached_ms_per_token: float
    cached_ms_per_token: float
    output_tokens_per_s: float


_SONNET = LatencyProfile(base_ms=500.0, uncached_ms_per_token=0.11, cached_ms_per_token=0.019,
                         output_tokens_per_s=70.0)
PROFILES = {
    "sonnet": _SONNET,
    "haiku": LatencyProfile(base_ms=350.0, uncached_ms_per_token=0.055, cached_ms_per_token=0.0095,
                            output_tokens_per_s=150.0),
    "opus": LatencyProfile(base_ms=800.0, uncached_ms_per_token=0.176, cached_ms_per_token=0.0304,
                           output_tokens_per_s=45.0),
}


def _model(model: Model | str) -> Model:
    return model if isinstance(model, Model) else catalog().resolve(model).model


def profile_for(model: Model | str) -> LatencyProfile:
    """``model``: a catalog Model, a slug or a bare model id."""
    return PROFILES.get(_model(model).family, _SONNET)


def predicted_ttft_ms(model: Model | str, uncached: int, cached: int, written: int = 0) -> float:
    p = profile_for(model)
    return p.base_ms + (uncached + written) * p.uncached_ms_per_token + cached * p.cached_ms_per_token


def output_ms(model: Model | str, output_tokens: int) -> float:
    """Time to stream ``output_tokens`` after the first one arrived."""
    return output_tokens * 1000.0 / profile_for(model).output_tokens_per_s


def predicted_latency_ms(model: Model | str, uncached: int, cached: int, written: int, output_tokens: int) -> float:
    return predicted_ttft_ms(model, uncached, cached, written) + output_ms(model, output_tokens)
