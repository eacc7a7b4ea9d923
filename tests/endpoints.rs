//! Many endpoints in one process (`serve --config FILE`): trust and policy per SNI name on one
//! listener, unknown names, the verification strategies, and every config error with its
//! file, line and endpoint. The real binary, the rustls client, curl and `openssl s_client`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::proxy_header;
use common::{Ca, ClientOpts, Dir, KeyFormat, Leaf, Serve, Server, Upstream, expect_alert};
use rustls::AlertDescription;

/// One tenant: its CA, a server certificate for its name, a client it issued, its upstream.
struct Tenant {
    name: &'static str,
    sni: String,
    ca: Ca,
    client: Leaf,
    crt: PathBuf,
    key: PathBuf,
    cas: PathBuf,
    upstream: Upstream,
}

impl Tenant {
    fn new(dir: &Dir, name: &'static str) -> Tenant {
        let ca = Ca::root(&format!("{name} Root"));
        let sni = format!("{name}.test");
        let server = ca.server_for(&[&sni]);
        Tenant {
            crt: dir.write(&format!("{name}.pem"), server.chain_pem()),
            key: dir.write(&format!("{name}.key"), server.key_pem(KeyFormat::Pkcs8)),
            cas: dir.write(&format!("{name}-cas.pem"), ca.pem()),
            client: ca.client(&format!("{name} client")),
            upstream: Upstream::echo(),
            name,
            sni,
            ca,
        }
    }

    fn ca_file(&self) -> &Path {
        &self.cas
    }

    /// The endpoint's table; `extra` is added to it.
    fn table(&self, extra: &str) -> String {
        format!(
            "[[endpoint]]\nname = \"{}\"\nlisten = [\"127.0.0.1:0\"]\nserver_names = [\"{}\"]\ncrt = \"{}\"\nkey = \"{}\"\nmutual_tls_cas = [\"{}\"]\nupstream = \"{}\"\n{extra}\n",
            self.name,
            self.sni,
            self.crt.display(),
            self.key.display(),
            self.cas.display(),
            self.upstream.addr
        )
    }

    /// A client that trusts every tenant's CA (the server certificate is chosen by name),
    /// asks for `sni` and presents `client`.
    fn client_for(&self, sni: &str, client: &Leaf, all: &[&Tenant]) -> ClientOpts {
        let roots = all.iter().map(|t| t.ca.der().clone()).collect();
        ClientOpts::with_roots(roots)
            .identity(client)
            .server_name(sni)
    }
}

fn write_config(dir: &Dir, text: &str) -> PathBuf {
    dir.write("ringtls.toml", text)
}

fn serve(config: &Path) -> Server {
    Serve::config(config).start()
}

/// `ringtls serve --config FILE` that must fail: its stderr.
fn refused_start(config: &Path, extra: &[&str]) -> (Option<i32>, String) {
    match Serve::config(config).args(extra).try_start() {
        Ok(_) => panic!("serve started with {}", config.display()),
        Err(exited) => (exited.code, exited.stderr),
    }
}

#[test]
fn three_tenants_on_one_port_are_each_admitted_on_their_own_name_and_refused_on_the_others() {
    let dir = Dir::new();
    let tenants = [
        Tenant::new(&dir, "alpha"),
        Tenant::new(&dir, "beta"),
        Tenant::new(&dir, "gamma"),
    ];
    let text: String = tenants.iter().map(|t| t.table("")).collect();
    let config = write_config(&dir, &text);
    let server = Serve::config(&config)
        .args(["--metrics", "127.0.0.1:0"])
        .start();
    assert_eq!(server.addrs.len(), 1, "one shared listener");
    let all: Vec<&Tenant> = tenants.iter().collect();
    for own in &tenants {
        let opts = own.client_for(&own.sni, &own.client, &all);
        let mut stream = common::handshake(server.addr(), &opts)
            .unwrap_or_else(|e| panic!("{} refused on its own name: {e:?}", own.name));
        common::probe(&mut stream).expect("echo through its own upstream");
        assert_eq!(own.upstream.accepted(), 1, "{}'s upstream", own.name);
        for other in tenants.iter().filter(|t| t.name != own.name) {
            let before = other.upstream.accepted();
            let opts = own.client_for(&other.sni, &own.client, &all);
            // A chain to tenant A's CA means nothing to tenant B's trust store.
            expect_alert(
                common::connect(server.addr(), &opts),
                AlertDescription::UnknownCA,
            );
            assert_eq!(
                other.upstream.accepted(),
                before,
                "{}'s upstream dialled",
                other.name
            );
        }
    }
    let line = server.wait_for_line(&["conn.rejected", "endpoint=beta", "reason=unknown_ca"]);
    assert!(line.contains("sni=\"beta.test\""), "{line}");
    server.wait_for_line(&["conn.closed", "endpoint=gamma"]);
    // Each endpoint's counters: one admitted, two refused (the other tenants' clients).
    let metrics = server.metrics.expect("metrics address");
    for t in &tenants {
        let name = t.name;
        let ok =
            format!("ringtls_handshakes_total{{result=\"ok\",reason=\"\",endpoint=\"{name}\"}}");
        common::wait_metric(metrics, &ok, 1);
        let refused = format!(
            "ringtls_handshakes_total{{result=\"rejected\",reason=\"unknown_ca\",endpoint=\"{name}\"}}"
        );
        common::wait_metric(metrics, &refused, 2);
    }
}

