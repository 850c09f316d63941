"""Typed settings from the environment (prefix CAREPATH_); built by entrypoints only."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///carepath.db"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAREPATH_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    smtp_url: str | None = None
    mail_from: str = "carepath <no-reply@carepath.invalid>"
    # How long 4xx answers and connection failures are retried before giving up.
    retry_for: str = "3d"
    # Links in messages (List-Unsubscribe): the https address this server is
    # reached at, the key that signs the tokens, and an optional mailto target.
    public_url: str | None = None
    # Sending windows: no email between these local times (e.g. 21:00-08:00),
    # and at most N marketing emails per contact per period (e.g. 3/7d).
    quiet_hours: str | None = None
    # DKIM signing: the signing domain, the DNS selector, and the private key's file.
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_key_file: str | None = None
    marketing_cap: str | None = None
    secret_key: str | None = Field(default=None, repr=False)
    unsubscribe_mailto: str | None = None
    batch_size: int = Field(default=500, ge=1, le=10_000)
    send_batch_size: int = Field(default=500, ge=1, le=10_000)
    lease_seconds: int = Field(default=300, ge=5)
    poll_seconds: float = Field(default=1.0, gt=0)
    max_step_visits: int = Field(default=50, ge=1)
    max_chain_depth: int = Field(default=5, ge=1)
    # Webhook steps: allow private, loopback and link-local targets (an intranet CRM).
    webhook_allow_private: bool = False
    # Trust this CA bundle (a PEM file) for webhook endpoints instead of the system's.
    webhook_cafile: str | None = None
    # HTTP API: requests per second per API key, per server process (bursts of twice that).
    api_rate_per_second: float = Field(default=1000.0, gt=0)
