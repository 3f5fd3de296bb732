"""SCM ACME account service (contract §8) over Certwright's own ACME server: an SCM "ACME
account" is an external account binding key (Settings > ACME accounts,
app/services/acme/external_keys.py) of an organization or department; an ACME client
registers with its ``macId`` and ``macKey`` and then orders from any ACME directory of the
account (a profile with an ACME directory is an "ACME server"). See docs/api.md."""

from __future__ import annotations

from typing import Any

from flask import Response, url_for

from app.api.scm.base import (
    ApiError,
    Codes,
    actor,
    answer,
    body,
    call,
    commit,
    created,
    department_api_id,
    empty,
    get_int,
    get_str,
    invalid,
    page,
    paging,
    query_int,
    query_str,
    route,
    slice_page,
)
from app.api.scm.ssl import place_of
from app.models import AcmeAccount, AcmeExternalKey, CertificateProfile, CertType
from app.services.acme import external_keys
from app.services.errors import Conflict
from app.services.structure import domains

VALIDATION_TYPE = "OV"  # our TLS subjects carry the organization


def _no_account(account_id: int) -> tuple[int, str]:
    return (-1, f"ACME account '{account_id}' not found.")


def _org_not_found(org: int) -> Codes:
    text = f"Organization '{org}' not found."
    return Codes(
        not_found=(-1023, text),
        by_field={"NotFound:organization": (-1023, text), "NotFound:department": (-1023, text)},
    )


def _server(profile: CertificateProfile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "url": url_for("acme.directory", slug=profile.acme_slug, _external=True),
        "caId": profile.ca_id,
        "certValidationType": VALIDATION_TYPE,
        "singleProductId": profile.id,
        "multiProductId": profile.id,
        "wcProductId": profile.id,
    }


def _servers() -> list[dict[str, Any]]:
    return [_server(p) for p in external_keys.directory_profiles()]


def _server_of_keys(servers: list[dict[str, Any]]) -> str:
    """A key works with every ACME directory: the one there is, or the directories' root."""
    if len(servers) == 1:
        return str(servers[0]["url"])
    return url_for("acme.directory", slug="x", _external=True).rsplit("/", 2)[0] + "/"


def account_object(
    key: AcmeExternalKey,
    accounts: list[AcmeAccount],
    server: str,
    names: list[str],
    *,
    show_mac: bool,
) -> dict[str, Any]:
    if key.is_revoked:
        status = "deactivated"
    elif accounts:
        status = "valid"
    else:
        status = "pending"
    contacts = [c for a in accounts for c in (a.contact or [])]
    return {
        "id": key.id,
        "name": key.label or key.key_id,
        "status": status,
        # Readable only until an ACME client has registered with it (docs/api.md).
        "macKey": external_keys.hmac_key_b64(key) if show_mac and status == "pending" else "",
        "macId": key.key_id,
        "acmeServer": server,
        "organizationId": department_api_id(key.department_id)
        if key.department_id
        else key.organization_id,
        "certValidationType": VALIDATION_TYPE,
        "accountId": key.key_id,
        "contacts": ",".join(c.removeprefix("mailto:") for c in contacts),
        "evDetails": {},
        "domains": [{"name": n} for n in names],
    }


def _names(key: AcmeExternalKey) -> list[str]:
    return sorted(
        d.name
        for d in domains.delegated_domains(key.organization_id, key.department_id, CertType.SSL)
    )


def _objects(keys: list[AcmeExternalKey]) -> list[dict[str, Any]]:
    accounts = external_keys.accounts_of([k.id for k in keys])
    server = _server_of_keys(_servers())
    names: dict[tuple[int, int | None], list[str]] = {}
    admin = actor()
    result = []
    for key in keys:
        place = (key.organization_id, key.department_id)
        if place not in names:
            names[place] = _names(key)
        result.append(
            account_object(
                key,
                accounts[key.id],
                server,
                names[place],
                show_mac=external_keys.may_manage(admin, key),
            )
        )
    return result


def _contains(value: str | None, text: str) -> bool:
    return value is None or value.strip().lower() in text.lower()


