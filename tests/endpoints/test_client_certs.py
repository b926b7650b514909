"""Client certificates (SPEC §15): mutual TLS both ways with trustme certificates.

- evt clients (`certfile`, `keyfile`) against `websockets` servers whose ssl context requires
  a client certificate (CERT_REQUIRED and the trustme CA), over TLS 1.3 (the server refuses
  after the handshake, in an alert the client reads) and TLS 1.2 (during it);
- `websockets` clients with and without a certificate against evt servers with `client_ca`
  and `verify_client = true` or `"optional"`, and `p.cert`;
- an evt client to an evt server, both sides evt;
- the files that cannot be used (missing, mismatched, encrypted, no key), and the check errors
  of the keys.

Every wait is an event with a bound (anyio.fail_after, the helpers' T), no sleeps.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from helpers import run_evt
from helpers.server import T, client, recv, serving
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import InvalidMessage, InvalidStatus

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def stranger() -> trustme.CA:
    """A CA nobody here trusts."""
    return trustme.CA()


@pytest.fixture
def pki(ca: trustme.CA, stranger: trustme.CA, tmp_path: Path) -> dict[str, str]:
    """PEM files: the CA, the server's chain and key (127.0.0.1), the client "ana"'s
    certificate and key (apart and together), a key of another certificate, ana's key
    encrypted, and a certificate of the untrusted CA with its key."""
    files: dict[str, str] = {}

    def write(name: str, data: bytes) -> None:
        path = tmp_path / f"{name}.pem"
        path.write_bytes(data)
        files[name] = str(path)

    write("ca", ca.cert_pem.bytes())
    server = ca.issue_cert("127.0.0.1", "localhost")
    write("server_cert", b"".join(blob.bytes() for blob in server.cert_chain_pems))
    write("server_key", server.private_key_pem.bytes())
    ana = ca.issue_cert("ana@example.org", common_name="ana")
    write("cert", ana.cert_chain_pems[0].bytes())
    write("key", ana.private_key_pem.bytes())
    write("both", ana.private_key_and_cert_chain_pem.bytes())
    write("other_key", ca.issue_cert("bob@example.org").private_key_pem.bytes())
    key = serialization.load_pem_private_key(ana.private_key_pem.bytes(), None)
    write("encrypted_key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    eve = stranger.issue_cert("eve@example.org", common_name="eve")
    write("eve_cert", eve.cert_chain_pems[0].bytes())
    write("eve_key", eve.private_key_pem.bytes())
    return files


# ---------------------------------------------------------------- evt client, websockets server


def requiring(ca: trustme.CA, tls12: bool = False) -> ssl.SSLContext:
    """A websockets server's context: requires a client certificate of the trustme CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


@asynccontextmanager
async def mtls_server(ctx: ssl.SSLContext) -> AsyncIterator[int]:
    """A websockets server that answers each message with the client certificate's
    commonName."""
    async def who(ws: ServerConnection) -> None:
        cert = ws.transport.get_extra_info("peercert")
        names = dict(rdn[0] for rdn in cert["subject"])
        async for _ in ws:
            await ws.send(f"you are {names['commonName']}")

    async with serve(who, "127.0.0.1", 0, ssl=ctx) as server:
        yield server.sockets[0].getsockname()[1]


CLIENT = """
    connection c {
        url = "wss://127.0.0.1:PORT/"
        ca_file = "CA"
        SETTINGS
    }
    on project start { start c }
    on websocket start c { send c "who am I?" }
    on websocket receive c as m { print "got", m; stop c }
    on websocket error c as E { print "error", E }
    on websocket stop c as C { print "stop", C.code }
"""


async def run_client(port: int, pki: dict[str, str], settings: str) -> Any:
    source = CLIENT.replace("PORT", str(port)).replace("CA", pki["ca"])
    for name, path in pki.items():
        settings = settings.replace(f"<{name}>", path)
    return await run_evt(source.replace("SETTINGS", settings), tmp_path=Path(pki["ca"]).parent)


