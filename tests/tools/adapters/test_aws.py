"""The AWS tools against moto in server mode: real HTTP requests, signed with fake keys."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from soma.errors import ToolError, WorkspaceError
from soma.tools import ToolContext
from soma.tools.adapters.aws import (
    AWS_TOOLS,
    AwsCredentials,
    s3_create_bucket,
    s3_get_object,
    s3_list_buckets,
    s3_list_objects,
    s3_put_object,
    sts_get_caller_identity,
)
from soma.tools.base import ToolResult
from soma.tools.sandbox import Sandbox
from soma.workspace import Workspace
from tests.tools.conftest import AGENT

KEY_ID = "AKIAFAKEFAKEFAKEFAKE"
SECRET = "fake-secret-0123456789abcdefghijklmnopqrstu"


class DictSecrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, name: str) -> str | None:
        return self.values.get(name)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def make_ctx(workspace: Workspace, sandbox: Sandbox, secrets: dict[str, str]) -> ToolContext:
    return ToolContext(
        workspace, sandbox, AGENT, timeout_s=10, tenant_id="acme", secrets=DictSecrets(secrets)
    )


@pytest.fixture
def ctx(workspace: Workspace, plain_sandbox: Sandbox, moto_url: str) -> ToolContext:
    secrets = {
        "aws.access_key_id": KEY_ID,
        "aws.secret_access_key": SECRET,
        "aws.endpoint_url": moto_url,
    }
    return make_ctx(workspace, plain_sandbox, secrets)


def assert_no_credentials(result: ToolResult) -> None:
    seen = result.output + json.dumps(result.data or {})
    assert KEY_ID not in seen
    assert SECRET not in seen


async def test_objects_round_trip_through_moto(ctx: ToolContext) -> None:
    created = await s3_create_bucket({"bucket": "reports"}, ctx)
    assert created.ok, created.output
    put = await s3_put_object(
        {"bucket": "reports", "key": "q1/summary.txt", "content": "revenue up 12%"}, ctx
    )
    assert put.ok, put.output
    assert put.data is not None
    assert put.data["bytes"] == len("revenue up 12%")
    await s3_put_object({"bucket": "reports", "key": "q2/summary.txt", "content": "tbd"}, ctx)

    listed = await s3_list_objects({"bucket": "reports", "prefix": "q1/"}, ctx)
    assert listed.ok
    assert listed.data is not None
    assert listed.data["keys"] == ["q1/summary.txt"]
    everything = await s3_list_objects({"bucket": "reports"}, ctx)
    assert everything.data is not None
    assert everything.data["keys"] == ["q1/summary.txt", "q2/summary.txt"]

    got = await s3_get_object({"bucket": "reports", "key": "q1/summary.txt"}, ctx)
    assert got.ok
    assert got.output == "revenue up 12%"

    buckets = await s3_list_buckets({}, ctx)
    assert buckets.data is not None
    assert "reports" in buckets.data["buckets"]
    for result in (created, put, listed, everything, got, buckets):
        assert_no_credentials(result)


async def test_workspace_files_upload_and_download(ctx: ToolContext) -> None:
    await s3_create_bucket({"bucket": "blobs"}, ctx)
    blob = bytes(range(256)) * 10
    (ctx.workspace.path / "data.bin").write_bytes(blob)
    put = await s3_put_object({"bucket": "blobs", "key": "data.bin", "path": "data.bin"}, ctx)
    assert put.ok, put.output

    # Binary content is not returned as text: the agent is told to save it instead.
    as_text = await s3_get_object({"bucket": "blobs", "key": "data.bin"}, ctx)
    assert not as_text.ok
    assert "path" in as_text.output

    saved = await s3_get_object({"bucket": "blobs", "key": "data.bin", "path": "out/copy.bin"}, ctx)
    assert saved.ok, saved.output
    assert (ctx.workspace.path / "out" / "copy.bin").read_bytes() == blob


async def test_workspace_paths_are_confined(ctx: ToolContext) -> None:
    with pytest.raises(WorkspaceError):
        await s3_put_object({"bucket": "blobs", "key": "k", "path": "../../etc/passwd"}, ctx)
    with pytest.raises(WorkspaceError):
        await s3_get_object({"bucket": "blobs", "key": "k", "path": "/tmp/x"}, ctx)


async def test_long_text_is_truncated_with_a_note(ctx: ToolContext) -> None:
    await s3_create_bucket({"bucket": "logs"}, ctx)
    await s3_put_object({"bucket": "logs", "key": "big.log", "content": "x" * 200_000}, ctx)
    got = await s3_get_object({"bucket": "logs", "key": "big.log"}, ctx)
    assert got.ok
    assert "truncated" in got.output
    assert len(got.output) < 70_000
    assert got.data is not None
    assert got.data["truncated"] is True


async def test_a_missing_bucket_is_a_failed_result(ctx: ToolContext) -> None:
    for result in (
        await s3_list_objects({"bucket": "no-such-bucket"}, ctx),
        await s3_get_object({"bucket": "no-such-bucket", "key": "k"}, ctx),
        await s3_put_object({"bucket": "no-such-bucket", "key": "k", "content": "x"}, ctx),
    ):
        assert not result.ok
        assert "NoSuchBucket" in result.output
        assert result.data == {"error_code": "NoSuchBucket"}
        assert_no_credentials(result)


async def test_a_missing_key_is_a_failed_result(ctx: ToolContext) -> None:
    await s3_create_bucket({"bucket": "sparse"}, ctx)
    result = await s3_get_object({"bucket": "sparse", "key": "absent"}, ctx)
    assert not result.ok
    assert "NoSuchKey" in result.output


async def test_caller_identity(ctx: ToolContext) -> None:
    result = await sts_get_caller_identity({}, ctx)
    assert result.ok, result.output
    assert result.data is not None
    assert result.data["account"]
    assert_no_credentials(result)


async def test_missing_credentials_name_the_secrets(
    workspace: Workspace, plain_sandbox: Sandbox
) -> None:
    for secrets in ({}, {"aws.access_key_id": KEY_ID}):
        ctx = make_ctx(workspace, plain_sandbox, secrets)
        with pytest.raises(ToolError) as info:
            await s3_list_buckets({}, ctx)
        message = str(info.value)
        assert "aws.secret_access_key" in message
        assert "acme" in message
        assert KEY_ID not in message
    no_store = ToolContext(workspace, plain_sandbox, AGENT)
    with pytest.raises(ToolError, match=r"aws\.access_key_id"):
        await s3_list_buckets({}, no_store)


async def test_an_unreachable_endpoint_is_a_failed_result(
    workspace: Workspace, plain_sandbox: Sandbox
) -> None:
    ctx = make_ctx(
        workspace,
        plain_sandbox,
        {
            "aws.access_key_id": KEY_ID,
            "aws.secret_access_key": SECRET,
            "aws.endpoint_url": "http://127.0.0.1:9",
        },
    )
    result = await s3_list_buckets({}, ctx)
    assert not result.ok
    assert_no_credentials(result)


async def test_put_needs_exactly_one_source(ctx: ToolContext) -> None:
    with pytest.raises(ToolError, match="exactly one"):
        await s3_put_object({"bucket": "b-1", "key": "k"}, ctx)
    with pytest.raises(ToolError, match="exactly one"):
        await s3_put_object({"bucket": "b-1", "key": "k", "content": "x", "path": "x"}, ctx)


def test_credentials_are_masked_in_messages() -> None:
    creds = AwsCredentials(KEY_ID, SECRET, "tok-123", "us-east-1", None)
    text = f"bad signature for {KEY_ID} using {SECRET} and tok-123"
    assert creds.mask(text) == "bad signature for *** using *** and ***"


def test_tool_names_and_schemas() -> None:
    names = {t.spec.name for t in AWS_TOOLS}
    assert {
        "aws.s3_put_object",
        "aws.s3_get_object",
        "aws.s3_list_objects",
        "aws.s3_create_bucket",
        "aws.sts_get_caller_identity",
    } <= names
    for t in AWS_TOOLS:
        # Credentials are never arguments: the model cannot pick whose account it acts in.
        assert not any("key_id" in p or "secret" in p for p in t.spec.parameters["properties"])
