"""The rate limit's sliding window and the signed double-submit CSRF tokens."""

from assetql_dagster.library.guard import Csrf, RateLimiter


def test_the_rate_limit_allows_the_limit_per_minute_then_says_when_to_come_back():
    limiter = RateLimiter(3)
    assert [limiter.retry_after("ana", now=t) for t in (0.0, 10.0, 20.0)] == [None, None, None]
    assert limiter.retry_after("ana", now=30.0) == 30  # the first request leaves the window at 60 s
    assert limiter.retry_after("bo", now=30.0) is None  # each person has their own minute
    assert limiter.retry_after("ana", now=60.0) is None
    assert limiter.retry_after("ana", now=61.0) == 9


def test_csrf_tokens_are_signed_for_one_person_and_must_match_the_cookie():
    csrf = Csrf("secret")
    token = csrf.issue("ana@studio.example")
    assert csrf.valid(token, token, "ana@studio.example")
    assert not csrf.valid(token, token, "bo@studio.example")  # another person's token
    assert not csrf.valid(token, csrf.issue("ana@studio.example"), "ana@studio.example")  # not the cookie's
    assert not csrf.valid(token, None, "ana@studio.example")
    forged = Csrf("another secret").issue("ana@studio.example")
    assert not csrf.valid(forged, forged, "ana@studio.example")
