"""The teleop server: the TactAR app's HTTP endpoint, the WebXR page and its WebSocket, in
one aiohttp application on its own thread. No ROS: the node passes callbacks.

- ``POST /unity``: the app's hand-tracking JSON (fire-and-forget; the reply is tiny).
- ``GET /``: the WebXR page (``webxr/index.html``), ``GET /webxr/<name>`` its scripts;
  ``GET /ws``: its WebSocket. The page
  sends the same JSON as the app, plus ``{"type": "record", "cmd": ...}`` recorder commands
  and ``{"type": "episode", "cmd": "end"}`` (end the sim episode); the server pushes feedback
  (robot state, arrows, camera JPEG as base64, ``{"type": "log", "text": ...}`` lines) to
  every page.

Security: binds to 127.0.0.1 unless told otherwise. Any other bind needs a token (header
``Authorization: Bearer <token>``, ``X-Teleop-Token`` or ``?token=``) and serves HTTPS with
a self-signed certificate made on first use (the WebXR API needs a secure context on a
LAN); clients listed in ``trusted_clients`` (the headset app, which cannot send a token)
may post without one. Oversized, malformed or too frequent messages are rejected and
counted by reason (``counters``); nothing a client sends can stop the server.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections import Counter, deque
from pathlib import Path

from .protocol import ProtocolError, loads, parse_hands
from .server_config import ServerConfig  # its home: light to import for the node and the CLI

WEBXR_DIR = Path(__file__).resolve().parent / "webxr"
WEBXR_ASSETS = ("scene.js", "render.js")     # what GET /webxr/<name> serves
RECORD_COMMANDS = ("start", "stop", "success", "failure", "discard")
EPISODE_COMMANDS = ("end",)


def ensure_certificate(cert_dir: Path) -> tuple[Path, Path]:
    """A self-signed certificate (cert.pem, key.pem) in ``cert_dir``, made on first use."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert, key = cert_dir / "cert.pem", cert_dir / "key.pem"
    if cert.is_file() and key.is_file():
        return cert, key
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "slowfast teleop")])
    now = datetime.datetime.now(datetime.timezone.utc)
    c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=3650))
         .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
         .sign(k, hashes.SHA256()))
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    key.chmod(0o600)
    cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
    return cert, key


