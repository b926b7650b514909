"""The server role over TLS (wss): `certfile` and `keyfile`, with a trustme certificate.

The clients are the `websockets` library (verifying the server against the trustme CA), an
evt `connection` with `ca_file` in the same script, and raw sockets that do not speak TLS.
The script runs in this process beside the test (`serving`, from test_server.py).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import anyio
import pytest
import trustme
from helpers.server import T, client, closed_code, recv, serving
from websockets.exceptions import InvalidHandshake, InvalidMessage

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pki(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    """The server's certificate chain and key, and the CA, as PEM files."""
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return {"cert": str(certfile), "key": str(keyfile), "ca": str(cafile)}


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def tls_server(pki: dict[str, str], extra: str = "") -> str:
    return f"""
        server srv {{
            listen = "127.0.0.1:0"
            certfile = "{pki['cert']}"
            keyfile = "{pki['key']}"
            {extra}
        }}
        on project start {{ start srv }}
        on websocket start srv from p {{ print "start", p.id }}
        on websocket receive srv as m from p {{
            if m == "quit" {{ after 0ms {{ stop srv }} }}
            send p m
        }}
    """


async def test_wss_echo_with_a_verifying_websockets_client(pki: dict[str, str],
                                                           ca: trustme.CA,
                                                           tmp_path: Path) -> None:
    async with serving(tls_server(pki), tmp_path) as run:
        url = await run.url()
        assert url.startswith("wss://127.0.0.1:")
        assert f"srv: listening on {url}" in run.err.getvalue()
        async with client(url, ssl=trusting(ca)) as ws:
            for message in ["hello over tls", b"\x00\xffbinary", "x" * 200_000]:
                await ws.send(message)
                assert await recv(ws) == message
            # a client that does not trust the CA refuses the server
            with pytest.raises(ssl.SSLCertVerificationError):
                async with client(url, ssl=ssl.create_default_context()):
                    pass
            await ws.send("still here")
            assert await recv(ws) == "still here"
            await ws.send("quit")
            assert (await closed_code(ws))[0] == 1001
    res = run.result
    assert res.code == 0, res.err
    assert len(res.lines) == 1  # the distrusting client never became a peer


async def test_evt_client_with_ca_file_talks_to_the_evt_wss_server(pki: dict[str, str],
                                                                   tmp_path: Path) -> None:
    source = f"""
        server srv {{
            listen = "127.0.0.1:0"
            certfile = "{pki['cert']}"
            keyfile = "{pki['key']}"
        }}
        connection cli {{
            url = "wss://${{address(srv)}}/secure?via=evt"
            ca_file = "{pki['ca']}"
        }}
        connection untrusting {{
            url = "wss://${{address(srv)}}/"
        }}
        on project start {{
            start srv
            start cli
            start untrusting
        }}
        on websocket receive srv as m from p {{
            send p "echo ${{p.path}} ${{p.query.via}}: ${{m}}"
        }}
        on websocket start cli {{ send cli "hello" }}
        on websocket receive cli as m {{
            print "cli got", m
            stop cli
        }}
        on websocket stop cli as c {{ print "cli stop", c.clean }}
        let finished = 0
        on websocket error untrusting as e {{
            print "untrusting:", e
            emit finish
        }}
        on websocket stop srv from p {{ emit finish }}
        on event finish {{
            finished = finished + 1
            if finished == 2 {{ stop srv }}
        }}
    """
    async with serving(source, tmp_path) as run:
        res = await run.wait()
    assert res.code == 0, res.err
    assert "cli got echo /secure evt: hello" in res.lines
    assert "cli stop true" in res.lines
    [error] = [line for line in res.lines if line.startswith("untrusting:")]
    assert "certificate" in error.lower(), error


async def test_plain_connect_to_the_wss_port_is_dropped(pki: dict[str, str], ca: trustme.CA,
                                                        tmp_path: Path) -> None:
    # a handshake_timeout that a busy machine's TLS handshakes fit in (500ms left little room)
    async with serving(tls_server(pki, "handshake_timeout = 2s"), tmp_path) as run:
        url = await run.url()
        port = await run.port()
        plain = url.replace("wss://", "ws://")
        with anyio.fail_after(T), pytest.raises((InvalidHandshake, InvalidMessage, OSError,
                                                 EOFError)):
            async with client(plain):
                pass
        # raw TCP: plain HTTP, garbage, and a client that says nothing (handshake_timeout)
        for hello in (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"\x00" * 64, b""):
            async with await anyio.connect_tcp("127.0.0.1", port) as raw:
                if hello:
                    await raw.send(hello)
                with anyio.fail_after(T):
                    try:
                        while True:
                            data = await raw.receive()
                            assert not data.startswith(b"HTTP/") or hello.startswith(b"GET"), data
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        pass
        async with client(url, ssl=trusting(ca)) as ws:  # the server is still serving
            await ws.send("ok")
            assert await recv(ws) == "ok"
            await ws.send("quit")
            assert (await closed_code(ws))[0] == 1001
    res = run.result
    assert res.code == 0, res.err
    assert "internal error" not in res.err
    assert len(res.lines) == 1