#[test]
fn certificate_request_lists_only_the_endpoints_own_cas() {
    common::need("openssl");
    let dir = Dir::new();
    let (a, b) = (Tenant::new(&dir, "alpha"), Tenant::new(&dir, "beta"));
    let server = serve(&write_config(&dir, &(a.table("") + &b.table(""))));
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &server.addr().to_string()])
        .args(["-servername", "beta.test", "-tls1_3"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    let listed = text
        .split("Acceptable client certificate CA names")
        .nth(1)
        .unwrap_or_else(|| panic!("no CA names in:\n{text}"));
    let listed = listed
        .split("Requested Signature Algorithms")
        .next()
        .unwrap_or(listed);
    assert!(listed.contains("CN = beta Root"), "{listed}");
    assert!(
        !listed.contains("alpha Root"),
        "alpha's CA listed on beta's name: {listed}"
    );
}

#[test]
fn unknown_server_name_without_a_default_gets_unrecognized_name_and_no_upstream() {
    let dir = Dir::new();
    let a = Tenant::new(&dir, "alpha");
    let server = serve(&write_config(&dir, &a.table("")));
    let opts = a.client_for("nobody.test", &a.client, &[&a]);
    expect_alert(
        common::connect(server.addr(), &opts),
        AlertDescription::UnrecognisedName,
    );
    // An IP address as the name: rustls sends no SNI at all.
    let opts = a.client_for("127.0.0.1", &a.client, &[&a]);
    expect_alert(
        common::connect(server.addr(), &opts),
        AlertDescription::UnrecognisedName,
    );
    assert_eq!(a.upstream.accepted(), 0);
    let line = server.wait_for_line(&["conn.rejected", "reason=unknown_server_name"]);
    assert!(line.contains("alert=112"), "{line}");
}

#[test]
fn unknown_server_name_goes_to_the_default_endpoint() {
    let dir = Dir::new();
    let a = Tenant::new(&dir, "alpha");
    let mut b = Tenant::new(&dir, "beta");
    // The default's certificate also covers a name no endpoint claims, so a client asking
    // for that name can check it.
    let wide = b.ca.server_for(&["beta.test", "nobody.test"]);
    b.crt = dir.write("beta-wide.pem", wide.chain_pem());
    b.key = dir.write("beta-wide.key", wide.key_pem(KeyFormat::Pkcs8));
    let text = a.table("") + &b.table("default = true");
    let server = serve(&write_config(&dir, &text));
    let opts = b.client_for("nobody.test", &b.client, &[&a, &b]);
    common::connect(server.addr(), &opts).expect("the default endpoint serves an unknown name");
    assert_eq!((a.upstream.accepted(), b.upstream.accepted()), (0, 1));
    server.wait_for_line(&["conn.closed", "endpoint=beta", "sni=\"nobody.test\""]);
}

#[test]
fn check_config_prints_a_table_per_endpoint() {
    let dir = Dir::new();
    let (a, b) = (Tenant::new(&dir, "alpha"), Tenant::new(&dir, "beta"));
    let config = write_config(
        &dir,
        &(a.table("") + &b.table("client_auth = \"require-any\"")),
    );
    let out = common::run(["check".as_ref(), "--config".as_ref(), config.as_os_str()]);
    out.assert_code(0);
    assert!(out.stdout.contains("2 endpoint(s)"), "{}", out.stdout);
    let row = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("beta "))
        .unwrap_or_else(|| panic!("no row for beta:\n{}", out.stdout));
    assert!(
        row.contains("terminate") && row.contains("require-any"),
        "{row}"
    );
    assert!(row.contains("beta.test"), "{row}");
    assert!(row.contains("127.0.0.1:0"), "the listen address: {row}");
    assert!(out.stdout.contains("endpoint \"alpha\":"), "{}", out.stdout);
}

