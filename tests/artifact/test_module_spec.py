"""fogline-module.yaml: the example parses, each mistake is named by its field path."""

import hashlib
from pathlib import Path

import pytest
import yaml

from fogline.artifact import (
    ModuleSpec,
    ModuleSpecError,
    Version,
    load_module_spec,
    load_module_spec_cached,
    supports_architecture,
)

from ._support import EXAMPLE_SPEC


def _spec_error(text: str) -> ModuleSpecError:
    with pytest.raises(ModuleSpecError) as caught:
        load_module_spec(text, name="m.yaml")
    return caught.value


def test_the_documented_example_parses() -> None:
    spec = load_module_spec(EXAMPLE_SPEC)
    assert spec.name == "thermo-filter"
    assert spec.version == Version(1, 2, 0)
    assert spec.kind == "service"
    assert spec.command == ("python3", "server.py")
    assert spec.env == {"PORT": "8081"}
    assert spec.health is not None
    assert spec.health.http == "http://127.0.0.1:8081/healthz"
    assert (spec.health.timeout_s, spec.health.interval_s) == (10.0, 1.0)
    assert (spec.start_grace_s, spec.stop_grace_s) == (5.0, 10.0)
    assert spec.restart.policy == "always"
    assert (spec.restart.backoff.initial_s, spec.restart.backoff.max_s) == (1.0, 60.0)
    assert spec.resources.memory_mb == 256
    assert spec.resources.cpu_seconds is None
    assert spec.resources.open_files == 1024
    assert spec.architectures == ("x86_64", "aarch64")


def test_defaults_fill_what_a_minimal_service_leaves_out() -> None:
    spec = load_module_spec(
        "name: a\nversion: 0.1.0\ncommand: [./a]\nhealth: {tcp: 80}\narchitectures: [any]\n"
    )
    assert spec.kind == "service"
    assert spec.env == {}
    assert spec.health is not None and spec.health.tcp == 80
    assert spec.restart.policy == "always"
    assert spec.resources.memory_mb is None


def test_dumped_spec_loads_back_equal() -> None:
    spec = load_module_spec(EXAMPLE_SPEC)
    text = yaml.safe_dump(spec.model_dump(mode="json", by_alias=True))
    assert load_module_spec(text) == spec
    assert "timeout: 10s" in text


def test_spec_is_frozen() -> None:
    spec = load_module_spec(EXAMPLE_SPEC)
    with pytest.raises(ValueError, match="frozen"):
        spec.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        ("name: thermo-filter", "name: Thermo_Filter", "name", "lowercase letters"),
        ("name: thermo-filter", "name: " + "a" * 64, "name", "1-63"),
        ("name: thermo-filter", "name: -thermo", "name", "starting and ending"),
        ("version: 1.2.0", "version: 1.2", "version", "quote it"),
        ("version: 1.2.0", "version: v1.2.0", "version", "semantic version"),
        ("kind: service ", "kind: daemon ", "kind", "'service', 'model', 'config' or 'agent'"),
        ("command: [python3, server.py]", "command: python3 server.py", "command", "tuple"),
        ("command: [python3, server.py]", "command: []", "command", "at least 1"),
        ("command: [python3, server.py]", 'command: ["", x]', "command", "must not be empty"),
        ("command: [python3, server.py]", "command: [python3, 5]", "command[1]", "string"),
        ('env: {PORT: "8081"}', "env: {PORT: 8081}", "env.PORT", "valid string"),
        ('env: {PORT: "8081"}', 'env: {"BAD KEY": x}', "env.BAD KEY", "variable name"),
        ('env: {PORT: "8081"}', "env: {FOGLINE_NODE: x}", "env.FOGLINE_NODE", "set by the agent"),
        ("timeout: 10s", "timeout: 10", "health.timeout", "bare number is ambiguous"),
        ("timeout: 10s", "timeout: 0s", "health.timeout", "between 1ms and 1d"),
        ("interval: 1s", "interval: 2d", "health.interval", "between 1ms and 1d"),
        ('http: "http://127.0.0.1:8081/healthz"', "http: ftp://x/", "health.http", "http(s) URL"),
        ('http: "http://127.0.0.1:8081/healthz"', "http: http://h:99999/", "health.http", "URL"),
        ('http: "http://127.0.0.1:8081/healthz"', "tcp: 70000", "health.tcp", "less than"),
        ('http: "http://127.0.0.1:8081/healthz"', "uptime: 5s, tcp: 1", "health", "exactly one"),
        ('http: "http://127.0.0.1:8081/healthz", ', "", "health", "got none"),
        ("timeout: 10s", "grpc: 1", "health.grpc", "known: http, tcp, command, uptime"),
        ("startGrace: 5s", "startGrace: 2h", "startGrace", "between 0s and 1h"),
        ("stopGrace: 10s", "stopGrace: soon", "stopGrace", "duration"),
        ("policy: always", "policy: sometimes", "restart.policy", "'on-failure'"),
        ("initial: 1s", "initial: 2m", "restart.backoff", "initial must not be longer"),
        ("memoryMB: 256", "memoryMB: '256'", "resources.memoryMB", "valid integer"),
        ("memoryMB: 256", "memoryMB: 0", "resources.memoryMB", "greater than"),
        ("openFiles: 1024", "openFiles: true", "resources.openFiles", "valid integer"),
        ("cpuSeconds: null", "cpu: 5", "resources.cpu", "known: memoryMB, cpuSeconds"),
        ("[x86_64, aarch64]", "[]", "architectures", "at least 1"),
        ("[x86_64, aarch64]", "[amd64]", "architectures", "write 'x86_64'"),
        ("[x86_64, aarch64]", "[x86_64, x86_64]", "architectures", "twice"),
        ("[x86_64, aarch64]", "[any, aarch64]", "architectures", "list it alone"),
        ("[x86_64, aarch64]", "[sparc]", "architectures[0]", "'x86_64'"),
        ("stopGrace: 10s", "stopGrace: 10s\nowner: me", "owner", "unknown field"),
    ],
)
def test_each_bad_field_is_reported_with_its_path(
    old: str, new: str, field: str, reason: str
) -> None:
    assert old in EXAMPLE_SPEC
    error = _spec_error(EXAMPLE_SPEC.replace(old, new, 1))
    assert (error.field, error.source) == (field, "m.yaml")
    assert reason in error.reason
    assert str(error).startswith(f"m.yaml: {field}: ")


