"""Write the synthesized persona as YAML, and publish it as a signed marketplace package.

**Where the scores go.** A persona package holds exactly one file, the persona's YAML, and a
persona has no free-form description field, so the scores travel two ways: as manifest tags
(``synthesized``, ``score:<capsule@version>=<passed>/<total>`` and one
``eval:<case>=pass|fail`` per eval case), which the registry lists, searches and serves without
an archive download and which the signature covers; and as a comment block at the top of the YAML
file, for the person who opens it. :func:`read_scores` reads the tags back.

**Which key signs.** The publisher's own key, from ``soma market keygen <publisher>``, registered
with the local registry for the tenant just as ``soma market register-key`` would (the first key
claims the name). Publisher ``soma`` is refused: its instance key signs the built-in catalogue
that every tenant trusts automatically, and a machine-written persona must earn trust the way any
other publisher's package does.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import semver
import yaml
from pydantic import BaseModel, Field

from soma.errors import Forbidden, NotFound, SomaError
from soma.marketplace.archive import PACKAGE_FILE, pack
from soma.marketplace.catalogue import PUBLISHER as CATALOGUE_PUBLISHER
from soma.marketplace.manifest import Manifest, PublishedVersion
from soma.marketplace.registry import Registry
from soma.marketplace.signing import (
    PublisherKey,
    check_publisher_name,
    publisher_key_path,
    sign,
)
from soma.settings import Settings
from soma.specs.models import Capsule, Persona
from soma.specs.tenant_libraries import tenant_library_dir
from soma.store import Store
from soma.synthesis.optimizer import SynthesisResult

SYNTHESIZED_TAG = "synthesized"
_SCORE_RE = re.compile(r"^score:(?P<capsule>\S+)=(?P<passed>\d+)/(?P<total>\d+)$")
_EVAL_RE = re.compile(r"^eval:(?P<case>\S+)=(?P<verdict>pass|fail)$")
_MAX_EVAL_TAGS = 29
"""A manifest holds at most 32 tags: room for the two summary tags and a spare."""


class PackageScores(BaseModel):
    """The eval scores recorded in a synthesized persona's manifest."""

    capsule: str
    passed: int
    total: int
    cases: dict[str, bool] = Field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.passed / self.total if self.total else 0.0


def score_tags(capsule: Capsule, result: SynthesisResult) -> list[str]:
    best = result.best
    tags = [SYNTHESIZED_TAG, f"score:{capsule.ref}={best.passed}/{best.total}"]
    tags += [f"eval:{c.eval}={'pass' if c.passed else 'fail'}" for c in best.cases]
    return tags[: 2 + _MAX_EVAL_TAGS]


def read_scores(manifest: Manifest) -> PackageScores | None:
    """The scores a synthesized persona was published with; None for any other package."""
    summary = next((m for t in manifest.tags if (m := _SCORE_RE.match(t))), None)
    if summary is None:
        return None
    cases = {
        m.group("case"): m.group("verdict") == "pass"
        for t in manifest.tags
        if (m := _EVAL_RE.match(t))
    }
    return PackageScores(
        capsule=summary.group("capsule"),
        passed=int(summary.group("passed")),
        total=int(summary.group("total")),
        cases=cases,
    )


def persona_yaml(
    persona: Persona, capsule: Capsule, description: str, result: SynthesisResult
) -> str:
    """The persona as YAML, after a comment block saying how it was made and how it scored."""
    best = result.best
    tried = len(result.candidates)
    lines = [
        f"# Synthesized by `soma persona synthesize` for capsule {capsule.ref}.",
        f"# Description: {' '.join(description.split())}",
        f"# Eval score: {best.passed}/{best.total} ({best.score:.2f}), {best.tokens} agent tokens; "
        f"best of {tried} candidate(s) in {len(result.rounds)} round(s) ({best.id}).",
    ]
    lines += [f"#   {c.eval}: {'pass' if c.passed else 'fail'}" for c in best.cases]
    body = yaml.safe_dump(persona.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    return "\n".join(lines) + "\n" + body


def default_output(settings: Settings, tenant: str, name: str) -> Path:
    """``personas/<name>.yaml`` in the tenant's library, where every `soma` command finds it."""
    return tenant_library_dir(settings.home, tenant) / "personas" / f"{name}.yaml"


def write_persona(path: Path, text: str, *, force: bool = False) -> Path:
    """Write atomically; an existing file is replaced only with ``force``."""
    if path.exists() and not force:
        raise SomaError(
            f"{path} already exists",
            hint="pass --force to replace it, or choose another --name or --out",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise SomaError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class PublishTarget:
    """A publication checked before the (costly) search: key, owner and the version to use."""

    publisher: str
    key: PublisherKey
    tenant: str
    version: str


def prepare_publish(
    store: Store, settings: Settings, name: str, publisher: str, tenant: str
) -> PublishTarget:
    """Check everything that would refuse the publication later, and pick the next version."""
    check_publisher_name(publisher)
    if publisher == CATALOGUE_PUBLISHER:
        raise SomaError(
            f"publisher '{CATALOGUE_PUBLISHER}' is reserved for the built-in catalogue, which "
            "every tenant trusts automatically",
            hint="create your own publisher key with `soma market keygen <publisher>` and pass "
            "--publisher <publisher>",
        )
    key = PublisherKey.load(publisher_key_path(settings.home, publisher))
    if key.publisher != publisher:
        raise SomaError(
            f"the key file for '{publisher}' holds a key of publisher '{key.publisher}'",
            hint=f"run `soma market keygen {publisher}` after moving the file away",
        )
    owners = store.publisher_keys(publisher)
    if owners and owners[0].tenant_id != tenant:
        raise Forbidden(
            f"publisher '{publisher}' belongs to another tenant",
            hint="publish under a publisher name your tenant registered",
        )
    try:
        versions = Registry(store).versions(name)
    except NotFound:
        return PublishTarget(publisher, key, tenant, "1.0.0")
    owner = versions[-1].manifest.publisher
    if owner != publisher:
        raise Forbidden(
            f"package '{name}' belongs to publisher '{owner}'",
            hint="choose another persona --name",
        )
    latest = max(semver.Version.parse(v.manifest.version) for v in versions)
    return PublishTarget(publisher, key, tenant, str(latest.bump_patch()))


def publish_persona(
    store: Store,
    target: PublishTarget,
    persona: Persona,
    text: str,
    tags: list[str],
    *,
    user_id: str,
) -> PublishedVersion:
    """Pack ``text`` (the persona's YAML) with ``tags``, sign it and publish it locally."""
    registry = Registry(store)
    registry.register_key(target.tenant, target.publisher, target.key.public_text)
    with tempfile.TemporaryDirectory(prefix="soma-synth-") as tmp:
        source = Path(tmp) / f"{persona.name}.yaml"
        source.write_text(text, encoding="utf-8")
        extras = {"tags": tags}
        (Path(tmp) / PACKAGE_FILE).write_text(yaml.safe_dump(extras), encoding="utf-8")
        _, data = pack(source, publisher=target.publisher)
    return registry.publish(data, sign(data, target.key), tenant_id=target.tenant, user_id=user_id)
