"""Certificate renewal: the node asks for a new certificate over mTLS when
two thirds of the current one's lifetime has passed, or at once when the
hub issues from another CA than the one that issued it (a CA rotation).

Failures retry with backoff; the current certificate keeps working until
it expires. Once it has expired the hub no longer accepts it at all (the
TLS layer refuses it), and only a valid claim brings the node back
(`Enroller.recover`, which the agent passes as `recover_expired`).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fogline._log import event
from fogline.hubclient import HubError, HubStatusError
from fogline.protocol import RenewRequest, RenewResponse

from ._backoff import Backoff
from ._clock import Clock
from ._errors import IdentityError
from ._hublink import HubLink, HubTls
from ._identity import Identity, IdentityStore

log = logging.getLogger("fogline.agent.renew")
# A refusal (revoked, a CSR the hub will not sign) heals only when the hub
# changes its mind: ask again, but rarely.
_REFUSED_BACKOFF_MAX_S = 300.0


class Renewer:
    """Keeps the node's certificate renewed, for the agent's lifetime."""

    def __init__(
        self,
        hub_url: str,
        store: IdentityStore,
        identity: Identity,
        tls: HubTls,
        *,
        new_key: bool = True,
        recover_expired: Callable[[], Awaitable[bool]] | None = None,
        crash_hook: Callable[[str], None] | None = None,
        make_link: Callable[[], HubLink] | None = None,
        on_renewed: Callable[[], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`clock` gives the time lifetimes are counted in and drives the
        retry waits (a virtual node's is seeded)."""
        self._hub_url = hub_url
        self._store = store
        self._identity = identity
        self._tls = tls
        self._new_key = new_key
        self._recover_expired = recover_expired
        self._crash = crash_hook or (lambda _point: None)  # fault tests only
        self._on_renewed = on_renewed or (lambda: None)
        # The simulator's links inject faults; the agent's are plain.
        self._make_link = make_link or (lambda: HubLink(hub_url, identity.ca_path, tls=tls))
        self._clock = clock or Clock()
        self._wake = asyncio.Event()
        # The key id of the CA the hub issues from (ReportAck.ca_key_id).
        self.hub_ca_key_id: str | None = None
        self.renewals = 0

    def hub_ca_seen(self, ca_key_id: str | None) -> None:
        """The hub said which CA it issues from (each report's ack)."""
        if ca_key_id is not None and ca_key_id != self.hub_ca_key_id:
            self.hub_ca_key_id = ca_key_id
            self._wake.set()

    def _due_in_s(self) -> float:
        lifetime = self._store.lifetime()
        if self.hub_ca_key_id is not None and lifetime.issuer_key_id != self.hub_ca_key_id:
            return 0.0  # a CA rotation: move to the new CA now
        return (lifetime.renew_at - self._clock.now()).total_seconds()

    async def run(self) -> None:
        backoff = Backoff(initial_s=1.0, max_s=60.0, rand=self._clock.rand)
        link = self._make_link()
        try:
            while True:
                due_in_s = self._due_in_s()
                if due_in_s > 0:
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(due_in_s):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    continue
                if self._store.lifetime().is_expired(self._clock.now()):
                    delay = await self._expired(backoff)
                elif await self._renew_once(link, backoff):
                    backoff.reset()
                    continue
                else:
                    delay = backoff.next_delay()
                await self._clock.sleep(delay)
        finally:
            await link.aclose()

    async def _renew_once(self, link: HubLink, backoff: Backoff) -> bool:
        """One renewal; False when it must be tried again later."""
        try:
            # Key generation and the durable writes (an fsync each) off the
            # event loop: they would stall the node's local actions, and
            # every node of a simulated fleet sharing the loop.
            csr = await asyncio.to_thread(
                self._store.renewal_csr, self._identity.name, new_key=self._new_key
            )
            self._crash("renew:key-written")
            reply = await link.call("POST", "/v1/renew", RenewRequest(csr=csr), RenewResponse)
            self._crash("renew:answered")
            await asyncio.to_thread(
                self._store.finish_renewal, reply.certificate, reply.ca, self._crash
            )
        except (HubError, IdentityError) as exc:
            refused = isinstance(exc, HubStatusError)
            if refused and backoff.attempt == 0:
                # A refusal is not a network blip: back off to minutes at once.
                for _ in range(8):
                    backoff.next_delay()
            event(
                log,
                "agent.renew_refused" if refused else "agent.renew_failed",
                logging.ERROR if refused else logging.WARNING,
                error=str(exc),
            )
            return False
        self._tls.reload()
        self.renewals += 1
        self._on_renewed()
        lifetime = self._store.lifetime()
        event(
            log,
            "agent.renewed",
            not_after=lifetime.not_after.isoformat(),
            ca_key_id=lifetime.issuer_key_id,
        )
        return True

    async def _expired(self, backoff: Backoff) -> float:
        """The certificate expired (the node was away too long): only a claim
        brings it back. Returns how long to wait before looking again."""
        if self._recover_expired is not None and await self._recover_expired():
            self._tls.reload()
            backoff.reset()
            return 0.0
        event(
            log,
            "agent.certificate_expired",
            logging.ERROR,
            not_after=self._store.lifetime().not_after.isoformat(),
            hint="give the agent a valid claim (FOGLINE_CLAIM or --claim-file) to recover",
        )
        return min(backoff.next_delay(), _REFUSED_BACKOFF_MAX_S)
