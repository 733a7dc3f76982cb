"""`soma market keygen|pack|sign|verify`: package files on the local disk, no registry needed.

What a script consumes (the public key, the digest, the signature path, the verdict) goes to
stdout alone on its line; explanations go to stderr, so ``$(soma market pack …)`` is the digest.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from soma.cli.common import err_console, friendly_errors
from soma.cli.market_cmds import market_app
from soma.errors import SomaError
from soma.marketplace.archive import archive_digest, pack, unpack
from soma.marketplace.signing import (
    PUBLIC_KEY_PREFIX,
    KeyRing,
    PublisherKey,
    load_signature,
    publisher_key_path,
    sign,
    verify_package,
)
from soma.settings import Settings

__all__ = ["market_app"]

_PACKAGE_SUFFIX = ".soma"
_SIGNATURE_SUFFIX = ".sig"


@market_app.command("keygen")
@friendly_errors
def keygen(
    publisher: Annotated[str, typer.Argument(help="Your publisher name, e.g. 'acme'.")],
) -> None:
    """Create a publisher signing key; prints its public key for others to trust."""
    path = publisher_key_path(Settings().home, publisher)
    key = PublisherKey.generate(publisher)
    key.save(path)
    public_file = path.with_suffix(".pub")
    _write_atomically(public_file, f"{key.publisher}={key.public_text}\n".encode())
    err_console.print(
        f"wrote the private key for [bold]{escape(key.publisher)}[/] (key id {key.key_id}) to "
        f"{escape(str(path))} — keep it secret and back it up; the public key is in "
        f"{escape(str(public_file))}, and verifiers trust it with "
        f"`--trust @{escape(str(public_file))}`"
    )
    typer.echo(key.public_text)


@market_app.command("pack")
@friendly_errors
def pack_cmd(
    source: Annotated[
        Path,
        typer.Argument(help="A capsule directory, a persona YAML file or a persona's directory."),
    ],
    publisher: Annotated[str, typer.Option(help="Who publishes the package (your key's name).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Archive to write (default: ./<name>-<version>.soma)."),
    ] = None,
) -> None:
    """Pack a capsule or persona into a deterministic archive; prints its sha256."""
    manifest, data = pack(source, publisher=publisher)
    target = output or Path.cwd() / f"{manifest.name}-{manifest.version}{_PACKAGE_SUFFIX}"
    _write_atomically(target, data)
    count = len(manifest.files)
    plural = "" if count == 1 else "s"
    err_console.print(
        f"packed {manifest.kind} [bold]{escape(manifest.ref)}[/] ({count} file{plural}, "
        f"{len(data)} bytes) to {escape(str(target))}; sign it with "
        f"`soma market sign {escape(str(target))}`"
    )
    typer.echo(archive_digest(data))


@market_app.command("sign")
@friendly_errors
def sign_cmd(
    archive: Annotated[Path, typer.Argument(help="The .soma archive to sign.")],
    key_file: Annotated[
        Path | None, typer.Option("--key", help="A key file written by `soma market keygen`.")
    ] = None,
    publisher: Annotated[
        str | None,
        typer.Option(help="Use $SOMA_HOME/market/keys/<publisher>.key (default: the package's)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Signature file (default: <archive>.sig)."),
    ] = None,
) -> None:
    """Sign an archive with a publisher key; writes <archive>.sig."""
    if key_file is not None and publisher is not None:
        raise SomaError("give --key or --publisher, not both", hint="--key FILE picks the key")
    data = _read_archive(archive)
    manifest = unpack(data).manifest  # never sign something verifiers would refuse anyway
    if key_file is None:
        key_file = publisher_key_path(Settings().home, publisher or manifest.publisher)
    key = PublisherKey.load(key_file)
    if key.publisher != manifest.publisher:
        raise SomaError(
            f"{manifest.ref} was packed for publisher {manifest.publisher}, but the key belongs "
            f"to {key.publisher}",
            hint=f"sign with {manifest.publisher}'s key, or re-pack with --publisher "
            f"{key.publisher}",
        )
    signature = sign(data, key)
    target = output or archive.with_name(archive.name + _SIGNATURE_SUFFIX)
    _write_atomically(target, (signature.model_dump_json(indent=2) + "\n").encode())
    err_console.print(
        f"signed [bold]{escape(manifest.ref)}[/] as {escape(key.publisher)} "
        f"(key id {key.key_id}); verify with `soma market verify {escape(str(archive))} "
        f"--trust {escape(key.publisher)}={key.public_text}`"
    )
    typer.echo(str(target))


@market_app.command("verify")
@friendly_errors
def verify_cmd(
    archive: Annotated[Path, typer.Argument(help="The .soma archive to check.")],
    signature_file: Annotated[
        Path | None,
        typer.Option("--signature", help="The signature (default: <archive>.sig)."),
    ] = None,
    trust: Annotated[
        list[str] | None,
        typer.Option(
            help="A trusted public key: 'ed25519:…' (for whoever signed the package), "
            "'publisher=ed25519:…', or @FILE with one such key per line. Repeatable.",
        ),
    ] = None,
) -> None:
    """Check an archive's signature against keys you trust, and every file against its manifest.

    Exits 0 when the package verifies, 2 with the reason when it is refused.
    """
    data = _read_archive(archive)
    signature = load_signature(
        signature_file or archive.with_name(archive.name + _SIGNATURE_SUFFIX)
    )
    ring = KeyRing()
    for entry in _trust_entries(trust or []):
        if entry.startswith(PUBLIC_KEY_PREFIX):
            # A bare key vouches for the signer it names; verify_package then requires the
            # manifest to name the same publisher.
            ring.add(signature.publisher, entry)
        else:
            publisher, _, key_text = entry.partition("=")
            ring.add(publisher.strip(), key_text)
    unpacked = verify_package(data, signature, ring)
    typer.echo(
        f"verified {unpacked.manifest.kind} {unpacked.manifest.ref} by {signature.publisher} "
        f"(key id {signature.key_id}), sha256 {signature.digest}"
    )


def _trust_entries(values: list[str]) -> list[str]:
    """Expand ``@file`` arguments into their lines, skipping blanks and ``#`` comments."""
    entries: list[str] = []
    for value in values:
        if not value.startswith("@"):
            entries.append(value.strip())
            continue
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SomaError(
                f"cannot read trusted keys from {path}: {exc}",
                hint=f"@FILE holds lines like 'acme={PUBLIC_KEY_PREFIX}…'",
            ) from None
        lines = [line.strip() for line in text.splitlines()]
        found = [line for line in lines if line and not line.startswith("#")]
        if not found:
            raise SomaError(f"{path} holds no public keys", hint="`soma market keygen` prints one")
        entries.extend(found)
    return entries


def _read_archive(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SomaError(
            f"no archive at {path}", hint="create one with `soma market pack <source>`"
        ) from None
    except OSError as exc:
        raise SomaError(f"cannot read {path}: {exc.strerror}") from None


def _write_atomically(path: Path, data: bytes) -> None:
    """A reader (or an interrupted run) never sees half a package or signature."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise SomaError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
