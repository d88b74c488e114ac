import pytest

from assetql_dagster.domain.templating import (
    MAX_DEPTH,
    MAX_LENGTH,
    MAX_LOOP_ITEMS,
    MAX_NODES,
    MAX_OUTPUT,
    MAX_STEPS,
    MissingVariableError,
    RenderError,
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
        ("{{while x}}", 0, "unknown directive"),
        ("{{for x in y}}", 0, "{{for}} is never closed; add {{endfor}}"),
        ("ab {{if a", 3, "'{{' is never closed"),
        ("{{elif a}}", 0, "{{elif}} without a matching {{if}}"),
        ("{{if a}}1{{else}}2{{elif b}}3{{endif}}", 18, "{{elif}} after the {{else}} of the {{if}} at position 0"),
        ("{{if a}}x{{endfor}}", 9, "{{endfor}} inside the {{if}} at position 0, which must be closed first"),
        ("{{if a}}x{{endfor}}", 9, "must be closed first with {{endif}}"),
        ("{{for a in b}}x{{endif}}", 15, "{{endif}} inside the {{for}} at position 0"),
        ("{{for a in b}}x{{endif}}", 15, "must be closed first with {{endfor}}"),
        ("{{for a in b}}{{else}}{{endfor}}", 14, "{{else}} inside the {{for}} at position 0"),
        ("{{for a in b}}{{elif c}}{{endfor}}", 14, "{{elif}} inside the {{for}} at position 0"),
        ("x{{endfor}}", 1, "{{endfor}} without a matching {{for}}"),
        ("{{for a in b}}{{if c}}{{endfor}}", 22, "{{endfor}} inside the {{if}} at position 14"),
        ("{a} {{for a in xs}}{a}{{endfor}}", 4, "loop variable 'a' of {{for a in xs}} has the name of"),
        ("{a} {{for a in xs}}{a}{{endfor}}", 4, "used at position 0 outside the loop; rename the loop"),
        ("{{for a in xs}}{a}{{endfor}}{{if a}}x{{endif}}", 0, "used at position 28 outside the loop"),
        ("{{for a in a}}{a}{{endfor}}", 0, "loop variable 'a' of {{for a in a}} has the name"),
        ("{{for a in xs}}{{endfor}}{{for b in a}}{{endfor}}", 0, "variable used at position 25"),
        ("{{for a in xs}}{{for a in ys}}{{endfor}}{{endfor}}", 15, "is already the variable of the {{for}}"),
        ("{{for a in xs}}{{for a in ys}}{{endfor}}{{endfor}}", 15, "{{for}} at position 0; choose another"),
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


# --- elif -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [("60", "shoe, large"), ("20", "shoe, medium"), ("10", "shoe, small"), ("3", "shoe, small")],
)
def test_elif_takes_the_first_condition_that_holds(size, expected):
    template = "shoe{{if size > 40}}, large{{elif size > 10}}, medium{{else}}, small{{endif}}"
    assert render(template, size=size) == expected


def test_elif_chain_without_else_renders_nothing_when_none_holds():
    template = "x{{if a == '1'}} one{{elif a == '2'}} two{{elif a == '3'}} three{{endif}}"
    assert [render(template, a=a) for a in ("1", "2", "3", "4")] == ["x one", "x two", "x three", "x"]


def test_elif_conditions_after_a_true_one_are_not_evaluated():
    # 'size' is not a number, but the first branch is taken so the comparison never runs.
    assert render("{{if kind == 'hat'}}hat{{elif size > 3}}big{{endif}}", kind="hat", size="huge") == "hat"


# --- conditions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "expected"), [("EU", "x, CE mark"), ("UK", "x, CE mark"), ("US", "x"), ("", "x")]
)
def test_membership_condition(region, expected):
    assert render('x{{if region in ["EU", \'UK\']}}, CE mark{{endif}}', region=region) == expected


@pytest.mark.parametrize(("region", "expected"), [("EU", "x"), ("JP", "x, global"), ("", "x, global")])
def test_negated_membership_condition(region, expected):
    assert render("x{{if region not in [ 'EU' , 'UK', ]}}, global{{endif}}", region=region) == expected


def test_membership_compares_stripped_value_exactly():
    template = "{{if region in ['EU']}}in{{else}}out{{endif}}"
    assert render(template, region=" EU ") == "in"
    assert render(template, region="eu") == "out"


