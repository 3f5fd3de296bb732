"""SCM ACME account service (contract §8): external account bindings of Certwright's own ACME
server. Until that server exists (the ACME issue) there is no ACME server and so no account:
every call answers as the contract does for an organization with none (docs/api.md)."""

from __future__ import annotations

from flask import Response

from app.api.scm.base import (
    ApiError,
    Codes,
    actor,
    body,
    call,
    get_int,
    get_str,
    invalid,
    page,
    paging,
    query_int,
    query_str,
    route,
    split_org_id,
)
from app.services.structure import directory


def _no_account(account_id: int) -> ApiError:
    return ApiError(404, -1, f"ACME account '{account_id}' not found.")


@route("/acme/v1/account", methods=["GET"])
def list_accounts() -> Response:
    paging()
    org = query_int("organizationId")
    if org is None:
        raise ApiError(400, -7, "'organizationId' is required but missing")
    organization_id, department_id = split_org_id(org)
    call(
        lambda: directory.get_place(
            actor=actor(), organization_id=organization_id, department_id=department_id
        ),
        Codes(not_found=(-1023, f"Organization '{org}' not found.")),
    )
    for name in ("name", "acmeServer", "certValidationType", "status"):
        query_str(name)
    return page([], 0)


@route("/acme/v1/account/<int:account_id>", methods=["GET"])
def account_details(account_id: int) -> Response:
    raise _no_account(account_id)


@route("/acme/v1/account", methods=["POST"])
def create_account() -> Response:
    data = body()
    get_str(data, "name", required=True)
    server = get_str(data, "acmeServer", required=True)
    org = get_int(data, "organizationId", required=True)
    assert org is not None
    organization_id, department_id = split_org_id(org)
    call(
        lambda: directory.get_place(
            actor=actor(), organization_id=organization_id, department_id=department_id
        ),
        Codes(not_found=(-1023, f"Organization '{org}' not found.")),
    )
    invalid("acmeServer", f"'{server}' is not an ACME server of this account (there is none yet).")


@route("/acme/v1/account/<int:account_id>", methods=["PUT"])
def update_account(account_id: int) -> Response:
    raise _no_account(account_id)


@route("/acme/v1/account/<int:account_id>", methods=["DELETE"])
def delete_account(account_id: int) -> Response:
    raise _no_account(account_id)


@route("/acme/v1/account/<int:account_id>/domains", methods=["POST"])
def add_account_domains(account_id: int) -> Response:
    raise _no_account(account_id)


@route("/acme/v1/account/<int:account_id>/domains", methods=["DELETE"])
def remove_account_domains(account_id: int) -> Response:
    raise _no_account(account_id)


@route("/acme/v1/server", methods=["GET"])
def list_servers() -> Response:
    paging()
    return page([], 0)
