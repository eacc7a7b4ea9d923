//! Choosing a listener's endpoint by the SNI of a ClientHello, in O(1) however many endpoints
//! there are: exact names in one hash map, `*.suffix` wildcards in another keyed by the suffix,
//! and an optional default. A lookup lowercases into a stack buffer and allocates nothing.
//!
//! The names match as `tls::sni` matches certificate names (RFC 6125 §6.4): case-insensitively
//! (ASCII), a trailing dot ignored, and a wildcard only as the whole leftmost label, standing for
//! exactly one label: `*.example.com` takes `api.example.com`, not `example.com` nor
//! `a.b.example.com`. An exact name wins over a wildcard, a wildcard over the default.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;

use super::client_hello::{MAX_NAME, is_dns_name};

/// Names to endpoints (`T`), and the endpoint of clients whose name matches none.
#[derive(Debug, Clone)]
pub struct Routes<T> {
    /// Lowercased, without a trailing dot.
    exact: HashMap<Box<str>, T>,
    /// By the suffix after `*.`, lowercased, without a trailing dot.
    wildcard: HashMap<Box<str>, T>,
    default: Option<T>,
}

/// Why a name cannot join the table; the message is the one configuration errors show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// The name (as configured) is already in the table, in this or another spelling.
    Duplicate(String),
    /// A default was already set.
    DuplicateDefault,
    /// The name (as configured) is neither a DNS name nor `*.` and one.
    Invalid(String),
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::Duplicate(name) => write!(f, "server name {name} is claimed twice"),
            RouteError::DuplicateDefault => write!(f, "the default endpoint is set twice"),
            RouteError::Invalid(name) => {
                write!(f, "server name {name} is not a DNS name or a *.wildcard")
            }
        }
    }
}

impl std::error::Error for RouteError {}

impl<T> Default for Routes<T> {
    fn default() -> Self {
        Routes::new()
    }
}

impl<T> Routes<T> {
    pub fn new() -> Self {
        Routes {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: None,
        }
    }

    /// Adds `name` as configured: `api.example.com`, or `*.example.com` (the wildcard is the
    /// whole leftmost label and stands for exactly one label). Case and a trailing dot do not
    /// make a name new: `API.example.com.` after `api.example.com` is a duplicate.
    pub fn insert(&mut self, name: &str, value: T) -> Result<(), RouteError> {
        let bare = name.strip_suffix('.').unwrap_or(name);
        let (map, key) = match bare.strip_prefix("*.") {
            Some(suffix) => (&mut self.wildcard, suffix),
            None => (&mut self.exact, bare),
        };
        if !is_dns_name(key) {
            return Err(RouteError::Invalid(name.to_owned()));
        }
        match map.entry(key.to_ascii_lowercase().into_boxed_str()) {
            Entry::Occupied(_) => Err(RouteError::Duplicate(name.to_owned())),
            Entry::Vacant(slot) => {
                slot.insert(value);
                Ok(())
            }
        }
    }

    /// The endpoint of clients without SNI or with a name that matches none.
    pub fn set_default(&mut self, value: T) -> Result<(), RouteError> {
        if self.default.is_some() {
            return Err(RouteError::DuplicateDefault);
        }
        self.default = Some(value);
        Ok(())
    }

    /// The endpoint for `sni`: its exact name first, then the wildcard of the name minus its
    /// first label, then the default. A name longer than 253 bytes or not ASCII matches only the
    /// default. Allocates nothing.
    pub fn route(&self, sni: Option<&str>) -> Option<&T> {
        sni.and_then(|name| self.named(name))
            .or(self.default.as_ref())
    }

    fn named(&self, sni: &str) -> Option<&T> {
        let name = sni.strip_suffix('.').unwrap_or(sni);
        if !name.is_ascii() {
            return None;
        }
        let mut buf = [0u8; MAX_NAME];
        let lower = buf.get_mut(..name.len())?;
        lower.copy_from_slice(name.as_bytes());
        lower.make_ascii_lowercase();
        // ASCII in, ASCII out: this cannot fail, and `?` would only route to the default.
        let lower = std::str::from_utf8(lower).ok()?;
        if let Some(value) = self.exact.get(lower) {
            return Some(value);
        }
        // The suffix needs no check, only valid names are keys; the first label must be one a
        // `*` can stand for: not empty, not `*`, DNS characters only.
        match lower.split_once('.') {
            Some((first, suffix)) if is_dns_name(first) => self.wildcard.get(suffix),
            _ => None,
        }
    }

    /// Whether any name is configured; without one every client gets the default, and the
    /// caller need not read the ClientHello first.
    pub fn has_names(&self) -> bool {
        !self.exact.is_empty() || !self.wildcard.is_empty()
    }

