"""The Jinja2 environment marketer-authored templates run in (docs/templates.md).

Templates are written by people who are not developers and may be pasted from anywhere,
so a template must not be able to read anything but the context it is given, touch
files or the network, or take the worker down with a huge output or a long loop:

- ``ImmutableSandboxedEnvironment``: no ``_``-prefixed attributes, no mutating methods;
- attribute access is item lookup on the context's mappings and nothing else, so
  ``cart.items`` is the cart's items (not ``dict.items``) and ``''.__class__`` or
  ``cycler.__init__.__globals__`` is an error instead of a walk into Python internals;
- no loader, so ``include`` / ``extends`` / ``import`` cannot read files; the only
  global is a bounded ``range``;
- ``StrictUndefined``: a misspelt variable is an error at validation time, never an
  empty hole in a sent message;
- a deadline checked on every call, lookup, operator and output chunk, and a cap on
  the output size and on ``*`` / ``**`` results.
"""

import operator
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from jinja2 import StrictUndefined, TemplateRuntimeError, Undefined, nodes
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

MAX_SOURCE_CHARS = 20_000
MAX_OUTPUT_CHARS = 100_000
MAX_RENDER_SECONDS = 0.5
MAX_RANGE = 1_000
# Filters a message needs. Left out: those that build text of a size the template
# chooses (center, indent, wordwrap, replace, format, batch) and debugging ones (pprint).
ALLOWED_FILTERS = frozenset(
    {
        "abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first",
        "float", "forceescape", "groupby", "int", "join", "last", "length", "list", "lower",
        "map", "max", "min", "reject", "rejectattr", "reverse", "round", "select",
        "selectattr", "sort", "string", "striptags", "sum", "title", "trim", "truncate",
        "unique", "upper", "urlencode", "wordcount",
    }
)  # fmt: skip


class RenderLimitExceeded(TemplateRuntimeError):
    pass


class _Budget(threading.local):
    """The deadline of the render running in this thread (ASGI renders previews in threads)."""

    deadline: float = float("inf")


class MessageEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, *, autoescape: bool):
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            loader=None,
            auto_reload=False,
            cache_size=0,
            keep_trailing_newline=True,
        )
        self.globals.clear()
        self.filters = {n: f for n, f in self.filters.items() if n in ALLOWED_FILTERS}
        self.globals["range"] = self._bounded_range
        self.budget = _Budget()

    def _bounded_range(self, *args: int) -> range:
        numbers = range(*args)
        if len(numbers) > MAX_RANGE:
            raise RenderLimitExceeded(f"range() is limited to {MAX_RANGE} items.")
        return numbers

    def check_deadline(self) -> None:
        if time.monotonic() > self.budget.deadline:
            raise RenderLimitExceeded(f"Rendering took longer than {MAX_RENDER_SECONDS}s.")

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.check_deadline()
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        if isinstance(obj, LoopContext) and not attribute.startswith("_"):
            # loop.index, loop.first …: Jinja's own loop helper, nothing of ours.
            return super().getattr(obj, attribute)
        raise SecurityError(
            f"{attribute!r} is not available in message templates; "
            "only values from the context can be read."
        )

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.check_deadline()
        if isinstance(obj, Mapping):
            if argument in obj:
                return obj[argument]
            return self.undefined(obj=obj, name=argument)
        if isinstance(obj, Sequence) and isinstance(argument, int | slice):
            try:
                return obj[argument]
            except IndexError:
                return self.undefined(obj=obj, name=str(argument))
        if isinstance(argument, str):
            return self.getattr(obj, argument)
        return self.undefined(obj=obj, name=argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.check_deadline()
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        self.check_deadline()
        if operator_name == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > MAX_OUTPUT_CHARS
                ):
                    raise RenderLimitExceeded("Repeated text would be too long.")
            return operator.mul(left, right)
        if isinstance(right, int | float) and abs(right) > 100:
            raise RenderLimitExceeded("Exponents above 100 are not allowed.")
        return operator.pow(left, right)

    def render_bounded(self, template_source: str, context: Mapping[str, Any]) -> str:
        """Render with the time and size budget; raises ``RenderLimitExceeded`` past it."""
        template = self.compiled(template_source)
        self.budget.deadline = time.monotonic() + MAX_RENDER_SECONDS
        try:
            output: list[str] = []
            size = 0
            chunks: Iterator[str] = template.generate(dict(context))
            for chunk in chunks:
                size += len(chunk)
                if size > MAX_OUTPUT_CHARS:
                    raise RenderLimitExceeded(f"Output is longer than {MAX_OUTPUT_CHARS} chars.")
                self.check_deadline()
                output.append(chunk)
            return "".join(output)
        finally:
            self.budget.deadline = float("inf")

    def compiled(self, template_source: str) -> Any:
        if len(template_source) > MAX_SOURCE_CHARS:
            raise RenderLimitExceeded(f"Templates are limited to {MAX_SOURCE_CHARS} characters.")
        return _compile(self, template_source)

    def parse_source(self, template_source: str) -> nodes.Template:
        return self.parse(template_source)


# Compiled templates, keyed by source: a version's text never changes (versions are
# immutable), so a compiled entry never goes stale and needs no invalidation; the
# bound keeps a long-lived worker's memory flat.
_COMPILED_LIMIT = 2_000
_compiled: dict[tuple[int, str], Any] = {}


def _compile(environment: MessageEnvironment, template_source: str) -> Any:
    key = (id(environment), template_source)
    template = _compiled.get(key)
    if template is None:
        template = environment.from_string(template_source)
        if len(_compiled) >= _COMPILED_LIMIT:
            _compiled.pop(next(iter(_compiled)))
        _compiled[key] = template
    return template


HTML_ENVIRONMENT = MessageEnvironment(autoescape=True)
TEXT_ENVIRONMENT = MessageEnvironment(autoescape=False)


def environment_for(field_name: str) -> MessageEnvironment:
    return HTML_ENVIRONMENT if field_name == "html" else TEXT_ENVIRONMENT


__all__ = [
    "HTML_ENVIRONMENT",
    "MAX_OUTPUT_CHARS",
    "TEXT_ENVIRONMENT",
    "MessageEnvironment",
    "RenderLimitExceeded",
    "SecurityError",
    "Undefined",
    "environment_for",
]
