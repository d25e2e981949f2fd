//! The metrics endpoint: a tiny HTTP/1.1 server on its own thread. `GET /metrics` answers the
//! Prometheus text exposition format (0.0.4); anything else is 404. One connection at a time,
//! each closed after its answer, with a deadline, so a stuck client holds up only the metrics.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::Duration,
};

use prometheus_client::{encoding::prometheus_text, registry::Registry};

use super::Metrics;
use crate::{error::Error, kernel::KernelGauges};

/// The content type of the text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How long a client has to send its request and take the answer.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
/// The longest request head read; the rest is ignored.
const MAX_REQUEST: usize = 8192;

/// Binds `listen` and serves `metrics` there until the agent exits.
pub fn start(listen: SocketAddr, metrics: Metrics, gauges: KernelGauges) -> Result<(), Error> {
    let listener =
        TcpListener::bind(listen).map_err(|source| Error::MetricsListen { address: listen, source })?;
    let registry = metrics.registry();
    thread::Builder::new()
        .name("vigie-metrics".to_owned())
        .spawn(move || {
            for client in listener.incoming().flatten() {
                // A client that goes away mid-answer is its own loss.
                let _ = answer(client, &metrics, &registry, &gauges);
            }
        })
        .map_err(|e| Error::system("starting the metrics thread", e))?;
    Ok(())
}

/// Reads one request from `client` and answers it.
fn answer(
    mut client: TcpStream,
    metrics: &Metrics,
    registry: &Registry,
    gauges: &KernelGauges,
) -> io::Result<()> {
    client.set_read_timeout(Some(CLIENT_DEADLINE))?;
    client.set_write_timeout(Some(CLIENT_DEADLINE))?;
    let head = read_head(&mut client)?;
    let response = if is_metrics_request(&head) {
        metrics.read_kernel(gauges);
        let mut body = String::new();
        prometheus_text::encode(&mut body, registry).map_err(|_| io::Error::other("encoding the metrics"))?;
        response("200 OK", CONTENT_TYPE, &body)
    } else {
        response("404 Not Found", "text/plain; charset=utf-8", "not found: the metrics are at GET /metrics\n")
    };
    client.write_all(response.as_bytes())?;
    client.flush()
}

/// The request line and headers, up to the blank line (or [`MAX_REQUEST`] bytes).
fn read_head(client: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Whether the request is `GET /metrics` (a query string allowed).
fn is_metrics_request(head: &str) -> bool {
    let mut words = head.lines().next().unwrap_or_default().split(' ');
    let (Some("GET"), Some(target)) = (words.next(), words.next()) else { return false };
    target.split('?').next() == Some("/metrics")
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_the_metrics() {
        assert!(is_metrics_request("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(is_metrics_request("GET /metrics?name[]=up HTTP/1.1\r\n\r\n"));
        for other in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET /metricsx HTTP/1.1\r\n\r\n",
            "POST /metrics HTTP/1.1\r\n\r\n",
            "",
            "GET",
        ] {
            assert!(!is_metrics_request(other), "{other:?}");
        }
    }

    #[test]
    fn a_request_head_is_read_up_to_its_blank_line() {
        let mut request: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        let head = read_head(&mut request).unwrap();
        assert!(head.starts_with("GET /metrics") && head.contains("\r\n\r\n"), "{head:?}");
    }

    #[test]
    fn a_response_says_its_length_and_closes() {
        let text = response("404 Not Found", "text/plain", "gone\n");
        assert_eq!(text, "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\ngone\n");
    }
}