@pytest.mark.parametrize(
    ("condition", "value", "holds"),
    [
        ("n < 10", "9.5", True),
        ("n < 10", "10", False),
        ("n <= 10", "10.0", True),
        ("n > -1", "0", True),
        ("n >= .5", "0.5", True),
        ("n == 10", "10.00", True),
        ("n == 10", "+10", True),
        ("n != 10", "10", False),
        ("n != 1.5", "2", True),
        ("n>3", "4", True),
    ],
)
def test_numeric_comparisons(condition, value, holds):
    template = f"{{{{if {condition}}}}}yes{{{{else}}}}no{{{{endif}}}}"
    assert render(template, n=value) == ("yes" if holds else "no")


def test_equality_with_quoted_number_compares_text():
    assert render("{{if n == '10'}}yes{{else}}no{{endif}}", n="10.0") == "no"
    assert render("{{if n == 10}}yes{{else}}no{{endif}}", n="10.0") == "yes"


@pytest.mark.parametrize("value", ["large", "10cm", "1,000", "1e3", "nan", "inf", "0x10"])
def test_numeric_comparison_with_non_number_names_variable_and_value(value):
    with pytest.raises(RenderError) as caught:
        render("x {{if size > 10}}big{{endif}}", size=value)
    assert caught.value.name == "size"
    message = str(caught.value)
    assert f"'size' is '{value}', which is not a number" in message
    assert "{{if size > 10}} (at position 2)" in message
    assert "with the number 10" in message


def test_numeric_comparison_with_empty_value_suggests_testing_it_first():
    with pytest.raises(RenderError, match=r"'size' is empty .* test it first with \{\{if size\}\}") as caught:
        render("{{if size >= 2}}big{{endif}}", size="  ")
    assert caught.value.name == "size"


def test_numeric_comparison_guarded_by_truthiness_accepts_empty_value():
    assert render("a{{if size}}{{if size > 2}} big{{endif}}{{endif}}", size="") == "a"


def test_numeric_comparison_without_value_is_a_missing_variable():
    with pytest.raises(MissingVariableError) as caught:
        render("{{if size > 2}}big{{endif}}")
    assert caught.value.name == "size"
    assert "{{if size > 2}} (at position 0) needs one" in str(caught.value)


def test_long_non_number_value_is_shortened_in_the_message():
    with pytest.raises(RenderError) as caught:
        render("{{if n > 1}}x{{endif}}", n="y" * 5000)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ("{{if n < 'ten'}}", "'<' compares numbers, so write a number such as 10 instead of 'ten'"),
        ("{{if n >= \"a\"}}", "'>=' compares numbers"),
        ("{{if n in []}}", "invalid condition"),
        ("{{if n in ['a' 'b']}}", "invalid condition"),
        ("{{if n in [1, 2]}}", "invalid condition"),
        ("{{if n in 'a'}}", "invalid condition"),
        ("{{if n not ['a']}}", "invalid condition"),
        ("{{if n < 1.2.3}}", "invalid condition"),
        ("{{if n < 10 cm}}", "invalid condition"),
        ("{{elif}}", "invalid condition"),
    ],
)
def test_invalid_conditions_name_the_directive(condition, fragment):
    with pytest.raises(TemplateError) as caught:
        compile_template(f"ab {condition}x{{{{endif}}}}")
    assert caught.value.position == 3
    assert fragment in caught.value.message
    assert condition in caught.value.message


# --- loops ----------------------------------------------------------------------------------------


def test_loop_concatenates_bodies_over_stripped_non_empty_items():
    template = "boots{{for item in accessories}}, {item}{{endfor}}"
    assert render(template, accessories=" laces ;; ; buckle;  ") == "boots, laces, buckle"


def test_loop_with_separator_joins_non_blank_bodies():
    template = 'boots, {{for a in accessories sep ", "}}{{if a != "none"}}{a:lower}{{endif}}{{endfor}}'
    assert render(template, accessories="Laces;none;Buckle;Heel") == "boots, laces, buckle, heel"


def test_loop_separator_may_use_single_quotes_and_be_empty():
    assert render("{{for a in xs sep ' and '}}{a}{{endfor}}", xs="a;b;c") == "a and b and c"
    assert render("{{for a in xs sep ''}}{a}{{endfor}}", xs="a;b") == "ab"


@pytest.mark.parametrize("cell", ["", "  ", ";;", " ; "])
def test_loop_over_empty_cell_renders_nothing(cell):
    assert render("shoe{{for a in xs}}, {a}{{endfor}}", xs=cell) == "shoe"


