//! Matrix: each alert as an `m.notice` in a room, through the client-server API
//! (`PUT /_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}`). The transaction id is the
//! alert's `event.id`, so a retried send is the same event to the homeserver. Notices are
//! rate-limited (a room is read by people); the access token is read from its file once and
//! never shown.

use std::{
    fs,
    time::{Duration, Instant},
};

use zeroize::Zeroizing;

use crate::{
    config::sink_specs::MatrixSpec,
    error::Error,
    format::Schema,
    journal::Feed,
    sinks::{
        outgoing::Outgoing,
        remote::{Delivered, Destination, Pending, RemoteSink},
        webhook::http_agent,
        SinkError,
    },
};

/// Reads the token and starts the sink; it takes alerts only.
///
/// # Errors
/// When the token file cannot be read or is empty.
pub fn start(spec: &MatrixSpec, format: Schema, journal: Feed) -> Result<RemoteSink, Error> {
    let name = format!("matrix:{}", spec.room_id);
    let token_error = |source| Error::Sink {
        sink: name.clone(),
        what: format!("access token file {}", spec.access_token_file.display()),
        source,
    };
    let token = Zeroizing::new(fs::read_to_string(&spec.access_token_file).map_err(token_error)?);
    let token = Zeroizing::new(token.trim().to_owned());
    if token.is_empty() {
        return Err(token_error(std::io::Error::new(std::io::ErrorKind::InvalidData, "empty")));
    }
    let matrix = Matrix {
        send_url: format!(
            "{}/_matrix/client/v3/rooms/{}/send/m.room.message/",
            spec.homeserver,
            percent_encoded(&spec.room_id)
        ),
        authorization: Zeroizing::new(format!("Bearer {}", token.as_str())),
        agent: http_agent(),
        pending: Pending::default(),
        rate: RateLimit::per_minute(spec.rate_per_minute),
    };
    Ok(RemoteSink::start(name, format, is_alert, matrix, journal))
}

fn is_alert(item: &Outgoing) -> bool {
    item.kind == "alert"
}

struct Matrix {
    /// The send endpoint of the room, up to the transaction id.
    send_url: String,
    authorization: Zeroizing<String>,
    agent: ureq::Agent,
    pending: Pending,
    rate: RateLimit,
}

impl Destination for Matrix {
    fn keep(&mut self, item: Outgoing) -> Result<u64, SinkError> {
        Ok(self.pending.push(item))
    }

    fn deliver(&mut self) -> Result<Delivered, SinkError> {
        let Self { send_url, authorization, agent, pending, rate } = self;
        pending.deliver(|item| {
            if !rate.take() {
                return Ok(false);
            }
            let body = serde_json::json!({ "msgtype": "m.notice", "body": notice(item) }).to_string();
            let mut response = agent
                .put(format!("{send_url}{}", percent_encoded(&item.id)))
                .header("Authorization", authorization.as_str())
                .header("Content-Type", "application/json")
                .send(body)?;
            match response.status().as_u16() {
                200..=299 => Ok(true),
                429 => {
                    let header = response.headers().get("retry-after").and_then(|v| v.to_str().ok());
                    let header = header.and_then(|v| v.trim().parse().ok()).map(Duration::from_secs);
                    let answer = response.body_mut().read_to_string().unwrap_or_default();
                    let wait = header.or_else(|| retry_after(&answer));
                    Err(wait.map_or(SinkError::Status(429), SinkError::RateLimited))
                }
                status => Err(SinkError::Status(status)),
            }
        })
    }

    fn pending(&self) -> usize {
        self.pending.len()
    }
}

/// The notice's text: what happened, on which host, the alert's key fields and its id.
fn notice(item: &Outgoing) -> String {
    let fields: Vec<String> = item.fields.iter().map(|(name, value)| format!("{name}={value}")).collect();
    format!("vigie {} on {}: {} (event.id {})", item.action, item.host, fields.join(" "), item.id)
}

/// The wait a homeserver's `M_LIMIT_EXCEEDED` answer asks for in its body (`retry_after_ms`:
/// the client-server API before v1.10 had no `Retry-After` header, and Synapse sends both).
fn retry_after(answer: &str) -> Option<Duration> {
    let answer: serde_json::Value = serde_json::from_str(answer).ok()?;
    answer.get("retry_after_ms")?.as_u64().map(Duration::from_millis)
}

/// `text` with every byte but the URL-unreserved ones percent-encoded (RFC 3986).
fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A token bucket: bursts of up to the per-minute rate, refilled evenly over the minute.
struct RateLimit {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    at: Instant,
}

impl RateLimit {
    fn per_minute(rate: u32) -> Self {
        let capacity = f64::from(rate);
        Self { tokens: capacity, capacity, per_second: capacity / 60.0, at: Instant::now() }
    }

    /// Takes a token if there is one now.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.capacity);
        self.at = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    #[cfg(test)]
    fn after(mut self, elapsed: Duration) -> Self {
        self.at -= elapsed;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_and_transaction_ids_are_percent_encoded() {
        assert_eq!(percent_encoded("!ops:example.org"), "%21ops%3Aexample.org");
        assert_eq!(percent_encoded("b-42-123-7"), "b-42-123-7");
    }

    #[test]
    fn a_limit_exceeded_answer_says_how_long_to_wait() {
        let answer = r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":2500}"#;
        assert_eq!(retry_after(answer), Some(Duration::from_millis(2500)));
        assert_eq!(retry_after(r#"{"errcode":"M_LIMIT_EXCEEDED"}"#), None);
        assert_eq!(retry_after("<html>busy</html>"), None);
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_refills_over_the_minute() {
        let mut rate = RateLimit::per_minute(2);
        assert!(rate.take() && rate.take());
        assert!(!rate.take(), "a third notice waits");
        let mut rate = rate.after(Duration::from_secs(30));
        assert!(rate.take(), "half a minute later one more");
        assert!(!rate.take());
    }
}
