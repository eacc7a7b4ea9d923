//! Finding the end of a ClientHello and its SNI in the raw bytes a client sent, before any
//! rustls state exists: a listener with many endpoints picks one by the server name, and for
//! TLS passthrough forwards these very bytes untouched, so the parser only reads them.
//!
//! The common case, a ClientHello in one record, is parsed in place and allocates nothing. A
//! hello fragmented over several handshake records (RFC 8446 §5.1 allows it; clients do it past
//! 2^14 bytes, and test tools at any size) is reassembled into one heap buffer, and its SNI is
//! then a copy: hence `Cow`. Every length is checked against its container through `Cursor`,
//! so no input can make this panic or read out of bounds.

use std::borrow::Cow;
use std::net::IpAddr;

/// The largest ClientHello handshake message accepted (rustls' own limit for a handshake message).
pub const MAX_HELLO: usize = 0xffff;

/// RFC 8446 §5.1: `TLSPlaintext.length` MUST NOT exceed 2^14 bytes.
const MAX_RECORD: usize = 1 << 14;
/// The most records a ClientHello may be cut into. Clients send it in one (two or three for a
/// large post-quantum key share; HAProxy's `req.ssl_sni` reads the first record only); the
/// bound keeps a parse, which starts over on every read, from walking tens of thousands of
/// one-byte records each time a hostile client trickles in a few more. A typical hello cut
/// into one-byte records still fits.
pub const MAX_HELLO_RECORDS: usize = 256;
const RECORD_HEADER: usize = 5;
/// msg_type(1) and a 24-bit length.
const HANDSHAKE_HEADER: usize = 4;
const CONTENT_HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST_NAME: u8 = 0;
/// RFC 1035 §2.3.4, without a trailing dot.
pub(crate) const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// What the bytes received so far say about the ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello<'a> {
    /// More bytes are needed; at least `need` more (a lower bound, >= 1).
    Incomplete { need: usize },
    /// The whole ClientHello message is in the buffer: it ends at byte `end` of the input, the
    /// end of the record holding its last byte (nothing else may share that record); bytes
    /// after `end` belong to later records and must be kept by the caller.
    ///
    /// `sni`: the host_name of the server_name extension (RFC 6066 §3) as sent, case and a
    /// trailing dot kept; `None` without the extension, or when the host_name is an IP literal
    /// (some clients send one; rustls, too, then acts as if no SNI came). Borrowed from the
    /// input when the hello sits in one record, owned when it was reassembled.
    Complete {
        end: usize,
        sni: Option<Cow<'a, str>>,
    },
    /// Not a TLS ClientHello that can be routed; the reason, for the log.
    Malformed(&'static str),
}

/// Reads the ClientHello at the start of `input` (the first bytes a client sent). Call again
/// with more bytes after `Incomplete`; the parse starts over, which costs little next to a
/// socket read. A hello in the smallest records (one byte each) takes 6 × (4 + `MAX_HELLO`)
/// bytes of input, so a caller's buffer never needs more.
pub fn parse(input: &[u8]) -> Hello<'_> {
    let found = match locate(input) {
        Ok(found) => found,
        Err(Stop::Incomplete(need)) => return Hello::Incomplete { need },
        Err(Stop::Malformed(why)) => return Hello::Malformed(why),
    };
    let sni = match found.message {
        Some(message) => host_name(message).map(|name| name.map(Cow::Borrowed)),
        None => {
            let message = reassemble(input, found.total);
            host_name(&message).map(|name| name.map(|n| Cow::Owned(n.to_owned())))
        }
    };
    match sni {
        Ok(sni) => Hello::Complete {
            end: found.end,
            sni,
        },
        Err(why) => Hello::Malformed(why),
    }
}

/// Whether `name` is a DNS name as the routing compares them: 1..=253 bytes of labels of
/// 1..=63 ASCII letters, digits, '-' and '_', no trailing dot. The '_' is not in the host
/// name rules (RFC 952), but names with one are in use and rustls accepts them in SNI; a
/// stricter rule here would refuse clients that a single-certificate listener serves.
pub(crate) fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

