//! `--unsafe-keylog FILE`: TLS secrets in the NSS key-log format, so Wireshark can decrypt a
//! capture while debugging. Anyone who can read the file can decrypt the traffic; it is off by
//! default, the file is created mode 0600, and `serve` says so loudly at start. The mutex is on
//! the handshake path only while this debugging option is on.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use super::error::LoadError;

#[derive(Debug)]
pub struct KeyLogFile(Mutex<File>);

impl KeyLogFile {
    /// Opens (appending, creating it 0600 if needed) the key-log file.
    pub fn open(path: &Path) -> Result<KeyLogFile, LoadError> {
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(|source| LoadError::Read {
            flag: "--unsafe-keylog",
            path: path.to_owned(),
            source,
        })?;
        Ok(KeyLogFile(Mutex::new(file)))
    }
}

impl rustls::KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let mut line =
            String::with_capacity(label.len() + 2 * (client_random.len() + secret.len()) + 3);
        line.push_str(label);
        line.push(' ');
        for b in client_random {
            let _ = write!(line, "{b:02x}");
        }
        line.push(' ');
        for b in secret {
            let _ = write!(line, "{b:02x}");
        }
        line.push('\n');
        // A poisoned lock or a failed write loses a debugging line, never a connection.
        if let Ok(mut file) = self.0.lock() {
            let _ = file.write_all(line.as_bytes());
        }
    }
}
