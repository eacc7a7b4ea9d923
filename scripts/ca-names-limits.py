#!/usr/bin/env python3
"""Measures the largest CA-names list (certificate_authorities in CertificateRequest) that each
TLS client on this machine accepts, by bisecting to the byte against `ringtls serve --ca-names
all`. The numbers behind `--ca-names auto`'s limit (src/tls/ca_names.rs, README "Large CA
bundles").

Usage: scripts/ca-names-limits.py [--ringtls target/release/ringtls] [--max 262144]
       [--clients openssl,curl,gnutls,python,java,rustls] [--tls 1.3|1.2]

Needs: python3 with `cryptography` (Debian python3-cryptography), and whichever of openssl,
curl, gnutls-cli (gnutls-bin), java (Java 11+) are installed; rustls is ringtls' own `load`
client. Everything runs on 127.0.0.1, with a PKI made by `ringtls pki` in a temp dir.

How: the bundle is the dev CA, K filler CAs sharing one key, each with a distinct 80-character
CN, and one tail CA whose CN length tunes the total to the byte. `ringtls check` reports the
list size; each client does one request through `serve` to a tiny HTTP upstream, and counts as
accepting when the upstream's answer comes back.
"""

import argparse
import warnings
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# The filler and tail CNs pass ub-common-name (64) on purpose: they only carry bytes.
warnings.filterwarnings("ignore", message="Attribute.s length")
FILLER_CN = 80  # characters: a filler's name costs 80 + 15 bytes in the list
# Tail CN length range: 10..(10 + filler cost) keeps every DER length in one byte.
TAIL_MIN = 10
MARKER = "ringtls-ca-names-ok"
# src/tls/ca_names.rs wire_limit(): the largest list `serve --ca-names all` sends.
WIRE_LIMIT = 65499
# CertificateRequest body = list + this: TLS 1.3 context (1), extensions length (2),
# signature_algorithms (4 + 2 + 2 x 13), certificate_authorities header (4); TLS 1.2
# certificate_types (1 + 2), signature algorithms (2 + 2 x 10).
OVERHEAD = {"1.3": 39, "1.2": 25}
CLIENT_TIMEOUT = 15


def name_cost(cn_len):
    """Bytes one CN-only subject adds to the list: 2 (list entry length) + its DER Name."""
    return cn_len + 13 + 2


class Bundles:
    """Makes CA bundles whose names list is an exact number of bytes."""

    def __init__(self, work, dev_ca_pem):
        self.work = work
        self.dev_ca_pem = dev_ca_pem
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.fillers = []
        self.serial = 1000

    def _ca(self, cn):
        self.serial += 1
        # Past ub-common-name (64): the CN only carries bytes here, nobody reads it.
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)])
        now = datetime.datetime(2020, 1, 1)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(self.serial)
            .not_valid_before(now)
            .not_valid_after(datetime.datetime(2090, 1, 1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    key_cert_sign=True, crl_sign=True, encipher_only=False,
                    decipher_only=False),
                critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def filler(self, i):
        while len(self.fillers) <= i:
            n = len(self.fillers)
            cn = f"ringtls filler CA {n:06d} ".ljust(FILLER_CN, "x")
            self.fillers.append(self._ca(cn))
        return self.fillers[i]

    def write(self, target, base):
        """A bundle whose list is `target` bytes, given the dev CA alone makes `base`."""
        extra = target - base
        per = name_cost(FILLER_CN)
        if extra < name_cost(TAIL_MIN):
            k, tail = 0, None
        else:
            k = (extra - name_cost(TAIL_MIN)) // per
            tail = extra - k * per - 15
        pems = [self.dev_ca_pem] + [self.filler(i) for i in range(k)]
        if tail is not None:
            pems.append(self._ca("t" * tail))
        path = os.path.join(self.work, "bundle.pem")
        with open(path, "w") as f:
            f.write("".join(pems))
        return path


def list_bytes(ringtls, pki, bundle):
    out = subprocess.run(
        [ringtls, "check", "--crt", f"{pki}/server.pem", "--key", f"{pki}/server.key",
         "--mutual-tls-cas", bundle, "--ca-names", "all"],
        capture_output=True, text=True, check=True).stdout
    m = re.search(r"CA names in CertificateRequest .*?: (\d+) names, (\d+) bytes", out)
    return int(m.group(1)), int(m.group(2))


class HttpUpstream:
    """Answers any request with a short HTTP response, then closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.addr = self.sock.getsockname()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn):
        with conn:
            conn.settimeout(10)
            try:
                conn.recv(4096)
                body = MARKER + "\n"
                conn.sendall(
                    f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: close\r\n\r\n{body}".encode())
            except OSError:
                pass


class Server:
    def __init__(self, ringtls, pki, bundle, upstream, tls):
        args = [ringtls, "serve", "--listen", "127.0.0.1:0",
                "--upstream", f"{upstream[0]}:{upstream[1]}",
                "--crt", f"{pki}/server.pem", "--key", f"{pki}/server.key",
                "--mutual-tls-cas", bundle, "--ca-names", "all", "--threads", "1",
                "--ktls", "off", "--tls-min", tls]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        line = self.proc.stdout.readline()  # the readiness line
        if not line:
            raise RuntimeError(f"ringtls serve did not start: {' '.join(args)}")
        host, port = json.loads(line)["listening"][0].rsplit(":", 1)
        self.port = int(port)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run_piped(cmd, stdin_text):
    """Runs a client that takes the request on stdin; success is MARKER on its stdout."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(stdin_text, timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return MARKER in out, (err or out).strip().splitlines()[-1:] if not MARKER in out else []


def client_openssl(pki, port, tls):
    # -ign_eof: keep reading after our request until the server closes.
    return run_piped(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-quiet",
                      "-ign_eof", "-servername", "localhost", "-CAfile", f"{pki}/ca.pem",
                      "-cert", f"{pki}/client.pem", "-key", f"{pki}/client.key",
                      f"-tls{tls.replace('.', '_')}"],
                     "GET / HTTP/1.0\r\n\r\n")


