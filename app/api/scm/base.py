"""The SCM REST API's wire: the blueprint, header authentication on every call, JSON bodies,
pagination, Location, and errors as ``{"code", "description"}`` (contract §0, §10).

Handlers parse, call one service, commit, send messages and answer; everything the console
checks is checked by the same services. Nothing here knows a business rule.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn, TypeVar

from flask import Blueprint, Response, current_app, g, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from app.extensions import csrf, db
from app.models import Admin
from app.services.accounts import api_access
from app.services.accounts.sessions import SignInRefused, SignInThrottled
from app.services.errors import DomainError, Forbidden, NotFound, ValidationFailed

log = logging.getLogger(__name__)
T = TypeVar("T")

bp = Blueprint("scm", __name__, url_prefix="/api")
csrf.exempt(bp)  # header-authenticated machine calls; no cookie, so nothing to forge

JSON_TYPE = "application/json;charset=UTF-8"
MAX_PAGE = 200
# Department ids share the API's orgId space with organizations (SCM has one id space):
# department 7 is orgId 1000007 (docs/api.md).
DEPARTMENT_BASE = 1_000_000


class ApiError(Exception):
    """An answer with status >= 400: ``{"code": code, "description": description}``."""

    def __init__(
        self, status: int, code: int, description: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description
        self.headers = dict(headers or {})


MAX_ID = 2**31 - 1
# A path id larger than any id (ids are 32-bit) is a missing object, answered with the
# operation's own code before any database sees the number.
TOO_LARGE = {
    "ssl_id": (-124, "Wrong SSL certificate id {0}."),
    "domain_id": (-727, "The domain '{0}' does not exist."),
    "org_id": (-1023, "Organization '{0}' not found."),
    "admin_id": (-1, "Administrator '{0}' not found."),
    "account_id": (-1, "ACME account '{0}' not found."),
    "person_id": (-105, "Person with ID: {0} was not found"),
}


class PathNumber(IntegerConverter):
    """An id in an API path: any run of digits. The app's ``int`` converter (app/ids.py)
    refuses numbers past 63 bits, and then no route matches and the answer is the site's
    404, not the operation's; _authenticate answers ids past MAX_ID with TOO_LARGE."""


PATH_ID = "apiid"
# Registered on the app before the blueprint's routes are added (deferred in this order).
bp.record_once(lambda state: state.app.url_map.converters.setdefault(PATH_ID, PathNumber))


def route(rule: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A blueprint route that also answers with a trailing '/' (contract §0.1); its
    ``<int:...>`` ids take any number (PathNumber)."""
    rule = rule.replace("<int:", f"<{PATH_ID}:")
    return bp.route(rule.rstrip("/") + "/", strict_slashes=False, **options)


def actor() -> Admin:
    admin: Admin = g.scm_admin
    return admin


# --- answers ---------------------------------------------------------------------------


def answer(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status=status,
        content_type=JSON_TYPE,
        headers=dict(headers or {}),
    )


def empty(status: int = 200) -> Response:
    response = Response(b"", status=status)
    if status == 204:
        response.headers.pop("Content-Type", None)
    return response


def created(endpoint: str, **values: Any) -> Response:
    """201, empty body, Location = absolute URL of the new resource (no trailing '/')."""
    # Under /private/api the new resource's URL is there too.
    endpoint = f"{request.blueprint or bp.name}.{endpoint.partition('.')[2]}"
    location = url_for(endpoint, _external=True, **values).rstrip("/")
    response = Response(b"", status=201)
    response.headers.pop("Content-Type", None)
    response.headers["Location"] = location
    return response


def page(items: list[Any], total: int) -> Response:
    return answer(items, headers={"X-Total-Count": str(total)})


def commit() -> None:
    """Commit once; the messages the services queued are sent after it (platform.jobs)."""
    db.session.commit()


# --- request bodies and parameters ------------------------------------------------------


def body() -> dict[str, Any]:
    """The JSON object sent; absent, empty, ``{}``, ``""`` and ``null`` all mean no fields."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, -1601, f"The request body is not valid JSON: {exc}") from None
    if data is None or data == "":
        return {}
    if not isinstance(data, dict):
        raise ApiError(400, -1601, "The request body must be a JSON object.")
    return data


def missing(name: str) -> NoReturn:
    raise ApiError(400, -7, f"'{name}' is required but missing")


def invalid(name: str, detail: str = "") -> NoReturn:
    text = f"Field '{name}' has invalid value."
    raise ApiError(400, -1601, f"{text} {detail}".strip())


def get_int(data: Mapping[str, Any], name: str, *, required: bool = False) -> int | None:
    value = data.get(name)
    if value is None:
        if required:
            missing(name)
        return None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, str) and re.fullmatch(r"-?\d{1,10}", value.strip())) or (
        isinstance(value, float) and value.is_integer()
    ):
        number = int(value)
    if number is None or not -MAX_ID <= number <= MAX_ID:
        invalid(name, "Expected an integer.")
    return number


