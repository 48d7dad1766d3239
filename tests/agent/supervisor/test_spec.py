"""RunSpec and friends refuse agent bugs that would escape the logs dir or hang a probe."""

import os
from pathlib import Path

import pytest

from fogline.agent.supervisor import HealthCheck, Resources, RestartPolicy, RunSpec, module_env

from ._support import make_spec


@pytest.mark.parametrize(
    "name", ["", "../etc", "a/b", "Gateway", "-x", "x-", "a" * 64, "a\x00b", ".."]
)
def test_hostile_module_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="module name"):
        make_spec(name, tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"command": ()}, "command"),
        ({"command": ("",)}, "program must not be empty"),
        ({"command": ("a\x00b",)}, "bad argument"),
        ({"command": ("x",) * 65}, "command"),
        ({"env": {"FOGLINE_TOKEN": "x"}}, "set by the agent"),
        ({"env": {"fogline_module": "x"}}, "set by the agent"),
        ({"env": {"1BAD": "x"}}, "bad variable name"),
        ({"env": {"A": "x\x00"}}, "bad value"),
        ({"start_grace_s": -1.0}, "start_grace_s"),
        ({"stop_grace_s": float("nan")}, "stop_grace_s"),
    ],
)
def test_bad_run_specs_name_the_field(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_spec("mod", tmp_path, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("http", "ftp://127.0.0.1/x"),
        ("http", "http://127.0.0.1/ x"),
        ("http", 8080),
        ("tcp", 0),
        ("tcp", 65536),
        ("tcp", "8080"),
        ("tcp", True),
        ("command", ()),
        ("command", "true"),
        ("uptime", -1.0),
        ("uptime", True),
        ("dns", "x"),
    ],
)
def test_bad_health_checks_are_refused(kind: str, target: object) -> None:
    with pytest.raises(ValueError, match="health"):
        HealthCheck(kind, target)  # type: ignore[arg-type]


def test_bad_restart_policies_and_resources_are_refused() -> None:
    with pytest.raises(ValueError, match="policy"):
        RestartPolicy("sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not exceed"):
        RestartPolicy("always", 10.0, 1.0)
    with pytest.raises(ValueError, match="initial_backoff_s"):
        RestartPolicy("always", 0.0, 1.0)
    with pytest.raises(ValueError, match="memory_mb"):
        Resources(memory_mb=0)
    with pytest.raises(ValueError, match="open_files"):
        Resources(open_files=True)


def test_module_env_is_minimal_and_fogline_names_come_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOGLINE_TOKEN", "s3cret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    monkeypatch.setenv("PATH", "/opt/bin:/usr/bin")
    monkeypatch.delenv("LANG", raising=False)
    spec = make_spec("mod", tmp_path, env={"GREETING": "hi"}, config_path=tmp_path / "c.yaml")
    assert module_env(spec) == {
        "PATH": "/opt/bin:/usr/bin",
        "LANG": "C.UTF-8",
        "HOME": str(tmp_path),
        "GREETING": "hi",
        "FOGLINE_MODULE": "mod",
        "FOGLINE_MODULE_VERSION": "1.0.0",
        "FOGLINE_CONFIG": str(tmp_path / "c.yaml"),
    }
    assert "FOGLINE_CONFIG" not in module_env(make_spec("mod", tmp_path))
    assert os.environ["FOGLINE_TOKEN"] == "s3cret"  # the agent's own environment is untouched


def test_what_needs_a_restart(tmp_path: Path) -> None:
    base = make_spec("mod", tmp_path, env={"A": "1"})

    def changed(**kwargs: object) -> RunSpec:
        fields = {
            "name": base.name,
            "version": base.version,
            "workdir": base.workdir,
            "command": base.command,
            "env": base.env,
            "config_path": base.config_path,
            "health": base.health,
            "start_grace_s": base.start_grace_s,
            "stop_grace_s": base.stop_grace_s,
            "restart": base.restart,
            "resources": base.resources,
        }
        fields.update(kwargs)
        return RunSpec(**fields)  # type: ignore[arg-type]

    for kwargs in (
        {"version": "1.0.1"},
        {"workdir": tmp_path / "other"},
        {"command": ("other",)},
        {"env": {"A": "2"}},
        {"config_path": tmp_path / "c.yaml"},
        {"resources": Resources(open_files=64)},
    ):
        assert changed(**kwargs).needs_restart_from(base), kwargs
    for kwargs in (
        {"env": {"A": "1"}},  # an equal mapping, not the same object
        {"health": HealthCheck("uptime", 1.0)},
        {"start_grace_s": 9.0},
        {"stop_grace_s": 9.0},
        {"restart": RestartPolicy("never")},
    ):
        assert not changed(**kwargs).needs_restart_from(base), kwargs