def test_all_problems_are_collected() -> None:
    error = _spec_error("name: X\nversion: 1\n")
    fields = [field for field, _ in error.problems]
    assert fields == ["name", "version", "architectures"]


def test_a_service_needs_a_command_and_a_health_check() -> None:
    no_command = _spec_error(EXAMPLE_SPEC.replace("command: [python3, server.py]\n", ""))
    assert (no_command.field, "required for kind 'service'" in no_command.reason) == (
        "command",
        True,
    )
    no_health = _spec_error(EXAMPLE_SPEC.replace("health:", "# health:"))
    assert no_health.field == "health"
    assert "uptime" in no_health.reason


def test_an_agent_release_is_named_fogline_agent_and_runs_no_process_of_its_own() -> None:
    spec = load_module_spec(
        "name: fogline-agent\nversion: 0.2.0\nkind: agent\narchitectures: [any]\n"
    )
    assert (spec.kind, spec.command, spec.health) == ("agent", None, None)
    error = _spec_error("name: agent2\nversion: 0.2.0\nkind: agent\narchitectures: [any]\n")
    assert error.field == "name" and "fogline-agent" in error.reason
    error = _spec_error(
        "name: fogline-agent\nversion: 0.2.0\nkind: agent\narchitectures: [any]\ncommand: [x]\n"
    )
    assert error.field == "command" and "only a service runs a process" in error.reason
    # The name is the agent's alone: the node treats that module as itself.
    service = EXAMPLE_SPEC.replace("name: thermo-filter", "name: fogline-agent")
    error = _spec_error(service)
    assert error.field == "kind" and "kind: agent" in error.reason


@pytest.mark.parametrize("kind", ["model", "config"])
def test_bundles_run_no_process(kind: str) -> None:
    spec = load_module_spec(f"name: m\nversion: 1.0.0\nkind: {kind}\narchitectures: [any]\n")
    assert (spec.kind, spec.command, spec.health) == (kind, None, None)
    error = _spec_error(EXAMPLE_SPEC.replace("kind: service", f"kind: {kind}"))
    assert error.field == "command"
    assert "only a service runs a process" in error.reason
    for line in ["stopGrace: 3s", "restart: {policy: never}", "env: {A: b}"]:
        text = f"name: m\nversion: 1.0.0\nkind: {kind}\narchitectures: [any]\n{line}\n"
        assert _spec_error(text).field == line.split(":")[0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "got an empty file"),
        ("- a\n- b\n", "got a list"),
        ("name: [unclosed\n", "not valid YAML"),
        ("a: &x 1\nname: *x\n", "aliases"),
        ("name: a\nname: b\n", "appears twice"),
        ("x: !!python/object:os.system {}\n", "not valid YAML"),
    ],
)
def test_documents_that_are_not_a_plain_mapping_are_refused(text: str, reason: str) -> None:
    error = _spec_error(text)
    assert error.field == ""
    assert reason in error.reason


def test_oversized_and_non_utf8_files_are_refused() -> None:
    assert "larger than" in _spec_error("#" * 70_000).reason
    with pytest.raises(ModuleSpecError, match="not UTF-8"):
        load_module_spec(b"name: \xff\n")
    with pytest.raises(ModuleSpecError, match="not UTF-8"):
        load_module_spec("name: \udcff\n")


def test_a_file_is_named_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "fogline-module.yaml"
    path.write_text(EXAMPLE_SPEC.replace("1.2.0", "1.2"))
    with pytest.raises(ModuleSpecError) as caught:
        load_module_spec(path)
    assert caught.value.source == str(path)
    assert str(caught.value).startswith(f"{path}: version: ")
    path.write_text(EXAMPLE_SPEC)
    assert load_module_spec(path).name == "thermo-filter"


