"""The throwaway hub's operator client reads the hub's answers with
fogline.hubclient's one mapping, not a mapping of its own."""

import socket

import pytest

from fogline.hubclient import HubRefusedError, HubRejectedError, HubUnreachableError
from fogline.sim import OperatorClient, RehearsalError
from tests.support.processes import HubProcess


def test_a_bad_token_is_a_refusal_as_the_hubclient_maps_it(shared_hub: HubProcess) -> None:
    client = OperatorClient(shared_hub.url, "not-a-token", shared_hub.ca)
    try:
        with pytest.raises(RehearsalError, match=r"GET /v1/devices: hub refused \(401") as info:
            client.call("GET", "/v1/devices")
    finally:
        client.close()
    assert isinstance(info.value.hub_error, HubRefusedError)
    assert info.value.__cause__ is info.value.hub_error


def test_a_request_the_hub_cannot_take_is_a_rejection(shared_hub: HubProcess) -> None:
    client = OperatorClient(shared_hub.url, shared_hub.token, shared_hub.ca)
    try:
        with pytest.raises(RehearsalError, match="POST /v1/claims: hub refused") as info:
            client.call("POST", "/v1/claims", json={"max_uses": "many"})
    finally:
        client.close()
    assert isinstance(info.value.hub_error, HubRejectedError)
    assert info.value.hub_error.status == 422


def test_no_hub_at_all_is_transient(shared_hub: HubProcess) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OperatorClient(f"https://127.0.0.1:{port}", shared_hub.token, shared_hub.ca)
    try:
        with pytest.raises(RehearsalError, match="cannot reach the hub") as info:
            client.call("GET", "/v1/devices")
    finally:
        client.close()
    assert isinstance(info.value.hub_error, HubUnreachableError)