/// A config error: the message names the file, the line and the endpoint.
#[track_caller]
fn assert_config_error(dir: &Dir, text: &str, line: usize, endpoint: Option<&str>, says: &str) {
    let config = write_config(dir, text);
    let (code, stderr) = refused_start(&config, &[]);
    assert_eq!(code, Some(78), "exit code; stderr:\n{stderr}");
    let at = format!("--config {}:{line}", config.display());
    assert!(stderr.contains(&at), "expected {at:?} in:\n{stderr}");
    if let Some(name) = endpoint {
        let named = format!("endpoint \"{name}\"");
        assert!(stderr.contains(&named), "expected {named} in:\n{stderr}");
    }
    assert!(stderr.contains(says), "expected {says:?} in:\n{stderr}");
    // `check` says the same.
    let out = common::run(["check".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert_ne!(out.code, Some(0), "check accepted it:\n{}", out.stdout);
    assert!(
        out.stderr.contains(&at),
        "check: expected {at:?} in:\n{}",
        out.stderr
    );
}

#[test]
fn config_errors_name_the_file_line_and_endpoint() {
    let dir = Dir::new();
    let (a, b) = (Tenant::new(&dir, "alpha"), Tenant::new(&dir, "beta"));
    let table = a.table("");
    // An unknown key, on the line it is on (the 9th: after `[[endpoint]]` and the table's 7
    // keys), in the endpoint it is in.
    assert_config_error(
        &dir,
        &a.table("colour = \"blue\""),
        9,
        Some("alpha"),
        "unknown field `colour`",
    );
    // The same name twice.
    let twice = table.clone() + &table.replace("alpha.test", "other.test");
    assert_config_error(
        &dir,
        &twice,
        11,
        Some("alpha"),
        "already used by the endpoint at line 1",
    );
    // Two endpoints claiming one name on one listener.
    let claimed = table.clone() + &b.table("").replace("beta.test", "alpha.test");
    assert_config_error(
        &dir,
        &claimed,
        13,
        Some("beta"),
        "server name alpha.test on 127.0.0.1:0 is already claimed by endpoint \"alpha\" (line 4)",
    );
    // A passthrough endpoint with certificates.
    assert_config_error(
        &dir,
        &a.table("mode = \"passthrough\""),
        1,
        Some("alpha"),
        "holds no keys or trust: remove crt",
    );
    // Allow-lists with a strategy that verifies nothing.
    assert_config_error(
        &dir,
        &a.table("client_auth = \"request\"\nallow_cn = [\"bob\"]"),
        1,
        Some("alpha"),
        "allow_* needs client_auth require-and-verify",
    );
    // A bad value, on its line.
    assert_config_error(
        &dir,
        &a.table("idle_timeout = \"soon\""),
        9,
        Some("alpha"),
        "idle_timeout soon",
    );
    // Not TOML at all.
    assert_config_error(&dir, "[[endpoint]\nname = 1\n", 1, None, "");
}

#[test]
fn config_with_endpoint_flags_is_a_usage_error() {
    let dir = Dir::new();
    let a = Tenant::new(&dir, "alpha");
    let config = write_config(&dir, &a.table(""));
    let (code, stderr) = refused_start(&config, &["--listen", "127.0.0.1:0"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("--listen is set per endpoint in the file"),
        "{stderr}"
    );
    let (code, stderr) = refused_start(&config, &["--allow-cn", "bob"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--allow-cn"), "{stderr}");
}

/// The PROXY v2 header the upstream got for one connection that sent `hello`.
fn proxied(
    server: &Server,
    upstream: &Upstream,
    opts: &ClientOpts,
    seen: usize,
) -> proxy_header::Parsed {
    let mut stream = common::handshake(server.addr(), opts).expect("admitted");
    stream.conn.writer().write_all(b"hello").expect("write");
    common::client::send_close_notify(&mut stream).expect("close_notify");
    let _ = stream.sock.shutdown(std::net::Shutdown::Write);
    let received = upstream.wait_received(seen + 1, Duration::from_secs(10));
    let header = proxy_header::parse(&received[seen]);
    assert_eq!(header.rest, b"hello");
    header
}

/// The SSL TLV's client bits and verify word.
fn ssl_client_and_verify(header: &proxy_header::Parsed) -> (u8, u32) {
    let ssl = proxy_header::tlv(&header.tlvs, 0x20).expect("SSL TLV");
    (ssl[0], u32::from_be_bytes([ssl[1], ssl[2], ssl[3], ssl[4]]))
}

/// A terminating endpoint `name` for `name.test` with a leaf of `ca`, `client_auth = auth`
/// (`mutual_tls_cas` too unless `none`) and the PROXY header on.
fn strategy_table(
    dir: &Dir,
    ca: &Ca,
    cas: &Path,
    name: &str,
    auth: &str,
    upstream: &Upstream,
) -> String {
    let leaf = ca.server_for(&[&format!("{name}.test")]);
    let crt = dir.write(&format!("{name}.pem"), leaf.chain_pem());
    let key = dir.write(&format!("{name}.key"), leaf.key_pem(KeyFormat::Pkcs8));
    let trust = match auth {
        "none" => String::new(),
        _ => format!("mutual_tls_cas = \"{}\"\n", cas.display()),
    };
    format!(
        "[[endpoint]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nserver_names = [\"{name}.test\"]\ncrt = \"{}\"\nkey = \"{}\"\n{trust}client_auth = \"{auth}\"\nproxy_protocol = true\nupstream = \"{}\"\n",
        crt.display(),
        key.display(),
        upstream.addr
    )
}

#[test]
fn verification_strategies_admit_what_they_say_and_the_upstream_is_told_what_was_verified() {
    let dir = Dir::new();
    let a = Tenant::new(&dir, "alpha");
    let stranger = Ca::root("Stranger Root").client("stranger");
    let upstream = Upstream::record();
    let text: String = [
        ("verify", "require-and-verify"),
        ("any", "require-any"),
        ("request", "request"),
        ("none", "none"),
    ]
    .iter()
    .map(|(name, auth)| strategy_table(&dir, &a.ca, &a.cas, name, auth, &upstream))
    .collect();
    let config = write_config(&dir, &text);
    let server = Serve::config(&config)
        .args(["--metrics", "127.0.0.1:0"])
        .start();
    let mut seen = 0;
    let mut check = |sni: &str, client: Option<&Leaf>, want: Option<(u8, u32)>| {
        let opts = match client {
            Some(leaf) => ClientOpts::new(&a.ca).identity(leaf),
            None => ClientOpts::new(&a.ca),
        }
        .server_name(sni);
        let who = client.map(|c| c.subject());
        match want {
            Some(want) => {
                let header = proxied(&server, &upstream, &opts, seen);
                seen += 1;
                assert_eq!(ssl_client_and_verify(&header), want, "{sni} with {who:?}");
            }
            None => {
                let refused = common::connect(server.addr(), &opts).is_err();
                assert!(refused, "{sni} admitted {who:?}");
            }
        }
    };
    // require-and-verify: its CA's client only, verify 0.
    check("verify.test", Some(&a.client), Some((0x01 | 0x02, 0)));
    check("verify.test", Some(&stranger), None);
    check("verify.test", None, None);
    // require-any: any certificate with its key, never marked verified.
    check("any.test", Some(&a.client), Some((0x01 | 0x02, 1)));
    check("any.test", Some(&stranger), Some((0x01 | 0x02, 1)));
    check("any.test", None, None);
    // request: with or without, never verified.
    check("request.test", Some(&stranger), Some((0x01 | 0x02, 1)));
    check("request.test", None, Some((0x01, 1)));
    // none: no certificate is asked for, so the client sends none.
    check("none.test", Some(&a.client), Some((0x01, 1)));
    server.wait_for_line(&[
        "conn.closed",
        "endpoint=any",
        "verified=false",
        "client=\"stranger\"",
    ]);
    server.wait_for_line(&["conn.closed", "endpoint=verify", "verified=true"]);
    let warned = server.wait_for_line(&["tls.unverified_clients", "endpoint=request"]);
    assert!(warned.contains("client_auth=request"), "{warned}");
    // The metrics tell the unverified handshakes apart: require-any admitted two, request two,
    // and require-and-verify one, verified.
    let metrics = server.metrics.expect("metrics address");
    let series = |result: &str, endpoint: &str| {
        format!(
            "ringtls_handshakes_total{{result=\"{result}\",reason=\"\",endpoint=\"{endpoint}\"}}"
        )
    };
    common::wait_metric(metrics, &series("unverified", "any"), 2);
    common::wait_metric(metrics, &series("unverified", "request"), 2);
    common::wait_metric(metrics, &series("ok", "verify"), 1);
    common::wait_metric(metrics, &series("unverified", "verify"), 0);
}

/// The system's own two-tier topology: an "edge" ringtls passes `app.test` through to an
/// "agent" ringtls that terminates with mutual TLS in front of the application. The edge
/// holds no key, sees no plaintext, and splices every byte.
struct TwoTier {
    dir: Dir,
    ca: Ca,
    agent: Server,
    edge: Server,
}

impl TwoTier {
    fn new(application: &Upstream, edge_extra: &str) -> TwoTier {
        let dir = Dir::new();
        let ca = Ca::root("App Root");
        let leaf = ca.server_for(&["app.test"]);
        let crt = dir.write("app.pem", leaf.chain_pem());
        let key = dir.write("app.key", leaf.key_pem(KeyFormat::Pkcs8));
        let cas = dir.write("app-cas.pem", ca.pem());
        let agent_config = dir.write(
            "agent.toml",
            format!(
                "[[endpoint]]\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nserver_names = \"app.test\"\ncrt = \"{}\"\nkey = \"{}\"\nmutual_tls_cas = \"{}\"\nupstream = \"{}\"\n",
                crt.display(),
                key.display(),
                cas.display(),
                application.addr
            ),
        );
        let agent = serve(&agent_config);
        let edge_config = dir.write(
            "edge.toml",
            format!(
                "[[endpoint]]\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nserver_names = \"app.test\"\nmode = \"passthrough\"\nupstream = \"{}\"\n{edge_extra}\n",
                agent.addr()
            ),
        );
        let edge = serve(&edge_config);
        TwoTier {
            dir,
            ca,
            agent,
            edge,
        }
    }

    fn client(&self, leaf: Option<&Leaf>) -> ClientOpts {
        let opts = ClientOpts::new(&self.ca).server_name("app.test");
        match leaf {
            Some(leaf) => opts.identity(leaf),
            None => opts,
        }
    }
}

#[test]
fn passthrough_edge_carries_a_gibibyte_each_way_to_a_terminating_agent_untouched() {
    const LEN: usize = 1 << 30;
    let (tx, rx) = std::sync::mpsc::channel();
    let application = Upstream::custom(move |sock| {
        let mut read_half = sock.try_clone().expect("clone");
        let reader = std::thread::spawn(move || common::Digest::read_all(&mut read_half));
        let wrote = common::Pattern::write_to(8, LEN, &mut &sock);
        let _ = sock.shutdown(std::net::Shutdown::Write);
        let _ = tx.send((wrote.is_ok(), reader.join().expect("reader")));
    });
    let tiers = TwoTier::new(&application, "");
    let leaf = tiers.ca.client("app client");
    let stream = common::handshake(tiers.edge.addr(), &tiers.client(Some(&leaf)))
        .expect("mutual TLS with the agent, through the edge");
    let (mut reader, mut writer) = common::client::split(stream);
    let writing = std::thread::spawn(move || {
        common::Pattern::write_to(7, LEN, &mut writer)?;
        writer.close_notify()
    });
    let received = common::Digest::read_all(&mut reader).expect("1 GiB down, then a clean close");
    writing.join().expect("writer").expect("1 GiB up");
    // Both halves gone: the client's FIN reaches the edge, which then ends the connection.
    drop(reader);
    assert_eq!(
        received,
        (LEN, common::Pattern::digest(8, LEN)),
        "client received"
    );
    let (wrote, read) = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("application report");
    assert!(wrote, "application sent its 1 GiB");
    let read = read.expect("application read");
    assert_eq!(
        read,
        (LEN, common::Pattern::digest(7, LEN)),
        "application received"
    );
    // The edge counted every byte, all of it spliced, and knew the name only.
    let line = tiers
        .edge
        .wait_for_line(&["conn.closed", "endpoint=app", "path=passthrough"]);
    let field = |name: &str| -> u64 {
        let value = line
            .split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name}= in {line}"));
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} in {line}"))
    };
    assert!(
        field("up") > LEN as u64 && field("down") > LEN as u64,
        "{line}"
    );
    // All but the ClientHello, which was read to route the connection.
    assert!(
        field("spliced") + 64 * 1024 > field("up") + field("down"),
        "{line}"
    );
    assert!(line.contains("sni=\"app.test\""), "{line}");
    assert!(
        !line.contains("client="),
        "the edge cannot know the client: {line}"
    );
    tiers
        .agent
        .wait_for_line(&["conn.closed", "endpoint=app", "client=\"app client\""]);
    let _ = &tiers.dir;
}

#[test]
fn passthrough_client_without_a_certificate_is_refused_by_the_agents_alert() {
    let application = Upstream::echo();
    let tiers = TwoTier::new(&application, "");
    let refused = common::connect(tiers.edge.addr(), &tiers.client(None));
    expect_alert(refused, AlertDescription::CertificateRequired);
    assert_eq!(application.accepted(), 0, "nothing reached the application");
    tiers
        .agent
        .wait_for_line(&["conn.rejected", "reason=no_certificate"]);
    tiers
        .edge
        .wait_for_line(&["conn.closed", "endpoint=app", "path=passthrough"]);
}

#[test]
fn passthrough_sends_a_proxy_header_with_the_sni_and_the_untouched_client_hello() {
    let recorder = Upstream::record();
    let dir = Dir::new();
    let config = dir.write(
        "edge.toml",
        format!(
            "[[endpoint]]\nname = \"app\"\nlisten = \"127.0.0.1:0\"\nserver_names = \"app.test\"\nmode = \"passthrough\"\nproxy_protocol = true\nupstream = \"{}\"\n",
            recorder.addr
        ),
    );
    let edge = serve(&config);
    let ca = Ca::root("Nobody Root");
    let opts = ClientOpts::new(&ca).server_name("app.test");
    // The recorder never answers: the client waits for a ServerHello until we hang up.
    let mut sock = common::client::tcp_connect(edge.addr());
    let mut conn = opts.connection();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("ClientHello");
    sock.write_all(&hello).expect("send ClientHello");
    sock.shutdown(std::net::Shutdown::Write).expect("FIN");
    let received = recorder.wait_received(1, Duration::from_secs(10));
    let header = proxy_header::parse(&received[0]);
    assert_eq!(
        proxy_header::tlv(&header.tlvs, 0x02),
        Some(&b"app.test"[..]),
        "AUTHORITY"
    );
    assert_eq!(
        proxy_header::tlv(&header.tlvs, 0x20),
        None,
        "no SSL TLV: nothing terminated"
    );
    assert_eq!(header.rest, hello, "the ClientHello, byte for byte");
    assert_eq!(header.src, sock.local_addr().expect("addr"));
}

/// Connects again and again as `opts` until `stop`, at most `MAX_ROUNDS` times, counting the
/// admitted ones in `made`: (admitted, failures).
fn keep_connecting(
    addr: std::net::SocketAddr,
    opts: ClientOpts,
    stop: Arc<AtomicBool>,
    made: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<(usize, Vec<String>)> {
    const MAX_ROUNDS: usize = 20_000;
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (mut ok, mut failed) = (0, Vec::new());
        for _ in 0..MAX_ROUNDS {
            if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                break;
            }
            match common::connect(addr, &opts) {
                Ok(_) => {
                    ok += 1;
                    made.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => failed.push(format!("{e:?}")),
            }
        }
        (ok, failed)
    })
}

/// Waits (bounded) until `made` has grown by `more`.
fn wait_for_more(made: &AtomicUsize, more: usize) {
    let want = made.load(Ordering::Relaxed) + more;
    let deadline = Instant::now() + Duration::from_secs(30);
    while made.load(Ordering::Relaxed) < want {
        assert!(Instant::now() < deadline, "the load stalled");
        std::thread::yield_now();
    }
}

#[test]
fn reload_swaps_one_tenants_ca_while_all_three_serve_without_a_failed_good_connection() {
    let dir = Dir::new();
    let tenants = [
        Tenant::new(&dir, "alpha"),
        Tenant::new(&dir, "beta"),
        Tenant::new(&dir, "gamma"),
    ];
    let all: Vec<&Tenant> = tenants.iter().collect();
    let text: String = tenants.iter().map(|t| t.table("")).collect();
    let config = write_config(&dir, &text);
    let server = serve(&config);
    // beta's new CA, and a client it issued, refused until the swap.
    let new_ca = Ca::root("beta Root 2");
    let new_client = new_ca.client("beta client 2");
    let new_opts = tenants[1].client_for("beta.test", &new_client, &all);
    expect_alert(
        common::connect(server.addr(), &new_opts),
        AlertDescription::UnknownCA,
    );

    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    let loads: Vec<_> = [&tenants[0], &tenants[2]]
        .iter()
        .map(|t| {
            let opts = t.client_for(&t.sni, &t.client, &all);
            keep_connecting(server.addr(), opts, stop.clone(), made.clone())
        })
        .collect();
    wait_for_more(&made, 50);
    // The swap: a new file for beta's CAs, named in a rewritten config, then SIGHUP.
    let new_cas = dir.write("beta-cas-2.pem", new_ca.pem());
    let swapped = text.replace(
        &tenants[1].cas.display().to_string(),
        &new_cas.display().to_string(),
    );
    std::fs::write(&config, swapped).expect("rewrite config");
    server.signal(libc::SIGHUP);
    server.wait_for_line(&["reload.ok", "generation=2", "endpoints=3"]);
    common::connect(server.addr(), &new_opts).expect("beta's new CA admits its client");
    let old_opts = tenants[1].client_for("beta.test", &tenants[1].client, &all);
    expect_alert(
        common::connect(server.addr(), &old_opts),
        AlertDescription::UnknownCA,
    );
    // Let the loads run on past the swap before stopping them.
    wait_for_more(&made, 50);
    stop.store(true, Ordering::Relaxed);
    for (load, t) in loads.into_iter().zip(["alpha", "gamma"]) {
        let (ok, failed) = load.join().expect("load thread");
        assert!(
            failed.is_empty(),
            "{t}: {} of {} failed: {:?}",
            failed.len(),
            ok + failed.len(),
            &failed[..failed.len().min(3)]
        );
        assert!(ok > 0, "{t}: no connection made");
        eprintln!("{t}: {ok} connections across the reload, none failed");
    }
}

#[test]
fn a_broken_config_file_on_reload_keeps_the_running_one_and_names_the_line() {
    let dir = Dir::new();
    let a = Tenant::new(&dir, "alpha");
    let text = a.table("");
    let config = write_config(&dir, &text);
    let server = serve(&config);
    std::fs::write(&config, text.replace("upstream =", "upstream_typo =")).expect("break config");
    server.signal(libc::SIGHUP);
    let line = server.wait_for_line(&["reload.failed"]);
    let at = format!("--config {}:", config.display());
    assert!(line.contains(&at), "{line}");
    assert!(line.contains("unknown field `upstream_typo`"), "{line}");
    let opts = a.client_for(&a.sni, &a.client, &[&a]);
    common::connect(server.addr(), &opts).expect("still serving the configuration in force");
}

#[test]
fn a_removed_endpoint_closes_its_live_connections_after_the_drain_timeout() {
    let dir = Dir::new();
    let (a, b) = (Tenant::new(&dir, "alpha"), Tenant::new(&dir, "beta"));
    let config = write_config(&dir, &(a.table("") + &b.table("")));
    let server = Serve::config(&config)
        .args(["--drain-timeout", "1s"])
        .start();
    let opts = b.client_for(&b.sni, &b.client, &[&a, &b]);
    let mut live = common::connect(server.addr(), &opts).expect("beta");
    std::fs::write(&config, a.table("")).expect("remove beta");
    server.signal(libc::SIGHUP);
    server.wait_for_line(&["reload.ok", "endpoints=1"]);
    // New clients of the removed name are refused at once; the live one may finish…
    expect_alert(
        common::connect(server.addr(), &opts),
        AlertDescription::UnrecognisedName,
    );
    common::probe(&mut live).expect("a live connection of a removed endpoint goes on");
    // …for the drain timeout, then it is closed.
    let line = server.wait_for_line(&["conn.closed", "endpoint=beta", "reason=endpoint_removed"]);
    assert!(line.contains("client=\"beta client\""), "{line}");
    common::connect(server.addr(), &a.client_for(&a.sni, &a.client, &[&a]))
        .expect("alpha serves on");
}

/// curl for `https://NAME:PORT/`, NAME resolved to the server, presenting `cert_and_key` (one
/// file, as users do) if given.
fn curl(server: &Server, name: &str, cas: &[&Path], cert_and_key: Option<&Path>) -> common::Output {
    let dir = Dir::new();
    let bundle: String = cas
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read CA"))
        .collect();
    let cacert = dir.write("trusted.pem", bundle);
    let port = server.addr().port();
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "10"])
        .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
        .arg("--cacert")
        .arg(&cacert);
    if let Some(file) = cert_and_key {
        cmd.arg("--cert").arg(file);
    }
    cmd.arg(format!("https://{name}:{port}/"));
    common::process::run_command(cmd, Duration::from_secs(20))
}

