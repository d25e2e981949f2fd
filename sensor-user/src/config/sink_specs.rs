//! Where documents go besides the output: `[[sink]]` tables in the config file and
//! `--sink URL` on the command line, checked into [`SinkSpec`]s before anything starts.

use std::path::PathBuf;

use serde::Deserialize;

use crate::format::Schema;

/// Where a sink's spools live unless `spool_dir` says otherwise.
const SPOOL_ROOT: &str = "/var/lib/vigie/spool";
/// A webhook's spool limit unless `spool_max_mb` says otherwise.
const DEFAULT_SPOOL_MAX_MB: f64 = 64.0;
/// Rotated files kept unless `keep` says otherwise.
const DEFAULT_KEEP: u32 = 5;
/// Matrix notices sent at most per minute unless `rate_per_minute` says otherwise.
const DEFAULT_MATRIX_RATE: u32 = 10;

/// One sink, checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "SinkTable")]
pub struct SinkSpec {
    pub kind: SinkKind,
    pub format: Schema,
}

/// What a sink is and where it delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkKind {
    /// JSON lines on standard output.
    Stdout,
    /// JSON lines appended to a file (mode 0600), rotated by size if `rotation` is set.
    File { path: PathBuf, rotation: Option<Rotation> },
    /// RFC 5424 messages to a syslog daemon.
    Syslog(SyslogAddress),
    /// JSON batches sent by `POST` to a collector, spooled on disk until it takes them.
    Webhook(WebhookSpec),
    /// `m.notice` messages in a Matrix room, for alerts.
    Matrix(MatrixSpec),
}

/// Size rotation of a file sink: `path` moves to `path.1` (and `.1` to `.2`, …) before a
/// line would take it past `max_bytes`; `keep` rotated files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: u32,
}

/// A syslog daemon's address and transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogAddress {
    /// One datagram per message, `host:port`.
    Udp(String),
    /// Octet-counted frames (RFC 6587) on one connection, `host:port`.
    Tcp(String),
    /// One datagram per message on a unix socket (`/dev/log`).
    Unix(PathBuf),
}

/// An HTTP collector and the spool that holds what it has not taken yet.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    pub url: String,
    pub spool_dir: PathBuf,
    /// Beyond this, the oldest spooled documents are dropped (and counted).
    pub spool_max_bytes: u64,
}

/// A room of a Matrix homeserver the agent posts alerts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixSpec {
    pub homeserver: String,
    pub room_id: String,
    /// A file holding the access token (a secret: read, never shown).
    pub access_token_file: PathBuf,
    pub rate_per_minute: u32,
}

/// `type` of a `[[sink]]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum SinkType {
    File,
    Syslog,
    Webhook,
    Matrix,
}

/// A `[[sink]]` table as written: every sink's fields, checked against its `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkTable {
    #[serde(rename = "type")]
    kind: SinkType,
    format: Option<Schema>,
    path: Option<PathBuf>,
    max_bytes: Option<u64>,
    keep: Option<u32>,
    address: Option<String>,
    url: Option<String>,
    spool_dir: Option<PathBuf>,
    spool_max_mb: Option<f64>,
    homeserver: Option<String>,
    room_id: Option<String>,
    access_token_file: Option<PathBuf>,
    rate_per_minute: Option<u32>,
}

impl TryFrom<SinkTable> for SinkSpec {
    type Error = String;

