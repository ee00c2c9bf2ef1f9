"""Settings, read once from `LIVEBATCH_*` environment variables.

The README's settings table is generated from this class and checked against it by a test, so every field
carries a description.
"""

from __future__ import annotations

import json
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The prior of a provider whose speed is not known here: the brief's first snapshot gives 20 items, one at a
# time, 600 000 ms, which is 30 s an item.
DEFAULT_ITEM_PRIOR_MS = 30_000


# A JWT secret shorter than this, or the placeholder of deploy/livebatch.env.example (long enough to pass),
# makes every process refuse to start.
MIN_JWT_SECRET_BYTES = 32
WEAK_JWT_SECRETS = frozenset({"change-me-to-a-long-random-secret"})
JWT_SECRET_HOWTO = "`openssl rand -base64 48`, the same on every API instance, or leave it unset on one machine"

PRICES_EXAMPLE = '{"gpt-4o-mini": {"input": 0.15, "output": 0.60}}'


class ModelPrice(BaseModel):
    """What one model costs, per million tokens, in `LIVEBATCH_CURRENCY`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0, allow_inf_nan=False, description="Per million prompt tokens")
    output: float = Field(ge=0, allow_inf_nan=False, description="Per million completion tokens")


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "livebatch"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVEBATCH_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the embedded SQLite database and the generated JWT secret live.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; unset = SQLite file `livebatch.db` under the data directory.",
    )
    db_pool_size: int = Field(default=10, ge=1, description="Database connections kept open per process.")
    db_max_overflow: int = Field(default=20, ge=0, description="Extra connections a process may open under load.")
    redis_url: str | None = Field(
        default=None,
        description="Redis URL for the work queue and the live fan-out; unset = embedded (in-process).",
    )
    redis_prefix: str = Field(
        default="livebatch",
        description="Prefix of every Redis key and channel, so deployments can share one.",
    )
    provider: Literal["offline", "openai"] = Field(default="offline", description="Generation provider.")
    offline_latency_ms: int = Field(
        default=1500, ge=0, description="Mean latency of one offline generation, in milliseconds."
    )
    offline_failure_rate: float = Field(
        default=0.05, ge=0, le=1, description="Share of offline generations that fail transiently (0..1)."
    )
    openai_base_url: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible API (OpenAI, vLLM, Ollama, llama.cpp)."
    )
    openai_api_key: SecretStr = Field(
        default=SecretStr("not-needed"), description="API key sent to the OpenAI-compatible endpoint."
    )
    openai_model: str = Field(default="gpt-4o-mini", description="Model name sent with each request.")
    openai_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Timeout of one generation request (a CPU server such as llama.cpp's: 120, "
        "with `LIVEBATCH_GENERATION_TIMEOUT_S` above it).",
    )
    openai_max_tokens: int = Field(
        default=1024,
        ge=64,
        description="Most tokens a model may write for one item (sent as `max_tokens`); an answer cut off there "
        "fails as `truncated`.",
    )
    openai_temperature: float = Field(
        default=0.3,
        ge=0,
        le=2,
        description="Sampling temperature sent with each request: low enough for the schema, high enough "
        "that a retry is not the same answer again.",
    )
    prices: Annotated[dict[str, ModelPrice], NoDecode] = Field(
        default_factory=dict,
        description="Price per million input and output tokens of each model, as JSON: "
        f"`{PRICES_EXAMPLE}`; a model not in it has an unknown cost (the offline provider's model is `offline`).",
    )
    currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of the currency of `LIVEBATCH_PRICES` and of cost budgets.",
    )
    max_attempts: int = Field(default=3, ge=1, description="Attempts per item before it is finally failed.")
    retry_base_ms: int = Field(
        default=1000, ge=0, description="First retry delay; doubles per attempt, jittered between half and all of it."
    )
    retry_max_ms: int = Field(default=60_000, ge=0, description="Upper bound of one retry delay.")
    batch_concurrency: int = Field(
        default=4, ge=1, description="Items of one batch generated at once, across all workers."
    )
    max_concurrency: int = Field(
        default=16, ge=1, description="Items generated at once by one process, all batches together."
    )
    lease_s: float = Field(
        default=30.0,
        gt=0,
        description="How long a claim outlives its worker: renewed every third of it while the item is generated.",
    )
    generation_timeout_s: float = Field(
        default=90.0, gt=0, description="Longest one generation attempt may run before it counts as timed out."
    )
    dispatch_timeout_s: float = Field(
        default=60.0, gt=0, description="A dispatched item still unclaimed after this long is queued again."
    )
    sweep_interval_s: float = Field(
        default=5.0, gt=0, description="How often expired leases and lost queue messages are looked for."
    )
    item_prior_ms: int | None = Field(
        default=None,
        ge=1,
        description="Expected time of one item, for a batch's ETA before its first completion; "
        "unset = the offline latency, or 30 000 with another provider.",
    )
    max_target_count: int = Field(default=1000, ge=1, description="Largest batch a user may ask for.")
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="HMAC secret for tokens, at least 32 bytes (a shorter or example one stops the start); "
        "unset = a random one kept in the data directory (one machine).",
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field(
        default="HS256", description="The only algorithm tokens are accepted with."
    )
    jwt_role_claim: str = Field(default="role", description="Claim that holds the user's role.")
    jwt_ttl_s: int = Field(default=8 * 3600, gt=0, description="Lifetime of a token or sign-in cookie.")
    login_link_ttl_s: int = Field(default=600, gt=0, description="Lifetime of a one-time sign-in link.")
    public_url: str = Field(default="http://127.0.0.1:8000", description="Base URL printed in sign-in links.")
    oidc_issuer: str | None = Field(
        default=None,
        description="Issuer URL of the school's OpenID Connect provider (its discovery document is "
        "`<issuer>/.well-known/openid-configuration`); unset = sign-in by one-time link only.",
    )
    oidc_client_id: str | None = Field(default=None, description="livebatch's client id at the identity provider.")
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="livebatch's client secret at the identity provider."
    )
    oidc_provider_name: str = Field(
        default="your identity provider", description='Name on the sign-in button: "Sign in with <name>".'
    )
    oidc_redirect_path: str = Field(
        default="/auth/oidc/callback",
        pattern=r"^/[A-Za-z0-9/_.-]*$",
        description="Path the provider sends the browser back to; register `<LIVEBATCH_PUBLIC_URL><path>` there.",
    )
    oidc_scopes: str = Field(default="openid email profile", description="Scopes asked for at sign-in.")
    oidc_role_claim: str | None = Field(
        default=None,
        description="Claim that carries the user's roles or groups; unset = `roles`, else `groups`.",
    )
    oidc_faculty_values: str = Field(
        default="faculty",
        description="Values of the role claim that make a user faculty, comma-separated.",
    )
    oidc_audience: str | None = Field(
        default=None,
        description="`aud` a bearer token from the identity provider must carry; unset = the client id.",
    )
    oidc_leeway_s: int = Field(
        default=30, ge=0, le=300, description="Clock skew allowed on `exp`, `nbf` and `iat` of the provider's tokens."
    )
    oidc_jwks_refresh_s: float = Field(
        default=10.0,
        ge=0,
        description="Least time between two fetches of the provider's signing keys (a token signed with a key "
        "not in the cache fetches them again, at most this often).",
    )
    heartbeat_s: float = Field(default=15.0, gt=0, description="Interval of `heartbeat` events on a stream.")
    progress_interval_ms: int = Field(
        default=250,
        ge=0,
        description="Least time between two coalesced `batch.progress` events of a stream "
        "(sent with the next item event once due, alone after twice this).",
    )
    stream_buffer: int = Field(
        default=2000, ge=1, description="Events queued for one stream before a slow consumer is cut off."
    )
    stream_flush_ms: int = Field(
        default=25,
        ge=1,
        le=1000,
        description="Interval of the streams' flush tick: the frames a stream is owed go out as one write per tick.",
    )
    stream_send_timeout_s: float = Field(
        default=10.0, gt=0, description="A stream whose socket accepts nothing for this long is closed."
    )
    max_streams_per_user: int = Field(default=20, ge=1, description="Open progress streams per user.")
    max_running_batches_per_user: int = Field(
        default=5, ge=1, description="Batches per user that may be queued, running or paused at once."
    )
    max_items_per_day: int = Field(
        default=10_000,
        ge=1,
        description="Items per user in the batches created over the last 24 hours, cancelled ones included.",
    )
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest request body accepted.")
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Time a client has to send a request's headers; past it `livebatch serve` answers 408 "
        "and closes the connection.",
    )
    keep_alive_s: int = Field(
        default=5, ge=1, description="An idle keep-alive connection to `livebatch serve` is closed after this long."
    )
    shutdown_grace_s: float = Field(
        default=2.0, ge=0, description="Time streams get to end cleanly when the server stops."
    )
    webhook_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest one webhook POST may take, from connecting to the answer's status."
    )
    webhook_max_attempts: int = Field(
        default=10, ge=1, description="Attempts at one webhook delivery before it is marked dead."
    )
    webhook_retry_base_s: float = Field(
        default=10.0,
        ge=0,
        description="First retry delay of a webhook delivery; doubles per attempt, jittered between half and "
        "all of it.",
    )
    webhook_retry_max_s: float = Field(default=3600.0, ge=0, description="Upper bound of one webhook retry delay.")
    webhook_poll_s: float = Field(
        default=1.0, gt=0, description="How often each worker process looks for webhook deliveries that are due."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Accept webhook URLs on loopback, private and link-local addresses "
        "(off: refused when set, and when the name resolves to one at delivery).",
    )
    serve_metrics: bool = Field(
        default=False,
        description="Serve Prometheus metrics at `/metrics` on the app's port (off: 404 there; keep it off where "
        "the port is public, or block the path in front).",
    )
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="`auto` = JSON when stderr is not a terminal."
    )
    log_level: str = Field(default="INFO", description="Level of the `livebatch` loggers.")

    @field_validator("prices", mode="before")
    @classmethod
    def _parse_prices(cls, value: Any) -> Any:
        """The environment gives JSON text; read it here so that a mistake is a validation error that names
        the variable (the CLI exits 2 with it), not a parse error of the settings source."""
        if not isinstance(value, str):
            return value
        if not value.strip():
            return {}
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg}, column {exc.colno}); write it like {PRICES_EXAMPLE}") from None
        if not isinstance(parsed, dict):
            raise ValueError(f"must be a JSON object of models, like {PRICES_EXAMPLE}")
        return parsed

    @field_validator("jwt_secret")
    @classmethod
    def _refuse_weak_jwt_secret(cls, value: SecretStr | None) -> SecretStr | None:
        """A secret anyone could guess signs anyone's token (a student's, re-signed as faculty): refuse to start
        with one. Unset is fine: a random one is generated and kept under the data directory."""
        if value is None:
            return None
        secret = value.get_secret_value()
        if secret.strip().lower() in WEAK_JWT_SECRETS:
            raise ValueError(f"is an example value; set a random one: {JWT_SECRET_HOWTO}")
        if len(secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_JWT_SECRET_BYTES} bytes, not {len(secret.encode())}; {JWT_SECRET_HOWTO}"
            )
        return value

    @model_validator(mode="after")
    def _check_oidc(self) -> Settings:
        given = [self.oidc_issuer, self.oidc_client_id]
        if any(given) and not all(given):
            raise ValueError("LIVEBATCH_OIDC_ISSUER and LIVEBATCH_OIDC_CLIENT_ID go together: set both, or neither")
        if self.oidc_issuer and not self.oidc_issuer.startswith(("https://", "http://")):
            raise ValueError("LIVEBATCH_OIDC_ISSUER must be an http(s) URL")
        if self.oidc_issuer is not None and not self.faculty_values:
            raise ValueError("LIVEBATCH_OIDC_FACULTY_VALUES must name at least one value")
        return self

    @property
    def faculty_values(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.oidc_faculty_values.split(",") if part.strip())

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @model_validator(mode="after")
    def _check_retry_bounds(self) -> Settings:
        if self.retry_max_ms < self.retry_base_ms:
            raise ValueError("retry_max_ms must be at least retry_base_ms")
        if self.webhook_retry_max_s < self.webhook_retry_base_s:
            raise ValueError("webhook_retry_max_s must be at least webhook_retry_base_s")
        return self

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'livebatch.db'}"

    @property
    def effective_item_prior_ms(self) -> int:
        """The configured prior, or the offline provider's mean latency, which is known; else a default."""
        if self.item_prior_ms is not None:
            return self.item_prior_ms
        if self.provider == "offline":
            return max(1, self.offline_latency_ms)
        return DEFAULT_ITEM_PRIOR_MS

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @cached_property
    def effective_jwt_secret(self) -> str:
        """The configured secret, or one generated once and kept (0600) under the data directory."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir / "jwt-secret"
        if not path.exists():
            # Written aside and linked into place, so two processes starting at once agree on one secret.
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            draft = path.with_name(f".jwt-secret.{os.getpid()}")
            fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
            try:
                os.link(draft, path)
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        return path.read_text().strip()