def test_loop_variable_works_in_conditions_and_filters():
    template = "{{for a in xs sep ', '}}{{if a in ['hat', 'cap']}}{a:upper}{{else}}{a:capitalize}{{endif}}"
    template += "{{endfor}}"
    assert render(template, xs="hat;scarf;cap") == "HAT, Scarf, CAP"


def test_nested_loops_and_columns_inside_loops():
    template = "{{for a in xs sep '; '}}{a}:{{for b in ys sep ','}}{b}{color}{{endfor}}{{endfor}}"
    assert render(template, xs="1;2", ys="x;y", color="!") == "1:x!,y!; 2:x!,y!"


def test_loop_item_values_are_inserted_literally():
    assert render("{{for a in xs sep ' '}}<{a}>{{endfor}}", xs="{b};{{if x}};{0.__class__}") == (
        "<{b}> <{{if x}}> <{0.__class__}>"
    )


def test_loop_without_source_value_is_a_missing_variable():
    with pytest.raises(MissingVariableError) as caught:
        render("{{for a in accessories}}{a}{{endfor}}")
    assert caught.value.name == "accessories"
    assert "{{for a in accessories}} (at position 0) needs one" in str(caught.value)


def test_loop_variables_are_not_columns():
    template = compile_template("{a} {{for item in xs sep ', '}}{item}{{if item == 'x'}}{b}{{endif}}{{endfor}}")
    assert template.variables == {"a", "xs", "b"}
    assert template.required_variables == {"a"}
    assert template.loop_variables == {"item"}


def test_same_loop_variable_in_sibling_loops_is_fine():
    template = "{{for a in xs}}{a}{{endfor}}-{{for a in ys}}{a}{{endfor}}"
    assert render(template, xs="1;2", ys="3") == "12-3"


def test_loop_variable_named_like_a_given_value_is_rejected_at_render():
    with pytest.raises(RenderError, match="loop variable 'sku' has the name of a value") as caught:
        render("{{for sku in xs}}{sku}{{endfor}}", xs="a", sku="S-1")
    assert caught.value.name == "sku"


@pytest.mark.parametrize(
    "text",
    [
        "{{for}}{{endfor}}",
        "{{for a}}{{endfor}}",
        "{{for a in}}{{endfor}}",
        "{{for a in b c}}{{endfor}}",
        "{{for a in b sep}}{{endfor}}",
        "{{for a in b sep ,}}{{endfor}}",
        "{{for a.b in c}}{{endfor}}",
        "{{for a in b.c}}{{endfor}}",
    ],
)
def test_invalid_loops(text):
    with pytest.raises(TemplateError) as caught:
        compile_template(text)
    assert caught.value.position == 0
    assert caught.value.message.startswith(f"invalid loop '{text[: text.index('}}') + 2]}'")
    assert '{{for item in column sep ", "}}' in caught.value.message


# --- filters --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("placeholder", "expected"),
    [
        ("{v:upper}", "RED LEATHER BOOTS"),
        ("{v:lower}", "red leather boots"),
        ("{v:capitalize}", "RED leather boots"),
        ("{v:title}", "RED Leather Boots"),
        ("{v:lower:capitalize}", "Red leather boots"),
        ("{v:lower:title}", "Red Leather Boots"),
        ("{ v : lower : upper }", "RED LEATHER BOOTS"),
    ],
)
def test_filters(placeholder, expected):
    assert render(placeholder, v="rED leather boots") == expected


def test_filters_leave_non_latin_text_alone():
    assert render("{v:upper} {w:title}", v="ブーツ", w="straße café") == "ブーツ Straße Café"


def test_filters_combine_with_default_which_is_inserted_as_written():
    template = "{color:upper|Natural tan}"
    assert render(template, color="red") == "RED"
    assert render(template, color=" ") == "Natural tan"


def test_bar_before_filter_name_is_still_default_text():
    assert render("{v|upper}") == "upper"
    assert render("{v|a:b}") == "a:b"
    assert render("{v|upper}", v="x") == "x"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{v:shout}", "unknown filter 'shout'; filters are upper, lower, capitalize, title"),
        ("{v:}", "no filter name after ':'"),
        ("{v:upper:}", "no filter name after ':'"),
        ("{v:upper()}", "unknown filter 'upper()'"),
        ("{v:__class__}", "unknown filter '__class__'"),
        ("{v:%s}", "unknown filter '%s'"),
        ("{v:upper.__self__|x}", "unknown filter 'upper.__self__'"),
    ],
)
def test_unknown_filters_are_syntax_errors(text, fragment):
    with pytest.raises(TemplateError) as caught:
        compile_template("ab " + text)
    assert caught.value.position == 3
    assert "invalid placeholder" in caught.value.message
    assert fragment in caught.value.message


