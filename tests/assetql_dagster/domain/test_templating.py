import pytest

from assetql_dagster.domain.templating import (
    MissingVariableError,
    TemplateError,
    collapse_whitespace,
    compile_template,
)


def render(text, **values):
    return compile_template(text).render(values)


def test_substitutes_variables():
    assert render("{subject} in {style}", subject="a fox", style="watercolor") == "a fox in watercolor"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_default_used_when_value_missing_or_blank(value):
    values = {} if value is None else {"style": value}
    assert compile_template("fox, {style|flat vector art}").render(values) == "fox, flat vector art"


def test_default_ignored_when_value_present():
    assert render("{style|flat}", style="oil paint") == "oil paint"


def test_empty_default_makes_variable_optional():
    assert render("fox {style|}", style="") == "fox"


def test_default_may_contain_escaped_braces_and_spaces():
    assert render("{style| a \\{b\\} c }") == "a {b} c"


def test_whitespace_inside_placeholder_name_is_ignored():
    assert render("{ subject |x}", subject="fox") == "fox"


@pytest.mark.parametrize(
    "value", ["{0.__class__}", "{subject.__init__.__globals__}", "{subject[0]}", "{{if x}}", "\\{"]
)
def test_values_are_inserted_literally(value):
    assert render("<{subject}>", subject=value) == f"<{value}>"


def test_values_are_not_expanded_as_templates():
    assert render("{a}", a="{b}", b="secret") == "{b}"


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("{0.__class__}", 0),
        ("a cat {subject.attr}", 6),
        ("{subject[0]}", 0),
        ("x{subject!r}", 1),
        ("{subject:>10}", 0),
        ("{}", 0),
        ("{9lives}", 0),
        ("{a.b|default}", 0),
    ],
)
def test_unsafe_or_invalid_placeholders_are_syntax_errors(text, position):
    with pytest.raises(TemplateError) as caught:
        compile_template(text)
    assert caught.value.position == position
    assert "invalid placeholder" in caught.value.message
    assert f"position {position}" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("fox }", 4, "unmatched '}'"),
        ("fox {subject", 4, "never closed"),
        ("{a {b}}", 3, "inside the placeholder"),
        ("{{if a}} x", 0, "{{if}} is never closed"),
        ("x {{if a}}", 2, "{{if}} is never closed"),
        ("x {{else}}", 2, "{{else}} without"),
        ("{{endif}}", 0, "{{endif}} without"),
        ("{{if a}}1{{else}}2{{else}}3{{endif}}", 18, "second {{else}} for the {{if}} at position 0"),
        ("{{if a = 'b'}}{{endif}}", 0, "invalid condition"),
        ("{{if a == b}}{{endif}}", 0, "invalid condition"),
        ("{{if}}{{endif}}", 0, "invalid condition"),
        ("{{for x in y}}", 0, "unknown directive"),
        ("ab {{if a", 3, "'{{' is never closed"),
    ],
)
def test_syntax_errors_name_position(text, position, fragment):
    with pytest.raises(TemplateError) as caught:
        compile_template(text)
    assert caught.value.position == position
    assert fragment in caught.value.message


def test_double_braced_variable_suggests_single_braces():
    with pytest.raises(TemplateError, match=r"use \{sku\} for a variable"):
        compile_template("{{sku}}")


def test_template_error_is_value_error():
    assert issubclass(TemplateError, ValueError)


def test_non_text_template_is_rejected():
    with pytest.raises(TemplateError, match="must be text"):
        compile_template(42)


def test_escaped_braces_are_literal():
    assert render("\\{not a var\\} {a}", a="x") == "{not a var} x"


def test_backslash_before_other_characters_is_kept():
    assert render("a\\b") == "a\\b"


@pytest.mark.parametrize(
    ("category", "expected"),
    [("character", "hero, full body shot"), ("prop", "hero, close-up"), ("", "hero, close-up")],
)
def test_equality_condition_with_else(category, expected):
    template = '{name}{{if category == "character"}}, full body shot{{else}}, close-up{{endif}}'
    assert render(template, name="hero", category=category) == expected


def test_inequality_condition_with_single_quotes():
    template = "x{{if lang != 'en'}} ({lang}){{endif}}"
    assert render(template, lang="de") == "x (de)"
    assert render(template, lang="en") == "x"


def test_truthiness_condition_treats_missing_and_blank_as_false():
    template = "shoe{{if sku}}, SKU {sku}{{endif}}"
    assert render(template, sku="A-1") == "shoe, SKU A-1"
    assert render(template, sku="  ") == "shoe"
    assert render(template) == "shoe"


def test_nested_conditions():
    template = (
        "{{if category == 'character'}}full body{{if pose}}, {pose}{{else}}, standing{{endif}}"
        "{{else}}object{{endif}}"
    )
    assert render(template, category="character", pose="running") == "full body, running"
    assert render(template, category="character") == "full body, standing"
    assert render(template, category="prop", pose="running") == "object"


def test_condition_compares_stripped_value():
    assert render("{{if c == 'a'}}yes{{endif}}", c=" a ") == "yes"


def test_render_collapses_whitespace_and_strips():
    template = "  {a}\n\n   {{if b}}  x  {{endif}}\t{c|}  "
    assert render(template, a="one  two", b="1") == "one two x"


def test_collapse_whitespace():
    assert collapse_whitespace(" a\r\n\tb  c ") == "a b c"


def test_missing_variable_raises_with_name():
    with pytest.raises(MissingVariableError) as caught:
        render("{subject} {style}", subject="fox")
    assert caught.value.name == "style"
    assert isinstance(caught.value, ValueError)
    assert not isinstance(caught.value, KeyError)
    assert "{style|default text}" in str(caught.value)


def test_missing_variable_in_untaken_branch_is_fine():
    assert render("a{{if b}}{c}{{endif}}") == "a"


def test_missing_variable_in_taken_branch_raises():
    with pytest.raises(MissingVariableError, match="'c'"):
        render("a{{if b}}{c}{{endif}}", b="1")


def test_empty_value_without_default_renders_empty():
    assert render("a {b} c", b="") == "a c"


def test_variables_include_conditions_and_defaults():
    template = compile_template("{a} {b|x} {{if c == 'y'}}{d}{{else}}{e|z}{{endif}}")
    assert template.variables == {"a", "b", "c", "d", "e"}


def test_required_variables_exclude_defaults_and_conditional_only():
    template = compile_template("{a} {b|x} {{if c}}{d} {a}{{endif}}")
    assert template.required_variables == {"a"}


def test_template_keeps_source():
    text = "{a}, {b|c}"
    assert compile_template(text).source == text
