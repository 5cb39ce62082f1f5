"""Policy files: loading, validation messages naming file and field, host name rules."""
from __future__ import annotations

import shutil

import pytest

import policies


def test_default_policies_load():
    loaded = policies.load()
    size = loaded.size("website", "S")
    assert size.memory_bytes == size.memory_mib * 1024 * 1024
    assert size.nano_cpus == int(size.cpu * 1e9)
    assert loaded.size_names("website") == ["S", "M", "L"]
    assert "proxy" in loaded.platform


@pytest.mark.parametrize("content, expected", [
    ("website: [", "sizes.yaml: not valid YAML"),
    ("- a\n- b\n", "sizes.yaml: expected a mapping"),
    ("website:\n  S: {cpu: 0.5, memory_mib: 64, pids: 64}\n", "missing field(s) disk_mib"),
    ("website:\n  S: {cpu: -1, memory_mib: 64, pids: 64, disk_mib: 100}\n", "website.S.cpu"),
    ("website:\n  S: {cpu: 1, memory_mib: 64.5, pids: 64, disk_mib: 100}\n", "whole number"),
    ("website:\n  S: {cpu: 1, memory_mib: 64, pids: 64, disk_mib: 100, gpu: 1}\n",
     "unknown field(s) gpu"),
    ("website:\n  S: {cpu: 1, memory_mib: 99999999, pids: 64, disk_mib: 100}\n", "memory_mib"),
    ("spaceship:\n  S: {cpu: 1, memory_mib: 64, pids: 64, disk_mib: 100}\n", "unknown kind"),
    ("website:\n  small: {cpu: 1, memory_mib: 64, pids: 64, disk_mib: 100}\n", "size names"),
    ("website: {}\n", "at least one size"),
])
def test_malformed_sizes_are_named(tmp_path, content, expected):
    shutil.copy(policies.POLICIES_DIR / "platform.yaml", tmp_path / "platform.yaml")
    (tmp_path / "sizes.yaml").write_text(content)
    with pytest.raises(policies.PolicyError) as info:
        policies.load(tmp_path)
    assert expected in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(policies.PolicyError, match="sizes.yaml: file is missing"):
        policies.load(tmp_path)


@pytest.mark.parametrize("host, problem", [
    ("www.minisante.gov.bi", None),
    ("minisante.gov.bi", None),
    ("portail.rh.minisante.gov.bi", None),
    ("www.obr.gov.bi", "outside"),
    ("wwwminisante.gov.bi", "outside"),
    ("www.minisante.gov.bi.evil.com", "outside"),
    ("WWW..minisante.gov.bi", "syntax"),
    ("-www.minisante.gov.bi", "syntax"),
    ("www_1.minisante.gov.bi", "syntax"),
    ("www.minisante.gov.bi/x", "syntax"),
    ("", "syntax"),
    ("a" * 64 + ".minisante.gov.bi", "syntax"),
])
def test_hostname_rules(host, problem):
    assert policies.hostname_problem(host, "minisante.gov.bi") == problem


def test_policy_check_command(tmp_path):
    from click.testing import CliRunner

    from controlplane.cli import main

    result = CliRunner().invoke(main, ["policy", "check"])
    assert result.exit_code == 0, result.output
    assert "policies OK" in result.output
    (tmp_path / "sizes.yaml").write_text("website: {}\n")
    shutil.copy(policies.POLICIES_DIR / "platform.yaml", tmp_path / "platform.yaml")
    result = CliRunner().invoke(main, ["policy", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "sizes.yaml" in result.output


def test_broken_policies_stop_commands_with_their_message(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from controlplane.cli import main

    for name in policies.POLICIES_DIR.glob("*.yaml"):
        shutil.copy(name, tmp_path / name.name)
    (tmp_path / "sizes.yaml").write_text("website:\n  S: {cpu: -1}\n")
    monkeypatch.setenv("CONTROLPLANE_POLICIES_DIR", f'"{tmp_path}"')
    monkeypatch.setenv("CONTROLPLANE_INSTANCE", str(tmp_path / "instance"))
    result = CliRunner().invoke(main, ["db", "current"])
    assert result.exit_code == 2
    assert "policy error: sizes.yaml: website.S" in result.output
    assert "Traceback" not in result.output
