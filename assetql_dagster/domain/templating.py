"""Prompt templates: placeholders with defaults and filters, `{{if}}` and `{{for}}` blocks, parsed by hand.

Templates come from user files, so they are never handed to `str.format` or `eval`:
`{0.__class__}`, `{var[0]}` or `{var:>10}` in a template is a syntax error, a condition is one of a
few fixed forms (no `and`/`or`, no calls), and any braces inside a substituted value are inserted
literally. `\\{` and `\\}` write literal braces. Limits on size, nesting, loop items, work and
output keep a hostile template or row from exhausting time or memory.

    {subject:lower}, {style|flat vector art}{{if category == "character"}}, full body shot{{endif}}
    {{if size > 40}}, large{{elif size > 10}}, medium{{endif}}
    {{for item in accessories sep ", "}}{item:lower}{{endfor}}
"""

from __future__ import annotations

import operator
import re
import reprlib
from collections import ChainMap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property, lru_cache

# Limits against hostile templates and rows; each is named in the error that enforces it.
MAX_LENGTH = 20_000  # characters of template source
MAX_DEPTH = 8  # blocks ({{if}}, {{for}}) open inside each other
MAX_NODES = 1000  # pieces of text, placeholders and directives in one template
MAX_LOOP_ITEMS = 50  # items of the cell a {{for}} loops over
MAX_OUTPUT = 10_000  # characters one render produces (before whitespace is collapsed)
MAX_STEPS = 100_000  # nodes one render visits: bounds loops inside loops whose bodies print nothing

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME_RE = re.compile(_NAME)
_NAME_RULE = "letters, digits and '_', not starting with a digit"
_STRING = r"\"[^\"]*\"|'[^']*'"
_STRING_RE = re.compile(_STRING)
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_NUMBER_RE = re.compile(_NUMBER)
_CONDITION_RE = re.compile(
    rf"(?P<name>{_NAME})(?:"
    rf"\s*(?P<op>==|!=|<=|>=|<|>)\s*(?:(?P<string>{_STRING})|(?P<number>{_NUMBER}))"
    rf"|\s+(?P<negated>not\s+)?in\s*\[\s*(?P<items>(?:{_STRING})(?:\s*,\s*(?:{_STRING}))*)\s*(?:,\s*)?\]"
    r")?"
)
_FOR_RE = re.compile(rf"for\s+(?P<var>{_NAME})\s+in\s+(?P<source>{_NAME})(?:\s+sep\s+(?P<sep>{_STRING}))?")
_CONDITION_FORMS = (
    '{{if name}}, {{if name == "text"}}, {{if name != "text"}}, {{if name in ["a", "b"]}}, '
    "{{if name not in [...]}} or {{if name < 10}} (also <=, >, >=, == and != with a number)"
)
_FOR_FORMS = '{{for item in column}} or {{for item in column sep ", "}}'
_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_FILTERS = {
    "upper": str.upper,
    "lower": str.lower,
    # Only the first letter changes (unlike str.capitalize), so chains like lower:capitalize compose.
    "capitalize": lambda text: re.sub(r"\S", lambda m: m.group().upper(), text, count=1),
    "title": lambda text: re.sub(r"(?<!\S)\S", lambda m: m.group().upper(), text),
}


class TemplateError(ValueError):
    """A template that cannot be parsed; `position` is the 0-based character offset."""

    def __init__(self, message: str, position: int):
        self.message = message
        self.position = position
        super().__init__(f"{message} (at position {position})")


class RenderError(ValueError):
    """Values that cannot fill a template; `name` is the variable at fault, None for the whole output."""

    def __init__(self, message: str, name: str | None = None):
        self.message = message
        self.name = name
        super().__init__(message)


class MissingVariableError(RenderError):
    """A variable without a default that has no value; `use` names the directive needing it, if any."""

    def __init__(self, name: str, use: str | None = None):
        if use is None:
            message = (
                f"template variable '{name}' has no value and no default; "
                f"provide a '{name}' value or write {{{name}|default text}}"
            )
        else:
            message = f"template variable '{name}' has no value but {use} needs one; provide a '{name}' value"
        super().__init__(message, name)