    /// The entries `route` can return: the names, and the default if set.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len() + usize::from(self.default.is_some())
    }

    /// Whether `route` returns `None` for every client.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::{RouteError, Routes};

    fn table() -> Routes<&'static str> {
        let mut routes = Routes::new();
        routes.insert("api.example.com", "api").expect("api");
        routes.insert("*.example.com", "wild").expect("wildcard");
        routes.insert("example.com", "apex").expect("apex");
        routes.set_default("default").expect("default");
        routes
    }

    #[test]
    fn routes_exact_name_before_wildcard() {
        let routes = table();
        assert_eq!(routes.route(Some("api.example.com")), Some(&"api"));
        assert_eq!(routes.route(Some("example.com")), Some(&"apex"));
        assert_eq!(routes.route(Some("www.example.com")), Some(&"wild"));
    }

    #[test]
    fn wildcard_covers_exactly_one_leftmost_label() {
        let mut routes = Routes::new();
        routes.insert("*.example.com", "wild").expect("wildcard");
        assert_eq!(routes.route(Some("a.example.com")), Some(&"wild"));
        assert_eq!(routes.route(Some("example.com")), None);
        assert_eq!(routes.route(Some("a.b.example.com")), None);
        assert_eq!(routes.route(Some(".example.com")), None);
        assert_eq!(routes.route(Some("aexample.com")), None);
        assert_eq!(routes.route(Some("*.example.com")), None);
        assert_eq!(routes.route(Some("a b.example.com")), None);
        assert_eq!(
            routes.route(Some(&format!("{}.example.com", "a".repeat(64)))),
            None
        );
    }

    #[test]
    fn ignores_case_and_trailing_dot() {
        let mut routes = Routes::new();
        routes.insert("API.Example.com.", "api").expect("api");
        routes
            .insert("*.Wild.Example.COM", "wild")
            .expect("wildcard");
        assert_eq!(routes.route(Some("api.example.com")), Some(&"api"));
        assert_eq!(routes.route(Some("aPi.eXample.com.")), Some(&"api"));
        assert_eq!(routes.route(Some("X.WILD.example.com.")), Some(&"wild"));
        assert_eq!(routes.route(Some("api.example.com..")), None);
    }

    #[test]
    fn falls_back_to_the_default() {
        let routes = table();
        assert_eq!(routes.route(Some("other.test")), Some(&"default"));
        assert_eq!(routes.route(None), Some(&"default"));
        assert_eq!(routes.route(Some("")), Some(&"default"));
        assert_eq!(routes.route(Some("äpi.example.com")), Some(&"default"));
        let long = format!("{}.example.com", "a".repeat(250));
        assert_eq!(routes.route(Some(&long)), Some(&"default"));
        let mut no_default = Routes::new();
        no_default.insert("api.example.com", 1).expect("api");
        assert_eq!(no_default.route(None), None);
        assert_eq!(no_default.route(Some("www.example.com")), None);
    }

    #[test]
    fn matches_a_name_of_253_bytes() {
        let label = "a".repeat(63);
        let name = format!("{label}.{label}.{label}.{}", "b".repeat(61));
        assert_eq!(name.len(), 253);
        let mut routes = Routes::new();
        routes.insert(&name, 1).expect("longest name");
        assert_eq!(routes.route(Some(&name.to_ascii_uppercase())), Some(&1));
        assert_eq!(routes.route(Some(&format!("{name}."))), Some(&1));
    }

    #[test]
    fn rejects_a_name_claimed_twice() {
        let mut routes = table();
        let err = routes.insert("API.example.com.", "again").unwrap_err();
        assert_eq!(err, RouteError::Duplicate("API.example.com.".into()));
        assert_eq!(
            err.to_string(),
            "server name API.example.com. is claimed twice"
        );
        assert!(matches!(
            routes.insert("*.EXAMPLE.com", "again"),
            Err(RouteError::Duplicate(_))
        ));
        let err = routes.set_default("again").unwrap_err();
        assert_eq!(err, RouteError::DuplicateDefault);
        assert_eq!(err.to_string(), "the default endpoint is set twice");
        assert_eq!(routes.route(Some("api.example.com")), Some(&"api"));
    }

    #[test]
    fn rejects_names_that_are_not_dns_names_or_wildcards() {
        let mut routes = Routes::new();
        for bad in [
            "",
            ".",
            "*",
            "*.",
            "**.example.com",
            "*a.example.com",
            "a*.example.com",
            "api.*.example.com",
            "*.*.example.com",
            "api..example.com",
            ".example.com",
            "api.example.com..",
            "api example.com",
            "äpi.example.com",
            "api.example.com:443",
        ] {
            let err = routes.insert(bad, ()).unwrap_err();
            assert_eq!(err, RouteError::Invalid(bad.into()), "{bad:?}");
        }
        assert_eq!(
            routes.insert("*a.example.com", ()).unwrap_err().to_string(),
            "server name *a.example.com is not a DNS name or a *.wildcard"
        );
        assert!(routes.is_empty());
    }

    #[test]
    fn counts_names_and_the_default() {
        let mut routes = Routes::new();
        assert!(routes.is_empty() && !routes.has_names());
        routes.set_default(0).expect("default");
        assert_eq!(routes.len(), 1);
        assert!(!routes.has_names());
        routes.insert("*.example.com", 1).expect("wildcard");
        assert!(routes.has_names());
        assert_eq!(routes.len(), 2);
    }

    #[test]
    fn routes_within_a_table_of_10000_names() {
        let mut routes = Routes::new();
        for i in 0..5000 {
            routes
                .insert(&format!("svc-{i}.example.com"), i)
                .expect("exact");
            routes
                .insert(&format!("*.tenant-{i}.example.net"), 10_000 + i)
                .expect("wildcard");
        }
        routes.set_default(-1).expect("default");
        assert_eq!(routes.len(), 10_001);
        for i in 0..5000 {
            assert_eq!(
                routes.route(Some(&format!("SVC-{i}.example.com"))),
                Some(&i)
            );
            let wild = format!("www.tenant-{i}.example.net");
            assert_eq!(routes.route(Some(&wild)), Some(&(10_000 + i)));
        }
        assert_eq!(routes.route(Some("svc-5000.example.com")), Some(&-1));
        assert_eq!(routes.route(Some("tenant-1.example.net")), Some(&-1));
    }
}
