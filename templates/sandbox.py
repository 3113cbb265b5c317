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
- a deadline checked on every call, lookup, operator, loop iteration and output chunk,
  a budget of loop iterations and of nested calls (a macro calling itself is refused
  before Python's recursion limit), and the size of every value that can grow
  (``*``, ``**``, ``+``, ``%``, ``~``, filters, joined buffers) estimated *before* it
  is built by ``templates.limits``: a big-int power or a ``%`` format runs in C and no
  deadline can interrupt it.
"""

import copy
import functools
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.filters import do_join
from jinja2.nodes import EvalContext
from jinja2.parser import Parser
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import pass_eval_context

from templates import limits
from templates.limits import RenderLimitExceeded

MAX_SOURCE_CHARS = 20_000
MAX_OUTPUT_CHARS = limits.MAX_VALUE_SIZE
MAX_RENDER_SECONDS = 0.5
MAX_RANGE = 1_000
# Loop iterations in one render, all loops together (a 100-item cart loop nested in a
# 100-item one is 10,000): keeps nested loops from filling memory before the deadline.
MAX_LOOP_ITERATIONS = 100_000
# Macro calls (and recursive loops) in progress at once. Real templates nest two or
# three; a macro calling itself without end would otherwise hit Python's recursion
# limit and fail the request with a RecursionError.
MAX_CALL_DEPTH = 30
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


class _Budget(threading.local):
    """The budget of the render running in this thread (ASGI renders previews in threads)."""

    deadline: float = float("inf")
    iterations: int = 0
    depth: int = 0


class MessageCodeGenerator(CodeGenerator):
    """Jinja's code generator with two hooks it has no setting for: every ``for`` loop
    iterates through ``environment.paced`` (deadline and iteration budget per item),
    and every ``~`` measures its operands before joining them."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        paced = copy.copy(node)
        paced.iter = nodes.Call(nodes.EnvironmentAttribute("paced"), [node.iter], [], None, None)
        super().visit_For(paced, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # Jinja's own visit_Concat, with the operands passed through concat_operands.
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.concat_operands((")
        for operand in node.nodes:
            self.visit(operand, frame)
            self.write(", ")
        self.write(")))")


class MessageEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = MessageCodeGenerator

    def __init__(self, *, autoescape: bool):
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            loader=None,
            auto_reload=False,
            cache_size=0,
            keep_trailing_newline=True,
            finalize=self._measured,
        )
        self.globals.clear()
        self.filters = {
            n: _measuring_filter(f) for n, f in self.filters.items() if n in ALLOWED_FILTERS
        }
        self.filters["join"] = _bounded_join
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

    def paced(self, items: Iterable[Any]) -> Iterator[Any]:
        budget = self.budget
        for item in items:
            budget.iterations += 1
            if budget.iterations > MAX_LOOP_ITERATIONS:
                raise RenderLimitExceeded(
                    f"Loops are limited to {MAX_LOOP_ITERATIONS} iterations per message."
                )
            self.check_deadline()
            yield item

    def _measured(self, value: Any) -> Any:
        limits.check_size(value, "A printed value")
        return value

    def concat_operands(self, operands: tuple[Any, ...]) -> tuple[Any, ...]:
        self.check_deadline()
        limits.check_size(operands, "Joined text")
        return operands

    def concat(self, parts: Iterable[str]) -> str:
        """Jinja joins every buffered block (macro bodies, ``set`` blocks, filter
        blocks) through ``environment.concat``: add up before joining."""
        chunks = parts if isinstance(parts, list) else list(parts)
        self.check_deadline()
        if sum(map(len, chunks)) > MAX_OUTPUT_CHARS:
            raise RenderLimitExceeded(f"Output is longer than {MAX_OUTPUT_CHARS} chars.")
        return "".join(chunks)

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
        budget = __self.budget
        if budget.depth >= MAX_CALL_DEPTH:
            raise RenderLimitExceeded(
                f"Calls nest deeper than {MAX_CALL_DEPTH} levels: "
                "a macro (or recursive loop) probably calls itself without end."
            )
        budget.depth += 1
        try:
            return super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        self.check_deadline()
        check, compute = _BINOPS[operator_name]
        check(left, right)
        return compute(left, right)

    def render_bounded(self, template_source: str, context: Mapping[str, Any]) -> str:
        """Render with the time and size budget; raises ``RenderLimitExceeded`` past it."""
        template = self.compiled(template_source)
        self.budget.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.budget.iterations = 0
        self.budget.depth = 0
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

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Jinja's parser recurses once per bracket: "((((…" from a 20,000-character
        # template would end in a RecursionError (a 500) instead of a syntax error.
        parser = Parser(self, source, name, filename)
        try:
            return parser.parse()
        except RecursionError:
            raise TemplateSyntaxError(
                "Brackets or expressions nest too deeply.",
                parser.stream.current.lineno,
                name,
                filename,
            ) from None


_BINOPS: dict[str, tuple[Callable[[Any, Any], None], Callable[[Any, Any], Any]]] = {
    "*": (limits.check_product, operator.mul),
    "**": (limits.check_power, operator.pow),
    "+": (limits.check_sum, operator.add),
    "%": (limits.check_percent_format, operator.mod),
}


def _measuring_filter(jinja_filter: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, refusing inputs too large to print: a filter's output is at most a
    small multiple of its input (``escape`` turns ``&`` into ``&amp;``)."""
    # Filters marked pass_context / pass_eval_context / pass_environment get Jinja's
    # object first; wraps() copies that mark, so Jinja keeps passing it.
    skip = 1 if hasattr(jinja_filter, "jinja_pass_arg") else 0

    @functools.wraps(jinja_filter)
    def measured(*args: Any, **kwargs: Any) -> Any:
        limits.check_size((args[skip:], kwargs), "A filter's input")
        return jinja_filter(*args, **kwargs)

    return measured


@pass_eval_context
def _bounded_join(
    eval_context: EvalContext, value: Iterable[Any], separator: str = "", attribute: Any = None
) -> Any:
    """``[s] * 1000 | join`` copies ``s`` a thousand times although no single operand is
    large, and ``join(sep)`` repeats the separator: count both before joining."""
    items = list(value)
    limits.check_join(items, separator)
    return do_join(eval_context, items, separator, attribute)


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
