"""The registry's access decision: every rule, as plain data in and out."""
from __future__ import annotations

import pytest

from controlplane.registry.access import Principal, Scope, allowed_actions, grant, parse_scopes

FOCAL = Principal("person", "fp.sante", role="focal_point", institution="MINISANTE")
ROBOT = Principal("robot", "robot$minisante+ci", institution="MINISANTE")
OPERATOR = Principal("person", "op.one", role="operator")
AUDITOR = Principal("person", "au.one", role="auditor")
PLATFORM = Principal("platform", "platform$comgov")
BOTH = {"pull", "push"}


def repo(name: str, *actions: str) -> Scope:
    return Scope("repository", name, actions or ("pull", "push"))


@pytest.mark.parametrize("who", [FOCAL, ROBOT], ids=["focal point", "robot"])
def test_an_institution_pulls_and_pushes_its_own_namespace(who):
    assert allowed_actions(who, "minisante/x") == BOTH
    assert allowed_actions(who, "minisante/team/app") == BOTH
    assert grant(who, [repo("minisante/x")]) == [
        {"type": "repository", "name": "minisante/x", "actions": ["pull", "push"]}]


@pytest.mark.parametrize("who", [FOCAL, ROBOT], ids=["focal point", "robot"])
def test_an_institution_gets_nothing_of_another_institution(who):
    assert allowed_actions(who, "obr/x") == set()
    assert grant(who, [repo("obr/x"), repo("minisantex/x"), repo("minisante-obr/x")]) == []


def test_a_focal_point_pulls_but_never_pushes_platform_images():
    assert allowed_actions(FOCAL, "comgov/base") == {"pull"}
    assert grant(FOCAL, [repo("comgov/base")]) == [
        {"type": "repository", "name": "comgov/base", "actions": ["pull"]}]


def test_a_robot_gets_only_its_institution_not_even_platform_pulls():
    assert allowed_actions(ROBOT, "comgov/base") == set()
    assert grant(ROBOT, [repo("comgov/base")]) == []


@pytest.mark.parametrize("who", [OPERATOR, PLATFORM], ids=["operator", "platform"])
def test_operators_and_the_platform_push_platform_images_only(who):
    assert allowed_actions(who, "comgov/nginx") == BOTH
    assert allowed_actions(who, "minisante/x") == set()
    assert grant(who, [repo("comgov/nginx"), repo("minisante/x")]) == [
        {"type": "repository", "name": "comgov/nginx", "actions": ["pull", "push"]}]


def test_an_auditor_only_pulls_platform_images():
    assert allowed_actions(AUDITOR, "comgov/nginx") == {"pull"}
    assert allowed_actions(AUDITOR, "minisante/x") == set()


def test_an_institution_named_like_the_platform_gets_no_platform_push():
    fake = Principal("person", "fp.x", role="focal_point", institution="COMGOV")
    robot = Principal("robot", "robot$comgov+ci", institution="COMGOV")
    assert allowed_actions(fake, "comgov/base") == {"pull"}
    assert allowed_actions(robot, "comgov/base") == set()


@pytest.mark.parametrize("name", [
    "minisante", "minisante/", "/minisante/x", "minisante//x", "MINISANTE/x", "minisante/X",
    "minisante/x/", "minisante/-x", "minisante/x:1", "minisante/../obr/x", "minisante/x y",
    "minisante/" + "a" * 300,
])
def test_invalid_or_bare_names_get_nothing(name):
    assert allowed_actions(FOCAL, name) == set()
    assert allowed_actions(OPERATOR, name.replace("minisante", "comgov")) == set()


def test_unknown_principal_kinds_and_roles_get_nothing():
    assert allowed_actions(Principal("service", "x", institution="MINISANTE"), "minisante/x") \
        == set()
    assert allowed_actions(Principal("person", "x", role="stranger"), "comgov/base") == set()
    assert allowed_actions(Principal("person", "x", role="operator", institution="OBR"),
                           "obr/x") == set()


def test_only_pull_and_push_are_ever_granted():
    scopes = [repo("minisante/x", "pull", "push", "delete", "*")]
    assert grant(FOCAL, scopes) == [
        {"type": "repository", "name": "minisante/x", "actions": ["pull", "push"]}]
    assert grant(PLATFORM, [repo("comgov/x", "*", "delete")]) == []


def test_other_resource_types_are_never_granted():
    scopes = [Scope("registry", "catalog", ("*",)), Scope("repository(plugin)", "minisante/x",
                                                          ("pull",))]
    for who in (FOCAL, ROBOT, OPERATOR, AUDITOR, PLATFORM):
        assert grant(who, scopes) == []


def test_no_scope_grants_an_empty_access_list():
    """`docker login` asks without a scope: valid credentials get a token granting nothing."""
    assert grant(FOCAL, []) == []


def test_scopes_are_merged_per_repository_in_the_order_asked():
    scopes = [repo("minisante/x", "push"), repo("minisante/y", "pull"),
              repo("minisante/x", "pull", "push")]
    assert grant(FOCAL, scopes) == [
        {"type": "repository", "name": "minisante/x", "actions": ["push", "pull"]},
        {"type": "repository", "name": "minisante/y", "actions": ["pull"]}]


def test_parse_scopes():
    assert parse_scopes(["repository:minisante/x:pull,push"]) == [
        Scope("repository", "minisante/x", ("pull", "push"))]
    # several in one parameter, several parameters, a registry:catalog:* scope
    assert parse_scopes(["repository:a/b:pull repository:c/d:push", "registry:catalog:*"]) == [
        Scope("repository", "a/b", ("pull",)), Scope("repository", "c/d", ("push",)),
        Scope("registry", "catalog", ("*",))]
    # malformed ones are dropped
    assert parse_scopes(["", "repository", "repository:x", ":a/b:pull", "repository::pull"]) \
        == []
    # a name with a colon keeps it (and is then refused by the name check)
    assert parse_scopes(["repository:a/b:c:pull"]) == [Scope("repository", "a/b:c", ("pull",))]
    assert grant(FOCAL, parse_scopes(["repository:minisante/b:c:pull"])) == []


def test_parse_scopes_is_bounded():
    assert len(parse_scopes(["repository:a/b:pull " * 1000])) == 32