@dataclass(frozen=True)
class _Var:
    name: str
    default: str | None
    filters: tuple[str, ...] = ()

    def resolve(self, values: Mapping[str, str]) -> str:
        """The value to insert, filtered, or the default (as written) when the value is missing or blank."""
        value = values.get(self.name)
        if self.default is not None and not value:  # render() passes values stripped
            return self.default
        if value is None:
            raise MissingVariableError(self.name)
        for name in self.filters:
            value = _FILTERS[name](value)
        return value


@dataclass(frozen=True)
class _Condition:
    name: str
    op: str | None  # None tests truthiness (a non-blank value)
    operand: str | Decimal | tuple[str, ...] | None
    text: str  # the directive as written, for messages
    position: int

    def holds(self, values: Mapping[str, str]) -> bool:
        """Whether the condition is true; a missing variable reads as empty except in number comparisons."""
        if isinstance(self.operand, Decimal):
            return _COMPARE[self.op](self._number(values), self.operand)
        value = values.get(self.name) or ""
        if self.op is None:
            return bool(value)
        if isinstance(self.operand, tuple):
            return (value in self.operand) == (self.op == "in")
        return _COMPARE[self.op](value, self.operand)

    def _number(self, values: Mapping[str, str]) -> Decimal:
        where = f"{self.text} (at position {self.position})"
        value = values.get(self.name)
        if value is None:
            raise MissingVariableError(self.name, where)
        if not value:
            message = (
                f"'{self.name}' is empty but {where} compares it with the number {self.operand}; "
                f"fill it in, or test it first with {{{{if {self.name}}}}}"
            )
            raise RenderError(message, self.name)
        number = _parse_number(value)
        if number is None:
            message = (
                f"'{self.name}' is {reprlib.repr(value)}, which is not a number, but {where} compares it "
                f"with the number {self.operand}; write a number such as 12 or 3.5 "
                "(no units or thousands separators)"
            )
            raise RenderError(message, self.name)
        return number


@dataclass(frozen=True)
class _If:
    branches: tuple[tuple[_Condition, tuple], ...]  # {{if}} then each {{elif}}, tested in order
    otherwise: tuple

    def branch(self, values: Mapping[str, str]) -> tuple:
        """The nodes of the first condition that holds, else those of {{else}}."""
        return next((nodes for condition, nodes in self.branches if condition.holds(values)), self.otherwise)


@dataclass(frozen=True)
class _For:
    var: str
    source: str
    sep: str | None
    body: tuple
    text: str
    position: int

    def items(self, values: Mapping[str, str]) -> tuple[str, ...]:
        """The stripped, non-empty `;`-separated items of the source cell."""
        where = f"{self.text} (at position {self.position})"
        cell = values.get(self.source)
        if cell is None:
            raise MissingVariableError(self.source, where)
        items = _split_items(cell)
        if len(items) > MAX_LOOP_ITEMS:
            message = (
                f"'{self.source}' has {len(items)} items, more than the limit of {MAX_LOOP_ITEMS} "
                f"that {where} takes; shorten the list"
            )
            raise RenderError(message, self.source)
        return items


@dataclass(frozen=True)
class _Directive:
    kind: str  # "if", "elif", "else", "endif", "for" or "endfor"
    position: int
    text: str
    condition: _Condition | None = None
    loop: re.Match | None = None


@dataclass(frozen=True)
class Template:
    """A compiled template; build one with `compile_template`."""

    source: str
    nodes: tuple

    @cached_property
    def variables(self) -> frozenset[str]:
        """Every column name referenced (conditions and loop sources included, loop variables not)."""
        return frozenset(_walk_names(self.nodes, everything=True)) - self.loop_variables

    @cached_property
    def required_variables(self) -> frozenset[str]:
        """Variables without a default that are used outside any conditional or loop block."""
        return frozenset(_walk_names(self.nodes, everything=False))

    @cached_property
    def loop_variables(self) -> frozenset[str]:
        """The names `{{for}}` loops bind; they must not be column names."""
        return frozenset(_walk_loop_variables(self.nodes))

    def render(self, values: Mapping[str, str]) -> str:
        """Substitute `values` literally, collapse whitespace and strip; RenderError if they cannot fill it."""
        clash = sorted(self.loop_variables & values.keys())
        if clash:
            name = clash[0]
            raise RenderError(f"the template's loop variable '{name}' has the name of a value; rename it", name)
        # Stripped once here, so that conditions evaluated in loops never rescan a long value's whitespace;
        # the output collapses whitespace anyway.
        stripped = {name: values[name].strip() for name in self.variables if name in values}
        parts: list[str] = []
        _render_into(self.nodes, stripped, parts, _Budget())
        return collapse_whitespace("".join(parts))


