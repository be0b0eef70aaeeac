"""Approvals of model versions: recording them, revoking them, and the four-eyes rule.

A version is named by its artifact's sha256 (or by the name and version its registered manifest
gives); approving one needs its manifest registered, since the manifest says who built it. A
version is approved when, since its last revocation, at least two distinct principals approved
it and at least one of them is not its author (the manifest's ``author``; when it says none, no
approver is taken for the author). Approving twice counts once. A revocation voids every
approval recorded before it.

Who approves is who the call authenticated as, with the roles the access policy grants it
(``governance.servicers`` passes them in). Under open access nobody is authenticated: the
request names the approver, and the approval is kept as unauthenticated (``verified_by``
"none"). Such approvals count only while the store itself runs with open access, so a store
later put under an access policy does not honour approvals that anyone could have made.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from governance.errors import InvalidRequest, ModelNotFound
from governance.store import LineageStore
from governance.store.entries import Approval, RegisteredManifest, canonical
from governance.store.sql import now_us
from runtimes.manifest import Manifest
from security.principal import VerifiedBy

APPROVE = "approve"
REVOKE = "revoke"
APPROVALS_NEEDED = 2
MAX_TEXT = 2000
MAX_ASKED = 1000
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
EVIDENCE_KEYS = ("report_sha256", "report_uri", "model_card_sha256", "model_card_uri")


@dataclass(frozen=True, slots=True)
class VersionRef:
    """A model version: by artifact sha256, or by registered name and version."""

    artifact_sha256: str = ""
    model_name: str = ""
    model_version: str = ""


@dataclass(frozen=True, slots=True)
class Approver:
    """Who approves or revokes, as the call established it."""

    principal: str
    roles: tuple[str, ...]
    verified_by: str


@dataclass(frozen=True, slots=True)
class ApprovalStatus:
    artifact_sha256: str
    registered: bool
    model_name: str = ""
    model_version: str = ""
    author: str = ""
    approved: bool = False
    missing: str = ""
    approvers: tuple[str, ...] = ()
    history: tuple[Approval, ...] = ()
    heldout_auc: float = 0.0
    heldout_rows: int = 0


@dataclass(frozen=True, slots=True)
class FourEyes:
    approved: bool
    missing: str
    approvers: tuple[str, ...] = field(default=())


def four_eyes(
    author: str, history: Sequence[Approval], *, honour_unauthenticated: bool
) -> FourEyes:
    """The rule above over one version's entries in chain order."""
    counted: list[str] = []
    for entry in history:
        if entry.action == REVOKE:
            counted = []
            continue
        trusted = entry.verified_by != VerifiedBy.NONE.value or honour_unauthenticated
        if trusted and entry.principal not in counted:
            counted.append(entry.principal)
    approvers = tuple(sorted(counted))
    if len(counted) < APPROVALS_NEEDED:
        have = f" ({', '.join(approvers)})" if approvers else ""
        return FourEyes(False, f"{len(counted)} of {APPROVALS_NEEDED} approvals{have}", approvers)
    if author and all(p == author for p in counted):
        return FourEyes(False, f"no approver other than the author {author!r}", approvers)
    return FourEyes(True, "", approvers)


def check_sha256(value: str, name: str) -> str:
    text = value.strip().lower()
    if not _SHA256.fullmatch(text):
        raise InvalidRequest(f"{name}: {value!r} is not a sha256 (64 hex digits)")
    return text


def _text(value: str, name: str, *, required: bool = False) -> str:
    text = value.strip()
    if required and not text:
        raise InvalidRequest(f"{name} is required")
    if len(text) > MAX_TEXT:
        raise InvalidRequest(f"{name} is longer than {MAX_TEXT} characters")
    return text


def check_evidence(evidence: dict[str, str]) -> dict[str, str]:
    out = {key: _text(evidence.get(key, ""), f"evidence.{key}") for key in EVIDENCE_KEYS}
    for key in ("report_sha256", "model_card_sha256"):
        if out[key]:
            out[key] = check_sha256(out[key], f"evidence.{key}")
    return out


