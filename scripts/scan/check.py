#!/usr/bin/env python3
"""Judges testssl.sh's flat JSON (--jsonfile) for scripts/scan.sh and writes its summary.

    check.py [--summary-md FILE] [--meta LINE]... KIND:LABEL=FILE...
    check.py --self-test

KIND is `full` (a default testssl run without a client certificate: protocols, cipher
categories, every cipher, server preferences, certificate, vulnerabilities, client simulations)
or `auth` (a partial run, -S -R, whose openssl presented the client certificate, so the checks
that need a completed handshake ran too: session tickets, resumption, client renegotiation).

A pass FAILS (exit 1) if any finding is MEDIUM, HIGH or CRITICAL (testssl's own grading) and is
not one of FIXTURE_WAIVERS; if SSLv2, SSLv3, TLS 1.0 or TLS 1.1 is anything but "not offered";
if testssl's NULL, aNULL, EXPORT, LOW or 3DES/IDEA cipher category is offered; or if any cipher
the enumeration found is NULL, export, RC4, DES/3DES, IDEA, RC2, MD5 or anonymous. Obsolete CBC
suites (testssl's AVERAGE category) follow testssl's grade, LOW: reported, not failed.
A scan that is unreadable, has a FATAL finding or lacks the findings a kind must have is
incomplete (exit 2): a scan that did not run must not read as a clean one.

Standard library only. --self-test runs the rules on small embedded samples.
"""

import argparse
import json
import re
import sys
from collections import Counter

GATE = ("MEDIUM", "HIGH", "CRITICAL")
# Every severity testssl 3.0 writes, most serious first (WARN: a check it could not run;
# FATAL: the scan itself broke; DEBUG: bookkeeping).
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "WARN", "INFO", "OK", "DEBUG", "FATAL")
OLD_PROTOCOLS = {"SSLv2": "SSLv2", "SSLv3": "SSLv3", "TLS1": "TLS 1.0", "TLS1_1": "TLS 1.1"}
PROTOCOLS = dict(OLD_PROTOCOLS, TLS1_2="TLS 1.2", TLS1_3="TLS 1.3")
WEAK_CATEGORIES = ("cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW",
                   "cipherlist_3DES_IDEA")
CATEGORIES = WEAK_CATEGORIES + ("cipherlist_AVERAGE", "cipherlist_STRONG")
# Matched against the OpenSSL and IANA names of each enumerated cipher (cipher_xNNNN).
WEAK_CIPHER = re.compile(r"NULL|EXP|RC4|DES|IDEA|RC2|MD5|anon|ADH|AECDH", re.IGNORECASE)

# Findings about the throw-away certificate `ringtls pki` writes for the scan, not about
# ringtls: the operator's own certificate replaces it. Exact testssl ids; still printed.
FIXTURE_WAIVERS = {
    "cert_revocation": "the scan's server certificate comes from `ringtls pki`, a dev PKI "
                       "without CRL distribution point or OCSP URI; a deployment brings its "
                       "own certificate, and ringtls serves whatever it is given",
}

REQUIRED = {
    "full": tuple(PROTOCOLS) + CATEGORIES + ("cipher_order", "service", "scanTime"),
    "auth": ("secure_client_renego", "sessionresumption_ticket", "service", "scanTime"),
}

# INFO findings worth a line in the summary (the rest is certificate detail and bookkeeping).
NOTABLE_INFO = ("service", "OCSP_stapling", "certificate_transparency", "ALPN", "DROWN_hint")
# Checks that need a completed handshake: without a client certificate testssl's verdict on them
# ("not supported", even "not vulnerable (OK)") describes the refusal, not the server. They are
# listed as such for full passes and read from the auth pass.
POST_HANDSHAKE = ("TLS_session_ticket", "sessionresumption_ticket", "sessionresumption_ID",
                  "SSL_sessionID_support", "secure_client_renego", "BREACH", "ticketbleed")

CLIENT_AUTH_SEEN = "certificate-based authentication"


class Incomplete(Exception):
    pass


def load(path):
    try:
        with open(path) as f:
            findings = json.load(f)
    except (OSError, ValueError) as e:
        raise Incomplete(f"{path}: not testssl JSON: {e}") from e
    if not isinstance(findings, list) or not all(
            isinstance(x, dict) and {"id", "severity", "finding"} <= x.keys() for x in findings):
        raise Incomplete(f"{path}: expected a list of {{id, severity, finding}} objects")
    return findings


