import codecs
import os

import pytest

from assetql_dagster.domain.csv_schema import BatchRow, batch_template, read_batch_csv
from assetql_dagster.domain.settings import BatchSettings
from harness.batch_csv import problems_of, where, write_csv

DEFAULTS = BatchSettings()


def test_reads_rows_with_known_and_extra_columns(tmp_path):
    path = write_csv(tmp_path, "variant_id,prompt,sku,style\nhero-1,a knight,SKU1,ink\nhero-2,a mage,,\n")
    rows = read_batch_csv(path, DEFAULTS)
    assert rows == [
        BatchRow(2, "hero-1", "a knight", "", "SKU1", "", {"style": "ink"}),
        BatchRow(3, "hero-2", "a mage", "", "", "", {"style": ""}),
    ]


def test_header_names_and_cells_are_stripped_case_kept(tmp_path):
    path = write_csv(tmp_path, " variant_id , prompt , Mood \n a1 ,  a fox  , Calm \n")
    [row] = read_batch_csv(path, DEFAULTS)
    assert (row.variant_id, row.prompt, row.extra) == ("a1", "a fox", {"Mood": "Calm"})


def test_bom_and_crlf_are_accepted(tmp_path):
    path = write_csv(tmp_path, codecs.BOM_UTF8 + "variant_id,prompt\r\na1,café\r\na2,b\r\n".encode())
    rows = read_batch_csv(path, DEFAULTS)
    assert [(r.line, r.variant_id, r.prompt) for r in rows] == [(2, "a1", "café"), (3, "a2", "b")]


def test_quoted_newlines_keep_physical_line_numbers(tmp_path):
    path = write_csv(tmp_path, 'variant_id,prompt\na1,"line one\nline two\nline three"\na2,next\n')
    rows = read_batch_csv(path, DEFAULTS)
    assert [(r.line, r.prompt) for r in rows] == [(2, "line one\nline two\nline three"), (5, "next")]


def test_blank_and_empty_cell_rows_are_skipped(tmp_path):
    path = write_csv(tmp_path, "variant_id,prompt\n\na1,x\n , \n,\na2,y\n")
    assert [r.line for r in read_batch_csv(path, DEFAULTS)] == [3, 6]


def test_file_over_size_limit_is_rejected_before_reading(tmp_path):
    path = write_csv(tmp_path, "variant_id,prompt\n" + "a1,x\n" * 50)
    [problem] = problems_of(path, max_bytes=100)
    assert where([problem]) == [("batch.csv", None, None)]
    assert f"{path.stat().st_size:,} bytes" in problem.message
    assert "limit of 100 bytes" in problem.message


def test_non_utf8_names_row_of_first_bad_byte(tmp_path):
    path = write_csv(tmp_path, b"variant_id,prompt\na1,fine\na2,caf\xe9\na3,caf\xe9\n")
    [problem] = problems_of(path)
    assert where([problem]) == [("batch.csv", 3, None)]
    assert "0xe9" in problem.message


def test_unmatched_quote_names_row_where_field_starts(tmp_path):
    path = write_csv(tmp_path, 'variant_id,prompt\na1,ok\na2,"never closed\na3,x\n')
    [problem] = problems_of(path)
    assert where([problem]) == [("batch.csv", 3, None)]
    assert "unmatched quote" in problem.message


def test_unmatched_quote_after_multiline_field_names_its_own_line(tmp_path):
    path = write_csv(tmp_path, 'variant_id,prompt,note\na1,"two\nlines","open\nstill open\n')
    [problem] = problems_of(path)
    assert problem.row == 3
    assert "unmatched quote" in problem.message


def test_text_after_closing_quote_is_reported_and_parsing_continues(tmp_path):
    path = write_csv(tmp_path, 'variant_id,prompt\na1,"quoted"tail\na2,\n')
    problems = problems_of(path)
    assert where(problems) == [("batch.csv", 2, None), ("batch.csv", 3, "prompt")]
    assert "cannot parse this record" in problems[0].message


def test_a_cell_over_the_field_limit_is_called_too_long_not_badly_quoted(tmp_path):
    path = write_csv(tmp_path, 'variant_id,prompt\na1,"' + "a" * 200_000 + '"\na2,fine\n')
    [problem] = problems_of(path)
    assert where([problem]) == [("batch.csv", 2, None)]
    assert problem.message == "a cell is longer than the limit of 131,072 characters; shorten it"


@pytest.mark.parametrize("content", ["", "\n\n", " , \n"])
def test_empty_file(tmp_path, content):
    [problem] = problems_of(write_csv(tmp_path, content))
    assert where([problem]) == [("batch.csv", 1, None)]
    assert "file is empty" in problem.message