class ApprovalService:
    """Transport-free: the servicer converts messages; errors name the offending field."""

    def __init__(self, store: LineageStore, *, open_access: bool) -> None:
        self._store = store
        self._open_access = open_access

    async def _manifest(self, ref: VersionRef) -> RegisteredManifest:
        if ref.artifact_sha256.strip():
            sha = check_sha256(ref.artifact_sha256, "model.artifact_sha256")
            found = await self._store.get_manifest(sha)
            if found is None:
                raise ModelNotFound(f"model.artifact_sha256: no manifest registered for {sha}")
            return found
        name = _text(ref.model_name, "model.model_name", required=True)
        version = _text(ref.model_version, "model.model_version", required=True)
        named = await self._store.manifests_named(name, version)
        if not named:
            raise ModelNotFound(f"model: no manifest registered for {name} version {version}")
        if len(named) > 1:
            shas = ", ".join(m.artifact_sha256[:12] for m in named)
            raise InvalidRequest(
                f"model: {name} version {version} names {len(named)} artifacts ({shas}...): "
                "give model.artifact_sha256"
            )
        return named[0]

    async def _append(
        self,
        manifest: RegisteredManifest,
        action: str,
        approver: Approver,
        evidence: dict[str, str],
        comment: str,
    ) -> Approval:
        principal = _text(approver.principal, "principal", required=True)
        at = now_us()
        key = [action, manifest.artifact_sha256, principal, at, evidence, comment]
        approval_id = "apr-" + hashlib.sha256(canonical({"key": key})).hexdigest()[:32]
        entry = Approval(
            approval_id=approval_id,
            action=action,
            artifact_sha256=manifest.artifact_sha256,
            model_name=manifest.name,
            model_version=manifest.version,
            principal=principal,
            roles=tuple(sorted(approver.roles)),
            verified_by=approver.verified_by,
            at_us=at,
            evidence=evidence,
            comment=comment,
        )
        return await self._store.add_approval(entry)

    async def approve(
        self, ref: VersionRef, approver: Approver, evidence: dict[str, str], comment: str
    ) -> Approval:
        manifest = await self._manifest(ref)
        checked = check_evidence(evidence)
        if not approver.roles:
            raise InvalidRequest("roles: an approval records the approver's role; give one")
        for role in approver.roles:
            _text(role, "roles")
        return await self._append(manifest, APPROVE, approver, checked, _text(comment, "comment"))

    async def revoke(
        self, ref: VersionRef, approver: Approver, reason: str
    ) -> tuple[Approval, int]:
        manifest = await self._manifest(ref)
        why = _text(reason, "reason", required=True)
        before = await self._store.approvals_for(manifest.artifact_sha256)
        entry = await self._append(manifest, REVOKE, approver, check_evidence({}), why)
        revoked = 0
        for e in before:
            revoked = 0 if e.action == REVOKE else revoked + 1
        return entry, revoked

    async def status(self, ref: VersionRef) -> ApprovalStatus:
        return await self._status_of(await self._manifest(ref))

    async def statuses(self, shas: Sequence[str]) -> list[ApprovalStatus]:
        if len(shas) > MAX_ASKED:
            raise InvalidRequest(f"artifact_sha256: {len(shas)} asked for, at most {MAX_ASKED}")
        out = []
        for n, value in enumerate(shas):
            sha = check_sha256(value, f"artifact_sha256[{n}]")
            manifest = await self._store.get_manifest(sha)
            if manifest is None:
                out.append(ApprovalStatus(sha, False, missing="no manifest registered"))
            else:
                out.append(await self._status_of(manifest))
        return out

    async def _status_of(self, registered: RegisteredManifest) -> ApprovalStatus:
        manifest = Manifest.model_validate_json(registered.manifest_json)
        history = await self._store.approvals_for(registered.artifact_sha256)
        rule = four_eyes(manifest.author, history, honour_unauthenticated=self._open_access)
        return ApprovalStatus(
            artifact_sha256=registered.artifact_sha256,
            registered=True,
            model_name=registered.name,
            model_version=registered.version,
            author=manifest.author,
            approved=rule.approved,
            missing=rule.missing,
            approvers=rule.approvers,
            history=tuple(history),
            heldout_auc=manifest.training.heldout_auc,
            heldout_rows=manifest.training.heldout_rows,
        )