async def test_a_client_certificate_and_its_key_are_accepted(ca: trustme.CA,
                                                             pki: dict[str, str]) -> None:
    async with mtls_server(requiring(ca)) as port:
        r = await run_client(port, pki, 'certfile = "<cert>"\n keyfile = "<key>"')
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["got you are ana", "stop 1000"]


async def test_a_certfile_holding_its_key_needs_no_keyfile(ca: trustme.CA,
                                                           pki: dict[str, str]) -> None:
    for tls12 in (False, True):
        async with mtls_server(requiring(ca, tls12)) as port:
            r = await run_client(port, pki, 'certfile = "<both>"')
        assert (r.code, r.err) == (0, "")
        assert r.lines == ["got you are ana", "stop 1000"]


async def test_without_a_certificate_or_with_an_untrusted_one(ca: trustme.CA,
                                                              pki: dict[str, str]) -> None:
    """The websockets server (asyncio's TLS) hangs up without an alert: over TLS 1.3 the
    client's handshake is over by then, and the first read ends; over TLS 1.2 the TLS
    handshake itself ends."""
    eve = 'certfile = "<eve_cert>"\n keyfile = "<eve_key>"'
    for tls12, settings, words in [
            (False, "", "the server closed the connection during the handshake; does it "
                        "require a client certificate (certfile)?"),
            (False, eve, "the server closed the connection during the handshake; did it "
                         "refuse the client certificate?"),
            (True, "", "TLS failed: the server closed the connection during the TLS "
                       "handshake"),
            (True, eve, "TLS failed: the server closed the connection during the TLS "
                        "handshake")]:
        async with mtls_server(requiring(ca, tls12)) as port:
            r = await run_client(port, pki, settings)
        assert (r.code, r.err) == (0, "")
        assert r.lines == [f"error c: {words} (wss://127.0.0.1:{port}/)"], (tls12, settings)


@asynccontextmanager
async def alerting_server(ctx: ssl.SSLContext) -> AsyncIterator[int]:
    """A TLS listener that sends OpenSSL's alert when it refuses a client (as most servers
    do: evt's own with lang.wire.server.tls_accept)."""
    from lang.wire.server import tls_accept

    async def handle(stream: anyio.abc.SocketStream) -> None:
        with anyio.fail_after(T):
            try:
                tls = await tls_accept(stream, ctx)
            except ssl.SSLError:
                await stream.aclose()
                return
            await tls.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield listener.extra(anyio.abc.SocketAttribute.local_port)
        finally:
            tg.cancel_scope.cancel()


@pytest.mark.parametrize(("tls12", "eve", "words"), [
    (False, False, "the server requires a client certificate (TLS alert: certificate "
                   "required): set certfile (and keyfile)"),
    (False, True, "the server refused the client certificate (TLS alert: unknown CA)"),
    (True, False, "TLS failed: the server ended the TLS handshake (TLS alert: handshake "
                  "failure); does the server require a client certificate (certfile)?"),
    (True, True, "the server refused the client certificate (TLS alert: unknown CA)"),
])
async def test_the_server_s_tls_alert_in_words(ca: trustme.CA, pki: dict[str, str],
                                               tls12: bool, eve: bool, words: str) -> None:
    """TLS 1.3: the alert comes with the first read after the handshake; TLS 1.2: during."""
    settings = 'certfile = "<eve_cert>"\n keyfile = "<eve_key>"' if eve else ""
    async with alerting_server(requiring(ca, tls12)) as port:
        r = await run_client(port, pki, settings)
    assert (r.code, r.err) == (0, "")
    assert r.lines == [f"error c: {words} (wss://127.0.0.1:{port}/)"]


