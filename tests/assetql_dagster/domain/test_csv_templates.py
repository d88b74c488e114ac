"""Richer templates (elif, comparisons, loops, filters, limits) checked row by row by read_batch_csv."""

import pytest
from harness.batch_csv import problems_of, where, write_csv

from assetql_dagster.domain.csv_schema import read_batch_csv
from assetql_dagster.domain.settings import BatchSettings
from assetql_dagster.domain.templating import compile_template


def prompts(rows, settings):
    template = compile_template(settings.template)
    return [template.render(row.template_values()) for row in rows]


def test_non_numeric_value_in_numeric_condition_names_row_and_column(tmp_path):
    settings = BatchSettings(template="{subject}{{if size > 40}}, large{{elif size > 10}}, medium{{endif}}")
    path = write_csv(tmp_path, "variant_id,subject,size\na1,boot,50\na2,boot,big\na3,boot,\na4,boot,12\n")
    problems = problems_of(path, settings)
    assert where(problems) == [("batch.csv", 3, "size"), ("batch.csv", 4, "size")]
    expected = "'size' is 'big', which is not a number, but {{if size > 40}} (at position 9)"
    assert expected in problems[0].message
    assert "'size' is empty" in problems[1].message


def test_elif_comparison_on_a_row_whose_first_branch_holds_is_not_checked(tmp_path):
    settings = BatchSettings(template="{subject}{{if kind == 'hat'}}, hat{{elif size > 10}}, big{{endif}}")
    path = write_csv(tmp_path, "variant_id,subject,kind,size\na1,x,hat,n/a\n")
    assert prompts(read_batch_csv(path, settings), settings) == ["x, hat"]


def test_loop_and_comparison_without_column_are_reported_per_row(tmp_path):
    settings = BatchSettings(template="{subject}{{for a in accessories}}, {a}{{endfor}}{{if n < 2}}!{{endif}}")
    problems = problems_of(write_csv(tmp_path, "variant_id,subject\na1,boot\n"), settings)
    assert where(problems) == [("batch.csv", 2, "accessories")]
    assert "there is no 'accessories' column" in problems[0].message


def test_too_many_loop_items_names_row_and_column(tmp_path):
    settings = BatchSettings(template="{subject}{{for a in tags sep ', '}}{a}{{endfor}}")
    many = ";".join(f"t{i}" for i in range(60))
    path = write_csv(tmp_path, f"variant_id,subject,tags\na1,boot,a;b\na2,boot,{many}\n")
    problems = problems_of(path, settings)
    assert where(problems) == [("batch.csv", 3, "tags")]
    assert "'tags' has 60 items, more than the limit of 50" in problems[0].message


def test_prompt_over_the_output_limit_is_a_row_problem(tmp_path):
    settings = BatchSettings(template="{{for a in tags}}{subject}{{endfor}}")
    long = "x" * 4000
    problems = problems_of(write_csv(tmp_path, f"variant_id,subject,tags\na1,{long},a;b;c\n"), settings)
    assert where(problems) == [("batch.csv", 2, None)]
    assert "longer than the limit of 10,000 characters" in problems[0].message


@pytest.mark.parametrize(
    ("loop_var", "header"), [("style", "variant_id,subject,style,xs"), ("sku", "variant_id,subject,xs")]
)
def test_loop_variable_named_like_a_column_is_reported_once_on_the_header(tmp_path, loop_var, header):
    settings = BatchSettings(template=f"{{subject}}{{{{for {loop_var} in xs}}}} {{{loop_var}}}{{{{endfor}}}}")
    cells = ",".join(["a", "boot", "ink", "x;y"][: header.count(",") + 1])
    path = write_csv(tmp_path, f"{header}\n{cells}\n{cells.replace('a', 'b', 1)}\n")
    problems = problems_of(path, settings)
    assert where(problems) == [("batch.csv", 1, loop_var)]
    assert f"loop variable '{loop_var}' would hide the row's '{loop_var}' value" in problems[0].message


def test_rich_template_renders_through_read_batch_csv(tmp_path):
    settings = BatchSettings(
        template=(
            "{subject:lower:capitalize}{{if region in ['EU', 'UK']}}, CE mark{{endif}}"
            "{{if accessories}}, {{for a in accessories sep ', '}}{a:lower}{{endfor}}{{else}}, plain{{endif}}"
            ", {mood:upper|calm}"
        )
    )
    header = "variant_id,subject,region,accessories,mood"
    path = write_csv(tmp_path, f"{header}\na1,RED boot,EU,Laces; Buckle,\na2,hat,US,,{{0}}\n")
    expected = ["Red boot, CE mark, laces, buckle, calm", "Hat, plain, {0}"]
    assert prompts(read_batch_csv(path, settings), settings) == expected


def test_hostile_template_is_a_settings_problem_and_never_evaluated(tmp_path):
    settings = BatchSettings(template='{subject}{{if x == 1 or __import__("os").system("x")}}!{{endif}}')
    problems = problems_of(write_csv(tmp_path, "variant_id,subject,x\na1,boot,1\n"), settings)
    assert where(problems) == [("batch.yaml", None, "template"), ("batch.csv", 1, "prompt")]
    assert "invalid condition" in problems[0].message
