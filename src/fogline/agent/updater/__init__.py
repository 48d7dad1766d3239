"""The node's crash-safe update engine: move a module to a target release,
roll back when it is not healthy, and survive a crash in any state.

    DOWNLOAD -> VERIFY -> INSTALL -> ACTIVATE -> HEALTH -> COMMIT -> CLEANUP -> DONE
    a failure in DOWNLOAD, VERIFY, INSTALL:      -> CLEANUP -> FAILED
    a failure in ACTIVATE, HEALTH, COMMIT:       -> ROLLBACK -> CLEANUP -> FAILED

The machine is two tables in `_states`: TRANSITIONS ((state, event) ->
state) and RESUME (journaled state -> where `recover()` restarts). Each
state's work (`_engine`) returns an event and never names its successor;
verification is pure (`_verify`). The journal is saved before each state's
work, so the ACTIVATE save precedes the `current` link switch.

On disk (`<root>`): `downloads/<digest>.partial|.tar.zst`,
`modules/<name>/<version>-<digest12>/` with `current` and `previous`
symlinks, and `state/<name>/{journal,installed,failed}.json`.

Policies:

* A crash before ACTIVATE continues the update (the running version was
  never touched); `recover()` starts the installed versions first and
  resumes downloads afterwards, so a slow link does not keep modules down.
* A crash in ACTIVATE or HEALTH rolls back: nobody knows the new version is
  good. Such a rollback is *retryable*: the next `ensure` of the same release
  tries again. A crash in COMMIT finishes the commit.
* The journal counts its saves across crashes and across interrupted retries
  of the same release; past `UpdateLimits.max_saves` the update rolls back
  and ends FAILED (a crash loop, recorded), never a boot loop.
* With a TUF root pinned (`_tuf`), DOWNLOAD first asks python-tuf's
  ngclient for the release's target; only a release the metadata lists,
  with its digest, is fetched, at most its signed length, and VERIFY checks
  the bytes against the signed sha256. The release keys of the desired
  state and of enrollment then grant nothing.
* A target older than the installed version (semver precedence) is refused
  before anything is fetched, unless it carries `allow_downgrade` (the
  deployment's `allowDowngrade`, or a rollback by a rollout); the refusal
  is reported, not recorded, and the installed version keeps running.
* `stop(name)` (the module left the desired state) stops it and keeps its
  install and installed record: `ensure` of the same release starts it
  again without a download or a health gate, and a later older target is
  still a downgrade.
* Failures that are the release's own (digest, signature, unsafe archive,
  wrong architecture, start failure, unhealthy) are recorded in failed.json;
  `ensure` of the same release returns that failure at once until another
  release is targeted or `forget_failure()` is called. A start failure or
  an unhealthy release is remembered with the config and env it ran with:
  the same release with another config or env is tried. Network and disk
  failures are not recorded: retrying may help, and a download resumes.

Errors:

    FoglineError
      UpdaterError              base of this package
        InvalidTargetError      the desired state's target is malformed: field, reason
        ArtifactFetchError      the download failed (network, HTTP status); resumable
        ReleaseRejectedError    the release does not fit its target: digest, size,
                                name, version, architecture, health
        ActivationError         the activator could not start or stop a module
        JournalCorruptError     a state file of the updater is unreadable
        TufRefusedError         TUF metadata does not vouch for the release (not
                                listed, other bytes, expired, rolled back, badly
                                signed); not recorded, the node stays put
    (plus the artifact package's UntrustedReleaseError, UnsafeArchiveError and
    ModuleSpecError, whose messages become the reason a release failed)

`ensure` reports failures of an update in its UpdateResult and through
`on_progress`; it raises only when the updater itself cannot work.
"""

from typing import TYPE_CHECKING

from fogline._lazy import lazy_exports

from ._crash import (
    CRASH_ENV,
    DELTA_PATH_POINTS,
    FAILURE_PATH_POINTS,
    SUCCESS_PATH_POINTS,
    crash_hook_from_env,
    crash_points,
)
from ._errors import (
    ActivationError,
    ArtifactFetchError,
    InvalidTargetError,
    JournalCorruptError,
    ReleaseRejectedError,
    TufRefusedError,
    UpdaterError,
)
from ._http import HttpArtifactSource
from ._http_thread import ThreadedHttpArtifactSource
from ._models import (
    InstalledRelease,
    ReleaseFailure,
    ReleaseTarget,
    UpdateLimits,
    UpdateProgress,
    UpdateResult,
)
from ._ports import ArtifactSource, DeltaSource, ModuleActivator
from ._states import RESUME, TRANSITIONS, Event, State
from ._tuf import (
    PINNED_ROOT_FILE,
    TargetTrust,
    TrustedTarget,
    TufTargetTrust,
    node_target_trust,
)
from ._updater import Updater

if TYPE_CHECKING:
    from ._memory import ActivatorCall, MemoryActivator, MemoryArtifactSource, MemoryTargetTrust
    from ._tuf_client import HubFetcher

# python-tuf is imported when an update comes, not at idle (see _tuf); the
# in-memory fakes (tests, the simulator) on first use: an agent never runs them.
__getattr__ = lazy_exports(
    __name__,
    {
        "HubFetcher": "._tuf_client",
        **{
            name: "._memory"
            for name in (
                "ActivatorCall",
                "MemoryActivator",
                "MemoryArtifactSource",
                "MemoryTargetTrust",
            )
        },
    },
)

__all__ = [
    "CRASH_ENV",
    "DELTA_PATH_POINTS",
    "FAILURE_PATH_POINTS",
    "PINNED_ROOT_FILE",
    "RESUME",
    "SUCCESS_PATH_POINTS",
    "TRANSITIONS",
    "ActivationError",
    "ActivatorCall",
    "ArtifactFetchError",
    "ArtifactSource",
    "DeltaSource",
    "Event",
    "HttpArtifactSource",
    "HubFetcher",
    "InstalledRelease",
    "InvalidTargetError",
    "JournalCorruptError",
    "MemoryActivator",
    "MemoryArtifactSource",
    "MemoryTargetTrust",
    "ModuleActivator",
    "ReleaseFailure",
    "ReleaseRejectedError",
    "ReleaseTarget",
    "State",
    "TargetTrust",
    "ThreadedHttpArtifactSource",
    "TrustedTarget",
    "TufRefusedError",
    "TufTargetTrust",
    "UpdateLimits",
    "UpdateProgress",
    "UpdateResult",
    "Updater",
    "UpdaterError",
    "crash_hook_from_env",
    "crash_points",
    "node_target_trust",
]