enum Stop {
    Incomplete(usize),
    Malformed(&'static str),
}

/// Where the ClientHello message is.
struct Found<'a> {
    /// The end of its last record.
    end: usize,
    /// The message (handshake header included) when one record holds it all.
    message: Option<&'a [u8]>,
    /// Its length, handshake header included.
    total: usize,
}

/// Walks the records until they hold the whole ClientHello message, copying nothing but its
/// 4-byte handshake header (which may itself be split over records).
fn locate(input: &[u8]) -> Result<Found<'_>, Stop> {
    let mut pos = 0;
    let mut header = [0u8; HANDSHAKE_HEADER];
    // Handshake bytes in the records before `pos`.
    let mut seen = 0;
    let mut records = 0;
    let mut total: Option<usize> = None;
    loop {
        let rest = input.get(pos..).unwrap_or_default();
        let Some(len) = record_header(rest, pos == 0).map_err(Stop::Malformed)? else {
            // At least the header's missing bytes, and the message's in a record of their own.
            let missing = match total {
                Some(total) => total.saturating_sub(seen),
                None => HANDSHAKE_HEADER.saturating_sub(seen),
            };
            return Err(Stop::Incomplete(RECORD_HEADER - rest.len() + missing));
        };
        let body = rest.get(RECORD_HEADER..).unwrap_or_default();
        let fragment = body.get(..len).unwrap_or(body);
        for (slot, &byte) in header.iter_mut().skip(seen).zip(fragment) {
            *slot = byte;
        }
        let got = (seen + fragment.len()).min(HANDSHAKE_HEADER);
        if got >= 1 && header[0] != CLIENT_HELLO {
            return Err(Stop::Malformed(
                "the first handshake message is not a ClientHello",
            ));
        }
        if total.is_none() && got == HANDSHAKE_HEADER {
            let length = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
            if length > MAX_HELLO {
                return Err(Stop::Malformed("ClientHello over 64 KiB"));
            }
            total = Some(HANDSHAKE_HEADER + length);
        }
        // Nothing may follow the ClientHello in its record: with early data a key change follows
        // it, which must fall on a record boundary (RFC 8446 §5.1), and otherwise the client's
        // next handshake message waits for the server's flight (RFC 5246 §7.3).
        if total.is_some_and(|total| seen + len > total) {
            return Err(Stop::Malformed("bytes after the ClientHello in its record"));
        }
        if fragment.len() < len {
            let after = match total {
                Some(total) => total.saturating_sub(seen + len),
                None => HANDSHAKE_HEADER.saturating_sub(seen + len),
            };
            let next = if after > 0 { RECORD_HEADER + after } else { 0 };
            return Err(Stop::Incomplete(len - fragment.len() + next));
        }
        seen += len;
        pos += RECORD_HEADER + len;
        records += 1;
        if records >= MAX_HELLO_RECORDS && total.is_none_or(|total| seen < total) {
            return Err(Stop::Malformed("a ClientHello cut into too many records"));
        }
        if let Some(total) = total.filter(|&total| seen == total) {
            return Ok(Found {
                end: pos,
                message: (seen == len).then_some(fragment),
                total,
            });
        }
    }
}

/// Checks the record header at the start of `rest`, as far as it is there; its length once
/// all of it is.
fn record_header(rest: &[u8], first: bool) -> Result<Option<usize>, &'static str> {
    match rest.first() {
        Some(&CONTENT_HANDSHAKE) | None => {}
        Some(_) if !first => return Err("a record other than handshake inside the ClientHello"),
        // The SSLv2-compatible hello's two-byte header has the high bit set (RFC 5246
        // appendix E.2); it has no extensions, so no SNI.
        Some(&typ) if typ & 0x80 != 0 => return Err("an SSLv2 ClientHello"),
        Some(_) => return Err("not a TLS handshake record"),
    }
    if rest.get(1).is_some_and(|&major| major != 3) {
        return Err("a record version other than 3.x");
    }
    let Some(&[_, _, _, hi, lo]) = rest.get(..RECORD_HEADER) else {
        return Ok(None);
    };
    match usize::from(u16::from_be_bytes([hi, lo])) {
        // RFC 8446 §5.1: no zero-length fragments of handshake messages.
        0 => Err("an empty handshake record"),
        len if len > MAX_RECORD => Err("a record over 2^14 bytes"),
        len => Ok(Some(len)),
    }
}

