"""Prompt templates: `{var}`, `{var|default}` and `{{if}}` blocks, parsed by hand.

Templates come from user files, so they are never handed to `str.format` or `eval`:
`{0.__class__}` or `{var[0]}` in a template is a syntax error, and any braces inside a
substituted value are inserted literally. `\\{` and `\\}` write literal braces.

    {subject}, {style|flat vector art}{{if category == "character"}}, full body shot{{endif}}
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_RULE = "letters, digits and '_', not starting with a digit"
_CONDITION_RE = re.compile(
    r"if\s+(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:\s*(?P<op>==|!=)\s*(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'))?"
)
_CONDITION_FORMS = '{{if name}}, {{if name == "text"}} or {{if name != "text"}}'


class TemplateError(ValueError):
    """A template that cannot be parsed; `position` is the 0-based character offset."""

    def __init__(self, message: str, position: int):
        self.message = message
        self.position = position
        super().__init__(f"{message} (at position {position})")


class MissingVariableError(ValueError):
    """A variable without a default that has no value."""

    def __init__(self, name: str):
        self.name = name
        super().__init__(
            f"template variable '{name}' has no value and no default; "
            f"provide a '{name}' value or write {{{name}|default text}}"
        )


@dataclass(frozen=True)
class _Var:
    name: str
    default: str | None

    def resolve(self, values: Mapping[str, str]) -> str:
        """The value to insert, falling back to the default when the value is missing or blank."""
        value = values.get(self.name)
        if self.default is not None and (value is None or not value.strip()):
            return self.default
        if value is None:
            raise MissingVariableError(self.name)
        return value


@dataclass(frozen=True)
class _If:
    name: str
    op: str | None  # None tests truthiness (a non-blank value)
    literal: str
    then: tuple
    otherwise: tuple

    def branch(self, values: Mapping[str, str]) -> tuple:
        """The nodes selected by this condition; a missing variable reads as empty."""
        value = (values.get(self.name) or "").strip()
        if self.op is None:
            holds = bool(value)
        else:
            holds = (value == self.literal) == (self.op == "==")
        return self.then if holds else self.otherwise


@dataclass(frozen=True)
class _Directive:
    kind: str  # "if", "else" or "endif"
    position: int
    condition: tuple[str, str | None, str] | None = None


@dataclass(frozen=True)
class Template:
    """A compiled template; build one with `compile_template`."""

    source: str
    nodes: tuple

    @property
    def variables(self) -> frozenset[str]:
        """Every variable name referenced, including those only tested in conditions."""
        return frozenset(_walk_names(self.nodes, everything=True))

    @property
    def required_variables(self) -> frozenset[str]:
        """Variables without a default that are used outside any conditional block."""
        return frozenset(_walk_names(self.nodes, everything=False))

    def render(self, values: Mapping[str, str]) -> str:
        """Substitute `values` literally, collapse repeated whitespace and strip."""
        parts: list[str] = []
        _render_into(self.nodes, values, parts)
        return collapse_whitespace("".join(parts))


def collapse_whitespace(text: str) -> str:
    """Replace every run of whitespace (newlines included) by one space and strip."""
    return " ".join(text.split())


def compile_template(text: str) -> Template:
    """Parse `text`, raising TemplateError at the first syntax problem."""
    if not isinstance(text, str):
        raise TemplateError(f"template must be text, got {type(text).__name__}", 0)
    return Template(text, _build_tree(_tokens(text)))


def _walk_names(nodes: tuple, everything: bool) -> Iterator[str]:
    """All referenced names, or with `everything=False` only top-level variables without default."""
    for node in nodes:
        if isinstance(node, _Var) and (everything or node.default is None):
            yield node.name
        elif isinstance(node, _If) and everything:
            yield node.name
            yield from _walk_names(node.then + node.otherwise, everything)


def _render_into(nodes: tuple, values: Mapping[str, str], parts: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            parts.append(node)
        elif isinstance(node, _Var):
            parts.append(node.resolve(values))
        else:
            _render_into(node.branch(values), values, parts)


def _tokens(text: str) -> Iterator[str | _Var | _Directive]:
    """Split `text` into literal text, placeholders and `{{...}}` directives."""
    literal: list[str] = []
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
            yield "".join(literal)
            literal = []
        if text.startswith("{{", i):
            end = text.find("}}", i + 2)
            if end < 0:
                raise TemplateError("'{{' is never closed with '}}'", i)
            yield _directive(text[i + 2 : end], i)
            i = end + 2
        else:
            end = _placeholder_end(text, i)
            yield _placeholder(text[i + 1 : end], i)
            i = end + 1
    if literal:
        yield "".join(literal)


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
    name, bar, default = body.partition("|")
    name = name.strip()
    if not _NAME_RE.fullmatch(name):
        raise TemplateError(
            f"invalid placeholder '{{{body}}}': variable names are {_NAME_RULE}; "
            "attribute access, indexing and format specs are not supported "
            "(write \\{ for a literal brace)",
            position,
        )
    return _Var(name, default.replace("\\{", "{").replace("\\}", "}") if bar else None)


def _directive(body: str, position: int) -> _Directive:
    word = body.strip()
    if word in ("else", "endif"):
        return _Directive(word, position)
    match = _CONDITION_RE.fullmatch(word)
    if match:
        literal = match["dq"] if match["dq"] is not None else match["sq"] or ""
        return _Directive("if", position, (match["name"], match["op"], literal))
    if word.split(maxsplit=1)[:1] == ["if"]:
        raise TemplateError(f"invalid condition '{{{{{body}}}}}'; expected {_CONDITION_FORMS}", position)
    hint = f" (use {{{word}}} for a variable)" if _NAME_RE.fullmatch(word) else ""
    expected = f"{_CONDITION_FORMS}, {{{{else}}}} or {{{{endif}}}}"
    raise TemplateError(f"unknown directive '{{{{{body}}}}}'; expected {expected}{hint}", position)


def _build_tree(tokens: Iterator[str | _Var | _Directive]) -> tuple:
    """Nest the token stream into `_If` blocks, checking that if/else/endif pair up."""
    root: list = []
    # One frame per open {{if}}: the directive, its then-nodes, its else-nodes (None before {{else}}).
    stack: list[tuple[_Directive, list, list | None]] = []
    for token in tokens:
        if not isinstance(token, _Directive):
            _current(root, stack).append(token)
        elif token.kind == "if":
            stack.append((token, [], None))
        elif not stack:
            raise TemplateError(f"{{{{{token.kind}}}}} without a matching {{{{if}}}}", token.position)
        elif token.kind == "else":
            opener, then, otherwise = stack.pop()
            if otherwise is not None:
                raise TemplateError(
                    f"second {{{{else}}}} for the {{{{if}}}} at position {opener.position}", token.position
                )
            stack.append((opener, then, []))
        else:
            opener, then, otherwise = stack.pop()
            name, op, literal = opener.condition
            _current(root, stack).append(_If(name, op, literal, tuple(then), tuple(otherwise or ())))
    if stack:
        raise TemplateError("{{if}} is never closed; add {{endif}}", stack[-1][0].position)
    return tuple(root)


def _current(root: list, stack: list[tuple[_Directive, list, list | None]]) -> list:
    """The node list that new tokens are appended to."""
    if not stack:
        return root
    _, then, otherwise = stack[-1]
    return then if otherwise is None else otherwise