def offered(finding):
    """testssl writes "not offered", "offered", "offered with final", "offered (deprecated)"..."""
    return not finding.strip().lower().startswith("not offered")


def judge(kind, label, findings):
    """The verdict on one pass: a dict the summary is written from."""
    by_id = {}
    for f in findings:
        by_id.setdefault(f["id"], f)
    missing = [i for i in REQUIRED[kind] if i not in by_id]
    if kind == "full" and not any(i.startswith("cipher_x") for i in by_id):
        missing.append("cipher_x* (the cipher enumeration)")
    fatal = [f for f in findings if f["severity"] == "FATAL"]
    problems = []
    if missing:
        problems.append(f"missing findings {', '.join(missing)}: the scan did not complete")
    problems += [f"FATAL {f['id']}: {f['finding']}" for f in fatal]
    # Whether the server demands a certificate is not read from testssl: it notices the
    # CertificateRequest only when its first s_client loses the race with the TLS 1.3 alert
    # (scripts/scan.sh checks mTLS itself, and counts the connections the server admitted).
    service = by_id.get("service", {}).get("finding", "")
    if kind == "auth" and CLIENT_AUTH_SEEN in service:
        problems.append("the client certificate was not presented: testssl still saw client "
                        "authentication as a barrier, so the post-handshake checks did not run")

    failures, waived = [], []
    for f in findings:
        if f["severity"] in GATE:
            if f["id"] in FIXTURE_WAIVERS:
                waived.append(f)
            else:
                failures.append(f"{f['severity']} {f['id']}: {f['finding']}")
    for pid, name in OLD_PROTOCOLS.items():
        if pid in by_id and offered(by_id[pid]["finding"]):
            failures.append(f"{name} is offered: {by_id[pid]['finding']}")
    for cid in WEAK_CATEGORIES:
        if cid in by_id and offered(by_id[cid]["finding"]):
            failures.append(f"weak cipher category {cid} is offered: {by_id[cid]['finding']}")
    ciphers = [f for f in findings if f["id"].startswith("cipher_x")]
    for f in ciphers:
        if WEAK_CIPHER.search(f["finding"]):
            failures.append(f"weak cipher offered: {' '.join(f['finding'].split())}")

    protocols = {name: by_id[pid]["finding"] for pid, name in PROTOCOLS.items() if pid in by_id}
    suites = {f["id"].removeprefix("cipherorder_").replace("v1_", " 1."): f["finding"].split()
              for f in findings if f["id"].startswith("cipherorder_")}
    # Every enumerated cipher must be in a per-protocol order list, or the table hides one.
    listed = {s for names in suites.values() for s in names}
    for f in ciphers:
        fields = f["finding"].split()
        if suites and len(fields) > 1 and fields[1] not in listed:
            failures.append(f"cipher {fields[1]} was enumerated but is in no cipherorder_ list")
    return {
        "kind": kind,
        "label": label,
        "counts": Counter(f["severity"] for f in findings),
        "protocols": protocols,
        "suites": suites,
        "curves": by_id.get("PFS_ECDHE_curves", {}).get("finding", ""),
        "low": [f for f in findings if f["severity"] == "LOW"],
        "warn": [f for f in findings if f["severity"] == "WARN"],
        "info": [by_id[i] for i in NOTABLE_INFO if i in by_id]
        + [by_id[i] for i in POST_HANDSHAKE if i in by_id and kind == "auth"],
        "moot": [by_id[i] for i in POST_HANDSHAKE if i in by_id and kind == "full"
                 and by_id[i]["severity"] not in GATE],
        "no_connection": [f["id"].removeprefix("clientsimulation-") for f in findings
                          if f["id"].startswith("clientsimulation-")
                          and f["finding"].startswith("No connection")],
        "waived": waived,
        "failures": failures,
        "problems": problems,
        "scan_time": by_id.get("scanTime", {}).get("finding", "?"),
    }


