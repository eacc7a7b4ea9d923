//! `ringtls load`'s flags, checked and converted into a `LoadPlan`.

use std::net::ToSocketAddrs;

use super::stats::FailureLimit;
use super::{ClientTls, LoadPlan, Mode};
use crate::cli::LoadArgs;
use crate::config::{parse_duration, parse_size};
use crate::error::Error;

/// A validated `load` invocation.
pub fn load_plan(args: LoadArgs) -> Result<LoadPlan, Error> {
    let connect = args
        .connect
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::Usage(format!("--connect {}: expected HOST:PORT", args.connect)))?;
    let server_name =
        rustls::pki_types::ServerName::try_from(args.server_name.clone()).map_err(|_| {
            Error::Usage(format!(
                "--server-name {}: not a DNS name or IP address",
                args.server_name
            ))
        })?;
    let version = match args.tls.as_deref() {
        None => None,
        Some("1.2") => Some(12),
        Some("1.3") => Some(13),
        Some(other) => return Err(Error::Usage(format!("--tls {other}: expected 1.2 or 1.3"))),
    };
    if args.concurrency == 0 || args.threads == 0 {
        return Err(Error::Usage(
            "--concurrency and --threads must be at least 1".into(),
        ));
    }
    let size = parse_size("--size", &args.size)?;
    let max_failures = match args.max_failures.as_deref() {
        None => FailureLimit::AllFailed,
        Some(s) => FailureLimit::parse(s).ok_or_else(|| {
            Error::Usage(format!(
                "--max-failures {s}: expected a count such as 10 or a percentage from 0% to 100% such as 5%"
            ))
        })?,
    };
    Ok(LoadPlan {
        connect,
        server_name,
        tls: ClientTls {
            ca: args.ca,
            crt: args.crt,
            key: args.key,
            resume: args.resume,
            version,
            group: args.group,
        },
        mode: Mode::parse(&args.mode)?,
        concurrency: args.concurrency,
        duration: parse_duration("--duration", &args.duration)?,
        bytes: parse_size("--bytes", &args.bytes)?,
        size: usize::try_from(size)
            .map_err(|_| Error::Usage(format!("--size {}: too large", args.size)))?,
        rate: args.rate.filter(|&r| r > 0),
        threads: args.threads,
        json: args.json,
        max_failures,
    })
}
