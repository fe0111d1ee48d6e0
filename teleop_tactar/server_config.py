"""The teleop server's settings (``teleop_tactar.server`` runs the server): a module of its own
so that a node and the CLI can read them without importing the server's web stack."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from slowfast_data.fields import described


@dataclass
class ServerConfig:
    """The server's settings: the one definition of each (default, meaning, range).
    teleop_node declares them as ``server.<name>`` parameters, ``slowfast teleop`` its
    ``--host``/``--port``/``--token``/``--trusted`` options from them."""

    host: str = described("127.0.0.1", "bind address; anything but localhost needs a token (and serves HTTPS)")
    port: int = described(8082, "HTTP(S) port, the app's setting (0 = any free port)", 0, 65535)
    token: str = described("", "shared secret clients must send (required off localhost)")
    trusted_clients: list = described([""], "IP addresses allowed to post without a token (the headset app, "
                                            "which cannot send one); '' entries are ignored")
    tls: str = described("auto", "auto (HTTPS off localhost) | on | off")
    cert_dir: str = described("", "folder of the self-signed certificate ('' = ~/.config/slowfast/teleop)")
    max_body: int = described(16384, "largest accepted message (bytes)", 256, 10_000_000)
    max_rate: float = described(240.0, "messages per second accepted from one client", 1.0, 10000.0)

    def __post_init__(self):
        if not 0 <= int(self.port) <= 65535:
            raise ValueError(f"port: {self.port} outside 0..65535")
        if self.tls not in ("auto", "on", "off"):
            raise ValueError(f"tls: {self.tls!r} not one of auto, on, off")
        if not 256 <= self.max_body <= 10_000_000:
            raise ValueError(f"max_body: {self.max_body} outside 256..10000000 bytes")
        if not 1.0 <= self.max_rate <= 10000.0:
            raise ValueError(f"max_rate: {self.max_rate} outside 1..10000 per s")
        if not self.loopback and not self.token:
            raise ValueError(f"token: binding to {self.host} (not localhost) requires a token")
        for c in self.trusted_clients:
            if not c:
                continue   # '' stands for none (a ROS list parameter cannot be empty)
            try:
                ipaddress.ip_address(c)
            except ValueError:
                raise ValueError(f"trusted_clients: {c!r} is not an IP address") from None

    @property
    def loopback(self) -> bool:
        if self.host in ("localhost",):
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def use_tls(self) -> bool:
        return self.tls == "on" or (self.tls == "auto" and not self.loopback)