def client_curl(pki, port, tls):
    return run_piped(["curl", "-sS", "--max-time", str(CLIENT_TIMEOUT), "--resolve",
                      f"localhost:{port}:127.0.0.1", "--cacert", f"{pki}/ca.pem",
                      "--cert", f"{pki}/client.pem", "--key", f"{pki}/client.key",
                      "--tlsv" + tls, "--tls-max", tls, f"https://localhost:{port}/"], "")


def client_gnutls(pki, port, tls):
    prio = "NORMAL:-VERS-ALL:+VERS-TLS" + tls
    # gnutls-cli leaves on stdin EOF; the request goes first and the answer arrives before
    # the upstream closes, so give it a short-lived stdin that ends after the answer.
    cmd = ["gnutls-cli", "--port", str(port), "--x509cafile", f"{pki}/ca.pem",
           "--x509certfile", f"{pki}/client.pem", "--x509keyfile", f"{pki}/client.key",
           "--sni-hostname", "localhost", "--verify-hostname", "localhost",
           "--priority", prio, "127.0.0.1"]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdin.write("GET / HTTP/1.0\r\n\r\n")
    p.stdin.flush()
    try:
        out, err = p.communicate(timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    ok = MARKER in out
    return ok, [] if ok else [l for l in (err + out).splitlines() if "rror" in l][-1:]


def client_python(pki, port, tls):
    import ssl
    ctx = ssl.create_default_context(cafile=f"{pki}/ca.pem")
    ctx.load_cert_chain(f"{pki}/client.pem", f"{pki}/client.key")
    v = ssl.TLSVersion.TLSv1_3 if tls == "1.3" else ssl.TLSVersion.TLSv1_2
    ctx.minimum_version = ctx.maximum_version = v
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
        ok = MARKER.encode() in data
        return ok, [] if ok else ["no answer"]
    except (OSError, ssl.SSLError) as e:
        return False, [str(e)]


def client_java(pki, port, tls):
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ca-names", "JavaClient.java")
    return run_piped(["java", f"-Djdk.tls.client.protocols=TLSv{tls}", src, "127.0.0.1",
                      str(port), f"{pki}/ca.pem", f"{pki}/client.pem", f"{pki}/client.key"],
                     "")


def client_rustls(pki, port, tls, ringtls=None):
    out = subprocess.run(
        [ringtls, "load", "--connect", f"127.0.0.1:{port}", "--ca", f"{pki}/ca.pem",
         "--crt", f"{pki}/client.pem", "--key", f"{pki}/client.key", "--mode", "handshake",
         "--duration", "300ms", "--tls", tls, "--json"],
        capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
    try:
        report = json.loads(out.stdout)
    except ValueError:
        return False, (out.stderr.strip().splitlines() or ["no report"])[-1:]
    ok = report.get("ok", 0) > 0 and report.get("failed", 1) == 0
    return ok, [] if ok else [json.dumps(report.get("failures", report))[:200]]


def version(client):
    cmds = {
        "openssl": ["openssl", "version"],
        "curl": ["curl", "--version"],
        "gnutls": ["gnutls-cli", "--version"],
        "java": ["java", "-version"],
    }
    if client == "python":
        import ssl
        return f"Python {sys.version.split()[0]}, {ssl.OPENSSL_VERSION}"
    if client == "rustls":
        return "ringtls load (rustls, see Cargo.lock)"
    p = subprocess.run(cmds[client], capture_output=True, text=True)
    first = (p.stdout + p.stderr).strip().splitlines()[0]
    return " ".join(first.split()[:3]) if client == "curl" else first


CLIENTS = {
    "openssl": ("openssl", client_openssl),
    "curl": ("curl", client_curl),
    "gnutls": ("gnutls-cli", client_gnutls),
    "python": (None, client_python),
    "java": ("java", client_java),
    "rustls": (None, client_rustls),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ringtls", default="target/release/ringtls")
    ap.add_argument("--max", type=int, default=WIRE_LIMIT,
                    help="largest list tried (bytes); a client accepting it is reported as >=. "
                    f"ringtls refuses to send more than {WIRE_LIMIT}, what a TLS 1.3 "
                    "CertificateRequest can encode")
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--tls", default="1.3", choices=["1.2", "1.3"])
    args = ap.parse_args()
    ringtls = os.path.abspath(args.ringtls)
    work = tempfile.mkdtemp(prefix="ringtls-ca-names-")
    pki = os.path.join(work, "pki")
    subprocess.run([ringtls, "pki", pki], check=True, capture_output=True)
    with open(f"{pki}/ca.pem") as f:
        bundles = Bundles(work, f.read())
    _, base = list_bytes(ringtls, pki, f"{pki}/ca.pem")
    upstream = HttpUpstream()
    results = []
    for name in args.clients.split(","):
        program, fn = CLIENTS[name]
        if program and not shutil.which(program):
            print(f"{name}: SKIPPED: {program} not found", file=sys.stderr)
            continue
        if name == "rustls":
            fn = lambda pki, port, tls, f=fn: f(pki, port, tls, ringtls)  # noqa: E731

        def accepts(target):
            bundle = bundles.write(target, base)
            count, got = list_bytes(ringtls, pki, bundle)
            assert got == target, f"bundle for {target} bytes has {got}"
            server = Server(ringtls, pki, bundle, upstream.addr, args.tls)
            try:
                ok, why = fn(pki, server.port, args.tls)
            finally:
                server.stop()
            print(f"  {name}: {target} bytes ({count} names): "
                  f"{'accepted' if ok else 'refused: ' + ' '.join(why)}", file=sys.stderr)
            return ok, why

        ok, why = accepts(base)
        if not ok:
            print(f"{name}: fails even with one CA: {why}", file=sys.stderr)
            continue
        lo, hi = base, args.max
        ok, _ = accepts(hi)
        if ok:
            results.append((name, version(name), f">= {hi}", ""))
            continue
        refusal = ""
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ok, why = accepts(mid)
            if ok:
                lo = mid
            else:
                hi, refusal = mid, " ".join(why)
        results.append((name, version(name), str(lo), refusal))
    print(f"\nTLS {args.tls}; list bytes = what `ringtls check` reports (2-byte length + "
          f"2 + DER subject per CA); CertificateRequest body = list + {OVERHEAD[args.tls]}")
    print("| client | version | largest list accepted (bytes) | CertificateRequest body "
          "| first refusal says |")
    print("|---|---|---|---|---|")
    for name, ver, largest, refusal in results:
        n = int(largest.lstrip(">= "))
        body = largest.replace(str(n), str(n + OVERHEAD[args.tls]))
        print(f"| {name} | {ver} | {largest} | {body} | {refusal} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