class TeleopServer:
    """``on_frame(frame, client_ip)`` gets each valid HandFrame; ``on_command(cmd)`` each
    recorder command from the page, ``on_episode(cmd)`` each episode command. All run on the
    server thread: keep them short."""

    def __init__(self, cfg: ServerConfig, on_frame, on_command=None, on_episode=None):
        self.cfg = cfg
        self.on_frame, self.on_command, self.on_episode = on_frame, on_command, on_episode
        self.counters: Counter = Counter()       # "rejected/<reason>", "accepted", "ws_clients"
        self.port = cfg.port
        self.scheme = "https" if cfg.use_tls else "http"
        self._rate: dict[str, deque] = {}
        self._ws: set = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="teleop-server", daemon=True)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "TeleopServer":
        self._thread.start()
        self._ready.wait(10.0)
        if self._error is not None:
            raise OSError(f"teleop server on {self.cfg.host}:{self.cfg.port}: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                fut.result(5.0)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)

    async def _shutdown(self):
        for ws in list(self._ws):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _run(self) -> None:
        from aiohttp import web

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            app = web.Application(client_max_size=self.cfg.max_body)
            app.router.add_post("/unity", self._unity)
            app.router.add_get("/", self._index)
            app.router.add_get("/webxr/{name}", self._asset)
            app.router.add_get("/ws", self._websocket)
            app.router.add_get("/status", self._status)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            ssl_ctx = None
            if self.cfg.use_tls:
                import ssl

                cert_dir = Path(self.cfg.cert_dir).expanduser() if self.cfg.cert_dir else \
                    Path.home() / ".config" / "slowfast" / "teleop"
                cert, key = ensure_certificate(cert_dir)
                ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ssl_ctx.load_cert_chain(cert, key)
            site = web.TCPSite(self._runner, self.cfg.host, self.cfg.port, ssl_context=ssl_ctx)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.cfg.host in ("0.0.0.0", "localhost") else self.cfg.host
        return f"{self.scheme}://{host}:{self.port}/"

    # ------------------------------------------------------------ checks

    def _reject(self, reason: str, status: int = 400):
        from aiohttp import web

        self.counters[f"rejected/{reason}"] += 1
        return web.json_response({"ok": False, "error": reason}, status=status)

    def _authorized(self, request) -> bool:
        if not self.cfg.token:
            return True
        given = request.headers.get("X-Teleop-Token") or request.query.get("token", "")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        if given and hmac.compare_digest(given.encode(), self.cfg.token.encode()):
            return True
        return request.remote in self.cfg.trusted_clients

    def _rate_ok(self, client: str) -> bool:
        now = time.monotonic()
        q = self._rate.setdefault(client, deque())
        while q and now - q[0] > 1.0:
            q.popleft()
        if len(q) >= self.cfg.max_rate:
            return False
        q.append(now)
        return True

    def _handle(self, data, client: str) -> str | None:
        """Validate and deliver one hand message; returns the rejection reason or None."""
        if not self._rate_ok(client):
            self.counters["rejected/rate_limited"] += 1
            return "rate_limited"
        try:
            frame = parse_hands(data)
        except ProtocolError as exc:
            self.counters[f"rejected/{exc.reason}"] += 1
            return exc.reason
        self.counters["accepted"] += 1
        try:
            self.on_frame(frame, client)
        except Exception as exc:  # noqa: BLE001 - a bug downstream must not kill the server
            self.counters["rejected/handler_error"] += 1
            return f"handler_error: {exc}"
        return None

    def _call(self, handler, cmd: str) -> None:
        try:
            handler(cmd)
        except Exception:  # noqa: BLE001 - a bug downstream must not kill the page's connection
            self.counters["rejected/handler_error"] += 1

    # ------------------------------------------------------------ handlers

    async def _unity(self, request):
        from aiohttp import web

        if not self._authorized(request):
            return self._reject("unauthorized", 401)
        if request.content_length is not None and request.content_length > self.cfg.max_body:
            return self._reject("too_large", 413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject("too_large", 413)
        why = self._handle(body, request.remote or "?")
        if why is not None:
            return web.json_response({"ok": False, "error": why}, status=429 if why == "rate_limited" else 400)
        return web.json_response({"ok": True})

    async def _index(self, request):
        from aiohttp import web

        if not self._authorized(request):
            return self._reject("unauthorized", 401)
        return web.FileResponse(WEBXR_DIR / "index.html")

    async def _asset(self, request):
        """The page's scripts (``webxr/*.js``: the scene graph and its WebGL renderer), by name
        only: nothing outside that folder, nothing but the files shipped there."""
        from aiohttp import web

        if not self._authorized(request):
            return self._reject("unauthorized", 401)
        name = request.match_info["name"]
        if name not in WEBXR_ASSETS:
            return self._reject("not_found", 404)
        return web.FileResponse(WEBXR_DIR / name, headers={"Content-Type": "text/javascript; charset=utf-8"})

    async def _status(self, request):
        from aiohttp import web

        if not self._authorized(request):
            return self._reject("unauthorized", 401)
        return web.json_response(dict(self.counters))

    async def _websocket(self, request):
        from aiohttp import WSMsgType, web

        if not self._authorized(request):
            return self._reject("unauthorized", 401)
        ws = web.WebSocketResponse(max_msg_size=self.cfg.max_body, heartbeat=5.0)
        await ws.prepare(request)
        self._ws.add(ws)
        self.counters["ws_connections"] += 1
        client = f"ws:{request.remote}:{id(ws)}"
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.ERROR:
                        self.counters["rejected/too_large"] += 1
                        break
                    self.counters["rejected/bad_type"] += 1
                    continue
                try:
                    data = loads(msg.data)
                except ProtocolError as exc:
                    self.counters[f"rejected/{exc.reason}"] += 1
                    continue
                commands = {"record": (RECORD_COMMANDS, self.on_command),
                            "episode": (EPISODE_COMMANDS, self.on_episode)}
                if isinstance(data, dict) and data.get("type") in commands:
                    allowed, handler = commands[data["type"]]
                    cmd = data.get("cmd")
                    if cmd not in allowed:
                        self.counters["rejected/bad_command"] += 1
                    elif handler is not None:
                        self._call(handler, cmd)
                    continue
                self._handle(data, client)
        finally:
            self._ws.discard(ws)
        return ws

    def broadcast(self, payload: dict) -> None:
        """Send JSON feedback to every connected page (thread-safe; drops when a page is slow)."""
        if not self._ws or self._loop is None:
            return
        text = json.dumps(payload, separators=(",", ":"))

        async def send():
            for ws in list(self._ws):
                if not ws.closed and (ws._writer is None or not getattr(ws._writer, "_output_size", 0) > 1 << 20):
                    try:
                        await ws.send_str(text)
                    except Exception:  # noqa: BLE001 - a page that went away
                        self._ws.discard(ws)

        asyncio.run_coroutine_threadsafe(send(), self._loop)

    @property
    def clients(self) -> int:
        return len(self._ws)
