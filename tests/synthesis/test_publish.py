"""Writing and publishing the synthesized persona: signed, versioned, with its scores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from soma.errors import Forbidden, SomaError
from soma.marketplace.archive import unpack
from soma.marketplace.registry import Registry
from soma.marketplace.signing import KeyRing, PublisherKey, publisher_key_path, verify_package
from soma.settings import Settings
from soma.specs.loader import parse_spec
from soma.specs.models import Capsule
from soma.store import DEFAULT_TENANT, Store
from soma.synthesis import SynthesisResult, SynthesisSpec, synthesize
from soma.synthesis.publish import (
    default_output,
    persona_yaml,
    prepare_publish,
    publish_persona,
    read_scores,
    score_tags,
    write_persona,
)
from soma.tools import default_registry
from soma.tools.sandbox import make_sandbox
from tests.synthesis.conftest import WRITES, agent_model, candidate, fixed_generator


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path}/soma.db") as opened:
        yield opened


@pytest.fixture
async def result(capsule: Capsule, tmp_path: Path) -> SynthesisResult:
    spec = SynthesisSpec(
        description="a test writer",
        capsule=capsule,
        name="test-writer",
        candidates=2,
        rounds=1,
        tools=["fs.write"],
    )
    return await synthesize(
        spec,
        generator=fixed_generator([candidate("plain"), candidate("writer", WRITES)]),
        agent=agent_model(),
        registry=default_registry(),
        sandbox=make_sandbox("auto"),
        workspaces_root=tmp_path / "workspaces",
    )


def keygen(settings: Settings, publisher: str) -> PublisherKey:
    key = PublisherKey.generate(publisher)
    key.save(publisher_key_path(settings.home, publisher))
    return key


def test_the_yaml_is_a_valid_persona_with_its_scores_in_a_comment(
    capsule: Capsule, result: SynthesisResult, settings: Settings
) -> None:
    text = persona_yaml(result.best.persona, capsule, "a test writer", result)
    path = write_persona(default_output(settings, DEFAULT_TENANT, "test-writer"), text)

    assert path == settings.home / "library" / "personas" / "test-writer.yaml"
    persona = parse_spec(path.read_text(), "persona")
    assert persona == result.best.persona
    assert "# Eval score: 2/3 (0.67)" in text
    assert "#   covers-edges: fail" in text
    with pytest.raises(SomaError, match="already exists"):
        write_persona(path, text)
    write_persona(path, text, force=True)


def test_publishing_puts_a_signed_persona_with_readable_scores_in_the_registry(
    capsule: Capsule, result: SynthesisResult, settings: Settings, store: Store
) -> None:
    key = keygen(settings, "acme")
    target = prepare_publish(store, settings, "test-writer", "acme", DEFAULT_TENANT)
    assert target.version == "1.0.0"
    persona = result.best.persona.model_copy(update={"version": target.version})
    text = persona_yaml(persona, capsule, "a test writer", result)

    published = publish_persona(
        store, target, persona, text, score_tags(capsule, result), user_id="tester"
    )

    (listed,) = Registry(store).versions("test-writer")
    assert listed.manifest.kind == "persona"
    assert listed.manifest.publisher == "acme"
    scores = read_scores(listed.manifest)
    assert scores is not None
    assert (scores.capsule, scores.passed, scores.total) == ("tidy-tests@1.0.0", 2, 3)
    assert scores.cases == {"writes-file": True, "covers-edges": False, "answers": True}
    assert "synthesized" in listed.manifest.tags
    # the archive verifies against the publisher's key and holds exactly the YAML written
    data = Registry(store).archive("test-writer", "1.0.0")
    ring = KeyRing()
    ring.add("acme", key.public_text)
    unpacked = verify_package(data, published.signature, ring)
    assert unpacked.files["test-writer.yaml"].decode() == text
    assert yaml.safe_load(text)["skills"] == [WRITES]

    again = prepare_publish(store, settings, "test-writer", "acme", DEFAULT_TENANT)
    assert again.version == "1.0.1"


def test_scores_are_absent_from_other_packages(settings: Settings) -> None:
    from soma.marketplace.archive import pack
    from soma.specs.library import builtin_dir

    source = Path(str(builtin_dir())) / "personas" / "architect.yaml"
    manifest, data = pack(source, publisher="acme")
    assert read_scores(manifest) is None
    assert unpack(data).manifest == manifest


def test_publishing_is_refused_clearly(settings: Settings, store: Store) -> None:
    with pytest.raises(SomaError, match="reserved for the built-in catalogue") as caught:
        prepare_publish(store, settings, "test-writer", "soma", DEFAULT_TENANT)
    assert caught.value.hint is not None
    assert "soma market keygen" in caught.value.hint
    with pytest.raises(SomaError, match="no publisher key") as missing:
        prepare_publish(store, settings, "test-writer", "nokey", DEFAULT_TENANT)
    assert missing.value.hint is not None
    assert "soma market keygen" in missing.value.hint
    key = keygen(settings, "acme")
    Registry(store).register_key("globex", "acme", key.public_text)
    with pytest.raises(Forbidden, match="belongs to another tenant"):
        prepare_publish(store, settings, "test-writer", "acme", DEFAULT_TENANT)
