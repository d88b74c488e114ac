"""The `aws-translate` translator: Amazon Translate's TranslateText, one call per text.

Throttling and server errors are retried by botocore (standard mode, `max_attempts` calls in all,
with backoff; that is botocore's `total_max_attempts`, its own `max_attempts` counting retries
only); what still fails is a TranslationError naming the text's index and the service's message.
Credentials come from the environment: bind them as `dg.EnvVar`s, or leave them out for boto3's
default chain (environment, shared config, instance or task role).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from resources.aws_clients import AwsApi

# TranslateText takes at most 10,000 bytes of UTF-8 per call.
MAX_TEXT_BYTES = 10_000


class TranslationError(RuntimeError):
    """A text could not be translated: the service refused it or could not be reached."""


class AwsTranslate(AwsApi):
    """Amazon Translate in `region_name` (or at `endpoint_url`); bind credentials with `dg.EnvVar`."""

    endpoint_url: str | None = None
    timeout_s: float = 30.0

    @property
    def client(self) -> Any:
        """The boto3 `translate` client, created on first use; TranslationError when boto3 cannot
        make one (e.g. no region)."""
        return self.api_client("translate", self.endpoint_url, TranslationError, "Amazon Translate")

    def translate(self, texts: list[str], source_language: str, target_language: str = "en") -> list[str]:
        """Each of `texts` from `source_language` into `target_language` (language codes such as
        es, ja or auto), in order; empty texts stay empty, and same-language texts are not sent."""
        for name, code in (("source_language", source_language), ("target_language", target_language)):
            if not isinstance(code, str) or not code.strip():
                raise ValueError(f"{name} must be a language code such as 'es' or 'ja', got {code!r}")
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise ValueError(f"texts must be a list of strings, got {texts!r}")
        for index, text in enumerate(texts):
            size = len(text.encode("utf-8"))
            if size > MAX_TEXT_BYTES:
                raise ValueError(
                    f"text {index} is {size} bytes of UTF-8; Amazon Translate takes at most {MAX_TEXT_BYTES} per call"
                )
        if source_language == target_language:
            return list(texts)
        return [self._translate_one(i, text, source_language, target_language) for i, text in enumerate(texts)]

    def _translate_one(self, index: int, text: str, source: str, target: str) -> str:
        if not text.strip():
            return text  # TranslateText refuses empty text, and there is nothing to translate
        try:
            response = self.client.translate_text(Text=text, SourceLanguageCode=source, TargetLanguageCode=target)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise TranslationError(
                f"Amazon Translate refused text {index} ({source} to {target}, {text[:40]!r}): "
                f"{error.get('Code', 'error')}: {error.get('Message', '')}"
            ) from exc
        except BotoCoreError as exc:
            raise TranslationError(f"Amazon Translate could not be reached for text {index}: {exc}") from exc
        return response["TranslatedText"]