#[test]
#[cfg_attr(
    not(has = "curl"),
    ignore = "SKIPPED: curl not found (apt-get install curl)"
)]
fn curl_reaches_each_tenant_on_its_own_name_only() {
    common::need("curl");
    let dir = Dir::new();
    let mut tenants = [Tenant::new(&dir, "alpha"), Tenant::new(&dir, "beta")];
    for t in &mut tenants {
        t.upstream = Upstream::http(if t.name == "alpha" {
            "alpha says hi"
        } else {
            "beta says hi"
        });
    }
    let text: String = tenants.iter().map(|t| t.table("")).collect();
    let server = serve(&write_config(&dir, &text));
    let cas: Vec<&Path> = tenants.iter().map(|t| t.ca_file()).collect();
    for t in &tenants {
        let pem = format!(
            "{}{}",
            t.client.chain_pem(),
            t.client.key_pem(KeyFormat::Pkcs8)
        );
        let both = dir.write(&format!("{}-client-cert-and-key.pem", t.name), pem);
        let out = curl(&server, &t.sni, &cas, Some(&both));
        assert_eq!(out.code, Some(0), "{}: curl failed: {}", t.name, out.stderr);
        assert_eq!(out.stdout, format!("{} says hi", t.name));
        let other = tenants
            .iter()
            .find(|o| o.name != t.name)
            .expect("another tenant");
        let out = curl(&server, &other.sni, &cas, Some(&both));
        assert_ne!(
            out.code,
            Some(0),
            "{} admitted on {}'s name",
            t.name,
            other.name
        );
        assert!(
            out.stderr.contains("alert") || out.stderr.contains("SSL"),
            "{}",
            out.stderr
        );
        let out = curl(&server, &t.sni, &cas, None);
        assert_ne!(out.code, Some(0), "no certificate admitted on {}", t.sni);
    }
    assert_eq!(
        tenants[0].upstream.accepted() + tenants[1].upstream.accepted(),
        2
    );
}

