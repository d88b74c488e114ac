"""The Amazon Translate resource against a local stand-in server (tests/harness/translate_server.py),
not Amazon's service: real HTTP, signing and botocore retries, on loopback."""

import pytest
from harness.translate_server import TARGET, TranslateServer

from resources.translator import MAX_TEXT_BYTES, AwsTranslate, TranslationError


def translator(url: str, **config) -> AwsTranslate:
    return AwsTranslate(endpoint_url=url, region_name="eu-west-1", aws_access_key_id="AKIDTEST",
                        aws_secret_access_key="secret", **config)


def test_each_text_is_one_signed_translate_text_call_in_order():
    with TranslateServer() as server:
        out = translator(server.url).translate(["espada roja", "acero", "", "espada de acero"], "es")
    assert out == ["red sword", "steel", "", "sword of steel"]
    # The empty text is not sent: TranslateText refuses it.
    assert [r["body"] for r in server.requests] == [
        {"Text": text, "SourceLanguageCode": "es", "TargetLanguageCode": "en"}
        for text in ("espada roja", "acero", "espada de acero")
    ]
    assert {r["target"] for r in server.requests} == {TARGET}
    # SigV4 for the translate service in the configured region, with the bound key.
    for request in server.requests:
        assert "Credential=AKIDTEST/" in request["authorization"]
        assert "/eu-west-1/translate/aws4_request" in request["authorization"]


def test_japanese_text_and_the_default_chain_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with TranslateServer() as server:
        out = AwsTranslate(endpoint_url=server.url, region_name="ap-northeast-1").translate(["赤い剣"], "ja")
    assert out == ["red sword"]
    assert "Credential=AKIDFROMENV/" in server.requests[0]["authorization"]


def test_throttling_and_server_errors_are_retried():
    with TranslateServer(failures=[(400, "ThrottlingException"), (500, "InternalServerException")]) as server:
        out = translator(server.url).translate(["espada"], "es")
    assert out == ["sword"]
    assert len(server.requests) == 3


def test_errors_that_outlast_the_retries_name_the_text_and_the_message():
    failures = [(503, "ServiceUnavailableException")] * 2
    with TranslateServer(failures=failures) as server:
        message = r"refused text 1 \(es to en, 'roja'\): ServiceUnavailableException: The service is temporarily"
        with pytest.raises(TranslationError, match=message):
            translator(server.url, max_attempts=2).translate(["", "roja"], "es")
    assert len(server.requests) == 2  # max_attempts counts calls in all


def test_a_refused_language_pair_names_the_text_and_the_service_message():
    with TranslateServer() as server:
        message = r"refused text 0 \(pt to en, 'espada'\): UnsupportedLanguagePairException: Unsupported language pair"
        with pytest.raises(TranslationError, match=message + ": pt to en"):
            translator(server.url).translate(["espada"], "pt")


def test_same_language_and_bad_arguments_send_nothing():
    with TranslateServer() as server:
        aws = translator(server.url)
        assert aws.translate(["sword"], "en") == ["sword"]
        with pytest.raises(ValueError, match="source_language must be a language code such as 'es' or 'ja', got ''"):
            aws.translate(["x"], "")
        with pytest.raises(ValueError, match="texts must be a list of strings, got 'espada'"):
            aws.translate("espada", "es")
        too_long = f"text 1 is {MAX_TEXT_BYTES + 2} bytes of UTF-8; .* at most {MAX_TEXT_BYTES}"
        with pytest.raises(ValueError, match=too_long):
            aws.translate(["ok", "é" * (MAX_TEXT_BYTES // 2 + 1)], "es")
    assert server.requests == []


def test_an_unreachable_endpoint_is_a_translation_error():
    with TranslateServer() as server:
        url = server.url
    with pytest.raises(TranslationError, match="could not be reached for text 0"):
        translator(url, max_attempts=1, timeout_s=2).translate(["espada"], "es")