def test_a_missing_file_is_a_module_spec_error(tmp_path: Path) -> None:
    with pytest.raises(ModuleSpecError, match="cannot read"):
        load_module_spec(tmp_path / "nope.yaml")


_CACHED_SPECS = [
    EXAMPLE_SPEC,
    "name: a\nversion: 0.1.0\ncommand: [./a]\nhealth: {tcp: 80}\narchitectures: [any]\n",
    "name: m\nversion: 1.0.0-rc.1+b7\nkind: model\narchitectures: [x86_64, aarch64]\n",
    "name: fogline-agent\nversion: 0.2.0\nkind: agent\narchitectures: [any]\n",
]


@pytest.mark.parametrize("text", _CACHED_SPECS)
def test_the_parsed_copy_is_the_spec_the_file_gives(tmp_path: Path, text: str) -> None:
    path, cache = tmp_path / "fogline-module.yaml", tmp_path / "state" / "spec.json"
    path.write_text(text)
    first = load_module_spec_cached(path, cache)  # parsed, the copy written
    assert cache.stat().st_mode & 0o777 == 0o600
    again = load_module_spec_cached(path, cache)  # from the copy
    assert first == again == load_module_spec(path)
    assert again.model_fields_set == first.model_fields_set
    # Nested models too: a bundle stays a bundle with no process field set.
    assert again.model_dump(exclude_unset=True) == first.model_dump(exclude_unset=True)


def test_the_copy_is_used_only_for_the_bytes_it_was_parsed_from(tmp_path: Path) -> None:
    path, cache = tmp_path / "fogline-module.yaml", tmp_path / "spec.json"
    path.write_text(EXAMPLE_SPEC)
    load_module_spec_cached(path, cache)
    # The copy is what is read: a copy edited by hand (same digest) wins ...
    copy = cache.read_text()
    cache.write_text(copy.replace('"PORT":"8081"', '"PORT":"9"'))
    assert load_module_spec_cached(path, cache).env == {"PORT": "9"}
    # ... until the module file changes: then the file is parsed again.
    path.write_text(EXAMPLE_SPEC.replace('PORT: "8081"', 'PORT: "8082"'))
    assert load_module_spec_cached(path, cache).env == {"PORT": "8082"}
    assert load_module_spec_cached(path, cache).env == {"PORT": "8082"}


@pytest.mark.parametrize(
    "copy",
    [
        b"",
        b"not json",
        b"[]",
        b'{"format": 1, "sha256": "DIGEST", "spec": {"name": "Bad Name"}}',
        b'{"format": 99, "sha256": "DIGEST", "spec": {}}',
        b'{"format": 1, "sha256": "DIGEST", "spec": []}',
        b"x" * 300_000,
    ],
)
def test_a_broken_copy_means_the_file_is_parsed(tmp_path: Path, copy: bytes) -> None:
    path, cache = tmp_path / "fogline-module.yaml", tmp_path / "spec.json"
    path.write_text(EXAMPLE_SPEC)
    digest = hashlib.sha256(EXAMPLE_SPEC.encode()).hexdigest()
    cache.write_bytes(copy.replace(b"DIGEST", digest.encode()))
    assert load_module_spec_cached(path, cache) == load_module_spec(path)
    assert b'"name":"thermo-filter"' in cache.read_bytes()  # rewritten


def test_the_cached_loader_reports_the_file_s_errors(tmp_path: Path) -> None:
    path, cache = tmp_path / "fogline-module.yaml", tmp_path / "spec.json"
    with pytest.raises(ModuleSpecError, match="cannot read"):
        load_module_spec_cached(path, cache)
    path.write_text(EXAMPLE_SPEC.replace("1.2.0", "1.2"))
    with pytest.raises(ModuleSpecError) as caught:
        load_module_spec_cached(path, cache)
    assert str(caught.value).startswith(f"{path}: version: ")
    assert not cache.exists()  # nothing is kept of a file that is wrong
    # A copy cannot be written (its directory is a file): the file is still read.
    path.write_text(EXAMPLE_SPEC)
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert load_module_spec_cached(path, blocked / "spec.json").name == "thermo-filter"


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", True),
        ("amd64", True),
        ("AMD64", True),
        ("aarch64", True),
        ("arm64", True),
        ("armv7l", False),
        ("riscv64", False),
        ("", False),
    ],
)
def test_supports_architecture_knows_the_common_aliases(machine: str, expected: bool) -> None:
    assert supports_architecture(load_module_spec(EXAMPLE_SPEC), machine) is expected


def test_any_architecture_runs_everywhere() -> None:
    spec = ModuleSpec.model_validate(
        {"name": "m", "version": "1.0.0", "kind": "model", "architectures": ["any"]}
    )
    assert supports_architecture(spec, "armv7l")
    assert supports_architecture(spec, "mips")
