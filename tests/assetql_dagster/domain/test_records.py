import json

import pytest

from harness.record_samples import SAMPLES

from assetql_dagster.domain.records import RECORD_TYPES, TagSet, from_json, to_json
from assetql_dagster.domain.tagging import Tag


def test_every_record_type_has_a_sample():
    assert {type(s).__name__ for s in SAMPLES} == set(RECORD_TYPES)


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: type(r).__name__)
def test_records_survive_json_with_their_types(record):
    assert from_json(json.loads(json.dumps(to_json(record)))) == record


def test_loading_trusts_what_registration_validated():
    # Tag checks its confidence when built; a stored record is restored without checking again.
    document = to_json(next(s for s in SAMPLES if isinstance(s, TagSet)))
    document["value"]["images"][0]["tags"][0]["confidence"] = 2.0
    assert from_json(document).images[0].tags[0].confidence == 2.0
    with pytest.raises(ValueError, match="confidence"):
        Tag("red", "color", 2.0)


def test_unknown_documents_and_types_are_refused_by_name():
    with pytest.raises(ValueError, match="not an AssetQL record of format 1.*'Nope'"):
        from_json({"format": 1, "type": "Nope", "value": {}})
    with pytest.raises(TypeError, match="cannot store a dict"):
        to_json({"a": 1})


def test_tags_stored_before_sources_and_categories_still_load():
    document = to_json(next(s for s in SAMPLES if isinstance(s, TagSet)))
    image = document["value"]["images"][0]
    for tag in image["tags"]:
        del tag["source"]
    del image["category"], image["category_source"]
    loaded = from_json(document).images[0]
    assert {t.source for t in loaded.tags} == {"unrecorded"}
    assert (loaded.category, loaded.category_source) == ("", "")
