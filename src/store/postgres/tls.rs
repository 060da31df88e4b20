//! TLS to PostgreSQL with libpq's meanings of `sslmode`, `sslrootcert`, `sslcert` and `sslkey`
//! (docs/configuration.md#postgresql-over-tls). tokio-postgres knows only `disable`, `prefer`
//! and `require`, and no certificate files: these parameters are taken off the URL here, and
//! the rest of it goes to tokio-postgres unchanged.
//!
//! | sslmode       | TLS                       | server certificate checked against the CA |
//! |---------------|---------------------------|-------------------------------------------|
//! | `disable`     | never                     | —                                         |
//! | `prefer`      | when the server offers it | no                                        |
//! | `require`     | always                    | only when `sslrootcert` is given (libpq)  |
//! | `verify-ca`   | always                    | yes                                       |
//! | `verify-full` | always                    | yes, and the host name must match it      |
//!
//! Absent, `sslmode` is `prefer`, libpq's (and psql's) default: see `DEFAULT_SSL_MODE`.

use std::path::PathBuf;

use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::tls::ServerTrust;

/// The mode when the URL names none: libpq's default. It keeps every URL that worked before
/// (a server without TLS still accepts it) and encrypts whenever the server offers TLS, which
/// every managed PostgreSQL does. The Go registry's driver assumes `require` instead; a URL
/// written for it either names its mode or points at a server with TLS, and both behave the
/// same here. Whoever needs the server's identity proven says `verify-full`.
pub const DEFAULT_SSL_MODE: SslMode = SslMode::Prefer;

/// libpq's `sslmode` values, but `allow` (plain first, TLS as the fallback), which tokio-postgres
/// cannot do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported; use prefer (TLS when the server \
                            offers it) or disable"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "sslmode must be one of disable, prefer, require, verify-ca, verify-full \
                     (got {other:?})"
                ))
            }
        })
    }

    fn wire(self) -> WireMode {
        match self {
            SslMode::Disable => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
        }
    }
}

/// Where the CA certificates that vouch for the server come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the public web's CAs.
    System,
}

/// The TLS parameters of a database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsParams {
    pub mode: SslMode,
    roots: Option<Roots>,
    /// The client certificate (chain) and its key, for `cert` authentication.
    client: Option<(PathBuf, PathBuf)>,
}

/// Takes the TLS parameters off a database URL (either form: `postgres://…?k=v` or `k=v k=v`):
/// the URL left for tokio-postgres, and the parameters.
pub fn split_url(database_url: &str) -> Result<(String, TlsParams), String> {
    let (rest, taken) = if let Some((base, query)) = url_query(database_url) {
        // Split raw and kept verbatim: tokio-postgres decodes the rest as it always has.
        let mut kept = Vec::new();
        let mut taken = Vec::new();
        for parameter in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            match is_ours(&decode(key)?) {
                true => taken.push((decode(key)?, decode(value)?)),
                false => kept.push(parameter),
            }
        }
        let rest = match kept.is_empty() {
            true => base.to_owned(),
            false => format!("{base}?{}", kept.join("&")),
        };
        (rest, taken)
    } else if database_url.contains("://") {
        (database_url.to_owned(), Vec::new())
    } else {
        let (kept, taken) = partition(conninfo_pairs(database_url)?);
        let rest = kept
            .iter()
            .map(|(key, value)| {
                format!(
                    "{key}='{}'",
                    value.replace('\\', "\\\\").replace('\'', "\\'")
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        (rest, taken)
    };
    let mut mode = None;
    let (mut rootcert, mut cert, mut key) = (None, None, None);
    for (name, value) in taken {
        match name.as_str() {
            "sslmode" => mode = Some(SslMode::parse(&value)?),
            "sslrootcert" => rootcert = Some(value),
            "sslcert" => cert = Some(value),
            _ => key = Some(value),
        }
    }
    let mode = mode.unwrap_or(DEFAULT_SSL_MODE);
    let roots = match rootcert.as_deref() {
        Some("system") => Some(Roots::System),
        Some(path) => Some(Roots::File(path.into())),
        // libpq's default file, needed by the verifying modes only.
        None if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) => {
            let default = home_file("root.crt").ok_or_else(|| {
                format!(
                    "sslmode={} needs sslrootcert (a PEM file of the CA certificates, or \
                     `system`)",
                    if mode == SslMode::VerifyCa {
                        "verify-ca"
                    } else {
                        "verify-full"
                    }
                )
            })?;
            Some(Roots::File(default))
        }
        None => None,
    };
    let client = match (cert, key) {
        (Some(cert), Some(key)) => Some((cert.into(), key.into())),
        (Some(_), None) => return Err("sslcert is given without sslkey".into()),
        (None, Some(_)) => return Err("sslkey is given without sslcert".into()),
        // libpq's default pair, when both files are there.
        (None, None) => home_file("postgresql.crt").zip(home_file("postgresql.key")),
    };
    Ok((
        rest,
        TlsParams {
            mode,
            roots,
            client,
        },
    ))
}

/// `~/.postgresql/<name>`, when it exists.
fn home_file(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("HOME")?)
        .join(".postgresql")
        .join(name);
    path.is_file().then_some(path)
}

