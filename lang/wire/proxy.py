"""Proxies for the client role (SPEC §15): which proxy a connection goes through (the
`proxy` key, or the environment with the precedence of the `websockets` library), and the
tunnel through it (HTTP CONNECT of our own over anyio, SOCKS5 through python-socks). It
knows nothing of evt.

Rules of this module:
- A proxy is shown as `scheme://host:port`, never with its credentials: in errors, in `-v`
  lines, in `:conns` (`str(proxy)`; its repr leaves them out too).
- Every failure is a TransportError naming the proxy: "cannot reach proxy ..." (no TCP
  connection to it) or "proxy ... refused the tunnel: ..." (its answer, in words).
- The tunnel is an anyio SocketStream to the target: TLS for wss and the WebSocket handshake
  go inside it (lang/wire/client.py).
"""

from __future__ import annotations

import base64
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

import anyio
import anyio.abc
import h11

from lang.wire.frames import READ_SIZE, STREAM_ERRORS, TransportError

SCHEMES = ("http", "socks5", "socks5h")
DEFAULT_PORTS = {"http": 80, "socks5": 1080, "socks5h": 1080}  # as Go's net/http has them


@dataclass(frozen=True)
class Proxy:
    scheme: str  # http socks5 (names resolved here) socks5h (names resolved by the proxy)
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    source: str = ""  # where it came from when not the key: "the environment variable ..."

    def __str__(self) -> str:
        return f"{self.scheme}://{authority(self.host, self.port)}"


def authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def without_credentials(text: str) -> str:
    """A proxy url as it may be shown: `user:pass@` left out."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    netloc, slash, path = rest.partition("/")
    shown = netloc.rpartition("@")[2]
    return f"{scheme}{sep}{shown}{slash}{path}"


def parse_proxy(text: str, source: str = "") -> Proxy:
    """`scheme://[user:pass@]host[:port]` -> Proxy (credentials percent-decoded). Raises
    ValueError in words that do not show the credentials."""
    shown = without_credentials(text)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        words = ("the port must be a number from 1 to 65535" if "port" in str(e).lower()
                 else "it is not a valid url")
        raise ValueError(f"bad proxy '{shown}': {words}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"bad proxy '{shown}': {_scheme_words(scheme)}")
    if not parts.hostname:
        raise ValueError(f"bad proxy '{shown}': it has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"bad proxy '{shown}': a proxy url is scheme://host:port, with no "
                         "path, query or fragment")
    if port == 0:
        raise ValueError(f"bad proxy '{shown}': the port must be a number from 1 to 65535")
    username = password = None
    if parts.username is not None:
        if parts.password is None:
            raise ValueError(f"bad proxy '{shown}': it has a user name but no password "
                             "(user:pass@host)")
        try:
            username = unquote(parts.username, errors="strict")
            password = unquote(parts.password, errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"bad proxy '{shown}': its user name or password is not "
                             "UTF-8 once percent-decoded") from None
    return Proxy(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], username, password,
                 source)


def _scheme_words(scheme: str) -> str:
    if scheme == "https":
        return ("https:// proxies (TLS to the proxy itself) are not supported; an http:// "
                "proxy tunnels wss:// too, with TLS to the server inside the tunnel")
    if scheme in ("socks4", "socks4a"):
        return "SOCKS4 is not supported: use socks5:// or socks5h://"
    got = f"{scheme}://" if scheme else "no scheme"
    return f"a proxy url starts with http://, socks5:// or socks5h://, got {got}"


# ---------------------------------------------------------------- the environment
#
# What `websockets` (websockets/proxy.py `get_proxy`) does, with urllib's
# `getproxies_environment` and `proxy_bypass_environment` (what `getproxies` and
# `proxy_bypass` are on Linux), on a mapping given as a parameter and keeping the name of the
# variable each value came from.


def environment_proxies(environ: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """{scheme: (value, variable)} from the `<scheme>_proxy` variables, as urllib reads them:
    any case, a lower-case name winning over the others (and an empty lower-case one removing
    the scheme); under CGI (REQUEST_METHOD set) an HTTP_PROXY not all lower-case is left out
    (CVE-2016-1000110)."""
    # the names first, each value once (os.environ decodes each value it is asked for:
    # reading every one of them was most of what opening a connection cost in Python)
    found = [(name, environ[name]) for name in environ if name[-6:].lower() == "_proxy"]
    proxies: dict[str, tuple[str, str]] = {}
    for name, value in found:
        if value:
            proxies[name.lower()[:-6]] = (value, name)
    if "REQUEST_METHOD" in environ:
        proxies.pop("http", None)
    for name, value in found:
        if name[-6:] == "_proxy":
            lower = name.lower()
            if value:
                proxies[lower[:-6]] = (value, name)
            else:
                proxies.pop(lower[:-6], None)
    return proxies


_PORT = re.compile(r"(.*):([0-9]*)", re.DOTALL)


def bypassed(host: str, port: int, no_proxy: str | None) -> bool:
    """Whether `no_proxy` keeps host:port from the proxy: `*`, or one of its comma-separated
    names (a leading dot ignored; with or without a port) equal to the host (or host:port),
    or a domain the host is in (`example.com` and `.example.com` both take `a.example.com`)."""
    if no_proxy is None:
        return False
    if no_proxy == "*":
        return True
    whole = f"{host}:{port}".lower()
    m = _PORT.fullmatch(whole)
    hostonly = m[1] if m and m[2] else whole
    for name in no_proxy.split(","):
        name = name.strip()
        if name:
            name = name.lstrip(".").lower()
            if hostonly == name or whole == name:
                return True
            name = "." + name
            if hostonly.endswith(name) or whole.endswith(name):
                return True
    return False


def from_environment(host: str, port: int, secure: bool,
                     environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(proxy url, variable) for a connection to host:port, or None: `no_proxy` first, then
    `wss_proxy` (wss) or `ws_proxy` (ws), `socks_proxy`, `https_proxy`, and for ws
    `http_proxy`. A socks_proxy given as http://... is socks5h://..."""
    proxies = environment_proxies(os.environ if environ is None else environ)
    no = proxies.get("no")
    if bypassed(host, port, no[0] if no else None):
        return None
    for scheme in ("wss", "socks", "https") if secure else ("ws", "socks", "https", "http"):
        found = proxies.get(scheme)
        if found is not None:
            value, name = found
            if scheme == "socks" and value.startswith("http://"):
                value = "socks5h://" + value[7:]
            return value, name
    return None


