"""The dev services start for real, keep their data across restarts and fail loudly."""
from __future__ import annotations

import os
import secrets
import socket
import stat
import subprocess

import ldap3
import pytest
import redis

from devtools import devstack
from provisioners.directory import tree as d


def test_free_port_is_bindable():
    port = devstack.free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_redis_answers_ping(redis_url):
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_persistent_redis_keeps_data(tmp_path):
    port = devstack.free_port()
    proc = devstack.start_redis(tmp_path / "r", port, persistent=True)
    try:
        client = redis.Redis(port=port)
        client.set("k", "v")
        client.close()
    finally:
        devstack.stop_process(proc)
    port = devstack.free_port()
    proc = devstack.start_redis(tmp_path / "r", port, persistent=True)
    try:
        client = redis.Redis(port=port)
        assert client.get("k") == b"v"
        client.close()
    finally:
        devstack.stop_process(proc)


def test_redis_missing_binary_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(devstack.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="redis-server is not installed"):
        devstack.start_redis(tmp_path, devstack.free_port())


def test_redis_early_exit_shows_output(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(RuntimeError, match="exited"):
            devstack.start_redis(tmp_path, busy.getsockname()[1])


def _slapd(workdir, port, password):
    return devstack.start_slapd(workdir, port, base_dn="dc=gov,dc=bi",
                                admin_dn="cn=admin,dc=gov,dc=bi", admin_password=password)


def _cfg(port, password):
    return d.DirectoryConfig(url=f"ldap://127.0.0.1:{port}", base_dn="dc=gov,dc=bi",
                             admin_dn="cn=admin,dc=gov,dc=bi", admin_password=password)


def test_slapd_restart_keeps_data(tmp_path):
    password = secrets.token_urlsafe(12)
    port = devstack.free_port()
    proc = _slapd(tmp_path / "ldap", port, password)
    try:
        cfg = _cfg(port, password)
        d.ensure_tree(cfg)
        d.ensure_person(cfg, uid="keeper", full_name="Kept Person", mail="k@gov.bi",
                        password="kept-pw", role="operator")
    finally:
        devstack.stop_process(proc)
    assert proc.poll() is not None
    port = devstack.free_port()
    new_password = secrets.token_urlsafe(12)  # the root password may rotate between runs
    proc = _slapd(tmp_path / "ldap", port, new_password)
    try:
        assert d.authenticate(_cfg(port, new_password), "keeper", "kept-pw").role == "operator"
    finally:
        devstack.stop_process(proc)


def test_slapd_conf_is_private_and_hashed(session_dir, ldap_config):
    conf = session_dir / "slapd" / "slapd.conf"
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600
    text = conf.read_text()
    assert ldap_config.admin_password not in text
    assert "rootpw {SSHA}" in text


def test_slapd_port_in_use_fails_with_log(tmp_path):
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(RuntimeError, match="Address already in use"):
            _slapd(tmp_path, busy.getsockname()[1], "pw")


def _bind(cfg, dn=None, password=None):
    server = ldap3.Server(cfg.url, get_info=ldap3.NONE, connect_timeout=5)
    return ldap3.Connection(server, user=dn, password=password, auto_bind=True,
                            receive_timeout=5)


def test_acl_anonymous_sees_nothing_users_read_no_hashes(ldap_config):
    d.ensure_person(ldap_config, uid="aclreader", full_name="Acl Reader", mail="a@gov.bi",
                    password="acl-pw", role="auditor")
    anon = _bind(ldap_config)
    try:
        anon.search(ldap_config.base_dn, "(objectClass=*)")
        assert [r for r in anon.response if r["type"] == "searchResEntry"] == []
    finally:
        anon.unbind()
    dn = "uid=aclreader,ou=auditors,dc=gov,dc=bi"
    user = _bind(ldap_config, dn, "acl-pw")
    try:
        user.search(ldap_config.base_dn, "(uid=aclreader)", attributes=["cn", "userPassword"])
        (entry,) = [r for r in user.response if r["type"] == "searchResEntry"]
        assert entry["attributes"]["cn"] == ["Acl Reader"]
        assert not entry["attributes"].get("userPassword")
        assert not user.modify(dn, {"cn": [(ldap3.MODIFY_REPLACE, ["Hacked"])]})
        assert not user.modify(dn, {"userPassword": [(ldap3.MODIFY_REPLACE, ["clear"])]})
        assert user.result["result"] == 50  # insufficientAccessRights
    finally:
        user.unbind()


def test_stop_process_tolerates_none_and_exited():
    devstack.stop_process(None)
    proc = subprocess.Popen(["true"])
    proc.wait()
    devstack.stop_process(proc)
    proc = subprocess.Popen(["sleep", "30"])
    devstack.stop_process(proc)
    assert proc.returncode is not None


@pytest.mark.slow
def test_stop_process_kills_a_process_that_ignores_term():
    proc = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 60"])
    import time
    time.sleep(0.3)
    devstack.stop_process(proc)
    assert proc.returncode == -9


def test_docker_detection(tmp_path):
    available = devstack.docker_available()
    assert isinstance(available, bool)
    if available:
        assert devstack.ensure_dockerd(tmp_path / "dockerd.log") is None


def test_slapd_listens_on_ldapi_socket_alone_in_its_directory(tmp_path):
    import urllib.parse

    password = secrets.token_urlsafe(12)
    socket_path = tmp_path / "sock-dir" / "ldapi"
    proc = devstack.start_slapd(tmp_path / "ldap", devstack.free_port(), base_dn="dc=gov,dc=bi",
                                admin_dn="cn=admin,dc=gov,dc=bi", admin_password=password,
                                ldapi_path=socket_path)
    try:
        assert socket_path.is_socket()
        assert os.listdir(socket_path.parent) == ["ldapi"]  # nothing else gets bind-mounted
        assert stat.S_IMODE(os.stat(socket_path.parent).st_mode) == 0o755
        uri = "ldapi://" + urllib.parse.quote(str(socket_path), safe="")
        conn = ldap3.Connection(ldap3.Server(uri, get_info=ldap3.NONE),
                                "cn=admin,dc=gov,dc=bi", password)
        assert conn.bind()
        conn.unbind()
        assert "include " + str(tmp_path / "ldap" / "schema" / "comgov.schema") in \
            (tmp_path / "ldap" / "slapd.conf").read_text()
    finally:
        devstack.stop_process(proc)


def test_default_slapd_has_mail_schema_and_socket(session_dir, ldap_config):
    assert devstack.default_ldapi_path(session_dir / "slapd").is_socket()
    text = (session_dir / "slapd" / "slapd.conf").read_text()
    assert f'dn.exact="{devstack.mail_service_dn(ldap_config.base_dn)}"' in text
    assert "filter=(mailEnabled=FALSE) by * none" in text