    fn try_from(table: SinkTable) -> Result<Self, String> {
        table.refuse_foreign_fields()?;
        let kind = match table.kind {
            SinkType::File => SinkKind::File {
                path: required("path", "file", table.path)?,
                rotation: match (table.max_bytes, table.keep) {
                    (None, None) => None,
                    (None, Some(_)) => return Err("field `keep`: needs `max_bytes`".to_owned()),
                    (Some(0), _) => return Err("field `max_bytes`: must be more than 0".to_owned()),
                    (Some(max_bytes), keep) => {
                        Some(Rotation { max_bytes, keep: keep.unwrap_or(DEFAULT_KEEP) })
                    }
                },
            },
            SinkType::Syslog => {
                let address = required("address", "syslog", table.address)?;
                SinkKind::Syslog(SyslogAddress::parse(&address).map_err(|e| format!("field `address`: {e}"))?)
            }
            SinkType::Webhook => {
                let url = required("url", "webhook", table.url)?;
                check_http_url(&url).map_err(|e| format!("field `url`: {e}"))?;
                let max_mb = table.spool_max_mb.unwrap_or(DEFAULT_SPOOL_MAX_MB);
                if !(max_mb.is_finite() && max_mb > 0.0) {
                    return Err("field `spool_max_mb`: must be a positive number".to_owned());
                }
                SinkKind::Webhook(WebhookSpec {
                    spool_dir: table.spool_dir.unwrap_or_else(|| default_spool_dir(&url)),
                    url,
                    // Rounded to a byte: the limit needs no finer grain than that.
                    #[expect(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        reason = "positive, finite"
                    )]
                    spool_max_bytes: (max_mb * 1_048_576.0).round().max(1.0) as u64,
                })
            }
            SinkType::Matrix => {
                let homeserver = required("homeserver", "matrix", table.homeserver)?;
                check_http_url(&homeserver).map_err(|e| format!("field `homeserver`: {e}"))?;
                let room_id = required("room_id", "matrix", table.room_id)?;
                // Room version 12 dropped the `:server` part: only the sigil is common to all.
                if !room_id.starts_with('!') || room_id.len() < 2 {
                    return Err("field `room_id`: a room id starts with `!` (not a `#` alias)".to_owned());
                }
                let rate_per_minute = table.rate_per_minute.unwrap_or(DEFAULT_MATRIX_RATE);
                if rate_per_minute == 0 {
                    return Err("field `rate_per_minute`: must be more than 0".to_owned());
                }
                SinkKind::Matrix(MatrixSpec {
                    homeserver: homeserver.trim_end_matches('/').to_owned(),
                    room_id,
                    access_token_file: required("access_token_file", "matrix", table.access_token_file)?,
                    rate_per_minute,
                })
            }
        };
        Ok(Self { kind, format: table.format.unwrap_or_default() })
    }
}

impl SinkTable {
    /// An error for the first field set that the table's `type` has no use for.
    fn refuse_foreign_fields(&self) -> Result<(), String> {
        let set = [
            ("path", self.path.is_some(), SinkType::File),
            ("max_bytes", self.max_bytes.is_some(), SinkType::File),
            ("keep", self.keep.is_some(), SinkType::File),
            ("address", self.address.is_some(), SinkType::Syslog),
            ("url", self.url.is_some(), SinkType::Webhook),
            ("spool_dir", self.spool_dir.is_some(), SinkType::Webhook),
            ("spool_max_mb", self.spool_max_mb.is_some(), SinkType::Webhook),
            ("homeserver", self.homeserver.is_some(), SinkType::Matrix),
            ("room_id", self.room_id.is_some(), SinkType::Matrix),
            ("access_token_file", self.access_token_file.is_some(), SinkType::Matrix),
            ("rate_per_minute", self.rate_per_minute.is_some(), SinkType::Matrix),
        ];
        match set.iter().find(|(_, is_set, owner)| *is_set && *owner != self.kind) {
            Some((field, _, owner)) => Err(format!(
                "field `{field}`: belongs to a {} sink, not a {} sink",
                type_name(*owner),
                type_name(self.kind)
            )),
            None => Ok(()),
        }
    }
}

fn type_name(kind: SinkType) -> &'static str {
    match kind {
        SinkType::File => "file",
        SinkType::Syslog => "syslog",
        SinkType::Webhook => "webhook",
        SinkType::Matrix => "matrix",
    }
}

fn required<T>(field: &str, kind: &str, value: Option<T>) -> Result<T, String> {
    value.ok_or_else(|| format!("field `{field}`: required for a {kind} sink"))
}

impl SyslogAddress {
    /// `udp://host:port`, `tcp://host:port` or `unix:///path`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scheme, rest) =
            text.split_once("://").ok_or_else(|| format!("{text:?}: expected udp://, tcp:// or unix://"))?;
        match scheme {
            "udp" if is_host_port(rest) => Ok(Self::Udp(rest.to_owned())),
            "tcp" if is_host_port(rest) => Ok(Self::Tcp(rest.to_owned())),
            "udp" | "tcp" => Err(format!("{text:?}: expected {scheme}://HOST:PORT")),
            "unix" if rest.starts_with('/') => Ok(Self::Unix(PathBuf::from(rest))),
            "unix" => Err(format!("{text:?}: a unix socket path is absolute (unix:///dev/log)")),
            _ => Err(format!("{text:?}: unknown transport {scheme:?} (udp, tcp or unix)")),
        }
    }
}

