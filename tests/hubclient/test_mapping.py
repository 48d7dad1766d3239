"""The one mapping from what happened to a call to the hub to a HubError."""

import datetime as dt
import email.utils
import inspect
import ssl

import httpx
import pytest

from fogline import FoglineError
from fogline.hubclient import (
    HTTPX_EXC_MAP,
    HubError,
    HubNotTrustedError,
    HubRefusedError,
    HubRejectedError,
    HubStatusError,
    HubUnreachableError,
    error_class,
    error_for_exception,
    error_for_response,
    is_transient_status,
    map_transport_errors,
    raise_for_response,
)

URL = "https://hub.example:8443"
REQUEST = httpx.Request("POST", f"{URL}/v1/enroll?x=1")


def _answer(status: int, *, json: object = None, text: str = "", **headers: str) -> httpx.Response:
    if json is not None:
        return httpx.Response(status, json=json, headers=headers, request=REQUEST)
    return httpx.Response(status, text=text, headers=headers, request=REQUEST)


# -- statuses ---------------------------------------------------------------------

STATUS_TABLE = [
    # (statuses, error, why)
    ((200, 201, 202, 204, 206, 299), None, "done"),
    ((408, 429, 500, 502, 503, 504, 599), HubUnreachableError, "transient: retry"),
    ((401, 403), HubRefusedError, "revoked device, bad token or claim"),
    ((400, 404, 405, 409, 410, 413, 415, 422, 431, 499), HubRejectedError, "a bug to report"),
    ((100, 301, 302, 304, 307, 308, 600, 999), HubUnreachableError, "no usable answer"),
]


@pytest.mark.parametrize(
    ("status", "expected"),
    [(status, error) for statuses, error, _why in STATUS_TABLE for status in statuses],
)
def test_each_status_class_means_one_error(status: int, expected: type[HubError] | None) -> None:
    assert error_class(status) is expected
    error = error_for_response(_answer(status))
    assert (type(error) if error is not None else None) is expected
    assert is_transient_status(status) is (expected is HubUnreachableError)


def test_every_status_a_server_can_send_falls_in_exactly_one_class() -> None:
    for status in range(100, 1000):
        cls = error_class(status)
        if 200 <= status <= 299:
            assert cls is None, status
        elif status in (401, 403):
            assert cls is HubRefusedError, status
        elif 400 <= status <= 499 and status not in (408, 429):
            assert cls is HubRejectedError, status
        else:
            assert cls is HubUnreachableError, status


def test_a_refusal_carries_the_hubs_own_code_and_message() -> None:
    error = error_for_response(
        _answer(403, json={"error": "forbidden", "message": "claim refused: used up"})
    )
    assert isinstance(error, HubRefusedError) and isinstance(error, HubStatusError)
    assert (error.status, error.code, error.message) == (403, "forbidden", "claim refused: used up")
    assert str(error) == "hub refused (403 forbidden): claim refused: used up"
    assert error.retry_after_s is None


def test_a_rejection_without_the_hubs_json_keeps_what_the_proxy_said() -> None:
    error = error_for_response(_answer(413, text="<h1>Request Entity Too Large</h1>"))
    assert isinstance(error, HubRejectedError)
    assert (error.status, error.code) == (413, "error")
    assert "Request Entity Too Large" in error.message


def test_a_transient_answer_names_where_and_carries_retry_after_in_seconds() -> None:
    error = error_for_response(
        _answer(503, json={"error": "unavailable", "message": "stopping"}, **{"Retry-After": "7"})
    )
    assert isinstance(error, HubUnreachableError)
    assert (error.status, error.retry_after_s) == (503, 7.0)
    assert str(error) == f"{URL}/v1/enroll: HTTP 503 (unavailable: stopping)"  # no query


def test_retry_after_as_an_http_date_is_the_time_until_then() -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    error = error_for_response(
        _answer(429, **{"Retry-After": email.utils.format_datetime(later, usegmt=True)})
    )
    assert isinstance(error, HubUnreachableError)
    assert error.retry_after_s is not None and 27 <= error.retry_after_s <= 30


def test_a_success_is_no_error_and_raise_for_response_raises_the_rest() -> None:
    assert error_for_response(_answer(200)) is None
    raise_for_response(_answer(204))
    with pytest.raises(HubUnreachableError):
        raise_for_response(_answer(408))
    with pytest.raises(HubRefusedError):
        raise_for_response(_answer(401))
    with pytest.raises(HubRejectedError):
        raise_for_response(_answer(422, json={"error": "invalid", "message": "name"}))


def test_an_unread_streamed_answer_is_mapped_without_reading_it() -> None:
    response = httpx.Response(404, stream=httpx.ByteStream(b"x" * 10), request=REQUEST)
    error = error_for_response(response)
    assert isinstance(error, HubRejectedError) and error.message == "Not Found"


# -- exceptions -----------------------------------------------------------------