def report(verdicts, meta):
    """The summary as Markdown lines (also printed as the script's table)."""
    out = [f"- {m}" for m in meta]
    if meta:
        out.append("")
    out.append("| pass | " + " | ".join(SEVERITIES) + " | scan s |")
    out.append("|---" * (len(SEVERITIES) + 2) + "|")
    for v in verdicts:
        cells = [str(v["counts"].get(s, 0)) for s in SEVERITIES]
        out.append(f"| {v['kind']}:{v['label']} | " + " | ".join(cells) + f" | {v['scan_time']} |")
    for v in verdicts:
        out += ["", f"### {v['kind']}:{v['label']}", ""]
        if v["protocols"]:
            out.append("- protocols: " + ", ".join(
                f"{name} {'offered' if offered(text) else 'not offered'}"
                for name, text in v["protocols"].items()))
        for proto, names in v["suites"].items():
            out.append(f"- {proto} suites, server order: {' '.join(names)}")
        if v["curves"]:
            out.append(f"- key exchange groups: {v['curves']}")
        if v["no_connection"]:
            out.append(f"- simulated clients that cannot connect: {' '.join(v['no_connection'])}")
        for f in v["waived"]:
            out.append(f"- WAIVED {f['severity']} `{f['id']}`: {f['finding']} "
                       f"({FIXTURE_WAIVERS[f['id']]})")
        for f in v["low"]:
            out.append(f"- LOW `{f['id']}`: {f['finding']}")
        for f in v["warn"]:
            out.append(f"- not tested (WARN) `{f['id']}`: {f['finding']}")
        for f in v["info"]:
            out.append(f"- {f['severity']} `{f['id']}`: {' '.join(f['finding'].split())}")
        if v["moot"]:
            out.append("- without a client certificate, so not evidence (see the auth pass): "
                       + "; ".join(f"`{f['id']}` {f['finding']}" for f in v["moot"]))
        for p in v["problems"]:
            out.append(f"- INCOMPLETE: {p}")
        for p in v["failures"]:
            out.append(f"- FAIL: {p}")
        if not v["problems"] and not v["failures"]:
            out.append("- verdict: pass")
    return out


def run(passes, summary_md=None, meta=(), stream=sys.stdout):
    """Judges `passes` [(kind, label, path)]; returns the exit code (0, 1 or 2)."""
    verdicts = []
    for kind, label, path in passes:
        try:
            verdicts.append(judge(kind, label, load(path)))
        except Incomplete as e:
            print(f"scan check: INCOMPLETE: {kind}:{label}: {e}", file=stream)
            return 2
    lines = report(verdicts, meta)
    print("\n".join(lines), file=stream)
    if summary_md:
        with open(summary_md, "w") as f:
            f.write("# testssl.sh scan of ringtls (scripts/scan.sh)\n\n" + "\n".join(lines) + "\n")
    if any(v["problems"] for v in verdicts):
        return 2
    return 1 if any(v["failures"] for v in verdicts) else 0


def parse_pass(arg):
    m = re.fullmatch(r"(full|auth):([\w.-]+)=(.+)", arg)
    if not m:
        raise argparse.ArgumentTypeError(f"{arg!r}: expected KIND:LABEL=FILE, KIND full or auth")
    return m.groups()


# --- self-test -----------------------------------------------------------------------------------
def _f(fid, severity, finding):
    return {"id": fid, "ip": "localhost/127.0.0.1", "port": "8443", "severity": severity,
            "finding": finding}


