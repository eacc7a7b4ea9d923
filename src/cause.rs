//! Printing an error with its causes. Each error's `Display` says only its own part and
//! `source()` carries what caused it (the convention of std and the error-handling crates), so
//! nothing is said twice when the chain is walked; `Chain` writes the whole of it,
//! `: `-separated, for the terminal and the log.

use std::error::Error;
use std::fmt;

/// `error: cause: cause of the cause`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("--crt x.pem: cannot read")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn writes_each_cause_once() {
        let e = Outer(std::io::Error::other("gone"));
        assert_eq!(Chain(&e).to_string(), "--crt x.pem: cannot read: gone");
    }
}
