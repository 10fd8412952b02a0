"""Core of the Claude playground on Orq's AI Router. Importable without Streamlit, pandas or plotly."""

from .catalog import DEFAULT_MODEL, Catalog, Model, Target, catalog
from .cost import CostBreakdown, cost_of, format_usd
from .errors import OrqError, RequestValidationError, describe
from .types import Completion, ToolCall
from .usage import Usage

__all__ = ["DEFAULT_MODEL", "Catalog", "Model", "Target", "catalog", "CostBreakdown", "cost_of",
           "format_usd", "OrqError", "RequestValidationError", "describe", "Completion", "ToolCall", "Usage"]
