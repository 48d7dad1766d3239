"""Which devices go first: a random sample stratified across the selector's labels.

A rollout with canary analysis orders its devices so that every prefix of
the order is spread over the strata (the combinations of values of the
labels the changed deployments select on, e.g. every `site`) in proportion
to their sizes (see `canary_order`). The first wave is raised to one device
per stratum, so a 1 % wave touches every site that has devices. The
shuffle draws from `random.Random(seed)`; the seed is in the rollout's
audit entry, so the order can be reproduced.
"""

import random
from collections.abc import Iterable, Mapping, Sequence

from fogline.manifest import Deployment


def stratum_keys(deployments: Iterable[Deployment]) -> tuple[str, ...]:
    """The label keys the deployments select on, sorted."""
    keys: set[str] = set()
    for deployment in deployments:
        keys |= set(deployment.selector.match_labels)
        keys |= {req.key for req in deployment.selector.match_expressions}
    return tuple(sorted(keys))


def stratum_of(labels: Mapping[str, str], keys: Sequence[str]) -> tuple[str, ...]:
    return tuple(labels.get(key, "") for key in keys)


def canary_order(
    labels: Sequence[Mapping[str, str]], keys: Sequence[str], seed: int
) -> tuple[list[int], int]:
    """(indices of `labels` in rollout order, number of strata).

    One device of each stratum comes first (in a drawn order); after them,
    the k-th device of a stratum of n sits at about (k + u) / n of the
    order (u drawn), so any prefix holds each stratum in proportion.
    """
    rand = random.Random(seed)
    strata: dict[tuple[str, ...], list[int]] = {}
    for index, device in enumerate(labels):
        strata.setdefault(stratum_of(device, keys), []).append(index)
    keyed: list[tuple[int, float, int]] = []
    for stratum in sorted(strata):
        group = strata[stratum]
        rand.shuffle(group)
        for k, index in enumerate(group):
            position = rand.random() if k == 0 else (k + rand.random()) / len(group)
            keyed.append((0 if k == 0 else 1, position, index))
    keyed.sort()
    return [index for _, _, index in keyed], len(strata)
