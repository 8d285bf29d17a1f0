"""Where `vocreg` connects and with which token: flags, then the environment, then a profile
of the profile file, then the local defaults (`make run`'s edge on localhost:50051).

The profile file (TOML; `--config`, `VOCREG_CONFIG`, default ~/.config/vocreg/config.toml):

    default = "local"                  # the profile used when none is named

    [profiles.local]
    address = "localhost:50051"
    token_file = "~/.config/vocreg/local.token"

    [profiles.cluster]
    address = "vocreg.example.gov.cn:443"   # every service's edge, unless named below
    tls = true
    ca_file = "/etc/ssl/certs/regulator-ca.pem"
    token = "eyJ..."
    [profiles.cluster.addresses]             # Kubernetes runs one edge per service
    certificates = "certificates.vocreg.example.gov.cn:443"
    [profiles.cluster.metrics]               # what `vocreg doctor` scrapes
    edge = "http://10.0.0.5:9100/metrics"

A profile is named by `--profile`, `VOCREG_PROFILE` or the file's `default`. Every value says
where it came from (`vocreg config show`), so a wrong one is found without guessing.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from services.cli.exits import CliError, Exit
from services.common import config as platform_config

DEFAULT_ADDRESS = f"localhost:{platform_config.DEFAULT_GRPC_PORT}"
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONFIG_FILE = Path("~/.config/vocreg/config.toml")
PROFILE_KEYS = {"address", "addresses", "token", "token_file", "tls", "ca_file", "timeout",
                "amqp_uri", "mongo_uri", "metrics"}


@dataclass
class Settings:
    address: str = DEFAULT_ADDRESS
    addresses: dict[str, str] = field(default_factory=dict)  # service -> its edge
    token: str | None = None
    tls: bool = False
    ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    amqp_uri: str | None = None
    mongo_uri: str | None = None
    metrics: dict[str, str] = field(default_factory=dict)    # name -> /metrics URL
    profile: str | None = None
    config_file: Path | None = None
    sources: dict[str, str] = field(default_factory=dict)    # setting -> where it came from

    def address_for(self, service: str) -> str:
        return self.addresses.get(service, self.address)


def _read_profile_file(path: Path, explicit: bool) -> dict:
    if not path.exists():
        if explicit:
            raise CliError(Exit.USAGE, f"the profile file {path} does not exist")
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CliError(Exit.USAGE, f"the profile file {path} cannot be read: {exc}") from None


def _token_from_file(name: str, where: str) -> str:
    path = Path(name).expanduser()
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(Exit.USAGE, f"{where}: cannot read the token file {path}: "
                                   f"{exc.strerror}") from None


def resolve(args, environ=None) -> Settings:
    """`args`: the parsed global flags (address, token, profile, config, tls, ca_file,
    timeout; None when not given)."""
    environ = os.environ if environ is None else environ
    settings = Settings()
    sources = settings.sources

    explicit_file = getattr(args, "config", None) or environ.get("VOCREG_CONFIG")
    path = Path(explicit_file or DEFAULT_CONFIG_FILE).expanduser()
    document = _read_profile_file(path, explicit=bool(explicit_file))
    profiles = document.get("profiles", {}) if isinstance(document.get("profiles"), dict) else {}
    name = getattr(args, "profile", None) or environ.get("VOCREG_PROFILE") \
        or document.get("default")
    profile: dict = {}
    if name:
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise CliError(Exit.USAGE, f"no profile {name!r} in {path} (profiles: {known})")
        profile = profiles[name]
        unknown = sorted(set(profile) - PROFILE_KEYS)
        if unknown:
            raise CliError(Exit.USAGE, f"profile {name!r} in {path}: unknown keys "
                                       f"{', '.join(unknown)} (known: {', '.join(sorted(PROFILE_KEYS))})")
        settings.profile, settings.config_file = name, path
    where = f"profile {name} ({path})"

    def pick(key, flag_value, env_name=None):
        if flag_value not in (None, ""):
            sources[key] = "flag"
            return flag_value
        if env_name and environ.get(env_name):
            sources[key] = f"env {env_name}"
            return environ[env_name]
        if profile.get(key) not in (None, ""):
            sources[key] = where
            return profile[key]
        return None

    settings.address = pick("address", getattr(args, "address", None), "VOCREG_ADDRESS") \
        or DEFAULT_ADDRESS
    sources.setdefault("address", "default")
    settings.addresses = {str(k): str(v) for k, v in (profile.get("addresses") or {}).items()}
    if getattr(args, "address", None) or environ.get("VOCREG_ADDRESS"):
        settings.addresses = {}  # one address named on the command line or the env: for all

    token = pick("token", getattr(args, "token", None), "VOCREG_TOKEN")
    if token is None and profile.get("token_file"):
        token = _token_from_file(profile["token_file"], where)
        sources["token"] = f"{where} token_file"
    settings.token = token.strip() if isinstance(token, str) and token.strip() else None
    sources.setdefault("token", "none")

    settings.tls = bool(pick("tls", True if getattr(args, "tls", False) else None))
    settings.ca_file = pick("ca_file", getattr(args, "ca_file", None))
    if settings.ca_file:
        settings.tls = True
    timeout = pick("timeout", getattr(args, "timeout", None))
    try:
        settings.timeout = float(timeout) if timeout is not None else DEFAULT_TIMEOUT
    except (TypeError, ValueError):
        raise CliError(Exit.USAGE, f"timeout {timeout!r} is not a number of seconds") from None
    if settings.timeout <= 0:
        raise CliError(Exit.USAGE, "timeout must be more than 0 seconds")
    # What doctor checks beside the edge; the platform's own variables name them.
    settings.amqp_uri = pick("amqp_uri", getattr(args, "amqp_uri", None), "AMQP_URI")
    settings.mongo_uri = pick("mongo_uri", getattr(args, "mongo_uri", None), "MONGO_URI")
    metrics = dict(profile.get("metrics") or {})
    for item in getattr(args, "metrics", None) or []:
        metric_name, sep, url = item.partition("=")
        if not sep or not metric_name or not url:
            raise CliError(Exit.USAGE, f"--metrics {item!r}: give NAME=URL, "
                                       "e.g. edge=http://localhost:9100/metrics")
        metrics[metric_name] = url
    settings.metrics = metrics
    return settings