# --- limits ---------------------------------------------------------------------------------------


def test_nesting_depth_limit():
    ok = "{{if a}}" * MAX_DEPTH + "x" + "{{endif}}" * MAX_DEPTH
    assert render(ok, a="1") == "x"
    deep = "{{if a}}" * (MAX_DEPTH + 1) + "{{endif}}" * (MAX_DEPTH + 1)
    with pytest.raises(TemplateError) as caught:
        compile_template(deep)
    assert caught.value.position == 8 * MAX_DEPTH
    assert f"opens a block nested more than {MAX_DEPTH} deep" in caught.value.message


def test_node_count_limit():
    assert compile_template("{a}" * MAX_NODES)
    with pytest.raises(TemplateError) as caught:
        compile_template("{a}" * (MAX_NODES + 1))
    assert caught.value.position == 3 * MAX_NODES
    assert f"more than {MAX_NODES} parts" in caught.value.message


def test_template_length_limit():
    with pytest.raises(TemplateError, match=f"longer than the limit of {MAX_LENGTH:,}") as caught:
        compile_template("x" * (MAX_LENGTH + 1))
    assert caught.value.position == 0


def test_loop_item_limit_names_the_column():
    template = "{{for a in xs}}{a}{{endfor}}"
    assert render(template, xs=";".join("x" * MAX_LOOP_ITEMS)) == "x" * MAX_LOOP_ITEMS
    with pytest.raises(RenderError) as caught:
        render(template, xs=";".join("x" * (MAX_LOOP_ITEMS + 1)))
    assert caught.value.name == "xs"
    expected = f"'xs' has {MAX_LOOP_ITEMS + 1} items, more than the limit of {MAX_LOOP_ITEMS}"
    assert expected in str(caught.value)


def test_output_length_limit():
    assert len(render("{a}", a="x" * MAX_OUTPUT)) == MAX_OUTPUT
    with pytest.raises(RenderError, match=f"longer than the limit of {MAX_OUTPUT:,} characters") as caught:
        render("{a}{{for b in xs}}{a}{{endfor}}", a="x" * 1000, xs=";".join("y" * 20))
    assert caught.value.name is None


def test_loops_inside_loops_that_print_nothing_stop_at_the_step_limit():
    depth = MAX_DEPTH
    names = [f"v{i}" for i in range(depth)]
    template = "".join(f"{{{{for {n} in xs}}}}" for n in names) + "{{endfor}}" * depth
    with pytest.raises(RenderError, match=f"more than {MAX_STEPS:,} steps"):
        render(template, xs=";".join("x" * MAX_LOOP_ITEMS))


# --- hostile templates are never evaluated --------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{__import__('os')}",
        "{__import__('os').system('x')}",
        '{{if x == 1 or __import__("os").system("x")}}y{{endif}}',
        "{{if x and y}}z{{endif}}",
        "{{if __import__('os')}}z{{endif}}",
        "{{if x in [__import__('os')]}}z{{endif}}",
        "{{for a in __import__('os')}}{a}{{endfor}}",
        "{{for a in xs sep x.__class__}}{a}{{endfor}}",
        "{x:{y}}",
        "{x!s:upper}",
        "{x:upper!r}",
        "{x:>{width}}",
        "{x.__class__:upper}",
        "{x[0]:upper}",
        "{x:=^10}",
    ],
)
def test_hostile_templates_raise_template_error(text):
    with pytest.raises(TemplateError):
        compile_template(text)


@pytest.mark.parametrize(
    "value", ["{{if a}}x{{endif}}", "{{for a in b}}", "{b:upper}", "}}{{", "{__import__('os')}"]
)
def test_values_with_braces_are_inserted_literally_everywhere(value):
    template = "{v:upper} {{for a in xs}}[{a}]{{endfor}} {{if v in ['q']}}{{elif v}}ok{{endif}}"
    assert render(template, v=value, xs=value) == f"{value.upper()} [{value}] ok"