/// The message from the fragments of the records `locate` walked. They are all whole and end
/// with the message, so the copy is exact; were it not, the parse that follows fails.
fn reassemble(input: &[u8], total: usize) -> Vec<u8> {
    let mut message = Vec::with_capacity(total);
    let mut records = Cursor(input);
    while message.len() < total {
        // Past the content type and version, which `locate` checked.
        match records.take(3, "").and_then(|_| records.vec16("")) {
            Ok(fragment) => message.extend_from_slice(fragment),
            Err(_) => break,
        }
    }
    message
}

/// Parses the whole ClientHello message (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) and returns the
/// SNI it carries.
fn host_name(message: &[u8]) -> Result<Option<&str>, &'static str> {
    let mut hello = Cursor(message.get(HANDSHAKE_HEADER..).unwrap_or_default());
    hello.take(2, "the ClientHello ends in its legacy_version")?;
    hello.take(32, "the ClientHello ends in its random")?;
    let session_id = hello.vec8("session_id runs past the ClientHello")?;
    if session_id.len() > 32 {
        return Err("session_id over 32 bytes");
    }
    let suites = hello.vec16("cipher_suites run past the ClientHello")?;
    if suites.is_empty() || suites.len() % 2 != 0 {
        return Err("cipher_suites empty or of odd length");
    }
    if hello
        .vec8("compression_methods run past the ClientHello")?
        .is_empty()
    {
        return Err("no compression_methods");
    }
    // Extensions may be absent altogether in TLS 1.2 (RFC 5246 §7.4.1.2).
    if hello.0.is_empty() {
        return Ok(None);
    }
    let mut extensions = Cursor(hello.vec16("extensions run past the ClientHello")?);
    if !hello.0.is_empty() {
        return Err("bytes after the extensions");
    }
    let mut server_name = None;
    while !extensions.0.is_empty() {
        let typ = extensions.u16("an extension header runs past the extensions")?;
        let data = extensions.vec16("an extension runs past the extensions")?;
        if typ == EXT_SERVER_NAME {
            if server_name.is_some() {
                return Err("two server_name extensions");
            }
            server_name = Some(server_name_list(data)?);
        }
    }
    let Some(raw) = server_name else {
        return Ok(None);
    };
    let name = std::str::from_utf8(raw).map_err(|_| "a host_name that is not a DNS name")?;
    if name.parse::<IpAddr>().is_ok() {
        return Ok(None);
    }
    if !is_dns_name(name.strip_suffix('.').unwrap_or(name)) {
        return Err("a host_name that is not a DNS name");
    }
    Ok(Some(name))
}

/// The host_name of a server_name extension (RFC 6066 §3).
fn server_name_list(data: &[u8]) -> Result<&[u8], &'static str> {
    let mut extension = Cursor(data);
    let mut list = Cursor(extension.vec16("server_name_list runs past its extension")?);
    if !extension.0.is_empty() {
        return Err("bytes after the server_name_list");
    }
    if list.0.is_empty() {
        return Err("an empty server_name_list");
    }
    let mut found = None;
    while !list.0.is_empty() {
        // Other name types have no defined encoding, so nothing after one can be read; rustls
        // stops there too.
        if list.u8("server_name_list ends in a name_type")? != NAME_TYPE_HOST_NAME {
            break;
        }
        let name = list.vec16("a host_name runs past the server_name_list")?;
        if name.is_empty() {
            return Err("an empty host_name");
        }
        // RFC 6066 §3: no two names of the same name_type.
        if found.is_some() {
            return Err("two host_names in server_name");
        }
        found = Some(name);
    }
    found.ok_or("a server_name extension without a host_name")
}

