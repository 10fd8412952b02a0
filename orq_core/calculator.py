"""A safe calculator: the expression is parsed with ``ast`` and walked over a whitelist. No eval.

Only numbers, + - * / // % **, unary + -, parentheses, a few math functions and the constants
pi and e. Every step is bounded so a model (or a person) cannot make it burn CPU or memory:
expression length, nesting depth, exponent size and the size of every intermediate result.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Callable

Number = int | float

MAX_LENGTH = 500
MAX_DEPTH = 50
MAX_EXPONENT = 1000
MAX_INT_DIGITS = 10_000
MAX_FLOAT_LOG10 = 300
_LOG10_2 = math.log10(2)
_TOO_DEEP = f"expression too deeply nested (at most {MAX_DEPTH} levels)"


class CalculatorError(ValueError):
    """The expression was refused or could not be computed; the message says why."""


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan,
    "log": math.log, "log10": math.log10, "exp": math.exp, "abs": abs, "round": round,
    "min": min, "max": max, "floor": math.floor, "ceil": math.ceil,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

_BINARY: dict[type, Callable[[Number, Number], Number]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_UNARY: dict[type, Callable[[Number], Number]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
            ast.Pow: "**", ast.BitXor: "^", ast.BitAnd: "&", ast.BitOr: "|", ast.LShift: "<<",
            ast.RShift: ">>", ast.MatMult: "@"}


def evaluate(expression: str) -> Number:
    """The value of ``expression``; raises CalculatorError with a clear reason."""
    tree = _parse(expression)
    _check_depth(tree)
    return _Evaluator().value(tree.body)


def calculate(expression: str) -> str:
    """Evaluated and formatted for people (and for a model reading a tool result)."""
    return format_number(evaluate(expression))


def format_number(value: Number) -> str:
    if isinstance(value, int):
        digits = _digit_count(value)
        if digits <= 40:
            return str(value)
        return f"{_int_scientific(value, digits)} (an integer of {digits} digits)"
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.15g}"


# --- parsing and limits ----------------------------------------------------------------------

def _parse(expression: str) -> ast.Expression:
    if not isinstance(expression, str):
        raise CalculatorError("the expression must be text")
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"expression too long: {len(expression)} characters (at most {MAX_LENGTH})")
    if not expression.strip():
        raise CalculatorError("empty expression")
    # Notation people type: '^' for power, '×'/'÷' for multiply/divide.
    text = expression.replace("^", "**").replace("×", "*").replace("÷", "/").strip()
    try:
        return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        reason = exc.msg or "invalid syntax"
        if "nest" in reason or "recursion" in reason:
            raise CalculatorError(_TOO_DEEP) from None
        where = f" at column {exc.offset}" if exc.offset else ""
        raise CalculatorError(f"not a valid expression ({reason}{where})") from None
    except (RecursionError, MemoryError):
        raise CalculatorError(_TOO_DEEP) from None
    except ValueError as exc:  # e.g. a NUL character
        raise CalculatorError(f"not a valid expression ({exc})") from None


def _check_depth(tree: ast.Expression) -> None:
    """Iterative, so a hostile tree cannot exhaust the stack here. The left operand of a binary
    operation stays at its parent's depth: ``1+2+3+...`` is a flat sequence, not nesting."""
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CalculatorError(_TOO_DEEP)
        if isinstance(node, ast.BinOp):
            stack.append((node.left, depth))
            stack.append((node.right, depth + 1))
        else:
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


# --- evaluation --------------------------------------------------------------------------------