@pytest.mark.parametrize(("settings", "words"), [
    ('certfile = "<missing>"', "cannot read certfile '<missing>': No such file or directory"),
    ('certfile = "<cert>"\n keyfile = "<missing>"',
     "cannot read keyfile '<missing>': No such file or directory"),
    ('certfile = "<cert>"\n keyfile = "<other_key>"',
     "the key in '<other_key>' does not match the certificate in '<cert>'"),
    ('certfile = "<cert>"', "certfile '<cert>' holds no private key: set keyfile"),
    ('certfile = "<key>"\n keyfile = "<key>"',
     "certfile '<key>' holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
    ('certfile = "<cert>"\n keyfile = "<cert>"', "keyfile '<cert>' holds no PEM private key"),
    ('certfile = "<cert>"\n keyfile = "<encrypted_key>"',
     "the key in '<encrypted_key>' is encrypted (protected by a passphrase): evt needs an "
     "unencrypted key"),
])
async def test_files_that_cannot_be_used_are_error_events_naming_them(
        ca: trustme.CA, pki: dict[str, str], settings: str, words: str) -> None:
    pki = {**pki, "missing": str(Path(pki["ca"]).parent / "missing.pem")}
    for name, path in pki.items():
        words = words.replace(f"<{name}>", path)
    async with mtls_server(requiring(ca)) as port:
        r = await run_client(port, pki, settings)
    assert (r.code, r.err) == (0, "")
    assert r.lines == [f"error c: {words} (wss://127.0.0.1:{port}/)"]


async def test_a_certfile_on_a_computed_ws_url_is_an_error_event(pki: dict[str, str],
                                                                 tmp_path: Path) -> None:
    r = await run_evt(f"""
        let scheme = "ws"
        connection c {{
            url = scheme + "://127.0.0.1:1/"
            certfile = "{pki['cert']}"
            keyfile = "{pki['key']}"
        }}
        on project start {{ start c }}
        on websocket error c as E {{ print "error", E }}
    """, tmp_path=tmp_path)
    assert (r.code, r.err) == (0, "")
    assert r.lines == ["error c: a client certificate ('certfile') needs a wss:// url (ws:// "
                       "has no TLS) (ws://127.0.0.1:1/)"]


# ---------------------------------------------------------------- websockets clients, evt server


def evt_server(pki: dict[str, str], verify: str) -> str:
    return f"""
        server srv {{
            listen = "127.0.0.1:0"
            certfile = "{pki['server_cert']}"
            keyfile = "{pki['server_key']}"
            client_ca = "{pki['ca']}"
            verify_client = {verify}
        }}
        on project start {{ start srv }}
        on websocket start srv from p {{
            if p.cert == null {{ print "start", p.id, "without a certificate" }}
            else {{ print "start", p.id, p.cert.commonName, p.cert.organizationName }}
        }}
        on websocket receive srv as m from p {{
            if m == "quit" {{ stop srv }}
            else if p.cert == null {{ send p "hello stranger" }}
            else {{ send p "hello ${{p.cert.commonName}}" }}
        }}
    """


def client_context(ca: trustme.CA, cert: str | None = None, key: str | None = None
                   ) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


async def hello(url: str, ctx: ssl.SSLContext) -> str | bytes:
    async with client(url, ssl=ctx) as ws:
        await ws.send("hi")
        return await recv(ws)


async def refused(url: str, ctx: ssl.SSLContext) -> None:
    """The websockets client is refused at TLS. (The evt server sends OpenSSL's alert:
    asyncio's TLS reads it, but the websockets client says only that the connection ended
    before the HTTP response; the evt client's words are tested below.)"""
    with anyio.fail_after(T), pytest.raises((ssl.SSLError, InvalidMessage, OSError)):
        async with client(url, ssl=ctx):
            pass


async def quit_server(url: str, ctx: ssl.SSLContext) -> None:
    async with client(url, ssl=ctx) as ws:
        await ws.send("quit")


async def test_verify_client_true_requires_a_certificate_of_the_ca(
        ca: trustme.CA, stranger: trustme.CA, pki: dict[str, str], tmp_path: Path) -> None:
    ana = client_context(ca, pki["cert"], pki["key"])
    async with serving(evt_server(pki, "true"), tmp_path) as run:
        url = await run.url()
        assert url.startswith("wss://")
        assert await hello(url, ana) == "hello ana"
        # no certificate: the alert reaches the client (anyio's TLS would just hang up)
        await refused(url, client_context(ca))
        eve = client_context(ca, pki["eve_cert"], pki["eve_key"])
        await refused(url, eve)
        assert await hello(url, ana) == "hello ana"  # the server goes on
        await quit_server(url, ana)
    r = run.result
    assert r.code == 0
    assert r.err.splitlines() == [f"srv: listening on {url}"]  # refusals: only with -v
    assert r.lines == ["start 1 ana trustme v1.2.1", "start 2 ana trustme v1.2.1",
                       "start 3 ana trustme v1.2.1"]


async def test_verify_client_optional_takes_clients_without_one(
        ca: trustme.CA, pki: dict[str, str], tmp_path: Path) -> None:
    ana = client_context(ca, pki["cert"], pki["key"])
    async with serving(evt_server(pki, '"optional"'), tmp_path) as run:
        url = await run.url()
        assert await hello(url, client_context(ca)) == "hello stranger"
        assert await hello(url, ana) == "hello ana"
        # a certificate that is given is checked
        eve = client_context(ca, pki["eve_cert"], pki["eve_key"])
        await refused(url, eve)
        await quit_server(url, client_context(ca))
    r = run.result
    assert r.code == 0, r.err
    assert r.lines == ["start 1 without a certificate", "start 2 ana trustme v1.2.1",
                       "start 3 without a certificate"]


async def test_p_cert_is_the_whole_subject_and_read_only(ca: trustme.CA, pki: dict[str, str],
                                                         tmp_path: Path) -> None:
    source = f"""
        server srv {{
            listen = "127.0.0.1:0"
            certfile = "{pki['server_cert']}"
            keyfile = "{pki['server_key']}"
            client_ca = "{pki['ca']}"
            verify_client = true
        }}
        on project start {{ start srv }}
        on websocket start srv from p {{
            print type(p.cert), keys(p.cert)
            p.cert = {{commonName: "root"}}
        }}
        on websocket stop srv from p {{ print "stop", p.cert.commonName; stop srv }}
    """
    async with serving(source, tmp_path) as run:
        url = await run.url()
        async with client(url, ssl=client_context(ca, pki["both"])):
            await run.wait_output("map")
    r = run.result
    assert r.lines == ['map ["organizationName", "organizationalUnitName", "commonName"]',
                       "stop ana"]  # after the close too
    assert r.code == 1  # the runtime error
    assert "runtime error: a peer's 'cert' is read-only" in r.err, r.err


async def test_p_cert_is_null_without_client_verification(ca: trustme.CA, pki: dict[str, str],
                                                          tmp_path: Path) -> None:
    """A wss server that does not ask (verify_client unset) and a plain ws server."""
    source = f"""
        server tls {{
            listen = "127.0.0.1:0"
            certfile = "{pki['server_cert']}"
            keyfile = "{pki['server_key']}"
        }}
        server plain {{ listen = "127.0.0.1:0" }}
        on project start {{ start tls; start plain }}
        on websocket start tls from p {{ print "tls", p.cert }}
        on websocket start plain from p {{ print "plain", p.cert }}
        on websocket receive tls as m {{ stop tls; stop plain }}
    """
    async with serving(source, tmp_path) as run:
        tls, plain = await run.url("tls"), await run.url("plain")
        async with client(plain):
            await run.wait_output("plain null")
        async with client(tls, ssl=client_context(ca, pki["both"])) as ws:
            await run.wait_output("tls null")
            await ws.send("done")
    assert run.result.code == 0, run.result.err


# ---------------------------------------------------------------- evt on both sides


def both_sides(pki: dict[str, str], settings: str) -> str:
    return f"""
        server srv {{
            listen = "127.0.0.1:0"
            certfile = "{pki['server_cert']}"
            keyfile = "{pki['server_key']}"
            client_ca = "{pki['ca']}"
            verify_client = true
        }}
        connection c {{
            url = "wss://${{address(srv)}}/"
            ca_file = "{pki['ca']}"
            {settings}
        }}
        on project start {{ start srv; start c }}
        on websocket start srv from p {{ print "peer", p.cert.commonName }}
        on websocket start c {{ stop c }}
        on websocket stop c {{ stop srv }}
        on websocket error c as E {{ print "error", E; stop srv }}
    """


async def test_an_evt_client_with_a_certificate_to_an_evt_server(pki: dict[str, str],
                                                                 tmp_path: Path) -> None:
    settings = f'certfile = "{pki["cert"]}"\n keyfile = "{pki["key"]}"'
    r = await run_evt(both_sides(pki, settings), tmp_path=tmp_path)
    assert (r.code, r.lines) == (0, ["peer ana"]), r.err


async def test_an_evt_client_without_one_hears_why(pki: dict[str, str], tmp_path: Path) -> None:
    """The evt server sends OpenSSL's alert; with -v it says why it dropped the client."""
    r = await run_evt(both_sides(pki, ""), tmp_path=tmp_path, verbose=True)
    assert r.code == 0
    [error] = r.lines
    assert error.startswith("error c: the server requires a client certificate (TLS alert: "
                            "certificate required): set certfile (and keyfile) (wss://")
    assert ": TLS handshake failed: the client gave no certificate (verify_client = true " \
           "requires one)" in r.err, r.err


async def test_a_server_whose_client_ca_cannot_be_read(pki: dict[str, str],
                                                       tmp_path: Path) -> None:
    for ca_file, words in [(str(tmp_path / "nope.pem"), "cannot read client_ca '{}': No such "
                                                        "file or directory"),
                           (pki["key"], "client_ca '{}' holds no PEM certificate")]:
        r = await run_evt(f"""
            server srv {{
                listen = "127.0.0.1:0"
                certfile = "{pki['server_cert']}"
                keyfile = "{pki['server_key']}"
                client_ca = "{ca_file}"
                verify_client = true
            }}
            on project start {{ start srv }}
            on websocket error srv as E {{ print E }}
        """, tmp_path=tmp_path)
        assert r.code == 0, r.err
        [line] = r.lines
        assert line.startswith("srv: cannot listen on 127.0.0.1:0: " + words.format(ca_file))


async def test_computed_settings_are_judged_when_the_server_starts(pki: dict[str, str],
                                                                   tmp_path: Path) -> None:
    r = await run_evt("""
        let strict = true
        server srv {
            listen = "127.0.0.1:0"
            verify_client = strict
        }
        on project start { start srv }
        on websocket error srv as E { print E }
    """, tmp_path=tmp_path)
    assert r.code == 0, r.err
    assert r.lines == ["srv: cannot listen on 127.0.0.1:0: server 'srv': 'verify_client' "
                       "needs 'client_ca' (the CA that signs the client certificates)"]


# ---------------------------------------------------------------- check errors


@pytest.mark.parametrize(("block", "words"), [
    ('server s {\n    listen = "127.0.0.1:0"\n    certfile = "c.pem"\n    keyfile = "k.pem"\n'
     '    client_ca = "ca.pem"\n    verify_client = "yes"\n}\n',
     "6:21: error: 'verify_client' must be true (required), \"optional\" or false, got 'yes'"),
    ('server s {\n    listen = "127.0.0.1:0"\n    certfile = "c.pem"\n    keyfile = "k.pem"\n'
     '    client_ca = "ca.pem"\n    verify_client = 1\n}\n',
     "6:21: error: 'verify_client' must be true (required), \"optional\" or false, got int"),
    ('server s {\n    listen = "127.0.0.1:0"\n    certfile = "c.pem"\n    keyfile = "k.pem"\n'
     '    verify_client = true\n}\n',
     "1:8: error: server 's': 'verify_client' needs 'client_ca' (the CA that signs the "
     "client certificates)"),
    ('server s {\n    listen = "127.0.0.1:0"\n    client_ca = "ca.pem"\n'
     '    verify_client = "optional"\n}\n',
     "1:8: error: server 's': 'client_ca' needs wss ('certfile' and 'keyfile'): client "
     "certificates come with TLS"),
    ('server s {\n    listen = "127.0.0.1:0"\n    certfile = "c.pem"\n    keyfile = "k.pem"\n'
     '    client_ca = "ca.pem"\n}\n',
     "1:8: error: server 's': 'client_ca' alone asks no client for a certificate: add "
     "verify_client = true (required) or \"optional\""),
    ('server s {\n    listen = "127.0.0.1:0"\n    certfile = "c.pem"\n}\n',
     "1:8: error: server 's' needs both 'certfile' and 'keyfile' for wss"),
    ('connection c {\n    url = "ws://127.0.0.1:1/"\n    certfile = "c.pem"\n}\n',
     "1:12: error: connection 'c': a client certificate ('certfile') needs a wss:// url "
     "(ws:// has no TLS)"),
    ('connection c {\n    url = "wss://127.0.0.1:1/"\n    keyfile = "k.pem"\n}\n',
     "1:12: error: connection 'c' has 'keyfile' but no 'certfile' (the client certificate)"),
])
async def test_check_errors(block: str, words: str, tmp_path: Path) -> None:
    r = await run_evt(block, tmp_path=tmp_path)
    assert r.code == 3
    assert r.err.splitlines()[0] == f"{tmp_path / 'test.evt'}:{words}", r.err


@pytest.mark.parametrize("block", [
    'server s {\n    listen = "127.0.0.1:0"\n    certfile = "c.pem"\n    keyfile = "k.pem"\n'
    '    client_ca = "ca.pem"\n    verify_client = VALUE\n}\n',
])
@pytest.mark.parametrize("value", ["true", '"optional"', "false", "null"])
async def test_the_values_verify_client_takes(block: str, value: str, tmp_path: Path) -> None:
    from lang import api

    path = tmp_path / "test.evt"
    path.write_text(block.replace("VALUE", value), encoding="utf-8")
    checked = api.load_and_check(str(path), api.builtins())
    assert checked.syntax is None and not checked.problems, checked.problems


async def test_client_keys_are_known(tmp_path: Path) -> None:
    from lang import api

    path = tmp_path / "test.evt"
    path.write_text('connection c {\n    url = "wss://127.0.0.1:1/"\n    certfile = "c.pem"\n'
                    '    keyfile = "k.pem"\n}\n', encoding="utf-8")
    checked = api.load_and_check(str(path), api.builtins())
    assert checked.syntax is None and not checked.problems, checked.problems


async def test_the_request_handler_reads_r_cert(ca: trustme.CA, pki: dict[str, str],
                                                tmp_path: Path) -> None:
    # SPEC §15: R.cert is the subject as p.cert will be; a handler can refuse by it
    source = evt_server(pki, '"optional"') + """
        on websocket request srv as R {
            if R.cert == null { reject 401, "a certificate, please" }
            R.who = R.cert.commonName
        }
        on websocket start srv from p { send p "you are ${p.who}" }
    """
    ana = client_context(ca, pki["cert"], pki["key"])
    async with serving(source, tmp_path) as run:
        url = await run.url()
        async with client(url, ssl=ana) as ws:
            assert await recv(ws) == "you are ana"
        with pytest.raises(InvalidStatus) as e:
            async with client(url, ssl=client_context(ca)):
                pass
        assert e.value.response.status_code == 401
        await quit_server(url, ana)
    assert run.result.code == 0, run.result.err
