//! Just enough of the Matrix client-server API for the scenarios: JSON over HTTP/1.0 to the
//! homeserver on loopback. Access tokens are kept, sent, and never printed (no `Debug`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

/// Generous: a URL preview waits on the fetch of the page.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A status and a JSON body (`Null` when the body is not JSON).
pub struct Response {
    pub status: u16,
    pub body: Value,
}

impl Response {
    /// `HTTP <status> <errcode>`: what an error may say without echoing a request.
    #[must_use]
    pub fn summary(&self) -> String {
        let errcode = self.body.get("errcode").and_then(Value::as_str).unwrap_or("");
        format!("HTTP {} {errcode}", self.status)
    }
}

/// A logged-in user of the homeserver at `addr`.
pub struct Client {
    addr: SocketAddr,
    token: String,
}

impl Client {
    /// Logs `user` in with `password`.
    ///
    /// # Errors
    /// When the homeserver cannot be reached or refuses the login.
    pub fn login(addr: SocketAddr, user: &str, password: &str) -> Result<Self> {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        });
        let response = request(addr, None, "POST", "/_matrix/client/v3/login", Some(&body))?;
        ensure!(response.status == 200, "login of {user}: {}", response.summary());
        let token = response.body["access_token"].as_str().context("login: no access_token")?.to_owned();
        Ok(Self { addr, token })
    }

    /// The access token, for a scenario that makes the homeserver leak it. Never print it.
    #[must_use]
    pub fn access_token(&self) -> &str {
        &self.token
    }

    /// `method path` with this user's token.
    ///
    /// # Errors
    /// When the homeserver cannot be reached or does not answer HTTP.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        request(self.addr, Some(&self.token), method, path, body)
    }

    /// Creates a private room and returns its id.
    ///
    /// # Errors
    /// When the homeserver refuses.
    pub fn create_room(&self, name: &str) -> Result<String> {
        let response = self.call("POST", "/_matrix/client/v3/createRoom", Some(&json!({ "name": name })))?;
        ensure!(response.status == 200, "createRoom: {}", response.summary());
        Ok(response.body["room_id"].as_str().context("createRoom: no room_id")?.to_owned())
    }

    /// Sends a text message to `room` as transaction `txn`.
    ///
    /// # Errors
    /// When the homeserver refuses.
    pub fn send_text(&self, room: &str, txn: &str, text: &str) -> Result<()> {
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}", encode(room));
        let response = self.call("PUT", &path, Some(&json!({ "msgtype": "m.text", "body": text })))?;
        ensure!(response.status == 200, "send to {room}: {}", response.summary());
        Ok(())
    }

    /// Asks the homeserver for a preview of `url`, which it fetches itself; returns the
    /// preview's `og:title`.
    ///
    /// # Errors
    /// When the homeserver could not fetch the page; the error shows the status, not the URL.
    pub fn preview_title(&self, url: &str) -> Result<String> {
        let path = format!("/_matrix/client/v1/media/preview_url?url={}", encode(url));
        let response = self.call("GET", &path, None)?;
        ensure!(response.status == 200, "preview_url: {}", response.summary());
        Ok(response.body["og:title"].as_str().context("preview without og:title")?.to_owned())
    }
}

/// Whether the homeserver at `addr` answers its health check.
#[must_use]
pub fn is_healthy(addr: SocketAddr) -> bool {
    request(addr, None, "GET", "/health", None).is_ok_and(|r| r.status == 200)
}

fn request(
    addr: SocketAddr,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .with_context(|| format!("connect to the homeserver at {addr}"))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    // HTTP/1.0: the server closes the connection after one response, with no chunking.
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).context("read the homeserver's answer")?;
    let text = String::from_utf8_lossy(&reply);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { bail!("{method}: not an HTTP answer") };
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    Ok(Response { status, body: serde_json::from_str(body).unwrap_or(Value::Null) })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
#[must_use]
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn encodes_urls_for_a_query_string() {
        assert_eq!(encode("http://10.213.1.2:8080/?t=a b"), "http%3A%2F%2F10.213.1.2%3A8080%2F%3Ft%3Da%20b");
        assert_eq!(encode("!room:vigie.test"), "%21room%3Avigie.test");
    }
}
