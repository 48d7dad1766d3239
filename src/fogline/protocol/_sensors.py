"""Who may send readings to a node: the desired document's `sensors` block.

    sensors:
      ingest:
        tokens:                          # HTTP ingest: Authorization: Bearer TOKEN
          - {name: line-1, sha256: <hex of the token's SHA-256>}
      mqtt:
        users:                           # the node's Mosquitto password file
          - username: press-7
            passwordHash: "$7$..."
            publish: ["sensors/press-7/#"] # the ACL file; this is the default

Only digests cross the wire and sit on disk: the ingest token's SHA-256, and
the sensor password as Mosquitto's PBKDF2-SHA512 line (`$7$ITERATIONS$SALT$HASH`,
the format `mosquitto_passwd` writes). The manifest checks these at plan
time; the node checks them again here, because it copies `username` and
`passwordHash` into a file Mosquitto parses by lines and colons.
"""

import base64
import binascii
import re
from collections.abc import Callable
from typing import Annotated, Final

from pydantic import AfterValidator, ConfigDict, Field

from ._base import AsSentModel

MAX_INGEST_TOKENS: Final = 64
MAX_SENSOR_USERS: Final = 1000
# Mosquitto pays the iterations on every CONNECT: a hash that asks for more
# is a denial of service on the node's broker, not more safety.
MAX_HASH_ITERATIONS: Final = 1_000_000
SENSOR_USERNAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHA256_HEX_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_MOSQUITTO_HASH_RE: Final = re.compile(
    r"^\$7\$([0-9]{1,9})\$([A-Za-z0-9+/=]{1,128})\$([A-Za-z0-9+/=]{1,128})$"
)
MAX_PUBLISH_FILTERS: Final = 16
MAX_TOPIC_FILTER_CHARS: Final = 256
# No spaces or control characters: Mosquitto's ACL file is read by lines and
# takes the rest of a `topic` line as the filter.
_TOPIC_FILTER_RE: Final = re.compile(r"[A-Za-z0-9_.@:/+#-]+")
MOSQUITTO_SALT_BYTES: Final = 12
MOSQUITTO_HASH_BYTES: Final = 64


def sensor_username_problem(value: str) -> str | None:
    """Why `value` cannot be a sensor's MQTT user name, or None."""
    if not SENSOR_USERNAME_RE.fullmatch(value):
        return (
            "must be 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter "
            f"or digit (got {value[:80]!r})"
        )
    return None


def password_hash_problem(value: str) -> str | None:
    """Why `value` is not a Mosquitto PBKDF2-SHA512 password hash, or None."""
    match = _MOSQUITTO_HASH_RE.fullmatch(value)
    expected = "a Mosquitto PBKDF2-SHA512 hash '$7$ITERATIONS$SALT$HASH' (mosquitto_passwd)"
    if match is None:
        return f"must be {expected} (got {len(value)} characters that are not one)"
    iterations = int(match.group(1))
    if not 1 <= iterations <= MAX_HASH_ITERATIONS:
        return f"iterations must be 1-{MAX_HASH_ITERATIONS} (got {iterations})"
    try:
        salt = base64.b64decode(match.group(2), validate=True)
        digest = base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        return f"must be {expected}: the salt or hash is not base64"
    if len(salt) != MOSQUITTO_SALT_BYTES or len(digest) != MOSQUITTO_HASH_BYTES:
        return (
            f"must be {expected}: a {MOSQUITTO_SALT_BYTES}-byte salt and a "
            f"{MOSQUITTO_HASH_BYTES}-byte hash (got {len(salt)} and {len(digest)})"
        )
    return None


def topic_filter_problem(value: str) -> str | None:
    """Why `value` is not an MQTT topic filter a sensor may be allowed to publish to, or None."""
    if len(value) > MAX_TOPIC_FILTER_CHARS or not _TOPIC_FILTER_RE.fullmatch(value):
        return (
            f"must be an MQTT topic filter of 1-{MAX_TOPIC_FILTER_CHARS} letters, digits and "
            f"'_.@:/-', with '+' and '#' wildcards (got {value[:80]!r})"
        )
    levels = value.split("/")
    for i, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and level != "#"):
            return f"a wildcard must be a whole level (got {value[:80]!r})"
        if level == "#" and i != len(levels) - 1:
            return f"'#' must be the last level (got {value[:80]!r})"
    return None


def default_publish_filter(username: str) -> str:
    """Where a sensor account may publish when its entry does not say."""
    return f"sensors/{username}/#"


def token_name_problem(value: str) -> str | None:
    if not TOKEN_NAME_RE.fullmatch(value):
        return (
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit "
            f"(got {value[:80]!r})"
        )
    return None


def token_digest_problem(value: str) -> str | None:
    if not SHA256_HEX_RE.fullmatch(value):
        return (
            "must be the token's SHA-256 as 64 lowercase hex digits "
            "(printf %s TOKEN | sha256sum), never the token itself"
        )
    return None


def _checked(problem: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        reason = problem(value)
        if reason:
            raise ValueError(reason)
        return value

    return AfterValidator(check)


# The field types, shared with the manifest schema (fogline.manifest), so the
# hub at plan time and the node reading its document apply one rule.
TokenName = Annotated[str, _checked(token_name_problem)]
TokenDigest = Annotated[str, _checked(token_digest_problem)]
SensorUsername = Annotated[str, _checked(sensor_username_problem)]
PasswordHash = Annotated[str, _checked(password_hash_problem)]
TopicFilter = Annotated[str, _checked(topic_filter_problem)]
PublishFilters = Annotated[list[TopicFilter], Field(min_length=1, max_length=MAX_PUBLISH_FILTERS)]


class SensorsPart(AsSentModel):
    """A part of the `sensors` block: keeps unknown fields, dumps as given."""

    model_config = ConfigDict(extra="allow")


class IngestToken(SensorsPart):
    name: TokenName
    sha256: TokenDigest


class SensorUser(SensorsPart):
    username: SensorUsername
    password_hash: PasswordHash = Field(alias="passwordHash")
    # Topic filters it may publish to; None: default_publish_filter(username).
    publish: PublishFilters | None = None

    @property
    def publish_filters(self) -> tuple[str, ...]:
        return tuple(self.publish) if self.publish else (default_publish_filter(self.username),)


class IngestAccess(SensorsPart):
    tokens: Annotated[list[IngestToken], Field(max_length=MAX_INGEST_TOKENS)] = []


class MqttAccess(SensorsPart):
    users: Annotated[list[SensorUser], Field(max_length=MAX_SENSOR_USERS)] = []


class SensorAccess(SensorsPart):
    """Who may send readings: ingest token digests and MQTT sensor accounts."""

    ingest: IngestAccess | None = None
    mqtt: MqttAccess | None = None

    @property
    def ingest_digests(self) -> tuple[str, ...]:
        return tuple(t.sha256 for t in self.ingest.tokens) if self.ingest else ()

    @property
    def mqtt_users(self) -> tuple[SensorUser, ...]:
        return tuple(self.mqtt.users) if self.mqtt else ()