#[test]
fn client_auth_flag_form_admits_an_unverified_client_and_says_so() {
    let setup = common::Setup::new();
    let upstream = Upstream::echo();
    let server = setup
        .serve(upstream.addr)
        .args(["--client-auth", "require-any"])
        .start();
    let stranger = Ca::root("Stranger Root").client("stranger");
    common::connect(server.addr(), &setup.client(&stranger)).expect("require-any admits any chain");
    expect_alert(
        common::connect(server.addr(), &setup.anonymous()),
        AlertDescription::CertificateRequired,
    );
    let line = server.wait_for_line(&["conn.closed", "endpoint=default", "verified=false"]);
    assert!(line.contains("client=\"stranger\""), "{line}");
    server.wait_for_line(&["tls.unverified_clients", "client_auth=require-any"]);
}

#[test]
fn a_client_that_sends_no_client_hello_is_cut_at_the_handshake_timeout() {
    let dir = Dir::new();
    let a = Tenant::new(&dir, "alpha");
    let server = serve(&write_config(&dir, &a.table("handshake_timeout = \"1s\"")));
    let mut sock = common::client::tcp_connect(server.addr());
    // Half a record header, then silence.
    sock.write_all(&[22, 3]).expect("write");
    let line = server.wait_for_line(&["conn.rejected", "reason=handshake_timeout"]);
    assert!(line.contains("no complete ClientHello in time"), "{line}");
    assert_eq!(a.upstream.accepted(), 0);
}

