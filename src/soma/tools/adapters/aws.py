"""AWS tools: S3 objects and buckets, and who the credentials belong to, through boto3.

Credentials come from the tenant's secret store (``aws.access_key_id``,
``aws.secret_access_key``, optional ``aws.session_token``, ``aws.region`` and
``aws.endpoint_url``), never from the arguments, so a model cannot choose whose account it acts
in and never sees the keys. boto3 blocks, so every call runs in a worker thread with a client
made for that call: boto3 sessions are not thread-safe, and a fresh client also picks up a
rotated secret at once. Service errors become ``ok=False`` results the agent can act on (the
AWS error code and message); anything that could echo a credential is masked first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, model_validator

from soma.errors import ToolError
from soma.tools.base import SecretReader, Tool, ToolArgs, ToolContext, ToolResult, tool
from soma.tools.sandbox import OUTPUT_LIMIT_BYTES

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client
    from types_boto3_sts.client import STSClient

__all__ = ["AWS_TOOLS"]

DEFAULT_REGION = "us-east-1"
TEXT_LIMIT_BYTES = OUTPUT_LIMIT_BYTES
"""How much of an object ``aws.s3_get_object`` returns as text; larger ones go to a path."""

T = TypeVar("T")


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    region: str
    endpoint_url: str | None

    def mask(self, text: str) -> str:
        """Remove credential values from text bound for the model (botocore messages can quote
        request parameters)."""
        for secret in (self.access_key_id, self.secret_access_key, self.session_token):
            if secret:
                text = text.replace(secret, "***")
        return text


def credentials(ctx: ToolContext) -> AwsCredentials:
    """The tenant's AWS credentials, or a ToolError naming the secrets an operator must set."""
    return tenant_credentials(ctx.secrets, ctx.tenant_id)


def tenant_credentials(secrets: SecretReader | None, tenant_id: str) -> AwsCredentials:
    """:func:`credentials` outside a tool call (the workspace manager provisions with them)."""
    key_id = secrets.get("aws.access_key_id") if secrets else None
    secret = secrets.get("aws.secret_access_key") if secrets else None
    if not key_id or not secret:
        raise ToolError(
            f"no AWS credentials for tenant {tenant_id!r}",
            hint="an operator must set the secrets 'aws.access_key_id' and "
            "'aws.secret_access_key' (and optionally 'aws.region', 'aws.endpoint_url') "
            "in this tenant's secret store",
        )
    assert secrets is not None
    return AwsCredentials(
        access_key_id=key_id,
        secret_access_key=secret,
        session_token=secrets.get("aws.session_token") or None,
        region=secrets.get("aws.region") or DEFAULT_REGION,
        endpoint_url=secrets.get("aws.endpoint_url") or None,
    )


def _session(creds: AwsCredentials) -> boto3.session.Session:
    # An explicit session: never the process's environment, profile or instance credentials,
    # which belong to the worker, not to the tenant.
    return boto3.session.Session(
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token,
        region_name=creds.region,
    )


def _config(ctx: ToolContext | float) -> Config:
    timeout = max(1.0, min(ctx if isinstance(ctx, float) else ctx.timeout_s, 60.0))
    return Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 2, "mode": "standard"},
    )


def s3_client(creds: AwsCredentials, ctx: ToolContext | float) -> S3Client:
    """An S3 client for one call; ``ctx`` is the tool's context, or a timeout in seconds."""
    return _session(creds).client("s3", endpoint_url=creds.endpoint_url, config=_config(ctx))


def sts_client(creds: AwsCredentials, ctx: ToolContext) -> STSClient:
    return _session(creds).client("sts", endpoint_url=creds.endpoint_url, config=_config(ctx))


async def _call(
    ctx: ToolContext, what: str, fn: Callable[[AwsCredentials], ToolResult]
) -> ToolResult:
    """Run ``fn`` in a thread; AWS failures become results the agent can read and act on."""
    creds = credentials(ctx)
    try:
        return await asyncio.to_thread(fn, creds)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = creds.mask(str(error.get("Message", "")) or str(exc))
        return ToolResult(
            ok=False,
            output=f"{what} failed: {code}: {message}",
            data={"error_code": code},
        )
    except BotoCoreError as exc:
        # Transport and configuration errors (endpoint unreachable, timeouts...).
        return ToolResult(
            ok=False,
            output=f"{what} failed: {creds.mask(str(exc))}",
            data={"error_code": type(exc).__name__},
        )


