"""Image references, and an image's labels read from its registry (HTTP API v2) without pulling it.

    ref = parse_reference("127.0.0.1:5000/team/envbuild:v1")  # UsageError when malformed
    labels = registry_labels(ref)                                # the config's labels

Registries on 127.0.0.0/8 and localhost are spoken to over plain HTTP, as the
Docker engine does; every other one over HTTPS, with the anonymous bearer token
a public registry hands out (no credentials are read).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import requests

from envbuild.errors import EnvbuildError, UsageError

DOCKER_HUB = "registry-1.docker.io"
# The distribution project's reference grammar (reference/regexp.go).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
TIMEOUT = 30.0


@dataclass(frozen=True)
class Reference:
    domain: str  # the registry's host[:port]
    path: str  # the repository within it (library/ added on Docker Hub)
    tag: str
    digest: str  # sha256:... or ""
    explicit: bool  # the reference names its registry (else Docker Hub is implied)

    @property
    def insecure(self) -> bool:
        host = self.domain.rsplit(":", 1)[0] if not self.domain.startswith("[") else self.domain
        return host == "localhost" or host.startswith("127.") or host == "[::1]"

    @property
    def manifest_ref(self) -> str:
        return self.digest or self.tag

    def __str__(self) -> str:
        return f"{self.domain}/{self.path}" + (f"@{self.digest}" if self.digest else f":{self.tag}")


def reference_problem(ref: str) -> str | None:
    """Why `ref` is no image reference as Docker reads it (one line); None when it is one."""
    if _REFERENCE.match(ref) and len(ref.split("@")[0].rsplit(":", 1)[0]) <= 255:
        return None
    if re.search(r"[A-Z]", ref.split(":")[0]):
        return "uppercase letters are not allowed in a repository name"
    return "expected [REGISTRY[:PORT]/]NAME[:TAG][@sha256:DIGEST], lowercase, with a tag of letters, digits, '_', '.' " \
           "and '-'"


def parse_reference(ref: str) -> Reference:
    """An image reference as Docker reads it; raises UsageError (exit 2) naming what is wrong, in one line."""
    why = reference_problem(ref)
    if why is not None:
        raise UsageError(f"invalid image reference {ref!r}: {why}")
    match = _REFERENCE.match(ref)
    domain, path = match.group("domain"), match.group("path")
    if domain and not ("." in domain or ":" in domain or domain == "localhost" or domain.startswith("[")):
        domain, path = None, f"{domain}/{path}"  # a first component like `team/` is a namespace, not a host
    explicit = bool(domain)
    if not domain:
        domain = DOCKER_HUB
        path = path if "/" in path else f"library/{path}"
    return Reference(domain, path, match.group("tag") or "latest", match.group("digest") or "", explicit)


def registry_labels(ref: Reference, platform: str = "linux/amd64") -> dict[str, str]:
    """The labels in the config of image `ref`, read from its registry; nothing is pulled.

    A manifest list (multi-platform image) is resolved to `platform`. Raises
    EnvbuildError: registry unreachable, image or platform absent, digest mismatch.
    """
    session = _Session(ref)
    manifest, kind = session.get_json(f"manifests/{ref.manifest_ref}", accept=", ".join(MANIFEST_TYPES))
    if kind in MANIFEST_TYPES[2:]:
        wanted = dict(zip(("os", "architecture"), platform.split("/", 1)))
        entry = next((m for m in manifest.get("manifests", [])
                      if {k: m.get("platform", {}).get(k) for k in wanted} == wanted), None)
        if entry is None:
            raise EnvbuildError(f"{ref} has no {platform} image in its registry")
        manifest, kind = session.get_json(f"manifests/{entry['digest']}", accept=", ".join(MANIFEST_TYPES[:2]))
    try:
        digest = manifest["config"]["digest"]
    except (KeyError, TypeError):
        raise EnvbuildError(f"the registry's manifest of {ref} ({kind or 'no media type'}) names no config") from None
    raw = session.get(f"blobs/{digest}").content
    if f"sha256:{hashlib.sha256(raw).hexdigest()}" != digest:
        raise EnvbuildError(f"the config blob of {ref} does not match its digest {digest}")
    return (json.loads(raw).get("config") or {}).get("Labels") or {}


class _Session:
    """GETs under /v2/<repository>/ of one registry, with the anonymous token flow when asked for it."""

    def __init__(self, ref: Reference):
        self.ref = ref
        self.base = f"{'http' if ref.insecure else 'https'}://{ref.domain}/v2/{ref.path}/"
        self.http = requests.Session()

    def get(self, path: str, accept: str | None = None) -> requests.Response:
        headers = {"Accept": accept} if accept else {}
        try:
            response = self.http.get(self.base + path, headers=headers, timeout=TIMEOUT)
            if response.status_code == 401 and response.headers.get("WWW-Authenticate", "").startswith("Bearer "):
                self.http.headers["Authorization"] = f"Bearer {self._token(response.headers['WWW-Authenticate'])}"
                response = self.http.get(self.base + path, headers=headers, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise EnvbuildError(f"cannot reach the registry {self.ref.domain} for {self.ref}: {_reason(exc)}") from None
        if response.status_code == 404:
            raise EnvbuildError(f"{self.ref} is not in its registry {self.ref.domain} (404 on {path.split('/')[0]})")
        if response.status_code >= 400:
            raise EnvbuildError(f"the registry {self.ref.domain} refused {path.split('/')[0]} of {self.ref}: "
                                f"HTTP {response.status_code} {_registry_error(response)}")
        return response

    def get_json(self, path: str, accept: str) -> tuple[dict, str]:
        response = self.get(path, accept)
        try:
            document = response.json()
        except ValueError:
            raise EnvbuildError(f"the registry {self.ref.domain} sent no JSON for {path} of {self.ref}") from None
        kind = response.headers.get("Content-Type", "").split(";")[0] or document.get("mediaType", "")
        return document, kind

    def _token(self, challenge: str) -> str:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        params = {k: v for k, v in fields.items() if k in ("service", "scope")}
        try:
            answer = self.http.get(fields.get("realm", ""), params=params, timeout=TIMEOUT)
            answer.raise_for_status()
            return answer.json().get("token") or answer.json()["access_token"]
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise EnvbuildError(f"the registry {self.ref.domain} asks for a token for {self.ref} and none was had "
                                f"anonymously: {_reason(exc)}") from None


def _registry_error(response: requests.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or response.reason
    except ValueError:
        return response.reason


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