# Cached: a loop nested in another re-reads the same cell once per outer item (small: cells can be long).
@lru_cache(maxsize=32)
def _split_items(cell: str) -> tuple[str, ...]:
    """The stripped, non-empty `;`-separated items of `cell`."""
    return tuple(item for item in (piece.strip() for piece in cell.split(";")) if item)


@lru_cache(maxsize=32)
def _parse_number(text: str) -> Decimal | None:
    """`text` as an exact decimal number, or None when it is not one (units, '1,000', 'nan' are not)."""
    return Decimal(text) if _NUMBER_RE.fullmatch(text) else None


def collapse_whitespace(text: str) -> str:
    """Replace every run of whitespace (newlines included) by one space and strip."""
    return " ".join(text.split())


def compile_template(text: str) -> Template:
    """Parse `text`, raising TemplateError at the first syntax problem."""
    if not isinstance(text, str):
        raise TemplateError(f"template must be text, got {type(text).__name__}", 0)
    if len(text) > MAX_LENGTH:
        message = f"template is {len(text):,} characters, longer than the limit of {MAX_LENGTH:,}"
        raise TemplateError(message, 0)
    return Template(text, _build_tree(_tokens(text)))


def _walk_names(nodes: tuple, everything: bool) -> Iterator[str]:
    """All referenced names, or with `everything=False` only top-level variables without default."""
    for node in nodes:
        if isinstance(node, _Var) and (everything or node.default is None):
            yield node.name
        elif isinstance(node, _If) and everything:
            for condition, branch in node.branches:
                yield condition.name
                yield from _walk_names(branch, everything)
            yield from _walk_names(node.otherwise, everything)
        elif isinstance(node, _For) and everything:
            yield node.source
            yield from _walk_names(node.body, everything)


def _walk_loop_variables(nodes: tuple) -> Iterator[str]:
    for node in nodes:
        if isinstance(node, _If):
            for _, branch in node.branches:
                yield from _walk_loop_variables(branch)
            yield from _walk_loop_variables(node.otherwise)
        elif isinstance(node, _For):
            yield node.var
            yield from _walk_loop_variables(node.body)


class _Budget:
    """The work and output of one render, checked against MAX_STEPS and MAX_OUTPUT as they grow."""

    def __init__(self) -> None:
        self.steps = 0
        self.length = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            message = (
                f"rendering takes more than {MAX_STEPS:,} steps (loops inside loops over long lists?); "
                "simplify the template or shorten the lists"
            )
            raise RenderError(message)

    def emit(self, parts: list[str], text: str) -> None:
        self.length += len(text)
        if self.length > MAX_OUTPUT:
            message = (
                f"the prompt is longer than the limit of {MAX_OUTPUT:,} characters; "
                "shorten the template or the values it inserts"
            )
            raise RenderError(message)
        parts.append(text)


def _render_into(nodes: tuple, values: Mapping[str, str], parts: list[str], budget: _Budget) -> None:
    for node in nodes:
        budget.step()
        if isinstance(node, str):
            budget.emit(parts, node)
        elif isinstance(node, _Var):
            budget.emit(parts, node.resolve(values))
        elif isinstance(node, _If):
            _render_into(node.branch(values), values, parts, budget)
        else:
            _render_loop(node, values, parts, budget)


def _render_loop(loop: _For, values: Mapping[str, str], parts: list[str], budget: _Budget) -> None:
    """The body once per item; with `sep`, the separator goes between bodies that are not blank."""
    written = False
    for item in loop.items(values):
        budget.step()  # an iteration is work even when the body prints nothing
        body: list[str] = []
        _render_into(loop.body, ChainMap({loop.var: item}, values), body, budget)
        text = "".join(body)
        if loop.sep is None:
            parts.append(text)
        elif text.strip():
            if written:
                budget.emit(parts, loop.sep)
            parts.append(text)
            written = True


