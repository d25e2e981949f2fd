//! Webhook: documents sent by `POST` as JSON arrays to a collector, oldest first. Each is spooled on
//! disk before anything is sent and removed only once the collector answered 2xx, so delivery
//! is at least once, in order, across collector outages and agent restarts; the collector
//! deduplicates on `event.id`.

use std::time::Duration;

use crate::{
    config::sink_specs::WebhookSpec,
    error::Error,
    format::Schema,
    journal::Feed,
    sinks::{
        outgoing::Outgoing,
        remote::{Delivered, Destination, RemoteSink},
        spool::Spool,
        SinkError,
    },
};

/// Most documents in one POST.
const BATCH_DOCUMENTS: usize = 100;
/// About the most bytes of documents in one POST (a larger document goes alone).
const BATCH_BYTES: u64 = 1 << 20;
/// How long one POST may take, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens the spool and starts the sink.
///
/// # Errors
/// When the spool directory cannot be created or read.
pub fn start(spec: &WebhookSpec, format: Schema, journal: Feed) -> Result<RemoteSink, Error> {
    let name = shown_url(&spec.url);
    let spool = Spool::open(&spec.spool_dir, spec.spool_max_bytes).map_err(|source| Error::Sink {
        sink: name.clone(),
        what: format!("spool {}", spec.spool_dir.display()),
        source,
    })?;
    let webhook = Webhook { url: spec.url.clone(), agent: http_agent(), spool };
    Ok(RemoteSink::start(name, format, |_| true, webhook, journal))
}

/// `url` as documents and errors show it: without user information or query, which may
/// hold a credential.
fn shown_url(url: &str) -> String {
    match url.parse::<ureq::http::Uri>() {
        Ok(uri) => format!(
            "{}://{}{}{}",
            uri.scheme_str().unwrap_or("http"),
            uri.host().unwrap_or_default(),
            uri.port().map(|p| format!(":{p}")).unwrap_or_default(),
            uri.path()
        ),
        Err(_) => "webhook".to_owned(),
    }
}

/// An HTTP client that reports error statuses as answers, not failures.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

struct Webhook {
    url: String,
    agent: ureq::Agent,
    spool: Spool,
}

impl Destination for Webhook {
    fn keep(&mut self, item: Outgoing) -> Result<u64, SinkError> {
        Ok(self.spool.push(item.json.as_bytes())?)
    }

    fn deliver(&mut self) -> Result<Delivered, SinkError> {
        let mut delivered = Delivered::default();
        loop {
            let (documents, Some(last)) = self.spool.oldest(BATCH_DOCUMENTS, BATCH_BYTES)? else {
                return Ok(delivered);
            };
            let response = self
                .agent
                .post(&self.url)
                .header("Content-Type", "application/json")
                .send(batch(&documents))?;
            let status = response.status().as_u16();
            if !(200..300).contains(&status) {
                return Err(SinkError::Status(status));
            }
            self.spool.remove_through(last)?;
            for document in &documents {
                delivered.add(alert_id(document));
            }
        }
    }

    fn pending(&self) -> usize {
        self.spool.len()
    }
}

/// The `event.id` of `document` (a spooled JSON text, ECS or OCSF) if it is an alert.
fn alert_id(document: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(document).ok()?;
    let (kind, id) = match value.pointer("/event/kind") {
        Some(kind) => (kind.as_str(), value.pointer("/event/id")),
        // OCSF: a Detection Finding, the id in its metadata.
        None => (
            value["class_uid"].as_u64().filter(|&class| class == 2004).map(|_| "alert"),
            value.pointer("/metadata/uid"),
        ),
    };
    (kind == Some("alert")).then(|| id.and_then(serde_json::Value::as_str).map(str::to_owned)).flatten()
}

/// The JSON array of `documents` (each a JSON object already).
fn batch(documents: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(documents.iter().map(|d| d.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, document) in documents.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(document);
    }
    body.push(b']');
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shown_url_has_no_credentials() {
        assert_eq!(
            shown_url("https://user:pw@siem.example:8443/ingest?token=t0k"),
            "https://siem.example:8443/ingest"
        );
        assert_eq!(shown_url("http://127.0.0.1/"), "http://127.0.0.1/");
    }

    /// A collector on loopback answering each request with the next of `statuses`, and the
    /// bodies it was sent.
    fn collector(statuses: &'static [u16]) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let mut bodies = Vec::new();
            for status in statuses {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream);
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                bodies.push(String::from_utf8(body).unwrap());
                let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                reader.get_mut().write_all(answer.as_bytes()).unwrap();
            }
            bodies
        });
        (url, server)
    }

    fn outgoing(id: &str) -> Outgoing {
        outgoing_of(id, crate::format::ecs::SENSOR_STARTED)
    }

    fn outgoing_of(id: &str, event: crate::format::ecs::Event) -> Outgoing {
        let document = crate::format::ecs::Document::new(
            0,
            event,
            id.to_owned(),
            crate::format::ecs::Host { name: "h".to_owned() },
        );
        Outgoing::new(&document, Schema::Ecs)
    }

    #[test]
    fn an_error_status_keeps_the_batch_spooled_for_the_next_try() {
        let dir = std::env::temp_dir().join(format!("vigie-webhook-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (url, server) = collector(&[503, 200]);
        let mut webhook = Webhook { url, agent: http_agent(), spool: Spool::open(&dir, 1 << 20).unwrap() };
        webhook.keep(outgoing("e-1")).unwrap();
        webhook.keep(outgoing_of("e-2", crate::format::ecs::CREDENTIAL_EXFILTRATION)).unwrap();
        assert!(matches!(webhook.deliver(), Err(SinkError::Status(503))));
        assert_eq!(webhook.pending(), 2, "nothing removed on an error status");
        let delivered = webhook.deliver().unwrap();
        assert_eq!(delivered, Delivered { count: 2, alerts: vec!["e-2".to_owned()] }, "the alert is named");
        assert_eq!(webhook.pending(), 0);
        let bodies = server.join().unwrap();
        assert_eq!(bodies[0], bodies[1], "the same batch sent again");
        let ids: Vec<serde_json::Value> = serde_json::from_str::<Vec<serde_json::Value>>(&bodies[1])
            .unwrap()
            .into_iter()
            .map(|document| document["event"]["id"].clone())
            .collect();
        assert_eq!(ids, ["e-1", "e-2"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_batch_is_a_json_array_of_the_documents_in_order() {
        let body = batch(&[br#"{"a":1}"#.to_vec(), br#"{"b":2}"#.to_vec()]);
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value, serde_json::json!([{"a": 1}, {"b": 2}]));
    }
}