def choose_proxy(setting: Proxy | str | bool | None, host: str, port: int, secure: bool,
                 environ: Mapping[str, str] | None = None) -> Proxy | None:
    """The proxy for a connection: `setting` is a Proxy, a url, None (none) or True (from the
    environment). Raises TransportError for a bad url."""
    if setting is None or setting is False:
        return None
    if isinstance(setting, Proxy):
        return setting
    source = ""
    if setting is True:
        found = from_environment(host, port, secure, environ)
        if found is None:
            return None
        setting, name = found
        source = f"the environment variable {name}"
        if "://" not in setting:  # `proxy.corp:3128`, as curl and requests take it
            setting = "http://" + setting
    try:
        return parse_proxy(setting, source)
    except ValueError as e:
        raise TransportError(f"{e} (from {source})" if source else str(e)) from None


def shown_proxy(setting: Proxy | str | bool | None, url: str | None, port: int | None,
                environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy a connection to `url` goes through, as it may be shown, or None (no url,
    no proxy, or one that is not valid)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        proxy = choose_proxy(setting, parts.hostname or "",
                             port or parts.port or (443 if secure else 80), secure, environ)
    except (ValueError, TransportError):
        return None
    return str(proxy) if proxy is not None else None


# ---------------------------------------------------------------- the tunnel


async def open_tunnel(proxy: Proxy, host: str, port: int) -> anyio.abc.SocketStream:
    """A TCP stream to host:port through the proxy. Raises TransportError."""
    if proxy.scheme == "http":
        return await _http_connect(proxy, host, port)
    return await _socks5(proxy, host, port)


async def _http_connect(proxy: Proxy, host: str, port: int) -> anyio.abc.SocketStream:
    try:
        stream = await anyio.connect_tcp(proxy.host, proxy.port)
    except OSError as e:
        raise TransportError(f"cannot reach proxy {proxy}: {reach_error(e)}") from None
    try:
        await _http_tunnel(stream, proxy, host, port)
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _quiet_close(stream)
        raise
    return stream


async def _http_tunnel(stream: anyio.abc.SocketStream, proxy: Proxy, host: str,
                       port: int) -> None:
    try:
        target = authority(host.encode("idna").decode("ascii"), port)
    except UnicodeError:
        raise TransportError(f"cannot ask proxy {proxy} for '{host}': not a valid host "
                             "name") from None
    headers = [("Host", target)]
    if proxy.username is not None:
        token = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode()
        headers.append(("Proxy-Authorization", f"Basic {token}"))
    conn = h11.Connection(h11.CLIENT)
    data = conn.send(h11.Request(method="CONNECT", target=target, headers=headers))
    data += conn.send(h11.EndOfMessage())  # type: ignore[operator]
    try:
        await stream.send(data)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                try:
                    chunk = await stream.receive(READ_SIZE)
                except anyio.EndOfStream:
                    chunk = b""
                if not chunk:
                    raise TransportError(f"proxy {proxy} closed the connection before "
                                         "answering the tunnel request")
                conn.receive_data(chunk)
            elif isinstance(event, h11.Response):
                break
    except h11.RemoteProtocolError as e:
        raise TransportError(f"proxy {proxy} did not answer in HTTP: {e}") from None
    except STREAM_ERRORS as e:
        raise TransportError(f"proxy {proxy}: the connection was lost during the tunnel "
                             f"request ({reach_error(e) if isinstance(e, OSError) else e})"
                             ) from None
    status = event.status_code
    if not 200 <= status < 300:
        reason = event.reason.decode("latin-1").strip() or _phrase(status)
        answer = f"{status} {reason}".strip()
        if status == 407:
            answer += (" (it did not take the credentials)" if proxy.username is not None
                       else " (the proxy url has no user:pass@)")
        raise TransportError(f"proxy {proxy} refused the tunnel: {answer}")
    if conn.trailing_data[0]:  # the server speaks after our handshake, never before it
        raise TransportError(f"proxy {proxy} sent data before the tunnel was in use")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


_SOCKS_REPLIES = {  # RFC 1928 §6
    1: "general SOCKS server failure",
    2: "connection not allowed by its rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused by the server",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


async def _socks5(proxy: Proxy, host: str, port: int) -> anyio.abc.SocketStream:
    from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
    from python_socks.async_.anyio import Proxy as SocksProxy

    socks = SocksProxy(ProxyType.SOCKS5, proxy.host, proxy.port, proxy.username,
                       proxy.password, rdns=proxy.scheme == "socks5h")
    try:
        # connect_timeout bounds it from outside (python-socks' own default is 60s)
        return await socks.connect(host, port, timeout=math.inf)
    except ProxyConnectionError as e:
        raise TransportError(f"cannot reach proxy {proxy}: {reach_error(e)}") from None
    except ProxyTimeoutError:  # (not with an infinite timeout)
        raise TransportError(f"proxy {proxy} did not answer in time") from None
    except ProxyError as e:
        raise TransportError(f"proxy {proxy} refused the tunnel: {_socks_words(e)}"
                             ) from None
    except socket.gaierror:  # socks5: the name is resolved here
        raise TransportError(f"cannot resolve the host name '{host}' (socks5:// resolves "
                             "names here; socks5h:// lets the proxy resolve them)") from None
    except STREAM_ERRORS as e:
        raise TransportError(f"proxy {proxy}: the connection was lost during the SOCKS "
                             f"handshake ({reach_error(e) if isinstance(e, OSError) else e})"
                             ) from None


def _socks_words(e: Exception) -> str:
    code = getattr(e, "error_code", None)
    if code in _SOCKS_REPLIES:
        return f"{_SOCKS_REPLIES[code]} (SOCKS reply {code})"
    text = str(e)
    if "authentication failure" in text:
        return "it did not take the user name and password"
    if "No acceptable authentication methods" in text:
        return "it takes none of the offered ways to authenticate (a user:pass@ missing?)"
    if "Unexpected SOCKS version" in text:
        return "it does not speak SOCKS5 (is it an http:// proxy?)"
    if "closed unexpectedly" in text:
        return "it closed the connection during the SOCKS handshake"
    return text[:1].lower() + text[1:] if text else type(e).__name__


def reach_error(e: OSError) -> str:
    """The innermost OSError of a chain, in words."""
    cause: BaseException = e
    while True:
        inner = cause.__cause__
        if isinstance(inner, BaseExceptionGroup):  # anyio: several addresses, all failed
            inner = next((x for x in inner.exceptions if isinstance(x, OSError)), None)
        if not isinstance(inner, OSError):
            break
        cause = inner
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return "cannot resolve its host name"
    if isinstance(cause, TimeoutError):
        return "connect timed out"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror[:1].lower() + cause.strerror[1:]
    return str(cause) or type(cause).__name__


async def _quiet_close(stream: anyio.abc.ByteStream) -> None:
    with anyio.move_on_after(1):
        try:
            await stream.aclose()
        except STREAM_ERRORS:
            pass