def test_header_only_has_no_data_rows(tmp_path):
    [problem] = problems_of(write_csv(tmp_path, "variant_id,prompt\n"))
    assert where([problem]) == [("batch.csv", 1, None)]
    assert "no data rows" in problem.message


def test_duplicate_and_empty_header_names(tmp_path):
    problems = problems_of(write_csv(tmp_path, "variant_id,prompt,prompt,\na1,x,y,z\n"))
    assert where(problems) == [("batch.csv", 1, None), ("batch.csv", 1, "prompt")]
    assert "header column 4 has no name" in problems[0].message
    assert "appears 2 times" in problems[1].message


def test_missing_variant_id_column_hints_at_case(tmp_path):
    [problem] = problems_of(write_csv(tmp_path, "Variant_ID,prompt\na1,x\n"))
    assert where([problem]) == [("batch.csv", 1, "variant_id")]
    assert "found 'Variant_ID'" in problem.message


def test_missing_prompt_column_without_template(tmp_path):
    [problem] = problems_of(write_csv(tmp_path, "variant_id,subject\na1,x\n"))
    assert where([problem]) == [("batch.csv", 1, "prompt")]
    assert "the header has: variant_id, subject" in problem.message


def test_prompt_column_optional_with_template(tmp_path):
    path = write_csv(tmp_path, "variant_id,subject\na1,fox\n")
    settings = BatchSettings(template="{subject} in snow")
    [row] = read_batch_csv(path, settings)
    assert batch_template(settings).for_language(row.language).render(row.template_values()) == "fox in snow"


@pytest.mark.parametrize(
    ("variant_id", "fragment"),
    [
        ("", "variant_id is empty"),
        ("a b", "letters, digits"),
        ("a/b", "letters, digits"),
        ("-a", "starting with a letter or digit"),
        ("x" * 65, "1-64"),
    ],
)
def test_invalid_variant_ids(tmp_path, variant_id, fragment):
    [problem] = problems_of(write_csv(tmp_path, f"variant_id,prompt\nok,x\n{variant_id},y\n"))
    assert where([problem]) == [("batch.csv", 3, "variant_id")]
    assert fragment in problem.message


def test_duplicate_variant_id_names_first_row_ignoring_case(tmp_path):
    problems = problems_of(write_csv(tmp_path, "variant_id,prompt\nA1,x\nb,y\na1,z\nA1,w\n"))
    assert where(problems) == [("batch.csv", 4, "variant_id"), ("batch.csv", 5, "variant_id")]
    assert "'a1': already used on row 2 as 'A1'" in problems[0].message
    assert problems[1].message.endswith("'A1': already used on row 2")


def test_empty_prompt(tmp_path):
    [problem] = problems_of(write_csv(tmp_path, "variant_id,prompt\na1,x\na2,  \n"))
    assert where([problem]) == [("batch.csv", 3, "prompt")]


@pytest.mark.parametrize(("row", "count"), [("a2,x,extra", 3), ("a2", 1)])
def test_wrong_field_count(tmp_path, row, count):
    [problem] = problems_of(write_csv(tmp_path, f"variant_id,prompt\na1,x\n{row}\n"))
    assert where([problem]) == [("batch.csv", 3, None)]
    assert f"row has {count} fields but the header has 2" in problem.message


def test_more_rows_than_max_rows(tmp_path):
    settings = BatchSettings(max_rows=3)
    path = write_csv(tmp_path, "variant_id,prompt\n" + "".join(f"a{i},x\n" for i in range(5)))
    [problem] = problems_of(path, settings, settings_file="my.yaml")
    assert where([problem]) == [("batch.csv", 5, None)]
    assert all(part in problem.message for part in ("5 data rows", "max_rows=3", "my.yaml"))


def test_invalid_template_is_reported_against_settings_file(tmp_path):
    settings = BatchSettings(template="{subject.__class__}")
    path = write_csv(tmp_path, "variant_id,subject\na1,x\n")
    problems = problems_of(path, settings, settings_file="b.yaml")
    assert where(problems) == [("b.yaml", None, "template"), ("batch.csv", 1, "prompt")]
    assert "invalid placeholder" in problems[0].message


def test_template_variable_without_column(tmp_path):
    settings = BatchSettings(template="{subject}, {Style} {mood|calm} {{if pose}}{pose}{{endif}}")
    problems = problems_of(write_csv(tmp_path, "variant_id,subject,style\na1,fox,ink\n"), settings)
    assert where(problems) == [("batch.csv", 1, "Style")]
    assert "found 'style'" in problems[0].message


def test_required_template_cell_empty(tmp_path):
    settings = BatchSettings(template="{subject} {style} {mood|calm}")
    path = write_csv(tmp_path, "variant_id,subject,style,mood\na1,fox,ink,\na2,,,happy\n")
    problems = problems_of(path, settings)
    assert where(problems) == [("batch.csv", 3, "style"), ("batch.csv", 3, "subject")]


