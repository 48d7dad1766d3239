"""Enrollment: from a claim to the node's identity, retrying while the hub is away.

Enrollment retries every transient failure (no answer, 408, 429, 5xx, as a
proxy in front of the hub may send), waiting at least what Retry-After asks.
Only a definite no stops it: 401/403 (a bad claim) or another 4xx (a name
taken, a request the hub cannot take), since no amount of retrying fixes those.

A node whose certificate expired (away too long, or its renewals failed)
enrolls again with a claim as the same device, with its own key (`recover`).
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from fogline._log import event
from fogline.hubclient import HubUnreachableError
from fogline.protocol import DeviceFacts, EnrollRequest, EnrollResponse

from ._backoff import Backoff
from ._clock import Clock
from ._hublink import HubLink
from ._identity import Identity, IdentityStore

log = logging.getLogger("fogline.agent")

ENROLL_BACKOFF_INITIAL_S = 0.5
ENROLL_BACKOFF_MAX_S = 30.0


class Enroller:
    """Loads the node's identity, or enrolls it with a claim."""

    def __init__(
        self,
        store: IdentityStore,
        connect: Callable[[Path], HubLink],
        *,
        ca_path: Path,
        clock: Clock | None = None,
        on_retry: Callable[[HubUnreachableError, float], None] | None = None,
    ) -> None:
        """`connect(ca)` opens a link without a client certificate that checks
        the hub against the CA bundle `ca` (a new one per attempt: a link
        broken by the last one is not reused); `ca_path` is the fleet CA the
        operator gave. `on_retry` is told each transient failure and the
        delay before the next attempt."""
        self._store, self._connect, self._ca_path = store, connect, ca_path
        self._clock = clock or Clock()
        self._on_retry = on_retry
        self.reply: EnrollResponse | None = None  # the hub's last answer, once enrolled here

    async def ensure(
        self,
        *,
        claim: Callable[[], str],
        name: str,
        labels: Mapping[str, str],
        facts: Callable[[], DeviceFacts],
        recover_expired: bool = False,
    ) -> Identity:
        """The identity on disk, or a new one from the hub.

        `claim` is asked only when the node must enroll (its file may be
        gone once it has). With `recover_expired`, an identity whose
        certificate has expired is enrolled again (`recover`) first.

        Raises:
            HubRefusedError: the hub refused the claim (401/403).
            HubRejectedError: the hub refused the request (another 4xx: name taken).
            IdentityError: damaged identity files, or `claim` found no claim.
        """
        identity = self._store.load()
        if identity is not None:
            if recover_expired and self._store.lifetime().is_expired(self._clock.now()):
                # Away past its certificate's end: the claim brings it back,
                # as the same device (its key), before anything needs the hub.
                return await self.recover(identity, claim=claim, labels=labels, facts=facts)
            return identity
        return await self._enroll(claim(), name, labels, facts, [self._ca_path])

    async def recover(
        self,
        identity: Identity,
        *,
        claim: Callable[[], str],
        labels: Mapping[str, str],
        facts: Callable[[], DeviceFacts],
    ) -> Identity:
        """Enroll again with a claim, as the same device (its name and key),
        after its certificate expired. The hub is checked against the bundle
        the node kept, then against the operator's CA (newer, when the CA the
        node knew was retired while it was away), attempt after attempt.

        Raises:
            See `ensure`.
        """
        cas = [identity.ca_path, self._ca_path]
        return await self._enroll(claim(), identity.name, labels, facts, cas)

    async def _enroll(
        self,
        token: str,
        name: str,
        labels: Mapping[str, str],
        facts: Callable[[], DeviceFacts],
        ca_paths: Sequence[Path],
    ) -> Identity:
        """Enroll with `token` (the node's key, kept across attempts), retrying
        while the hub is away; each attempt checks the hub against the next
        of `ca_paths`."""
        backoff = Backoff(
            initial_s=ENROLL_BACKOFF_INITIAL_S, max_s=ENROLL_BACKOFF_MAX_S, rand=self._clock.rand
        )
        while True:
            link = self._connect(ca_paths[backoff.attempt % len(ca_paths)])
            try:
                request = EnrollRequest(
                    claim=token,
                    csr=self._store.new_csr(name),
                    name=name,
                    labels=dict(labels),
                    facts=facts(),
                )
                reply = await link.call("POST", "/v1/enroll", request, EnrollResponse)
                identity = self._store.save(
                    reply.device_id,
                    reply.name,
                    reply.certificate,
                    reply.ca,
                    reply.release_keys,
                    reply.release_key_scopes,
                    reply.tuf_root,
                )
                self.reply = reply
                event(log, "agent.enrolled", device_id=identity.device_id, name=identity.name)
                return identity
            except HubUnreachableError as exc:
                delay = backoff.next_delay(exc.retry_after_s)
                if self._on_retry is not None:
                    self._on_retry(exc, delay)
                event(
                    log,
                    "agent.hub_unreachable",
                    logging.WARNING,
                    during="enroll",
                    error=str(exc),
                    retry_in_s=round(delay, 2),
                )
                await self._clock.sleep(delay)
            finally:
                await link.aclose()
