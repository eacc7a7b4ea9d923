//! The fetcher's one HTTP exchange: hyper's HTTP/1.1 client over a tokio `TcpStream`, every
//! step inside one deadline and the body read up to a cap. `http://` only: OCSP and CRL
//! distribution points are plain HTTP by design (RFC 6960 Appendix A, RFC 5280 §4.2.1.13),
//! their answers being signed; an `https://` URL is refused when the configuration is read.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http::header::{CONTENT_TYPE, HOST};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why no body came back.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The deadline passed first.
    Timeout,
    /// No connection, an HTTP error, a status other than 200, or a body over the cap.
    Failed(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Timeout => f.write_str("no answer in time"),
            FetchError::Failed(why) => f.write_str(why),
        }
    }
}

/// Checks that `url` is one the fetcher can ask: `http://host[:port][/path]`.
pub(crate) fn check_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{url}: https is not supported; responders and CRLs are fetched over plain http (their contents are signed)"
            ));
        }
        _ => return Err(format!("{url}: expected an http:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{url}: no host"));
    }
    Ok(uri)
}

/// POSTs `body` (as `content_type`) to `url`, or GETs it when `body` is `None`, and returns
/// the response body, all within `timeout`; a body over `limit` bytes fails.
pub(crate) async fn exchange(
    url: &str,
    body: Option<(&'static str, Vec<u8>)>,
    timeout: Duration,
    limit: usize,
) -> Result<Vec<u8>, FetchError> {
    match tokio::time::timeout(timeout, exchange_now(url, body, limit)).await {
        Ok(result) => result.map_err(FetchError::Failed),
        Err(_) => Err(FetchError::Timeout),
    }
}

async fn exchange_now(
    url: &str,
    body: Option<(&'static str, Vec<u8>)>,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let uri = check_url(url)?;
    let host = uri.host().unwrap_or_default();
    // `[::1]` in a URL is `::1` to the resolver.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((bare, port))
        .await
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    // The connection is driven beside the request and ends with it (no keep-alive pool: one
    // request per certificate per answer lifetime does not need one).
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let builder = hyper::Request::builder()
        .uri(path)
        .header(HOST, authority)
        .header("user-agent", concat!("ringtls/", env!("CARGO_PKG_VERSION")));
    let request = match body {
        Some((content_type, bytes)) => builder
            .method("POST")
            .header(CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(bytes))),
        None => builder.method("GET").body(Full::new(Bytes::new())),
    }
    .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = response.status();
    if status != hyper::StatusCode::OK {
        driver.abort();
        return Err(format!("HTTP status {status}"));
    }
    let collected = Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e} (at most {limit} bytes are taken)"))?;
    driver.abort();
    Ok(collected.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn takes_only_plain_http_urls() {
        assert!(check_url("http://127.0.0.1:8080/ocsp").is_ok());
        assert!(check_url("http://ocsp.example").is_ok());
        let e = check_url("https://ocsp.example").expect_err("https");
        assert!(e.contains("https is not supported"), "{e}");
        assert!(check_url("ftp://x/").is_err());
        assert!(check_url("ocsp.example").is_err());
    }
}