def _tokens(text: str) -> Iterator[tuple[int, str | _Var | _Directive]]:
    """Split `text` into (position, token): literal text, placeholders and `{{...}}` directives."""
    literal: list[str] = []
    start = 0
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and text[i + 1 : i + 2] in ("{", "}"):
            literal.append(text[i + 1])
            i += 2
            continue
        if char == "}":
            raise TemplateError("unmatched '}'; write \\} for a literal brace", i)
        if char != "{":
            literal.append(char)
            i += 1
            continue
        if literal:
            yield start, "".join(literal)
            literal = []
        if text.startswith("{{", i):
            end = text.find("}}", i + 2)
            if end < 0:
                raise TemplateError("'{{' is never closed with '}}'", i)
            yield i, _directive(text[i + 2 : end], i)
            i = end + 2
        else:
            end = _placeholder_end(text, i)
            yield i, _placeholder(text[i + 1 : end], i)
            i = end + 1
        start = i
    if literal:
        yield start, "".join(literal)


def _placeholder_end(text: str, start: int) -> int:
    """Index of the '}' closing the placeholder opened at `start`."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\" and text[i + 1 : i + 2] in ("{", "}"):
            i += 2
        elif text[i] == "{":
            raise TemplateError(
                f"'{{' inside the placeholder opened at position {start}; write \\{{ for a literal brace", i
            )
        elif text[i] == "}":
            return i
        else:
            i += 1
    raise TemplateError("'{' is never closed with '}'; write \\{ for a literal brace", start)


def _placeholder(body: str, position: int) -> _Var:
    # '|' is split first: everything after it is default text, colons and filter names included.
    head, bar, default = body.partition("|")
    name, *filters = (part.strip() for part in head.split(":"))
    if not _NAME_RE.fullmatch(name):
        raise TemplateError(
            f"invalid placeholder '{{{body}}}': variable names are {_NAME_RULE}; "
            "attribute access, indexing and format specs are not supported "
            "(write \\{ for a literal brace)",
            position,
        )
    unknown = next((f for f in filters if f not in _FILTERS), None)
    if unknown is not None:
        what = f"unknown filter '{unknown}'" if unknown else "no filter name after ':'"
        raise TemplateError(
            f"invalid placeholder '{{{body}}}': {what}; filters are {', '.join(_FILTERS)}, "
            "chained like {name:lower:capitalize} (format specs are not supported)",
            position,
        )
    return _Var(name, default.replace("\\{", "{").replace("\\}", "}") if bar else None, tuple(filters))


def _directive(body: str, position: int) -> _Directive:
    word = body.strip()
    text = f"{{{{{body}}}}}"
    if word in ("else", "endif", "endfor"):
        return _Directive(word, position, text)
    keyword, *rest = word.split(None, 1)
    if keyword in ("if", "elif"):
        return _Directive(keyword, position, text, condition=_condition("".join(rest), text, position))
    if keyword == "for":
        loop = _FOR_RE.fullmatch(word)
        if not loop:
            raise TemplateError(f"invalid loop '{text}'; expected {_FOR_FORMS}", position)
        return _Directive("for", position, text, loop=loop)
    hint = f" (use {{{word}}} for a variable)" if _NAME_RE.fullmatch(word) else ""
    blocks = "{{elif ...}}, {{else}}, {{endif}}"
    expected = f"{_CONDITION_FORMS}, {blocks}, {_FOR_FORMS}, {{{{endfor}}}}"
    raise TemplateError(f"unknown directive '{text}'; expected {expected}{hint}", position)


def _condition(source: str, text: str, position: int) -> _Condition:
    match = _CONDITION_RE.fullmatch(source)
    if not match:
        raise TemplateError(f"invalid condition '{text}'; expected {_CONDITION_FORMS}", position)
    op = match["op"]
    operand: str | Decimal | tuple[str, ...] | None = None
    if match["items"] is not None:
        op = "not in" if match["negated"] else "in"
        operand = tuple(item[1:-1] for item in _STRING_RE.findall(match["items"]))
    elif match["number"] is not None:
        operand = Decimal(match["number"])
    elif match["string"] is not None:
        if op not in ("==", "!="):
            raise TemplateError(
                f"invalid condition '{text}': '{op}' compares numbers, so write a number such as 10 "
                f"instead of {match['string']}",
                position,
            )
        operand = match["string"][1:-1]
    return _Condition(match["name"], op, operand, text, position)


@dataclass
class _Open:
    """A block being parsed: its parts so far, each the directive that started it and its nodes."""

    parts: list[tuple[_Directive, list]]

    @property
    def opener(self) -> _Directive:
        return self.parts[0][0]


def _build_tree(tokens: Iterator[tuple[int, str | _Var | _Directive]]) -> tuple:
    """Nest the token stream into blocks, checking pairing, limits and that loop variables shadow nothing."""
    root: list = []
    stack: list[_Open] = []
    columns: dict[str, int] = {}  # column name -> first position it is used at
    loops: list[tuple[str, _Directive]] = []  # every loop variable with its {{for}}
    for count, (position, token) in enumerate(tokens, 1):
        if count > MAX_NODES:
            message = f"template has more than {MAX_NODES} parts (text, placeholders, directives); simplify it"
            raise TemplateError(message, position)
        current = stack[-1].parts[-1][1] if stack else root
        scope = {frame.opener.loop["var"] for frame in stack if frame.opener.loop}
        if not isinstance(token, _Directive):
            if isinstance(token, _Var) and token.name not in scope:
                columns.setdefault(token.name, position)
            current.append(token)
        elif token.kind in ("if", "for"):
            if len(stack) >= MAX_DEPTH:
                message = f"{token.text} opens a block nested more than {MAX_DEPTH} deep; simplify the template"
                raise TemplateError(message, position)
            name = token.condition.name if token.condition else token.loop["source"]
            if name not in scope:
                columns.setdefault(name, position)
            if token.loop:
                if token.loop["var"] in scope:
                    var = token.loop["var"]
                    outer = next(f.opener for f in stack if f.opener.loop and f.opener.loop["var"] == var)
                    message = (
                        f"loop variable '{var}' is already the variable of the {{{{for}}}} "
                        f"at position {outer.position}; choose another name"
                    )
                    raise TemplateError(message, position)
                loops.append((token.loop["var"], token))
            stack.append(_Open([(token, [])]))
        else:
            _close(token, stack, root, scope, columns)
    if stack:
        opener = stack[-1].opener
        closer = "{{endfor}}" if opener.kind == "for" else "{{endif}}"
        raise TemplateError(f"{{{{{opener.kind}}}}} is never closed; add {closer}", opener.position)
    for var, loop in loops:
        if var in columns:
            message = (
                f"loop variable '{var}' of {loop.text} has the name of the variable used at position "
                f"{columns[var]} outside the loop; rename the loop variable"
            )
            raise TemplateError(message, loop.position)
    return tuple(root)


def _close(
    token: _Directive, stack: list[_Open], root: list, scope: set[str], columns: dict[str, int]
) -> None:
    """Apply an elif/else/endif/endfor directive to the innermost open block."""
    wanted = "for" if token.kind == "endfor" else "if"
    if not stack:
        raise TemplateError(f"{{{{{token.kind}}}}} without a matching {{{{{wanted}}}}}", token.position)
    block = stack[-1]
    opener = block.opener
    if opener.kind != wanted:
        closer = "{{endfor}}" if opener.kind == "for" else "{{endif}}"
        message = (
            f"{{{{{token.kind}}}}} inside the {{{{{opener.kind}}}}} at position {opener.position}, "
            f"which must be closed first with {closer}"
        )
        raise TemplateError(message, token.position)
    if token.kind in ("elif", "else") and block.parts[-1][0].kind == "else":
        what = "second {{else}} for" if token.kind == "else" else "{{elif}} after the {{else}} of"
        raise TemplateError(f"{what} the {{{{if}}}} at position {opener.position}", token.position)
    if token.kind == "elif":
        if token.condition.name not in scope:
            columns.setdefault(token.condition.name, token.position)
        block.parts.append((token, []))
    elif token.kind == "else":
        block.parts.append((token, []))
    else:
        stack.pop()
        parent = stack[-1].parts[-1][1] if stack else root
        parent.append(_node(block))


def _node(block: _Open) -> _If | _For:
    """The finished node of a closed block."""
    opener, body = block.parts[0]
    if opener.kind == "for":
        loop = opener.loop
        sep = None if loop["sep"] is None else loop["sep"][1:-1]
        return _For(loop["var"], loop["source"], sep, tuple(body), opener.text, opener.position)
    branches = tuple((d.condition, tuple(nodes)) for d, nodes in block.parts if d.kind != "else")
    otherwise = next((tuple(nodes) for d, nodes in block.parts if d.kind == "else"), ())
    return _If(branches, otherwise)