def test_conditional_variable_without_column_reported_on_rows_that_use_it(tmp_path):
    settings = BatchSettings(template="{subject}{{if category == 'character'}}, {pose}{{endif}}")
    path = write_csv(tmp_path, "variant_id,subject,category\na1,fox,prop\na2,knight,character\n")
    [problem] = problems_of(path, settings)
    assert where([problem]) == [("batch.csv", 3, "pose")]


def test_template_rendering_empty_prompt(tmp_path):
    settings = BatchSettings(template="{subject|}")
    [problem] = problems_of(write_csv(tmp_path, "variant_id,subject\na1,\n"), settings)
    assert where([problem]) == [("batch.csv", 2, None)]
    assert "empty prompt" in problem.message


def test_all_problems_reported_at_once(tmp_path):
    path = write_csv(tmp_path, "variant_id,prompt\n,x\nbad id,y\nok,\nok,z\nlong,row,here\n")
    problems = problems_of(path, BatchSettings(max_rows=4))
    assert where(problems) == [
        ("batch.csv", 6, None),
        ("batch.csv", 6, None),
        ("batch.csv", 2, "variant_id"),
        ("batch.csv", 3, "variant_id"),
        ("batch.csv", 4, "prompt"),
        ("batch.csv", 5, "variant_id"),
    ]


def test_naming_pattern_may_use_extra_columns(tmp_path):
    settings = BatchSettings(naming_pattern="{batch}_{color}_{variant_id}_{hash}")
    assert len(read_batch_csv(write_csv(tmp_path, "variant_id,prompt,color\na1,x,red\n"), settings)) == 1


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [("{batch}_{colour}", "unknown placeholder '{colour}'"), ("{0.__class__}", "invalid placeholder")],
)
def test_invalid_naming_pattern_is_reported_against_settings_file(tmp_path, pattern, fragment):
    settings = BatchSettings(naming_pattern=pattern)
    [problem] = problems_of(write_csv(tmp_path, "variant_id,prompt,color\na1,x,red\n"), settings)
    assert (problem.file, problem.row, problem.column) == ("batch.yaml", None, "naming_pattern")
    assert fragment in problem.message


def test_header_problems_do_not_hide_row_problems_in_other_columns(tmp_path):
    settings = BatchSettings(template="{subject} in {environment}")
    path = write_csv(tmp_path, "variant_id,subject\nsword-01,a sword\nsword-01,\n")
    problems = problems_of(path, settings)
    assert where(problems) == [("batch.csv", 1, "environment"), ("batch.csv", 3, "variant_id")]


def test_missing_variant_id_column_is_not_repeated_per_row(tmp_path):
    problems = problems_of(write_csv(tmp_path, "id,prompt\na1,x\na2,\n"))
    assert where(problems) == [("batch.csv", 1, "variant_id"), ("batch.csv", 3, "prompt")]


def test_batch_template_none_without_template():
    assert batch_template(BatchSettings()) is None


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x0e", "\x1f", "\x7f"])
def test_control_character_in_a_cell_names_row_and_column(tmp_path, char):
    path = write_csv(tmp_path, f"variant_id,prompt\na1,a red{char} fox\na2,fine\n")
    [problem] = problems_of(path)
    assert (problem.file, problem.row, problem.column) == ("batch.csv", 2, "prompt")
    assert f"U+{ord(char):04X}" in problem.message


def test_control_character_at_cell_edge_is_caught_before_stripping(tmp_path):
    # str.strip() removes \x1c-\x1f, so the check must see the raw cell.
    path = write_csv(tmp_path, "variant_id,prompt\na1\x1f,a fox\n")
    [problem] = problems_of(path)
    assert (problem.row, problem.column) == (2, "variant_id")


def test_control_character_in_header_names_column_number(tmp_path):
    path = write_csv(tmp_path, "variant_id,prompt,x\x00y\na1,a fox,1\n")
    [problem] = problems_of(path)
    assert (problem.row, problem.column) == (1, "column 3")


def test_tab_and_quoted_newline_are_allowed(tmp_path):
    path = write_csv(tmp_path, 'variant_id,prompt\na1,"a red\tfox\non two lines"\n')
    [row] = read_batch_csv(path, DEFAULTS)
    assert "\t" in row.prompt


def test_fifo_csv_is_rejected_without_opening(tmp_path):
    path = tmp_path / "batch.csv"
    os.mkfifo(path)  # opening a FIFO with no writer would block forever
    [problem] = problems_of(path)
    assert problem.file == "batch.csv" and "not a regular file" in problem.message