@route("/acme/v1/account", methods=["GET"])
def list_accounts() -> Response:
    paging_ = paging()
    org = query_int("organizationId")
    if org is None:
        raise ApiError(400, -7, "'organizationId' is required but missing")
    organization_id, department_id = place_of(org)
    keys = call(
        lambda: external_keys.list_keys(
            actor=actor(), organization_id=organization_id, department_id=department_id
        ),
        _org_not_found(org),
    )
    name, server, validation, status = (
        query_str(n) for n in ("name", "acmeServer", "certValidationType", "status")
    )
    servers = _servers()
    # Every key works with every ACME server, so a server filter matches all keys when it
    # names one of ours, and none otherwise.
    serves = server is None or any(
        _contains(server, s["url"]) or _contains(server, s["name"]) for s in servers
    )
    matching = [
        o
        for o in _objects(keys)
        if serves
        and _contains(name, o["name"])
        and _contains(validation, o["certValidationType"])
        and _contains(status, o["status"])
    ]
    return page(slice_page(matching, paging_), len(matching))


def _get(account_id: int) -> AcmeExternalKey:
    return call(
        lambda: external_keys.get_key(actor=actor(), key_id=account_id),
        Codes(not_found=_no_account(account_id)),
    )


@route("/acme/v1/account/<int:account_id>", methods=["GET"])
def account_details(account_id: int) -> Response:
    return answer(_objects([_get(account_id)])[0])


def _chosen_server(value: str) -> dict[str, Any]:
    wanted = value.strip().rstrip("/").lower()
    for server in _servers():
        if wanted in (str(server["url"]).rstrip("/").lower(), str(server["name"]).lower()):
            return server
    names = ", ".join(str(s["url"]) for s in _servers()) or "none: no profile has an ACME directory"
    invalid("acmeServer", f"'{value}' is not an ACME server of this account (servers: {names}).")


@route("/acme/v1/account", methods=["POST"])
def create_account() -> Response:
    data = body()
    name = get_str(data, "name", required=True, max_length=128)
    server = get_str(data, "acmeServer", required=True)
    org = get_int(data, "organizationId", required=True)
    evd = data.get("evDetails")
    if evd is not None and not isinstance(evd, dict):
        invalid("evDetails", "Expected an object.")
    assert name is not None and server is not None and org is not None
    organization_id, department_id = place_of(org)
    _chosen_server(server)
    made = call(
        lambda: external_keys.create_key(
            actor=actor(),
            organization_id=organization_id,
            department_id=department_id,
            label=name,
        ),
        _org_not_found(org),
    )
    commit()
    return created("scm.account_details", account_id=made.key.id)


@route("/acme/v1/account/<int:account_id>", methods=["PUT"])
def update_account(account_id: int) -> Response:
    data = body()
    name = get_str(data, "name", required=True, max_length=128)
    assert name is not None
    call(
        lambda: external_keys.rename_key(actor=actor(), key_id=account_id, label=name),
        Codes(not_found=_no_account(account_id)),
    )
    commit()
    return empty(200)


@route("/acme/v1/account/<int:account_id>", methods=["DELETE"])
def delete_account(account_id: int) -> Response:
    call(
        lambda: external_keys.revoke_key(actor=actor(), key_id=account_id),
        Codes(
            not_found=_no_account(account_id),
            by_class={Conflict: (-1601, "")},
        ),
    )
    commit()
    return empty(204)


def _domain_names(data: dict[str, Any]) -> list[str]:
    items = data.get("domains")
    if items is None:
        raise ApiError(400, -7, "'domains' is required but missing")
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("name"), str) for i in items
    ):
        invalid("domains", "Expected an array of {name} objects.")
    return [i["name"].strip().lower() for i in items]


@route("/acme/v1/account/<int:account_id>/domains", methods=["POST"])
def add_account_domains(account_id: int) -> Response:
    # An account's names are its place's delegated domains (§2.6 changes them): each name
    # sent is either there already or not allowed, so none is added (docs/api.md).
    names = _domain_names(body())
    _get(account_id)
    return answer({"notAddedDomains": names})


@route("/acme/v1/account/<int:account_id>/domains", methods=["DELETE"])
def remove_account_domains(account_id: int) -> Response:
    names = _domain_names(body())
    _get(account_id)
    return answer({"notRemovedDomains": names})


@route("/acme/v1/server", methods=["GET"])
def list_servers() -> Response:
    paging_ = paging()
    name, url, validation = (query_str(n) for n in ("name", "url", "certValidationType"))
    matching = [
        s
        for s in _servers()
        if _contains(name, s["name"])
        and _contains(url, s["url"])
        and _contains(validation, s["certValidationType"])
    ]
    return page(slice_page(matching, paging_), len(matching))
