"""A misbehaving TLS client built on tlslite-ng, an implementation independent of rustls.

Driven by tests/alerts.rs: `misbehaving_client.py CASE ADDR CERT KEY` runs one case against
ringtls at ADDR (host:port) and prints one JSON line: {"case", "outcome", "received"}, where
`outcome` is "alert" (received is the description the client got, as a number), "closed"
(the server closed without an alert), "handshake" (the server answered with its flight) or
"established" (a full handshake and an echo round trip). `--list` prints the case names;
`boundary ADDR` prints the largest ClientHello (handshake message, header included) the server
still answers when it comes in 16 KiB records.

Some cases use tlslite's TLSConnection with a hook (a corrupted Finished, a record injected
after the ClientHello, a padded ClientHello), so the alert is read the way a real client reads
it, decrypted; the others write raw records built from tlslite's message classes, and read
the server's plaintext answer.
"""

import json
import os
import socket
import sys

from tlslite.api import TLSConnection, X509CertChain, parsePEMKey, HandshakeSettings
from tlslite.constants import CipherSuite, GroupName, SignatureScheme
from tlslite.errors import TLSRemoteAlert, TLSAbruptCloseError
from tlslite.extensions import (
    ClientKeyShareExtension,
    KeyShareEntry,
    SignatureAlgorithmsExtension,
    SupportedGroupsExtension,
    SupportedVersionsExtension,
    TLSExtension,
)
from tlslite.messages import ClientHello, Finished

TIMEOUT = 10
# A private-use extension type (RFC 8446 §4.2: unknown extensions are ignored).
PAD_EXTENSION = 0xFE00
RECORD = 16384

# What the TLSConnection hooks do on the next handshake.
HOOK = {"corrupt_finished": False, "after_client_hello": None, "client_hello_size": None}

_send_msg = TLSConnection._sendMsg


def _hooked_send_msg(self, msg, randomizeFirstBlock=True, update_hashes=True):
    if isinstance(msg, ClientHello) and HOOK["client_hello_size"]:
        pad = HOOK["client_hello_size"] - len(msg.write()) - 4
        msg.extensions.append(TLSExtension(extType=PAD_EXTENSION).create(b"\0" * pad))
        assert len(msg.write()) == HOOK["client_hello_size"]
    for result in _send_msg(self, msg, randomizeFirstBlock, update_hashes):
        yield result
    if isinstance(msg, ClientHello) and HOOK["after_client_hello"]:
        self.sock.sendall(HOOK["after_client_hello"])


_finished_create = Finished.create


def _hooked_finished_create(self, verify_data):
    if HOOK["corrupt_finished"]:
        verify_data = bytearray(verify_data)
        verify_data[0] ^= 0x01
    return _finished_create(self, verify_data)


TLSConnection._sendMsg = _hooked_send_msg
Finished.create = _hooked_finished_create


def connect(addr):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def tls_case(addr, cert, key, present_cert=True, version=(3, 4)):
    """A handshake through tlslite (hooks applied), then an echo round trip."""
    chain = X509CertChain()
    chain.parsePemList(open(cert).read())
    private = parsePEMKey(open(key).read(), private=True)
    settings = HandshakeSettings()
    settings.minVersion = version
    settings.maxVersion = version
    # tlslite 0.8 compresses its certificate whenever its own ClientHello offered compression,
    # not only when the CertificateRequest asks for it (RFC 8879 §3); rustls rightly refuses.
    settings.certificate_compression_send = []
    conn = TLSConnection(connect(addr))
    try:
        if present_cert:
            conn.handshakeClientCert(chain, private, settings=settings, serverName="localhost")
        else:
            conn.handshakeClientCert(settings=settings, serverName="localhost")
        conn.write(b"ringtls-probe\n")
        got = b""
        while len(got) < 14:
            data = conn.read()
            if not data:
                return ("closed", None)
            got += data
        return ("established", None)
    except TLSRemoteAlert as e:
        return ("alert", e.description)
    except (TLSAbruptCloseError, ConnectionError, socket.timeout):
        return ("closed", None)


