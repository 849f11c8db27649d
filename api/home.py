"""The ledger home (`ACCORD_HOME`, default `./.accord`): configuration, key files and the store.

Layout::

    config.json     origin, store URL, the authority and ledger public keys
    authority.pem   authority private key (PKCS#8 PEM, 0600) and authority.pem.pub
    ledger.pem      ledger (checkpoint) private key and ledger.pem.pub
    ledger.db       the embedded SQLite store, unless config.json names another
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from domain.record import DecisionRecord
from ledger import keys
from ledger.authority import Authority
from ledger.errors import LedgerError
from ledger.files import private_directory, write_private
from ledger.keys import Ed25519PrivateKey

CONFIG = "config.json"
AUTHORITY_KEY = "authority.pem"
LEDGER_KEY = "ledger.pem"
PASSPHRASE_ENV = "ACCORD_PASSPHRASE"


class HomeError(LedgerError):
    """The home is missing, already initialised, or inconsistent."""

    code = "home"


class Config(msgspec.Struct, forbid_unknown_fields=True):
    """What `accord init` decided, kept in `config.json`."""

    origin: str
    store: str
    authority_key: str
    ledger_key: str


def default_home() -> Path:
    """`ACCORD_HOME`, or `./.accord`."""
    return Path(os.environ.get("ACCORD_HOME", ".accord"))


def passphrase() -> bytes | None:
    """The private-key passphrase from `ACCORD_PASSPHRASE`, if set (never from arguments)."""
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


class Home:
    """An initialised ledger home."""

    def __init__(self, path: Path, config: Config) -> None:
        self.path = path
        self.config = config

    @classmethod
    def create(cls, path: Path, origin: str, store: str | None = None) -> Home:
        """Create keys, configuration and store, and open the directory with the authority."""
        if (path / CONFIG).exists():
            raise HomeError(f"{path} is already initialised")
        private_directory(path)
        path.chmod(0o700)  # the home holds private keys and maybe a store password
        secret = passphrase()
        authority_key, ledger_key = keys.generate(), keys.generate()
        for name, key in ((AUTHORITY_KEY, authority_key), (LEDGER_KEY, ledger_key)):
            if (path / name).exists():
                raise HomeError(f"{path / name} exists; remove it or use another home")
            keys.save_private_key(key, path / name, secret)
        config = Config(
            origin=origin,
            store=store or "sqlite:///ledger.db",  # relative: inside the home, wherever it moves
            authority_key=keys.public_key_b64(authority_key),
            ledger_key=keys.public_key_b64(ledger_key),
        )
        home = cls(path, config)
        with home.open_ledger() as ledger:
            Authority(ledger, authority_key).open(f"{origin} authority")
        # Written last: a home with config.json is a home whose directory is open.
        # 0600: it may hold the store's password.
        write_private(path / CONFIG, msgspec.json.format(msgspec.json.encode(config)) + b"\n")
        return home

    @classmethod
    def load(cls, path: Path) -> Home:
        """Load an initialised home."""
        try:
            data = (path / CONFIG).read_bytes()
        except FileNotFoundError:
            raise HomeError(f"no ledger at {path}; run `accord init --origin ORIGIN`") from None
        try:
            return cls(path, msgspec.json.decode(data, type=Config))
        except msgspec.DecodeError as exc:
            raise HomeError(f"{path / CONFIG} is not valid: {exc}") from None

    @property
    def store(self) -> str:
        """The configured store URL; a relative SQLite path is inside the home."""
        url = self.config.store
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            return prefix + str((self.path / url[len(prefix) :]).absolute())
        return url

    def open_ledger(self, store: str | None = None) -> DecisionRecord:
        """Open the decision record, on `store` if given, else on the configured store."""
        authority = keys.public_key_from_b64(self.config.authority_key)
        return DecisionRecord(store or self.store, self.config.origin, authority)

    def ledger_key(self) -> Ed25519PrivateKey:
        """The ledger's private key, which signs checkpoints."""
        return keys.load_private_key(self.path / LEDGER_KEY, passphrase())

    def authority(self, ledger: DecisionRecord) -> Authority:
        """The authority, with its private key loaded from the home."""
        return Authority(ledger, keys.load_private_key(self.path / AUTHORITY_KEY, passphrase()))