/// Reads a message front to back; every read names what ran short.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, short: &'static str) -> Result<&'a [u8], &'static str> {
        let (head, rest) = self.0.split_at_checked(n).ok_or(short)?;
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, short: &'static str) -> Result<u8, &'static str> {
        match self.take(1, short)? {
            &[b] => Ok(b),
            _ => Err(short),
        }
    }

    fn u16(&mut self, short: &'static str) -> Result<u16, &'static str> {
        match self.take(2, short)? {
            &[hi, lo] => Ok(u16::from_be_bytes([hi, lo])),
            _ => Err(short),
        }
    }

    /// A vector with a one-byte length.
    fn vec8(&mut self, short: &'static str) -> Result<&'a [u8], &'static str> {
        let len = self.u8(short)?;
        self.take(usize::from(len), short)
    }

    /// A vector with a two-byte length.
    fn vec16(&mut self, short: &'static str) -> Result<&'a [u8], &'static str> {
        let len = self.u16(short)?;
        self.take(usize::from(len), short)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::sync::Arc;

    use rustls::pki_types::ServerName;
    use rustls::version::{TLS12, TLS13};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedProtocolVersion};

    use super::{Hello, MAX_HELLO, parse};

    /// The first flight of a rustls client for `name`: its ClientHello record.
    fn rustls_hello(name: &str, versions: &[&'static SupportedProtocolVersion]) -> Vec<u8> {
        // No server answers, so no certificate is ever verified: empty roots do.
        let config = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_owned()).expect("server name");
        let mut client = ClientConnection::new(Arc::new(config), name).expect("client");
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).expect("write_tls");
        }
        wire
    }

    fn record(typ: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![typ, 3, 1];
        out.extend(u16::try_from(payload.len()).expect("record").to_be_bytes());
        out.extend(payload);
        out
    }

    fn message(typ: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![typ];
        out.extend(&u32::try_from(body.len()).expect("message").to_be_bytes()[1..]);
        out.extend(body);
        out
    }

    /// The one record of `wire` cut into records of `size` bytes of payload.
    fn refragment(wire: &[u8], size: usize) -> Vec<u8> {
        let (header, payload) = wire.split_at(5);
        assert_eq!(
            payload.len(),
            usize::from(u16::from_be_bytes([header[3], header[4]])),
            "one record"
        );
        payload
            .chunks(size)
            .flat_map(|chunk| record(header[0], chunk))
            .collect()
    }

    /// A ClientHello body up to its extensions.
    fn hello_fields(session_id: usize, suites: &[u8], compression: &[u8]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.push(session_id as u8);
        body.extend(vec![1; session_id]);
        body.extend(u16::try_from(suites.len()).expect("suites").to_be_bytes());
        body.extend(suites);
        body.push(compression.len() as u8);
        body.extend(compression);
        body
    }

    /// A ClientHello record with these extensions (type, data).
    fn handmade(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut data = Vec::new();
        for (typ, ext) in extensions {
            data.extend(typ.to_be_bytes());
            data.extend(u16::try_from(ext.len()).expect("extension").to_be_bytes());
            data.extend(ext);
        }
        let mut body = hello_fields(0, &[0x13, 0x01], &[0]);
        body.extend(u16::try_from(data.len()).expect("extensions").to_be_bytes());
        body.extend(data);
        record(22, &message(1, &body))
    }

    /// A server_name extension with these (name_type, name) entries.
    fn server_name(entries: &[(u8, &[u8])]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for (typ, name) in entries {
            list.push(*typ);
            list.extend(u16::try_from(name.len()).expect("name").to_be_bytes());
            list.extend(*name);
        }
        let mut data = u16::try_from(list.len())
            .expect("list")
            .to_be_bytes()
            .to_vec();
        data.extend(list);
        (0, data)
    }

    fn with_host_name(name: &[u8]) -> Vec<u8> {
        handmade(&[(10, vec![0, 2, 0, 29]), server_name(&[(0, name)])])
    }

    fn complete(input: &[u8]) -> (usize, Option<Cow<'_, str>>) {
        match parse(input) {
            Hello::Complete { end, sni } => (end, sni),
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn reads_the_sni_of_rustls_hellos_in_place() {
        for versions in [&[&TLS13, &TLS12][..], &[&TLS13], &[&TLS12]] {
            for name in ["api.example.com", "localhost", "Mixed-Case.Example.net"] {
                let wire = rustls_hello(name, versions);
                let (end, sni) = complete(&wire);
                assert_eq!(end, wire.len(), "{name}");
                assert_eq!(sni, Some(Cow::Borrowed(name)), "{name} {versions:?}");
            }
        }
    }

    #[test]
    fn ip_address_server_name_sends_no_sni() {
        for ip in ["192.0.2.1", "2001:db8::1"] {
            let wire = rustls_hello(ip, &[&TLS13, &TLS12]);
            assert_eq!(complete(&wire), (wire.len(), None), "{ip}");
        }
    }

    #[test]
    fn reassembles_a_hello_fragmented_into_small_records() {
        let wire = rustls_hello("api.example.com", &[&TLS13, &TLS12]);
        // 100 bytes: the common test-tool split; 1 byte: the handshake header itself split.
        for size in [100, 1] {
            let fragmented = refragment(&wire, size);
            assert!(fragmented.len() > wire.len() + 5);
            let (end, sni) = complete(&fragmented);
            assert_eq!(end, fragmented.len());
            assert_eq!(sni, Some(Cow::Owned("api.example.com".to_owned())));
        }
    }

    #[test]
    fn every_prefix_is_incomplete_with_a_need_it_does_not_overstate() {
        let wire = rustls_hello("api.example.com", &[&TLS13, &TLS12]);
        for input in [wire.clone(), refragment(&wire, 100), refragment(&wire, 1)] {
            for cut in 0..input.len() {
                match parse(&input[..cut]) {
                    Hello::Incomplete { need } => {
                        assert!(need >= 1 && cut + need <= input.len(), "cut {cut}: {need}")
                    }
                    other => panic!("cut {cut} of {}: {other:?}", input.len()),
                }
            }
        }
    }

    #[test]
    fn end_is_exact_when_later_records_follow() {
        let wire = rustls_hello("api.example.com", &[&TLS13]);
        for hello in [wire.clone(), refragment(&wire, 100)] {
            let mut input = hello.clone();
            // The compatibility change_cipher_spec and the start of early data.
            input.extend(record(20, &[1]));
            input.extend([23, 3, 3, 0x40, 0]);
            assert_eq!(complete(&input).0, hello.len());
        }
    }

    #[test]
    fn flipped_bytes_never_panic_nor_end_past_the_input() {
        let wire = rustls_hello("api.example.com", &[&TLS13, &TLS12]);
        for input in [wire.clone(), refragment(&wire, 100)] {
            for at in 0..input.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut bad = input.clone();
                    bad[at] ^= flip;
                    if let Hello::Complete { end, .. } = parse(&bad) {
                        assert!(end <= bad.len());
                    }
                }
            }
        }
    }

    #[test]
    fn keeps_the_host_name_as_sent() {
        for name in [
            "API.Example.com",
            "under_score.example.com",
            "trailing.dot.example.com.",
            "-.example",
            "x",
        ] {
            let wire = with_host_name(name.as_bytes());
            assert_eq!(complete(&wire), (wire.len(), Some(Cow::Borrowed(name))));
        }
        let label = "a".repeat(63);
        let longest = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        let wire = with_host_name(longest.as_bytes());
        assert_eq!(complete(&wire).1.as_deref(), Some(longest.as_str()));
    }

    #[test]
    fn ip_literal_host_name_counts_as_no_sni() {
        for ip in ["127.0.0.1", "::1", "2001:db8::1"] {
            let wire = with_host_name(ip.as_bytes());
            assert_eq!(complete(&wire), (wire.len(), None), "{ip}");
        }
    }

    #[test]
    fn rejects_a_host_name_that_is_not_a_dns_name() {
        let long_label = format!("{}.example", "a".repeat(64));
        let too_long = format!("{}.b", vec!["a".repeat(63); 4].join("."));
        for name in [
            &b"api..example.com"[..],
            b".example.com",
            b".",
            b"api.example.com..",
            b"api example.com",
            b"api.example.com\0",
            b"*.example.com",
            "äpi.example.com".as_bytes(),
            b"\xff\xfe",
            long_label.as_bytes(),
            too_long.as_bytes(),
        ] {
            assert_eq!(
                parse(&with_host_name(name)),
                Hello::Malformed("a host_name that is not a DNS name"),
                "{}",
                String::from_utf8_lossy(name)
            );
        }
        assert_eq!(
            parse(&with_host_name(b"")),
            Hello::Malformed("an empty host_name")
        );
    }

    #[test]
    fn rejects_malformed_server_name_extensions() {
        let sni = server_name(&[(0, b"a.example")]);
        let cases = [
            (vec![sni.clone(), sni.clone()], "two server_name extensions"),
            (
                vec![server_name(&[(0, b"a.example"), (0, b"b.example")])],
                "two host_names in server_name",
            ),
            (
                vec![server_name(&[(1, b"a.example")])],
                "a server_name extension without a host_name",
            ),
            (vec![server_name(&[])], "an empty server_name_list"),
            (
                vec![(0, vec![])],
                "server_name_list runs past its extension",
            ),
            (
                vec![(0, vec![0, 3, 0, 0, 5])],
                "a host_name runs past the server_name_list",
            ),
            (
                vec![(0, [&sni.1[..], &[0]].concat())],
                "bytes after the server_name_list",
            ),
        ];
        for (extensions, why) in cases {
            assert_eq!(parse(&handmade(&extensions)), Hello::Malformed(why));
        }
    }

    #[test]
    fn stops_at_a_name_type_it_cannot_read() {
        // RFC 6066 §3 defines no encoding for other name types; what follows one is skipped.
        let wire = handmade(&[server_name(&[(0, b"a.example"), (7, b"\xff\xff")])]);
        assert_eq!(complete(&wire).1.as_deref(), Some("a.example"));
    }

    #[test]
    fn reads_hellos_without_server_name_or_extensions() {
        let no_sni = handmade(&[(10, vec![0, 2, 0, 29])]);
        assert_eq!(complete(&no_sni), (no_sni.len(), None));
        let empty = handmade(&[]);
        assert_eq!(complete(&empty), (empty.len(), None));
        // TLS 1.2 allows leaving the extensions block out entirely.
        let bare = record(22, &message(1, &hello_fields(32, &[0, 0x2f], &[0])));
        assert_eq!(complete(&bare), (bare.len(), None));
    }

    #[test]
    fn rejects_malformed_hello_fields() {
        let cases = [
            (
                hello_fields(33, &[0x13, 1], &[0]),
                "session_id over 32 bytes",
            ),
            (
                hello_fields(0, &[], &[0]),
                "cipher_suites empty or of odd length",
            ),
            (
                hello_fields(0, &[0x13, 1, 2], &[0]),
                "cipher_suites empty or of odd length",
            ),
            (hello_fields(0, &[0x13, 1], &[]), "no compression_methods"),
            (
                [hello_fields(0, &[0x13, 1], &[0]), vec![0, 4, 0, 0]].concat(),
                "extensions run past the ClientHello",
            ),
            (
                [hello_fields(0, &[0x13, 1], &[0]), vec![0, 0, 9]].concat(),
                "bytes after the extensions",
            ),
            (
                [hello_fields(0, &[0x13, 1], &[0]), vec![0, 1, 0]].concat(),
                "an extension header runs past the extensions",
            ),
            (
                [hello_fields(0, &[0x13, 1], &[0]), vec![0, 4, 0, 10, 0, 1]].concat(),
                "an extension runs past the extensions",
            ),
            (vec![3, 3, 0], "the ClientHello ends in its random"),
            (vec![3], "the ClientHello ends in its legacy_version"),
        ];
        for (body, why) in cases {
            assert_eq!(
                parse(&record(22, &message(1, &body))),
                Hello::Malformed(why)
            );
        }
    }

    #[test]
    fn rejects_an_sslv2_hello() {
        // SSLv2-compatible CLIENT-HELLO, as old clients and scanners send it.
        let v2 = [0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15];
        for cut in 1..=v2.len() {
            assert_eq!(parse(&v2[..cut]), Hello::Malformed("an SSLv2 ClientHello"));
        }
    }

    #[test]
    fn rejects_a_first_record_that_is_not_handshake() {
        for input in [
            &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
            &record(23, b"early"),
            &record(21, &[2, 40]),
            b"\x14",
        ] {
            assert_eq!(parse(input), Hello::Malformed("not a TLS handshake record"));
        }
    }

    #[test]
    fn rejects_another_record_inside_a_fragmented_hello() {
        let fragmented = refragment(&rustls_hello("a.example", &[&TLS13]), 100);
        let mut input = fragmented[..105].to_vec();
        input.extend(record(20, &[1]));
        input.extend(&fragmented[105..]);
        assert_eq!(
            parse(&input),
            Hello::Malformed("a record other than handshake inside the ClientHello")
        );
    }

    #[test]
    fn rejects_records_over_the_limits() {
        let at_limit = [22, 3, 1, 0x40, 0x00, 1, 0, 0x3f, 0xfc];
        assert_eq!(parse(&at_limit), Hello::Incomplete { need: 0x4000 - 4 });
        let over = [22, 3, 1, 0x40, 0x01, 1, 0, 0x40, 0];
        assert_eq!(parse(&over), Hello::Malformed("a record over 2^14 bytes"));
        assert_eq!(
            parse(&[22, 2, 0]),
            Hello::Malformed("a record version other than 3.x")
        );
        assert_eq!(
            parse(&[22, 3, 1, 0, 0]),
            Hello::Malformed("an empty handshake record")
        );
    }

    #[test]
    fn rejects_a_hello_over_64_kib() {
        let largest = [22, 3, 1, 0x40, 0, 1, 0x00, 0xff, 0xff];
        assert!(matches!(parse(&largest), Hello::Incomplete { need } if need > MAX_HELLO - 0x4000));
        let over = [22, 3, 1, 0x40, 0, 1, 0x01, 0x00, 0x00];
        assert_eq!(parse(&over), Hello::Malformed("ClientHello over 64 KiB"));
        // Found as soon as the header is in, even split over records.
        let split = [&record(22, &[1, 1])[..], &record(22, &[0, 0])].concat();
        assert_eq!(parse(&split), Hello::Malformed("ClientHello over 64 KiB"));
    }

    #[test]
    fn rejects_a_first_message_that_is_not_client_hello() {
        for input in [
            &[22, 3, 3, 0, 40, 2][..],
            &record(22, &message(2, &[0; 38])),
        ] {
            assert_eq!(
                parse(input),
                Hello::Malformed("the first handshake message is not a ClientHello")
            );
        }
    }

    #[test]
    fn rejects_bytes_after_the_hello_in_its_record() {
        let wire = with_host_name(b"a.example");
        let mut payload = wire[5..].to_vec();
        payload.extend(message(16, &[]));
        let input = record(22, &payload);
        // Known from the record's length alone, before its bytes arrive.
        for cut in [9, input.len()] {
            assert_eq!(
                parse(&input[..cut]),
                Hello::Malformed("bytes after the ClientHello in its record")
            );
        }
    }

    #[test]
    fn a_hello_in_too_many_records_is_refused() {
        // A 1000-byte message in one-byte records: the first 256 records are not the end.
        let mut input = Vec::new();
        let mut message = vec![super::CLIENT_HELLO, 0, 0x03, 0xe4];
        message.resize(1004, 0);
        for byte in &message {
            input.extend_from_slice(&[super::CONTENT_HANDSHAKE, 3, 1, 0, 1, *byte]);
        }
        assert_eq!(
            parse(&input),
            Hello::Malformed("a ClientHello cut into too many records")
        );
        // Short of the bound, the same records are only incomplete.
        let cut = (super::MAX_HELLO_RECORDS - 1) * 6;
        assert!(matches!(parse(&input[..cut]), Hello::Incomplete { .. }));
    }
}