def client_hello(size=None):
    """A TLS 1.3 ClientHello handshake message (header included), padded to `size` bytes."""
    hello = ClientHello()
    extensions = [
        SupportedVersionsExtension().create([(3, 4), (3, 3)]),
        SupportedGroupsExtension().create([GroupName.x25519]),
        ClientKeyShareExtension().create(
            [KeyShareEntry().create(GroupName.x25519, os.urandom(32))]
        ),
        SignatureAlgorithmsExtension().create(
            [SignatureScheme.ecdsa_secp256r1_sha256, SignatureScheme.rsa_pss_rsae_sha256]
        ),
    ]
    hello.create((3, 3), os.urandom(32), os.urandom(32),
                 [CipherSuite.TLS_AES_128_GCM_SHA256], extensions=extensions)
    if size:
        pad = size - len(hello.write()) - 4
        hello.extensions.append(TLSExtension(extType=PAD_EXTENSION).create(b"\0" * pad))
    return bytes(hello.write())


def records(content_type, payload, fragment=RECORD):
    out = b""
    for i in range(0, max(len(payload), 1), fragment):
        chunk = payload[i:i + fragment]
        out += bytes([content_type, 3, 1]) + len(chunk).to_bytes(2, "big") + chunk
    return out


def raw_case(addr, data, half_close=True):
    """Writes `data`, then reads the server's answer until it closes."""
    sock = connect(addr)
    try:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
    except ConnectionError:
        pass
    back = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            back += chunk
    except (ConnectionError, socket.timeout):
        pass
    sock.close()
    handshake = False
    while len(back) >= 5:
        length = int.from_bytes(back[3:5], "big")
        body = back[5:5 + length]
        if back[0] == 21 and len(body) == 2:
            return ("alert", body[1])
        if back[0] == 22:
            handshake = True
        back = back[5 + length:]
    return ("handshake", None) if handshake else ("closed", None)


def malformed_hello():
    """A ClientHello with a byte after its extensions: its lengths do not add up."""
    hello = bytearray(client_hello())
    hello += b"\0"
    hello[1:4] = (len(hello) - 4).to_bytes(3, "big")
    return records(22, bytes(hello))


def boundary(addr):
    """The largest ClientHello the server answers, by bisection (16 KiB records)."""
    low, high = 1024, 65540
    while high - low > 1:
        mid = (low + high) // 2
        outcome, _ = raw_case(addr, records(22, client_hello(mid)))
        if outcome == "handshake":
            low = mid
        else:
            high = mid
    return low


def cases(addr, cert, key):
    return {
        "bad_finished": lambda: with_hook(corrupt_finished=True)(
            lambda: tls_case(addr, cert, key)),
        "ccs_after_client_hello": lambda: with_hook(
            after_client_hello=bytes([20, 3, 3, 0, 2, 1, 1]))(
            lambda: tls_case(addr, cert, key)),
        "no_certificate": lambda: tls_case(addr, cert, key, present_cert=False),
        # TLS 1.2: the server's alerts before its own ChangeCipherSpec are plaintext.
        "bad_finished_tls12": lambda: with_hook(corrupt_finished=True)(
            lambda: tls_case(addr, cert, key, version=(3, 3))),
        "no_certificate_tls12": lambda: tls_case(
            addr, cert, key, present_cert=False, version=(3, 3)),
        "application_data_first": lambda: raw_case(addr, records(23, b"hello")),
        # A fatal alert of the client's own: RFC 8446 §6.2 wants no answer.
        "alert_first": lambda: raw_case(addr, records(21, bytes([2, 40]))),
        "heartbeat_first": lambda: raw_case(addr, records(24, b"\x01\x00\x10" + b"\0" * 16)),
        "plaintext_http": lambda: raw_case(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        "malformed_client_hello": lambda: raw_case(addr, malformed_hello()),
        "client_hello_announcing_over_64k": lambda: raw_case(
            addr, bytes([22, 3, 1, 0, 4, 1, 1, 0, 0])),
        "truncated_client_hello": lambda: raw_case(addr, records(22, client_hello())[:60]),
        "client_hello_just_under_64k": lambda: with_hook(client_hello_size=65515)(
            lambda: tls_case(addr, cert, key)),
        "client_hello_just_over_64k": lambda: with_hook(client_hello_size=65516)(
            lambda: tls_case(addr, cert, key)),
    }


def with_hook(**hook):
    def run(case):
        saved = dict(HOOK)
        HOOK.update(hook)
        try:
            return case()
        finally:
            HOOK.clear()
            HOOK.update(saved)
    return run


def main(argv):
    if argv[1:2] == ["--list"]:
        print("\n".join(cases(None, None, None)))
        return
    if argv[1] == "boundary":
        print(json.dumps({"boundary": boundary(argv[2])}))
        return
    name, addr, cert, key = argv[1:5]
    outcome, received = cases(addr, cert, key)[name]()
    print(json.dumps({"case": name, "outcome": outcome, "received": received}))


if __name__ == "__main__":
    main(sys.argv)