def get_str(
    data: Mapping[str, Any], name: str, *, required: bool = False, max_length: int | None = None
) -> str | None:
    value = data.get(name)
    if value is None or (required and isinstance(value, str) and not value.strip()):
        if required:
            missing(name)
        return None
    if not isinstance(value, str):
        invalid(name, "Expected a string.")
    if max_length is not None and len(value) > max_length:
        invalid(name, f"At most {max_length} characters.")
    return value


def get_bool(data: Mapping[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        invalid(name, "Expected true or false.")
    return value


def get_str_list(data: Mapping[str, Any], name: str) -> list[str] | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        invalid(name, "Expected an array of strings.")
    return list(value)


def query_int(name: str, *, minimum: int | None = None, maximum: int | None = None) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if not re.fullmatch(r"-?\d{1,10}", value.strip()) or abs(int(value)) > MAX_ID:
        invalid(name, "Expected an integer.")
    number = int(value)
    if minimum is not None and number < minimum:
        invalid(name, f"At least {minimum}.")
    if maximum is not None and number > maximum:
        invalid(name, f"At most {maximum}.")
    return number


def query_str(name: str) -> str | None:
    value = request.args.get(name)
    return value if value not in (None, "") else None


@dataclass(frozen=True)
class Paging:
    position: int
    size: int | None


def paging() -> Paging:
    """``position`` (0-based, default 0) and ``size`` (1..200; absent: everything)."""
    position = query_int("position", minimum=0) or 0
    size = query_int("size", minimum=0)
    if size is not None and size > MAX_PAGE:
        invalid("size", f"At most {MAX_PAGE}.")
    return Paging(position, size)


def slice_page(items: list[T], paging_: Paging) -> list[T]:
    end = None if paging_.size is None else paging_.position + paging_.size
    return items[paging_.position : end]


# --- org ids ----------------------------------------------------------------------------


def split_org_id(value: int) -> tuple[int | None, int | None]:
    """An API orgId as (organization id, department id): one of them is None."""
    if value > DEPARTMENT_BASE:
        return None, value - DEPARTMENT_BASE
    return value, None


def department_api_id(dept_id: int) -> int:
    return DEPARTMENT_BASE + dept_id


# --- errors -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Codes:
    """How one operation's service refusals become SCM codes."""

    default: int = -1601
    not_found: tuple[int, str] | None = None
    by_class: Mapping[type[DomainError], tuple[int, str]] = field(default_factory=dict)
    by_field: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    def translate(self, exc: DomainError) -> ApiError:
        if isinstance(exc, NotFound) and self.not_found is not None:
            return ApiError(404, self.not_found[0], self.not_found[1])
        for cls, (code, text) in self.by_class.items():
            if isinstance(exc, cls):
                return ApiError(400, code, _join(text, exc.message))
        if isinstance(exc, Forbidden):
            return ApiError(403, -3, exc.message)
        fields = exc.errors if isinstance(exc, ValidationFailed) else {exc.field or "": []}
        for name in fields:
            for key in (f"{type(exc).__name__}:{name}", name):
                if key in self.by_field:
                    code, text = self.by_field[key]
                    # "No such ..." adds nothing to the contract's "... not found."
                    detail = "" if isinstance(exc, NotFound) and text else exc.message
                    return ApiError(400, code, _join(text, detail))
        status = exc.status if 400 <= exc.status < 500 and exc.status != 409 else 400
        return ApiError(status, self.default, exc.message)


def _join(contract_text: str, detail: str) -> str:
    """The contract's description, then the service's specific reason when it adds one."""
    if not contract_text:
        return detail
    if not detail or detail == contract_text:
        return contract_text
    return f"{contract_text} {detail}"


def call(fn: Callable[[], T], codes: Codes = Codes()) -> T:
    """Run a service call; a refusal rolls back and becomes the operation's SCM error."""
    try:
        return fn()
    except DomainError as exc:
        db.session.rollback()
        raise codes.translate(exc) from exc


# --- every call -------------------------------------------------------------------------


# Operations that take files, whose body limit is the import's (app/api/scm/imports.py).
UPLOAD_ENDPOINTS = frozenset({"start_import"})

# Client-certificate authentication (contract §0.2 variant): the same operations under
# /private/api (app/__init__.py registers the blueprint a second time under this name),
# with the certificate a TLS-terminating proxy on this host forwards (docs/api.md).
PRIVATE = "scm_private"
CLIENT_CERT_HEADER = "X-SSL-Client-Cert"


def _peer_address() -> str:
    """The address of the connection itself (the proxy), before ProxyFix took the client's."""
    original = request.environ.get("werkzeug.proxy_fix.orig") or {}
    return str(original.get("REMOTE_ADDR") or request.environ.get("REMOTE_ADDR") or "")


@bp.before_request
def _authenticate() -> Response | None:
    limit = int(current_app.config["CW_API_MAX_BODY"])
    if (request.endpoint or "").partition(".")[2] in UPLOAD_ENDPOINTS:
        limit = int(current_app.config["CW_IMPORT_MAX_UPLOAD_BYTES"])
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, -1601, f"The request body is larger than {limit} bytes.")
    if request.content_length is None and request.method in ("POST", "PUT", "DELETE", "PATCH"):
        request.max_content_length = limit  # a chunked body: werkzeug stops reading at the limit
    try:
        if request.blueprint == PRIVATE:
            admin = api_access.authenticate_certificate(
                login=request.headers.get("login", ""),
                customer_uri=request.headers.get("customerUri", ""),
                certificate=request.headers.get(CLIENT_CERT_HEADER, ""),
                ip=request.remote_addr or "",
                peer=_peer_address(),
                proxied=int(current_app.config["CW_PROXY_HOPS"]) > 0,
            )
        else:
            admin = api_access.authenticate(
                login=request.headers.get("login", ""),
                password=request.headers.get("password", ""),
                customer_uri=request.headers.get("customerUri", ""),
                ip=request.remote_addr or "",
            )
        counted = api_access.count_call(admin=admin)
    except SignInThrottled as exc:
        db.session.commit()
        raise ApiError(
            429, -16, exc.message, headers={"Retry-After": str(exc.retry_after)}
        ) from None
    except api_access.ApiRateLimited as exc:
        db.session.commit()
        raise ApiError(429, 0, exc.message, headers={"Retry-After": str(exc.retry_after)}) from None
    except SignInRefused:
        db.session.commit()
        raise ApiError(401, -16, api_access.UNKNOWN_USER) from None
    if counted or db.session.dirty:
        # The call's count (or a rehashed password) is kept even when the operation fails,
        # and the count's row lock is not held through the operation.
        db.session.commit()
    # Otherwise nothing was written: the operation goes on in the same transaction, which
    # spares a commit and a second connection checkout (its pre-ping) on every call.
    g.scm_admin = admin
    for name, value in (request.view_args or {}).items():
        if isinstance(value, int) and value > MAX_ID:
            code, text = TOO_LARGE.get(name, (-1, "No such object {0}."))
            raise ApiError(404, code, text.format(value))
    return None


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    db.session.rollback()
    return answer({"code": exc.code, "description": exc.description}, exc.status, exc.headers)


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> Response:
    return _api_error(Codes().translate(exc))


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    text = exc.description or exc.name
    if status == 413:
        text = "The request body is too large."
    return _api_error(ApiError(status, -1601 if status < 500 else 0, str(text)))


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("SCM API call failed: %s %s", request.method, request.path)
    return _api_error(
        ApiError(500, 0, "Internal error; the administrators can find it in the log.")
    )
