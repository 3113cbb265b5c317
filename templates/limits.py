"""How big a template's values may grow, checked before an operation builds them
(docs/templates.md, "Budgets").

Pure estimates, no Jinja: the sandbox asks these before it lets an operator, a filter or
a join run. Checking the result afterwards is too late: ``9 ** 99 ** 99`` or
``"%0300000000d" % 1`` run in C, allocate hundreds of megabytes and cannot be
interrupted by a deadline, so the size of what an operation would build is estimated
from its operands, and the operation is refused when the estimate passes the cap.
"""

import re
from collections.abc import Mapping
from typing import Any

# Characters (or items) a single value may hold: the same as the output cap, since a
# value bigger than the whole message can only be on its way to a refused render.
MAX_VALUE_SIZE = 100_000
# 4,096 bits is 1,233 decimal digits: far beyond any price or count, far below the
# megabit integers whose multiplication and printing take seconds.
MAX_INT_BITS = 4_096
MAX_EXPONENT = 100
# Widths and precisions in "%" formatting (``"%0300000000d" % 1`` is 300 MB).
MAX_FORMAT_WIDTH = 1_000
# A float's "%f" / repr is at most a few dozen characters (309 digits for 1e308 with %f).
_FLOAT_SIZE = 32
_PERCENT_SPEC = re.compile(
    r"%(?:\([^)]*\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?[hlL]?[a-zA-Z%]"
)


class RenderLimitExceeded(Exception):
    """A template tried to build a value or an output past its budget."""


def size_of(value: Any, limit: int = MAX_VALUE_SIZE) -> int:
    """The printed size a value may reach: characters of its text, one per item of a
    container (a separator), digits of its numbers.

    Shared references count every time they are reached (``[s] * 1000`` prints ``s`` a
    thousand times). Stops counting once past ``limit``, so the walk itself is bounded.
    """
    total = 0
    pending = [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, bool) or item is None:
            total += 5
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, float):
            total += _FLOAT_SIZE
        elif isinstance(item, Mapping):
            # Count before walking, so the pending stack never outgrows the limit.
            total += 2 * len(item)
            if total <= limit:
                pending.extend(item.keys())
                pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            if total <= limit:
                pending.extend(item)
        else:
            total += 1
    return total


def check_size(value: Any, what: str, limit: int = MAX_VALUE_SIZE) -> None:
    if size_of(value, limit) > limit:
        raise RenderLimitExceeded(f"{what} would be longer than {limit} characters.")


def check_repeat(sequence: Any, count: Any) -> None:
    """``'ab' * n`` / ``[x] * n``: the repeated value, printed, must fit."""
    if (
        isinstance(count, int)
        and count > 0
        and size_of(sequence, MAX_VALUE_SIZE // count) * count > MAX_VALUE_SIZE
    ):
        raise RenderLimitExceeded(
            f"Repeated text would be longer than {MAX_VALUE_SIZE} characters."
        )


def check_product(left: Any, right: Any) -> None:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(count, int):
            check_repeat(sequence, count)
    if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise RenderLimitExceeded(f"Numbers are limited to {MAX_INT_BITS} bits.")


def check_power(base: Any, exponent: Any) -> None:
    if isinstance(exponent, int | float) and abs(exponent) > MAX_EXPONENT:
        raise RenderLimitExceeded(f"Exponents above {MAX_EXPONENT} are not allowed.")
    # The result of an integer power has about bits(base) * exponent bits, computed in C
    # without a chance to stop: (((9**99)**99)**99)**99 ran for minutes.
    if _is_int(base) and _is_int(exponent) and base.bit_length() * exponent > MAX_INT_BITS:
        raise RenderLimitExceeded(f"Numbers are limited to {MAX_INT_BITS} bits.")


def check_sum(left: Any, right: Any) -> None:
    """``+`` on text or lists (doubling ``s + s`` in a macro grows exponentially)."""
    if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        check_size((left, right), "Joined text")


def check_percent_format(template_text: Any, arguments: Any) -> None:
    """``"%10d" % n``: every width and precision, plus the arguments, must fit."""
    if not isinstance(template_text, str):
        return
    estimate = len(template_text) + size_of(arguments)
    for spec in _PERCENT_SPEC.finditer(template_text):
        for number in (spec["width"], spec["precision"]):
            if number == "*":
                raise RenderLimitExceeded("'*' widths are not allowed in % formatting.")
            if number:
                if len(number) > 6 or int(number) > MAX_FORMAT_WIDTH:
                    raise RenderLimitExceeded(
                        f"Widths in % formatting are limited to {MAX_FORMAT_WIDTH}."
                    )
                estimate += int(number)
        estimate += _FLOAT_SIZE
    if estimate > MAX_VALUE_SIZE:
        raise RenderLimitExceeded(f"Formatted text would be longer than {MAX_VALUE_SIZE}.")


def check_join(items: list[Any], separator: Any) -> None:
    separators = len(separator) * len(items) if isinstance(separator, str) else 0
    if separators > MAX_VALUE_SIZE:
        raise RenderLimitExceeded(f"Joined text would be longer than {MAX_VALUE_SIZE}.")
    check_size(items, "Joined text", MAX_VALUE_SIZE - separators)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