BUCKET = Field(min_length=3, max_length=63, description="S3 bucket name.")
KEY = Field(min_length=1, max_length=1024, description="Object key, e.g. 'reports/q1.csv'.")


class PutObjectArgs(ToolArgs):
    bucket: str = BUCKET
    key: str = KEY
    content: str | None = Field(default=None, description="Text to store (UTF-8).")
    path: str | None = Field(
        default=None, description="Workspace file to upload instead of content."
    )
    content_type: str | None = Field(default=None, description="MIME type, e.g. 'text/csv'.")

    @model_validator(mode="after")
    def _one_source(self) -> PutObjectArgs:
        if (self.content is None) == (self.path is None):
            raise ValueError("give exactly one of 'content' or 'path'")
        return self


class GetObjectArgs(ToolArgs):
    bucket: str = BUCKET
    key: str = KEY
    path: str | None = Field(
        default=None,
        description="Save the object to this workspace file instead of returning its text "
        "(use it for binary or large objects).",
    )


class ListObjectsArgs(ToolArgs):
    bucket: str = BUCKET
    prefix: str = Field(default="", description="Only keys starting with this.")
    max_keys: int = Field(default=100, ge=1, le=1000, description="How many keys at most.")


class CreateBucketArgs(ToolArgs):
    bucket: str = BUCKET


class NoArgs(ToolArgs):
    pass


@tool(
    "aws.s3_put_object",
    "Store an object in S3, from text or from a workspace file.",
    PutObjectArgs,
)
async def s3_put_object(args: PutObjectArgs, ctx: ToolContext) -> ToolResult:
    if args.path is not None:
        body = ctx.workspace.resolve(args.path).read_bytes()
    else:
        assert args.content is not None
        body = args.content.encode()

    def put(creds: AwsCredentials) -> ToolResult:
        extra: dict[str, Any] = {"ContentType": args.content_type} if args.content_type else {}
        response = s3_client(creds, ctx).put_object(
            Bucket=args.bucket, Key=args.key, Body=body, **extra
        )
        etag = response.get("ETag", "").strip('"')
        return ToolResult(
            ok=True,
            output=f"stored s3://{args.bucket}/{args.key} ({len(body)} bytes)",
            data={"bucket": args.bucket, "key": args.key, "bytes": len(body), "etag": etag},
        )

    return await _call(ctx, f"put s3://{args.bucket}/{args.key}", put)


@tool(
    "aws.s3_get_object",
    "Read an S3 object: its text (truncated when long), or saved to a workspace file.",
    GetObjectArgs,
)
async def s3_get_object(args: GetObjectArgs, ctx: ToolContext) -> ToolResult:
    target = ctx.workspace.resolve(args.path) if args.path is not None else None
    url = f"s3://{args.bucket}/{args.key}"

    def get(creds: AwsCredentials) -> ToolResult:
        response = s3_client(creds, ctx).get_object(Bucket=args.bucket, Key=args.key)
        size = response.get("ContentLength", 0)
        body = response["Body"]
        try:
            if target is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                ctx.workspace.resolve(args.path or "")  # a parent may have become a link
                written = 0
                with target.open("wb") as out:
                    for chunk in body.iter_chunks(1 << 20):
                        out.write(chunk)
                        written += len(chunk)
                return ToolResult(
                    ok=True,
                    output=f"saved {url} to {args.path} ({written} bytes)",
                    data={"bucket": args.bucket, "key": args.key, "bytes": written},
                )
            head = body.read(TEXT_LIMIT_BYTES + 1)
        finally:
            body.close()
        truncated = len(head) > TEXT_LIMIT_BYTES
        head = head[:TEXT_LIMIT_BYTES]
        if b"\x00" in head:
            return ToolResult(
                ok=False,
                output=f"{url} is binary ({size} bytes); pass 'path' to save it to the workspace",
                data={"bucket": args.bucket, "key": args.key, "bytes": size},
            )
        text = head.decode(errors="replace")
        if truncated:
            text += f"\n[... truncated at {TEXT_LIMIT_BYTES} of {size} bytes; pass 'path' ...]"
        return ToolResult(
            ok=True,
            output=text,
            data={"bucket": args.bucket, "key": args.key, "bytes": size, "truncated": truncated},
        )

    return await _call(ctx, f"get {url}", get)


