"""The series modules expose on their local Prometheus endpoints, for the health report.

A module's file may declare `metrics: {port, path, series}`; on each report
the agent GETs `http://127.0.0.1:{port}{path}` of every running module that
does, parses the answer with prometheus_client's parser (the text format
has corner cases — escapes, exemplars, `+Inf` — a hand-written parser would
get wrong), and keeps only the listed sample names, each summed over its
label sets. Canary analysis judges a release on them
(`module:NAME:SERIES`, hub/rollouts/_analysis_spec.py).

The module is not trusted to behave: the address is always 127.0.0.1 (the
port is the only thing the module file chooses, so a release cannot point
the agent at another host), proxies from the environment are not used, a
scrape gets `SCRAPE_TIMEOUT_S` all told and at most `MAX_SCRAPE_BYTES` of
answer, redirects are not followed, and whatever goes wrong leaves that
module's series out of the report, logged, never an error: metrics must
not stop a report.
"""

import asyncio
import functools
import logging
import math
import ssl
from collections.abc import Mapping
from typing import Final

import httpx

from fogline._log import event
from fogline.protocol import MAX_HEALTH_MODULES, MAX_MODULE_SERIES

from .supervisor import MetricsTarget

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S: Final = 2.0
# A few thousand samples of text (the parse costs about 0.3 s per 256 KiB on a
# loaded x86 core, in a worker thread); an endpoint answering more is skipped.
MAX_SCRAPE_BYTES: Final = 256 * 1024
# Families read per answer at most: the parser is pure Python and runs per report.
_MAX_FAMILIES: Final = 10_000
_MAX_VALUE: Final = 1e18


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The one TLS context every scrape's client is given. The endpoints are
    plain http on 127.0.0.1, so it never runs; but an httpx client left to
    make its own loads the CA bundle: about 20 ms of CPU per report. No CA
    is loaded here either (the system's store is about 1 MB resident): it
    verifies, and so would refuse any https it were ever given."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class ScrapeFailed(Exception):
    """One module's endpoint did not give a usable answer (the reason in words)."""


async def _fetch(client: httpx.AsyncClient, target: MetricsTarget) -> str:
    url = f"http://127.0.0.1:{target.port}{target.path}"
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            raise ScrapeFailed(f"{url} answered {response.status_code}")
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > MAX_SCRAPE_BYTES:
                raise ScrapeFailed(f"{url} answered more than {MAX_SCRAPE_BYTES} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ScrapeFailed(f"{url} answered text that is not UTF-8") from None


def chosen_series(text: str, series: tuple[str, ...]) -> dict[str, float]:
    """The listed sample names of a Prometheus text answer, each summed over
    its label sets; a name the answer lacks is left out.

    Raises:
        ScrapeFailed: the text does not parse.
    """
    # Imported at the first scrape: only a module that declares `metrics:` is scraped.
    from prometheus_client.parser import text_string_to_metric_families

    wanted = set(series[:MAX_MODULE_SERIES])
    found: dict[str, float] = {}
    try:
        for index, family in enumerate(text_string_to_metric_families(text)):
            if index >= _MAX_FAMILIES:
                break
            for sample in family.samples:
                if sample.name in wanted:
                    found[sample.name] = found.get(sample.name, 0.0) + float(sample.value)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ScrapeFailed(f"not the Prometheus text format: {str(exc)[:200]}") from None
    # The hub refuses a report holding NaN or an absurd value: leave such a series out.
    return {k: v for k, v in found.items() if math.isfinite(v) and abs(v) <= _MAX_VALUE}


class ModuleScraper:
    """Scrapes the modules' endpoints for each report; a failing endpoint is
    logged when its reason changes, not on every report."""

    def __init__(self) -> None:
        self._failing: dict[str, str] = {}

    async def scrape(self, targets: Mapping[str, MetricsTarget]) -> dict[str, dict[str, float]]:
        """Each module's chosen series, scraped concurrently; a module whose
        scrape failed is left out."""
        if not targets:
            return {}
        chosen = dict(list(targets.items())[:MAX_HEALTH_MODULES])
        client = httpx.AsyncClient(
            trust_env=False,  # a proxy from the environment must never see module traffic
            follow_redirects=False,
            timeout=SCRAPE_TIMEOUT_S,
            verify=_tls_context(),
            # Raw bytes are counted against the bound: no compression to inflate.
            headers={"accept": "text/plain;version=0.0.4", "accept-encoding": "identity"},
        )
        async with client, asyncio.TaskGroup() as tg:
            tasks = {
                name: tg.create_task(self._scrape_one(client, name, target))
                for name, target in chosen.items()
            }
        self._failing = {k: v for k, v in self._failing.items() if k in chosen}
        return {name: result for name, task in tasks.items() if (result := task.result())}

    async def _scrape_one(
        self, client: httpx.AsyncClient, name: str, target: MetricsTarget
    ) -> dict[str, float] | None:
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT_S):
                text = await _fetch(client, target)
            found = await asyncio.to_thread(chosen_series, text, target.series)
        except (ScrapeFailed, httpx.HTTPError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            if self._failing.get(name) != reason:
                self._failing[name] = reason
                event(log, "module.metrics_failed", logging.WARNING, module=name, error=reason)
            return None
        self._failing.pop(name, None)
        return found