def _sample_full():
    return [
        _f("service", "INFO", "certificate-based authentication => skipping all HTTP checks"),
        _f("SSLv2", "OK", "not offered"), _f("SSLv3", "OK", "not offered"),
        _f("TLS1", "INFO", "not offered"), _f("TLS1_1", "INFO", "not offered"),
        _f("TLS1_2", "OK", "offered"), _f("TLS1_3", "OK", "offered with final"),
        *[_f(c, "OK", "not offered") for c in WEAK_CATEGORIES + ("cipherlist_AVERAGE",)],
        _f("cipherlist_STRONG", "OK", "offered"),
        _f("cipher_order", "OK", "server"),
        _f("cipherorder_TLSv1_2", "INFO", "ECDHE-ECDSA-AES128-GCM-SHA256"),
        _f("cipherorder_TLSv1_3", "INFO", "TLS_AES_128_GCM_SHA256"),
        _f("cipher_x1301", "INFO", "x1301   TLS_AES_128_GCM_SHA256  ECDH 253  AESGCM  128  "
                                   "TLS_AES_128_GCM_SHA256"),
        _f("cipher_xc02b", "INFO", "xc02b   ECDHE-ECDSA-AES128-GCM-SHA256  ECDH 253  AESGCM  128  "
                                   "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
        _f("cert_revocation", "HIGH", "Neither CRL nor OCSP URI provided"),
        _f("BREACH", "WARN", "client x509-based authentication prevents this from being tested"),
        _f("scanTime", "INFO", "149"),
    ]


def _sample_auth():
    return [_f("service", "DEBUG", "Couldn't determine service, skipping all HTTP checks"),
            _f("secure_client_renego", "OK", "not vulnerable"),
            _f("sessionresumption_ticket", "INFO", "supported"), _f("scanTime", "INFO", "59")]


def self_test():
    import os
    import tempfile

    def code(full, auth=None):
        with tempfile.TemporaryDirectory() as d:
            passes = []
            for kind, sample in (("full", full), ("auth", auth)):
                if sample is None:
                    continue
                path = os.path.join(d, f"{kind}.json")
                with open(path, "w") as f:
                    f.write(sample if isinstance(sample, str) else json.dumps(sample))
                passes.append((kind, "t", path))
            with open(os.devnull, "w") as null:
                return run(passes, stream=null)

    def changed(fid, severity=None, finding=None, sample=None):
        out = []
        for f in sample or _sample_full():
            if f["id"] == fid:
                f = dict(f, severity=severity or f["severity"], finding=finding or f["finding"])
            out.append(f)
        return out

    weak = _sample_full() + [_f("cipher_x0a", "INFO", "x0a  DES-CBC3-SHA  RSA  3DES  168  "
                                                       "TLS_RSA_WITH_3DES_EDE_CBC_SHA")]
    cases = [
        ("clean scan, fixture finding waived", code(_sample_full(), _sample_auth()), 0),
        ("TLS 1.0 offered", code(changed("TLS1", "LOW", "offered (deprecated)")), 1),
        ("TLS 1.1 offered", code(changed("TLS1_1", "LOW", "offered")), 1),
        ("SSLv3 offered", code(changed("SSLv3", "CRITICAL", "offered")), 1),
        ("a MEDIUM finding", code(_sample_full() + [_f("cert_chain_of_trust", "MEDIUM", "x")]), 1),
        ("a waived id at another id", code(changed("cert_revocation", finding="x") +
                                          [_f("cert_ocspRevoked", "HIGH", "revoked")]), 1),
        ("3DES category offered", code(changed("cipherlist_3DES_IDEA", "MEDIUM", "offered")), 1),
        ("a 3DES cipher enumerated, even graded INFO", code(weak), 1),
        ("CBC category offered is LOW: reported only", code(
            changed("cipherlist_AVERAGE", "LOW", "offered")), 0),
        ("protocol findings missing", code([f for f in _sample_full()
                                            if not f["id"].startswith("TLS1")]), 2),
        ("a FATAL finding", code(_sample_full() + [_f("scanProblem", "FATAL", "boom")]), 2),
        ("truncated JSON", code(json.dumps(_sample_full())[:-40]), 2),
        ("auth pass without the certificate", code(_sample_full(), changed(
            "service", finding=CLIENT_AUTH_SEEN + " => skipping", sample=_sample_auth())), 2),
    ]
    verdict = judge("full", "t", _sample_full())
    cases += [
        ("TLS 1.3 suite listed", verdict["suites"].get("TLS 1.3"), ["TLS_AES_128_GCM_SHA256"]),
        ("protocols read", list(verdict["protocols"]),
         ["SSLv2", "SSLv3", "TLS 1.0", "TLS 1.1", "TLS 1.2", "TLS 1.3"]),
    ]
    bad = [(name, got, want) for name, got, want in cases if got != want]
    for name, got, want in bad:
        print(f"self-test FAILED: {name}: got {got!r}, want {want!r}", file=sys.stderr)
    print(f"self-test: {len(cases) - len(bad)}/{len(cases)} ok")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("passes", nargs="*", type=parse_pass, metavar="KIND:LABEL=FILE")
    ap.add_argument("--summary-md", help="also write the summary as Markdown to this file")
    ap.add_argument("--meta", action="append", default=[], help="a line for the summary's head")
    ap.add_argument("--self-test", action="store_true", help="check the rules on embedded samples")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.passes:
        ap.error("no KIND:LABEL=FILE given")
    return run(args.passes, args.summary_md, args.meta)


if __name__ == "__main__":
    sys.exit(main())