/// The part before `?` and the query, for the URL form.
fn url_query(url: &str) -> Option<(&str, &str)> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return None;
    }
    url.split_once('?')
}

/// (the parameters tokio-postgres takes, ours).
type Pairs = Vec<(String, String)>;

fn partition(pairs: Pairs) -> (Pairs, Pairs) {
    pairs.into_iter().partition(|(key, _)| !is_ours(key))
}

fn is_ours(key: &str) -> bool {
    matches!(key, "sslmode" | "sslrootcert" | "sslcert" | "sslkey")
}

/// A URL component, percent-decoded as tokio-postgres decodes it (`+` stays `+`).
fn decode(component: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(component)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|e| format!("{component:?} is not UTF-8 once decoded: {e}"))
}

/// The `key=value` pairs of libpq's keyword form: values unquoted up to a blank, or in single
/// quotes; a backslash escapes the next character in both.
fn conninfo_pairs(conninfo: &str) -> Result<Pairs, String> {
    let mut pairs = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!(
                "missing \"=\" after {key:?} in the connection string"
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.next() {
                None if quoted => {
                    return Err("unterminated quoted value in the connection string".into())
                }
                None => break,
                Some('\'') if quoted => break,
                Some(c) if c.is_whitespace() && !quoted => break,
                Some('\\') => value.extend(chars.next()),
                Some(c) => value.push(c),
            }
        }
        pairs.push((key, value));
    }
}

impl TlsParams {
    /// What tokio-postgres is told: `prefer`/`require` stand for the verifying modes too (the
    /// verification is the connector's).
    pub fn wire_mode(&self) -> WireMode {
        self.mode.wire()
    }

    /// The connector: reads the certificate files now, so that a wrong path fails at start.
    /// The connector: reads the certificate files now, so that a wrong path fails at start.
    pub fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let roots = match &self.roots {
            Some(Roots::File(path)) => {
                Some(crate::tls::roots(path).map_err(|e| format!("sslrootcert: {e}"))?)
            }
            Some(Roots::System) => Some(crate::tls::public_roots()),
            None => None,
        };
        let server = match (self.mode, roots) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
                ServerTrust::Anyone
            }
            // libpq: `require` with a root certificate behaves as `verify-ca`.
            (SslMode::Require | SslMode::VerifyCa, Some(roots)) => ServerTrust::AnyName(roots),
            (SslMode::VerifyFull, Some(roots)) => ServerTrust::Named(roots),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                unreachable!("split_url gives the verifying modes their roots")
            }
        };
        let identity = match &self.client {
            None => None,
            Some((cert, key)) => Some(
                crate::tls::ReloadingIdentity::load(cert, key)
                    .map_err(|e| format!("sslcert/sslkey: {e}"))?,
            ),
        };
        let config =
            crate::tls::client_config(server, identity).map_err(|e| format!("sslrootcert: {e}"))?;
        Ok(MakeRustlsConnect::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_form_loses_only_the_tls_parameters() {
        let (rest, params) = split_url(
            "postgres://u:p@db:5432/mesh?options=-c%20a%3Db+c&sslmode=verify-full&sslrootcert=%2Fca%20dir%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p@db:5432/mesh?options=-c%20a%3Db+c&connect_timeout=3"
        );
        assert_eq!(params.mode, SslMode::VerifyFull);
        assert_eq!(params.roots, Some(Roots::File("/ca dir/ca.pem".into())));
        assert_eq!(params.wire_mode(), WireMode::Require);
    }

    #[test]
    fn the_keyword_form_keeps_quoting() {
        let (rest, params) = split_url(
            r"host=db password='it\'s a secret' sslmode = require user=a\ b sslcert=/c sslkey='/k y'",
        )
        .unwrap();
        let pg: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(pg.get_password(), Some(&b"it's a secret"[..]));
        assert_eq!(pg.get_user(), Some("a b"));
        assert_eq!(params.mode, SslMode::Require);
        assert_eq!(params.client, Some(("/c".into(), "/k y".into())));
    }

    #[test]
    fn without_sslmode_the_mode_is_prefer() {
        let (rest, params) = split_url("postgres://u@db/mesh").unwrap();
        assert_eq!(rest, "postgres://u@db/mesh");
        assert_eq!(params.mode, SslMode::Prefer);
        assert_eq!(params.wire_mode(), WireMode::Prefer);
    }

    #[test]
    fn unknown_modes_and_half_pairs_are_refused() {
        for (url, expected) in [
            (
                "postgres://db/m?sslmode=allow",
                "sslmode=allow is not supported",
            ),
            ("postgres://db/m?sslmode=verify", "sslmode must be one of"),
            (
                "postgres://db/m?sslmode=require&sslcert=/c",
                "sslcert is given without sslkey",
            ),
            ("host=db sslkey=/k", "sslkey is given without sslcert"),
            ("host=db password='open", "unterminated quoted value"),
        ] {
            let error = split_url(url).unwrap_err();
            assert!(error.contains(expected), "{url}: {error}");
        }
    }
}
