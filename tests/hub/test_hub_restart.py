"""Later starts reuse the CA, the TLS certificate and the admin token."""

import stat

from tests.support.processes import start_hub


def test_restart_reuses_ca_certificate_and_token(tmp_path):
    hub = start_hub(tmp_path / "hub", extra_args=["--san", "hub.plant-7.local"])
    ca_before = hub.ca.read_bytes()
    tls_before = (hub.data_dir / "tls" / "hub.pem").read_bytes()
    token = hub.token
    assert stat.S_IMODE((hub.data_dir / "admin-token").stat().st_mode) == 0o600
    assert stat.S_IMODE((hub.data_dir / "ca-key.pem").stat().st_mode) == 0o600
    hub.stop()
    hub.start()
    try:
        assert hub.ca.read_bytes() == ca_before
        assert (hub.data_dir / "tls" / "hub.pem").read_bytes() == tls_before
        assert hub.token == token
        with hub.client() as client:
            assert client.get("/v1/devices").status_code == 200
        # the token is never printed (service managers keep stdout in logs)
        assert token.split(".", 1)[1] not in hub.stdout_path.read_text()
    finally:
        hub.stop()


def test_hub_on_postgresql_serves_the_same_api(tmp_path, postgres_url):
    hub = start_hub(tmp_path / "hub", db_url=postgres_url)
    try:
        claim = hub.create_claim(labels="site=pg")
        assert claim.startswith("fgc_")
        listed = hub.cli("claim", "ls", "--output", "json").stdout
        assert '"site": "pg"' in listed
    finally:
        hub.stop()