/// Whether `text` is `host:port` (`[v6]:port` too), with a port that is a number above 0.
fn is_host_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
    })
}

/// An `http://` or `https://` URL with a host.
fn check_http_url(text: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = text.parse().map_err(|_| format!("{text:?} is not a URL"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(format!("{text:?}: expected an http:// or https:// URL with a host"));
    }
    Ok(())
}

/// A spool of its own for each collector URL, under [`SPOOL_ROOT`].
fn default_spool_dir(url: &str) -> PathBuf {
    PathBuf::from(SPOOL_ROOT).join(format!("webhook-{:08x}", crc32fast::hash(url.as_bytes())))
}

/// `--sink URL`: `-` (stdout), `file:///path`, `syslog+udp://host:port`,
/// `syslog+tcp://host:port`, `syslog+unix:///path`, `http://…` or `https://…` (a webhook
/// spooled under `/var/lib/vigie/spool`).
pub fn parse_sink_url(text: &str) -> Result<SinkSpec, String> {
    let kind = if text == "-" {
        SinkKind::Stdout
    } else if let Some(path) = text.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(format!("{text:?}: a file sink's path is absolute (file:///var/log/vigie.jsonl)"));
        }
        SinkKind::File { path: PathBuf::from(path), rotation: None }
    } else if let Some(address) = text.strip_prefix("syslog+") {
        SinkKind::Syslog(SyslogAddress::parse(address)?)
    } else if text.starts_with("http://") || text.starts_with("https://") {
        check_http_url(text)?;
        SinkKind::Webhook(WebhookSpec {
            url: text.to_owned(),
            spool_dir: default_spool_dir(text),
            // Rounded to a byte: the limit needs no finer grain than that.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a positive constant"
            )]
            spool_max_bytes: (DEFAULT_SPOOL_MAX_MB * 1_048_576.0) as u64,
        })
    } else {
        return Err(format!(
            "{text:?} is not a sink (expected -, file:///PATH, syslog+udp://HOST:PORT, \
             syslog+tcp://HOST:PORT, syslog+unix:///PATH, http(s)://URL; Matrix rooms are \
             [[sink]] tables in the config file)"
        ));
    };
    Ok(SinkSpec { kind, format: Schema::Ecs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_url_form_parses_to_its_sink() {
        let kind = |url| parse_sink_url(url).unwrap().kind;
        assert_eq!(kind("-"), SinkKind::Stdout);
        assert_eq!(
            kind("file:///var/log/v.jsonl"),
            SinkKind::File { path: "/var/log/v.jsonl".into(), rotation: None }
        );
        assert_eq!(
            kind("syslog+udp://127.0.0.1:514"),
            SinkKind::Syslog(SyslogAddress::Udp("127.0.0.1:514".into()))
        );
        assert_eq!(
            kind("syslog+tcp://[::1]:6514"),
            SinkKind::Syslog(SyslogAddress::Tcp("[::1]:6514".into()))
        );
        assert_eq!(kind("syslog+unix:///dev/log"), SinkKind::Syslog(SyslogAddress::Unix("/dev/log".into())));
        let SinkKind::Webhook(hook) = kind("https://siem.example/ingest") else { panic!("not a webhook") };
        assert_eq!(hook.url, "https://siem.example/ingest");
        assert!(hook.spool_dir.starts_with(SPOOL_ROOT), "{}", hook.spool_dir.display());
        assert_ne!(hook.spool_dir, default_spool_dir("https://other.example/"), "one spool per collector");
    }

    #[test]
    fn malformed_urls_are_refused_and_named() {
        for bad in [
            "syslog+udp://127.0.0.1",
            "syslog+udp://127.0.0.1:0",
            "syslog+tcp://:514",
            "syslog+unix://dev/log",
            "syslog+smtp://h:25",
            "file://relative",
            "https://",
            "ftp://host/x",
            "matrix://x",
        ] {
            let err = parse_sink_url(bad).unwrap_err();
            assert!(err.contains(&format!("{:?}", bad.trim_start_matches("syslog+"))), "{bad}: {err}");
        }
    }
}
