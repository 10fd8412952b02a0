"""The model catalog: models, providers, prices and limits, loaded from one data file.

Prices live in ``data/catalog.json`` with the date they were read, so a price change is a
one-line edit there. Cache prices are derived from the input price by Anthropic's published
multipliers (5-minute write 1.25x, 1-hour write 2x, read 0.1x) unless a model overrides them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

DATA_FILE = Path(__file__).with_name("data") / "catalog.json"
PER_MILLION = Decimal(1_000_000)


class UnknownModelError(ValueError):
    """The slug names no model or provider in the catalog."""


@dataclass(frozen=True)
class Prices:
    """USD per million tokens."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal

    def cache_write(self, ttl: str) -> Decimal:
        return self.cache_write_1h if ttl == "1h" else self.cache_write_5m


_SHORT_PROVIDER_NAMES = {"anthropic": "Anthropic", "aws": "Bedrock", "google": "Vertex"}


@dataclass(frozen=True)
class Provider:
    id: str
    label: str
    prefix: str

    @property
    def short(self) -> str:
        return _SHORT_PROVIDER_NAMES.get(self.id, self.label)


@dataclass(frozen=True)
class Model:
    id: str
    label: str
    family: str
    context_window: int
    max_output: int
    prices: Prices
    min_cacheable: int
    thinking: bool
    vision: bool
    pdf: bool
    tools: bool
    providers: tuple[str, ...]

    def slug(self, provider: str = "anthropic") -> str:
        return catalog().provider(provider).prefix + self.id


@dataclass(frozen=True)
class Target:
    """A model reached through one provider, as named by a router slug."""

    model: Model
    provider: Provider

    @property
    def slug(self) -> str:
        return self.provider.prefix + self.model.id

    @property
    def label(self) -> str:
        return f"{self.model.label} via {self.provider.label}"

    @property
    def short_label(self) -> str:
        """Provider first, for narrow places that cut text (a Compare column's box at 1024 px):
        'Bedrock · Sonnet 4.5'."""
        return f"{self.provider.short} · {self.model.label.removeprefix('Claude ')}"


@dataclass(frozen=True)
class Catalog:
    prices_read_on: str
    prices_source: str
    models: tuple[Model, ...]
    providers: tuple[Provider, ...]
    _resolved: dict[str, "Target"] = field(default_factory=dict, init=False, repr=False, compare=False)
    """slug -> Target, for slugs that resolved (a fixed, small set); the router resolves every
    request's model several times."""

    def model(self, model_id: str) -> Model:
        for model in self.models:
            if model.id == model_id:
                return model
        raise UnknownModelError(f"Unknown model '{model_id}'. Known: {', '.join(m.id for m in self.models)}")

    def provider(self, provider_id: str) -> Provider:
        for provider in self.providers:
            if provider.id == provider_id:
                return provider
        raise UnknownModelError(f"Unknown provider '{provider_id}'")

    def resolve(self, slug: str) -> Target:
        """Turn 'aws/anthropic/claude-...' (or a bare model id) into a Target."""
        target = self._resolved.get(slug)
        if target is None:
            target = self._resolved[slug] = self._resolve(slug)
        return target

    def _resolve(self, slug: str) -> Target:
        # Longest prefix first: 'aws/anthropic/' must not be read as 'anthropic/'.
        for provider in sorted(self.providers, key=lambda p: -len(p.prefix)):
            if slug.startswith(provider.prefix):
                model = self.model(slug[len(provider.prefix):])
                if provider.id not in model.providers:
                    raise UnknownModelError(f"{model.label} is not offered by {provider.label}")
                return Target(model, provider)
        if "/" in slug:
            raise UnknownModelError(f"Unknown provider in '{slug}'. Use one of: "
                                    + ", ".join(p.prefix for p in self.providers))
        return Target(self.model(slug), self.provider("anthropic"))

    def targets(self) -> list[Target]:
        return [Target(m, self.provider(p)) for m in self.models for p in m.providers]


def _prices(entry: dict, multipliers: dict) -> Prices:
    base = Decimal(str(entry["input"]))
    return Prices(
        input=base,
        output=Decimal(str(entry["output"])),
        cache_write_5m=Decimal(str(entry.get("cache_write_5m", base * Decimal(str(multipliers["write_5m"]))))),
        cache_write_1h=Decimal(str(entry.get("cache_write_1h", base * Decimal(str(multipliers["write_1h"]))))),
        cache_read=Decimal(str(entry.get("cache_read", base * Decimal(str(multipliers["read"]))))),
    )


def load_catalog(path: Path = DATA_FILE) -> Catalog:
    data = json.loads(path.read_text(encoding="utf-8"))
    multipliers = data["cache_multipliers"]
    models = tuple(
        Model(
            id=m["id"], label=m["label"], family=m["family"],
            context_window=m["context_window"], max_output=m["max_output"],
            prices=_prices(m, multipliers), min_cacheable=m["min_cacheable"],
            thinking=m["thinking"], vision=m["vision"], pdf=m["pdf"], tools=m["tools"],
            providers=tuple(m["providers"]),
        )
        for m in data["models"]
    )
    providers = tuple(Provider(p["id"], p["label"], p["prefix"]) for p in data["providers"])
    return Catalog(data["prices_read_on"], data["prices_source"], models, providers)


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    return load_catalog()


DEFAULT_MODEL = "anthropic/claude-sonnet-4-5-20250929"