# What each httpx exception means: every class httpx exports is listed, so a
# new one in a newer httpx fails here until someone decides.
EXCEPTION_TABLE: dict[str, type[HubError] | None] = {
    "ConnectError": HubUnreachableError,
    "ReadError": HubUnreachableError,
    "WriteError": HubUnreachableError,
    "CloseError": HubUnreachableError,
    "NetworkError": HubUnreachableError,
    "ConnectTimeout": HubUnreachableError,
    "ReadTimeout": HubUnreachableError,
    "WriteTimeout": HubUnreachableError,
    "PoolTimeout": HubUnreachableError,
    "TimeoutException": HubUnreachableError,
    "LocalProtocolError": HubUnreachableError,
    "RemoteProtocolError": HubUnreachableError,
    "ProtocolError": HubUnreachableError,
    "ProxyError": HubUnreachableError,
    "UnsupportedProtocol": HubUnreachableError,
    "TransportError": HubUnreachableError,
    "DecodingError": HubUnreachableError,
    "TooManyRedirects": HubUnreachableError,
    "RequestError": HubUnreachableError,
    "HTTPStatusError": HubRefusedError,  # decided by its response: a 403 here
    # bugs, never mapped: they propagate as they are
    "HTTPError": None,
    "InvalidURL": None,
    "CookieConflict": None,
    "StreamError": None,
    "StreamConsumed": None,
    "StreamClosed": None,
    "ResponseNotRead": None,
    "RequestNotRead": None,
}


def _httpx_exceptions() -> dict[str, type[Exception]]:
    return {
        name: value
        for name, value in vars(httpx).items()
        if inspect.isclass(value) and issubclass(value, Exception)
    }


def _instance(cls: type[Exception]) -> Exception:
    if cls is httpx.HTTPStatusError:
        return cls("refused", request=REQUEST, response=_answer(403))
    parameters = inspect.signature(cls.__init__).parameters
    if "request" in parameters:
        return cls("boom", request=REQUEST)  # type: ignore[call-arg]
    if "message" in parameters:
        return cls("boom")  # type: ignore[call-arg]
    return cls()


def test_every_httpx_exception_is_in_the_table() -> None:
    assert set(_httpx_exceptions()) == set(EXCEPTION_TABLE)


@pytest.mark.parametrize(("name", "expected"), sorted(EXCEPTION_TABLE.items()))
def test_each_httpx_exception_family_means_one_error(
    name: str, expected: type[HubError] | None
) -> None:
    exc = _instance(_httpx_exceptions()[name])
    error = error_for_exception(exc, URL)
    assert (type(error) if error is not None else None) is expected
    if expected is HubUnreachableError:
        assert str(error).startswith(f"cannot reach the hub at {URL}: {name}: boom")


def test_the_table_runs_from_specific_to_general() -> None:
    families = [family for family, _error in HTTPX_EXC_MAP]
    for i, earlier in enumerate(families):
        for later in families[i + 1 :]:
            assert not issubclass(later, earlier), f"{later} is shadowed by {earlier}"


def _verify_failure(message: str) -> ssl.SSLCertVerificationError:
    failure = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    failure.verify_message = message
    return failure


@pytest.mark.parametrize(
    ("message", "is_name_mismatch"),
    [
        ("self-signed certificate in certificate chain", False),
        ("Hostname mismatch, certificate is not valid for 'hub.example'.", True),
        ("IP address mismatch, certificate is not valid for '10.0.0.1'.", True),
    ],
)
def test_a_certificate_that_did_not_verify_is_named_apart(
    message: str, is_name_mismatch: bool
) -> None:
    connect = httpx.ConnectError("handshake failed", request=REQUEST)
    connect.__cause__ = _verify_failure(message)
    error = error_for_exception(connect, URL)
    assert isinstance(error, HubNotTrustedError) and isinstance(error, HubUnreachableError)
    assert (error.url, error.is_name_mismatch) == (URL, is_name_mismatch)
    assert error.reason == message.rstrip(".")


def test_map_transport_errors_chains_what_it_maps_and_lets_bugs_through() -> None:
    cause = httpx.ReadTimeout("timed out", request=REQUEST)
    with pytest.raises(HubUnreachableError) as caught, map_transport_errors(URL):
        raise cause
    assert caught.value.__cause__ is cause and caught.value.status is None
    with pytest.raises(httpx.StreamClosed), map_transport_errors(URL):
        raise httpx.StreamClosed()
    with pytest.raises(KeyError), map_transport_errors(URL):
        raise KeyError("not ours to map")


def test_the_tree_hangs_under_fogline_error_by_fault() -> None:
    assert issubclass(HubError, FoglineError)
    for cls in (HubUnreachableError, HubStatusError):
        assert issubclass(cls, HubError)
    for cls in (HubRefusedError, HubRejectedError):
        assert issubclass(cls, HubStatusError) and not issubclass(cls, HubUnreachableError)
    assert issubclass(HubNotTrustedError, HubUnreachableError)
