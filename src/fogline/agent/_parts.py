"""What a node is built from: one set of parts for the agent and the simulator.

`fogline agent run` (`Agent`) and each of the simulator's virtual nodes
build their enrollment (`Enroller`), certificate renewal (`Renewer`, over
links that follow its renewals: `HubTls`), report loop (`Reporter`),
desired-state sync (`SyncLoop`) and module stack (`ModuleManager`, with the
real updater) from one `NodeParts`, and bring the modules up with
`start_modules`, so the simulator drives the agent's own code, loops
included. What differs is
injected: the transport (the simulator wraps the real one to inject faults
and count bytes), the clock (seeded jitter), and the runtime modules run in
(processes, or the supervisor's in-memory runtime). The data plane, the
local endpoint and the metrics stay the agent's own.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fogline.hubclient import HubError, HubUnreachableError
from fogline.protocol import AppliedState, Report, ReportAck

from ._clock import Clock
from ._enroll import Enroller
from ._hublink import HubLink, HubTls, TransportWrapper
from ._identity import Identity, IdentityStore
from ._renew import Renewer
from ._report import Reporter
from ._sync import Applier, ConfigApplier, DesiredStore, SyncLoop
from .modules import ModuleManager, node_module_manager
from .supervisor import ModuleRuntime, ModuleUser
from .updater import node_target_trust


@dataclass(frozen=True, slots=True)
class NodeParts:
    """The parts of the node that keeps its state in `data_dir`, talking to `hub_url`.

    `ca_path` is the fleet CA trusted before enrollment; afterwards the
    identity's own copy is. `wrap_transport` wraps every link's real
    transport (TLS, pool); `clock` drives every backoff and tells the time
    certificate lifetimes are counted in.
    """

    hub_url: str
    ca_path: Path
    data_dir: Path
    clock: Clock = field(default_factory=Clock)
    wrap_transport: TransportWrapper | None = None

    @property
    def identity_store(self) -> IdentityStore:
        return IdentityStore(self.data_dir)

    def tls(self, identity: Identity) -> HubTls:
        """The enrolled node's TLS: shared by all its links, reloaded by its
        `renewer` after each renewal."""
        return HubTls(identity)

    def link(self, tls: HubTls | None = None, *, ca_path: Path | None = None) -> HubLink:
        """A new link to the hub: mTLS with the node's certificate, following
        its renewals (`tls`); without, server-verified only, against `ca_path`
        (the fleet CA by default), to enroll."""
        return HubLink(
            self.hub_url, ca_path or self.ca_path, tls=tls, wrap_transport=self.wrap_transport
        )

    def enroller(
        self, *, on_retry: Callable[[HubUnreachableError, float], None] | None = None
    ) -> Enroller:
        return Enroller(
            self.identity_store,
            lambda ca_path: self.link(ca_path=ca_path),
            ca_path=self.ca_path,
            clock=self.clock,
            on_retry=on_retry,
        )

    def renewer(
        self,
        identity: Identity,
        tls: HubTls,
        *,
        new_key: bool = True,
        recover_expired: Callable[[], Awaitable[bool]] | None = None,
        crash_hook: Callable[[str], None] | None = None,
        on_renewed: Callable[[], None] | None = None,
    ) -> Renewer:
        """Keeps `identity`'s certificate renewed over links of `tls`, and
        reloads `tls` after each renewal (so every link moves to it)."""
        return Renewer(
            self.hub_url,
            self.identity_store,
            identity,
            tls,
            new_key=new_key,
            recover_expired=recover_expired,
            crash_hook=crash_hook,
            make_link=lambda: self.link(tls),
            on_renewed=on_renewed,
            clock=self.clock,
        )

    def reporter(
        self,
        build: Callable[[], Awaitable[Report]],
        *,
        interval_s: float,
        on_sent: Callable[[ReportAck], Awaitable[None]] | None = None,
        on_failed: Callable[[HubError], None] | None = None,
    ) -> Reporter:
        return Reporter(
            build, interval_s=interval_s, clock=self.clock, on_sent=on_sent, on_failed=on_failed
        )

    def sync_loop(self, on_applied: Callable[[AppliedState], None]) -> SyncLoop:
        """The desired-state sync, writing `config` for modules (more appliers
        are added by `start_modules`)."""
        return SyncLoop(
            DesiredStore(self.data_dir),
            [ConfigApplier(self.data_dir)],
            on_applied,
            clock=self.clock,
        )

    def module_manager(
        self,
        runtime: ModuleRuntime,
        link: HubLink,
        on_change: Callable[[], None],
        *,
        crash_hook: Callable[[str], None] | None = None,
        module_user: ModuleUser | None = None,
    ) -> ModuleManager:
        """The module stack (supervisor over `runtime`, the updater fetching
        over `link`, drift), trusting TUF metadata when a TUF root is pinned
        (at enrollment, or by hand), else the release keys pinned at enrollment."""
        store = self.identity_store
        return node_module_manager(
            self.data_dir,
            runtime,
            link.http,
            store.pinned_release_keys(),
            on_change,
            pinned_scopes=store.pinned_key_scopes(),
            crash_hook=crash_hook,
            module_user=module_user,
            clock=self.clock,
            tuf=node_target_trust(store.root, self.data_dir / "updater", link.http),
            # Downloads in a worker thread, unless the link's transport is
            # wrapped (the simulator injects its faults there).
            download_client=link.blocking_client if self.wrap_transport is None else None,
        )

    async def start_modules(
        self,
        modules: ModuleManager,
        sync: SyncLoop,
        *,
        appliers: Sequence[Applier] = (),
        reconcile: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Bring the modules up as after a boot, before any hub contact.

        Installed modules run again first (those the last desired state
        lists, when there is one); an interrupted update resumes or
        rolls back (the updater's RESUME table), verified with the keys of
        the last desired state as well as the pinned ones. Then `reconcile`
        runs (the agent's self-update: a new agent the launcher went back
        from is rolled back and recorded failed, so applying reports it).
        Then the last desired state is applied (edge autonomy), by the
        modules' applier and then `appliers`, in order.
        `modules.supervisor.run()` must already be running.
        """
        local_copy = sync.store.load()
        wanted = None
        if local_copy is not None:
            modules.use_document_keys(local_copy.document)
            # A module removed from it stays installed (see docs/modules.md):
            # it must not run again until it is deployed again.
            wanted = {entry.name for entry in local_copy.document.modules}
        await modules.recover(wanted)
        if reconcile is not None:
            await reconcile()
        sync.appliers.append(modules.apply)
        sync.appliers.extend(appliers)
        await sync.start_from_local_copy()
