"""Where the engine lives on disk and on the network: data dir, socket path, token file.

Defaults (each overridable on the command line):

- data dir: ``$LATENTFORGE_DATA_DIR``, else ``$XDG_DATA_HOME/latentforge``, else
  ``~/.local/share/latentforge``;
- runtime dir (socket, token): ``$XDG_RUNTIME_DIR/latentforge`` when that is set, else
  ``<data dir>/run``; always a private (0700) directory owned by this user;
- socket: ``<runtime dir>/engine.sock`` (mode 0600);
- token file (TCP only): ``<runtime dir>/engine.token`` (mode 0600), a fresh random token
  at every start.

Addresses are written ``unix:///abs/path.sock`` or ``tcp://host:port`` (clients parse them
with ``engine.client.parse_address``).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from engine.errors import LatentforgeError
from engine.fileio import replace_atomically

SOCKET_NAME = "engine.sock"
TOKEN_NAME = "engine.token"
# sun_path is 108 bytes on Linux (104 on macOS) including the terminating NUL.
MAX_SOCKET_PATH = 103


class AddressError(LatentforgeError):
    """An engine address, socket path or private directory cannot be used."""

    code = "server.address"
    advice = "Pass --socket PATH (a short absolute path) or --host 127.0.0.1 --port N."


class RemoteNotAllowed(LatentforgeError):
    """A non-loopback TCP interface was asked for without --allow-remote."""

    code = "server.remote_not_allowed"
    advice = ("Use --host 127.0.0.1, or add --allow-remote if you really want other machines "
              "to reach the engine (they still need the token).")


@dataclass(frozen=True)
class Address:
    """A parsed engine address: ``kind`` is ``unix`` (``path``) or ``tcp`` (``host``, ``port``)."""

    kind: str
    path: str | None = None
    host: str | None = None
    port: int | None = None

    def url(self) -> str:
        """The address as ``unix:///path`` or ``tcp://host:port``."""
        if self.kind == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def default_data_dir() -> Path:
    """The engine's data directory (database, results, logs)."""
    env = os.environ.get("LATENTFORGE_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return (base / "latentforge").resolve()


def default_runtime_dir(data_dir: Path | None = None) -> Path:
    """Private directory for the socket and the token file."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "latentforge"
    return Path(data_dir or default_data_dir()) / "run"


def default_socket_path(data_dir: Path | None = None) -> Path:
    """Where `latentforge serve` listens when no address is given."""
    return default_runtime_dir(data_dir) / SOCKET_NAME


def default_token_path(data_dir: Path | None = None) -> Path:
    """Where `latentforge serve --port` writes its token."""
    return default_runtime_dir(data_dir) / TOKEN_NAME


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) or check an existing one is ours, then force 0700.

    Refuses a directory owned by another user or a symlink: a socket or token in a
    directory someone else controls could be swapped under us.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        raise AddressError(f"{path} is not a plain directory.", "Remove it or choose another location.")
    if st.st_uid != os.getuid():
        raise AddressError(f"{path} belongs to another user.", "Choose a directory you own.")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def check_socket_path(path: Path) -> None:
    """Raise ``AddressError`` when ``path`` is too long for a Unix socket."""
    if len(os.fsencode(str(path))) > MAX_SOCKET_PATH:
        raise AddressError(f"The socket path {path} is longer than {MAX_SOCKET_PATH} bytes, "
                           "the operating system's limit.",
                           "Pass a shorter --socket path (e.g. under /tmp) or set XDG_RUNTIME_DIR.")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback interface unless ``allow_remote``."""
    if not is_loopback(host) and not allow_remote:
        raise RemoteNotAllowed(f"Refusing to listen on {host!r}: only loopback is allowed by default.")


def write_token(path: Path) -> str:
    """Write a fresh random token to ``path`` (0600, replaced atomically) and return it."""
    token = secrets.token_urlsafe(32)
    replace_atomically(path, lambda fh: fh.write(token.encode("ascii") + b"\n"), mode=0o600)
    return token