#[test]
fn bytes_that_are_not_tls_get_decode_error_without_a_default() {
    let dir = Dir::new();
    let a = Tenant::new(&dir, "alpha");
    let server = serve(&write_config(&dir, &a.table("")));
    let mut sock = common::client::tcp_connect(server.addr());
    sock.write_all(b"GET / HTTP/1.1\r\nHost: alpha.test\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    let _ = std::io::Read::read_to_end(&mut sock, &mut got);
    assert_eq!(
        got,
        [21, 3, 3, 0, 2, 2, 50],
        "a plaintext decode_error alert, then the close"
    );
    let line = server.wait_for_line(&["conn.rejected", "reason=protocol_error"]);
    assert!(
        line.contains("alert=50") && line.contains("unroutable ClientHello"),
        "{line}"
    );
}

#[test]
fn watch_reloads_when_the_config_file_changes() {
    let dir = Dir::new();
    let (a, b) = (Tenant::new(&dir, "alpha"), Tenant::new(&dir, "beta"));
    let config = write_config(&dir, &a.table(""));
    let server = Serve::config(&config).args(["--watch"]).start();
    server.wait_for_line(&["watch.start"]);
    let opts = b.client_for(&b.sni, &b.client, &[&a, &b]);
    expect_alert(
        common::connect(server.addr(), &opts),
        AlertDescription::UnrecognisedName,
    );
    // An editor's way: write a new file beside it, rename it over the old one.
    let next = dir.write("ringtls.toml.new", a.table("") + &b.table(""));
    std::fs::rename(&next, &config).expect("rename");
    server.wait_for_line(&["reload.ok", "cause=watch", "endpoints=2"]);
    common::connect(server.addr(), &opts).expect("beta, added by the rewritten file");
}