@tool(
    "aws.s3_list_objects",
    "List the keys in an S3 bucket, optionally under a prefix, with sizes.",
    ListObjectsArgs,
)
async def s3_list_objects(args: ListObjectsArgs, ctx: ToolContext) -> ToolResult:
    def list_(creds: AwsCredentials) -> ToolResult:
        response = s3_client(creds, ctx).list_objects_v2(
            Bucket=args.bucket, Prefix=args.prefix, MaxKeys=args.max_keys
        )
        objects = response.get("Contents", [])
        lines = [f"{o.get('Key', '')}\t{o.get('Size', 0)} bytes" for o in objects]
        truncated = bool(response.get("IsTruncated"))
        if truncated:
            lines.append("[... more keys; narrow 'prefix' or raise 'max_keys' ...]")
        output = "\n".join(lines) or f"(no keys under s3://{args.bucket}/{args.prefix})"
        return ToolResult(
            ok=True,
            output=output,
            data={
                "keys": [o.get("Key", "") for o in objects],
                "truncated": truncated,
            },
        )

    return await _call(ctx, f"list s3://{args.bucket}/{args.prefix}", list_)


@tool("aws.s3_create_bucket", "Create an S3 bucket in the configured region.", CreateBucketArgs)
async def s3_create_bucket(args: CreateBucketArgs, ctx: ToolContext) -> ToolResult:
    def create(creds: AwsCredentials) -> ToolResult:
        client = s3_client(creds, ctx)
        if creds.region == DEFAULT_REGION:
            # us-east-1 rejects an explicit LocationConstraint naming itself.
            client.create_bucket(Bucket=args.bucket)
        else:
            client.create_bucket(
                Bucket=args.bucket,
                CreateBucketConfiguration={"LocationConstraint": creds.region},  # type: ignore[typeddict-item]
            )
        return ToolResult(
            ok=True,
            output=f"created bucket {args.bucket} in {creds.region}",
            data={"bucket": args.bucket, "region": creds.region},
        )

    return await _call(ctx, f"create bucket {args.bucket}", create)


@tool("aws.s3_list_buckets", "List the S3 buckets of the account.", NoArgs)
async def s3_list_buckets(args: NoArgs, ctx: ToolContext) -> ToolResult:
    def list_(creds: AwsCredentials) -> ToolResult:
        buckets = [b.get("Name", "") for b in s3_client(creds, ctx).list_buckets()["Buckets"]]
        return ToolResult(
            ok=True, output="\n".join(buckets) or "(no buckets)", data={"buckets": buckets}
        )

    return await _call(ctx, "list buckets", list_)


@tool(
    "aws.sts_get_caller_identity",
    "Show which AWS account and identity the configured credentials act as.",
    NoArgs,
)
async def sts_get_caller_identity(args: NoArgs, ctx: ToolContext) -> ToolResult:
    def whoami(creds: AwsCredentials) -> ToolResult:
        response = sts_client(creds, ctx).get_caller_identity()
        identity = {
            "account": response.get("Account", ""),
            "arn": response.get("Arn", ""),
            "user_id": creds.mask(response.get("UserId", "")),
        }
        return ToolResult(
            ok=True,
            output=f"account {identity['account']}, {identity['arn']}",
            data=identity,
        )

    return await _call(ctx, "get caller identity", whoami)


AWS_TOOLS: tuple[Tool, ...] = (
    s3_put_object,
    s3_get_object,
    s3_list_objects,
    s3_create_bucket,
    s3_list_buckets,
    sts_get_caller_identity,
)