class _Evaluator:
    def value(self, node: ast.AST) -> Number:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.BinOp):
            return self._binary_chain(node)
        if isinstance(node, ast.Call):
            return self._call(node)
        raise CalculatorError(f"{_describe(node)} is not allowed")

    def _constant(self, node: ast.Constant) -> Number:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CalculatorError(f"only numbers are allowed, not {type(value).__name__} {value!r:.40}")
        return _checked(value)

    def _name(self, node: ast.Name) -> Number:
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise CalculatorError(f"{node.id} is a function: call it, e.g. {node.id}(2)")
        raise CalculatorError(f"unknown name {node.id!r}; allowed constants: {', '.join(CONSTANTS)}")

    def _unary(self, node: ast.UnaryOp) -> Number:
        op = _UNARY.get(type(node.op))
        if op is None:
            raise CalculatorError(f"operator {type(node.op).__name__} is not allowed")
        return _checked(op(self.value(node.operand)))

    def _binary_chain(self, node: ast.BinOp) -> Number:
        # Left-associative chains (1+2+3+...) are folded in a loop so their length costs no stack.
        chain: list[ast.BinOp] = []
        left: ast.AST = node
        while isinstance(left, ast.BinOp):
            chain.append(left)
            left = left.left
        result = self.value(left)
        for binop in reversed(chain):
            result = _apply(binop.op, result, self.value(binop.right))
        return result

    def _call(self, node: ast.Call) -> Number:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise CalculatorError(f"only these functions can be called: {', '.join(FUNCTIONS)}")
        name = node.func.id
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise CalculatorError(f"{name}() takes plain positional arguments only")
        args = [self.value(arg) for arg in node.args]
        if name == "round" and len(args) == 2 and not isinstance(args[1], int):
            raise CalculatorError("round(x, n): n must be a whole number")
        try:
            return _checked(FUNCTIONS[name](*args))
        except CalculatorError:
            raise
        except TypeError:
            raise CalculatorError(f"wrong number of arguments for {name}()") from None
        except OverflowError:
            raise CalculatorError(f"{name}() result is too large") from None
        except ZeroDivisionError:
            raise CalculatorError(f"division by zero in {name}()") from None
        except ValueError as exc:
            raise CalculatorError(f"{name}() is not defined there ({exc})") from None


def _apply(op: ast.operator, left: Number, right: Number) -> Number:
    if isinstance(op, ast.Pow):
        return _power(left, right)
    function = _BINARY.get(type(op))
    if function is None:
        raise CalculatorError(f"operator {_SYMBOLS.get(type(op), type(op).__name__)} is not allowed")
    try:
        return _checked(function(left, right))
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("result is too large") from None


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent too large: {format_number(exponent)} (at most {MAX_EXPONENT})")
    if base == 0 and exponent < 0:
        raise CalculatorError("division by zero (0 to a negative power)")
    if base != 0 and exponent != 0:
        magnitude_log10 = math.log10(abs(base)) * exponent  # math.log10 accepts ints of any size
        if isinstance(base, int) and isinstance(exponent, int) and exponent > 0:
            if magnitude_log10 >= MAX_INT_DIGITS:
                raise CalculatorError(f"result too large: about 10^{magnitude_log10:.0f} "
                                      f"(integers up to {MAX_INT_DIGITS} digits)")
        elif magnitude_log10 > MAX_FLOAT_LOG10:
            raise CalculatorError(f"result too large: about 10^{magnitude_log10:.0f}")
    try:
        result = base ** exponent
    except OverflowError:
        raise CalculatorError("result is too large") from None
    if isinstance(result, complex):
        raise CalculatorError("result is not a real number (a negative number to a fractional power)")
    return _checked(result)


def _checked(value: Number) -> Number:
    """Every intermediate result stays within the bounds: finite floats, ints up to MAX_INT_DIGITS."""
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is too large (not a finite number)")
    if isinstance(value, int) and value.bit_length() * _LOG10_2 > MAX_INT_DIGITS:
        raise CalculatorError(f"result too large (integers up to {MAX_INT_DIGITS} digits)")
    return value


def _digit_count(value: int) -> int:
    value = abs(value)
    if value < 10:
        return 1
    estimate = int((value.bit_length() - 1) * _LOG10_2)  # floor(log10) or one below it
    return estimate + 2 if value >= 10 ** (estimate + 1) else estimate + 1


def _int_scientific(value: int, digits: int) -> str:
    """Like '1.23456789e+1000' without str() of the whole integer (Python caps that at 4300 digits)."""
    leading = abs(value) // 10 ** (digits - 10)
    text = str(leading)
    sign = "-" if value < 0 else ""
    return f"{sign}{text[0]}.{text[1:].rstrip('0') or '0'}e+{digits - 1}"


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "attribute access", ast.Subscript: "indexing", ast.Lambda: "lambda",
        ast.ListComp: "a comprehension", ast.SetComp: "a comprehension", ast.DictComp: "a comprehension",
        ast.GeneratorExp: "a comprehension", ast.Compare: "comparison", ast.BoolOp: "and/or",
        ast.IfExp: "if/else", ast.NamedExpr: ":=", ast.JoinedStr: "an f-string",
        ast.List: "a list", ast.Tuple: "a tuple", ast.Dict: "a dict", ast.Set: "a set",
        ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Starred: "*unpacking",
    }
    return names.get(type(node), type(node).__name__)
