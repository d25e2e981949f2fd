//! Debian's rsyslog, started by a test on loopback with its own configuration: a UDP and a TCP
//! input, each written to its own file with a template that keeps the raw message. And a parser
//! of RFC 5424 messages, written from the RFC (not from the agent's code), to check them.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::collector::free_port;
use crate::host_tools::KilledOnDrop;

/// How long rsyslogd may take to open its inputs.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// Which input a message came in by.
#[derive(Debug, Clone, Copy)]
pub enum Input {
    Udp,
    Tcp,
}

/// The running daemon.
pub struct Rsyslog {
    _daemon: KilledOnDrop,
    dir: PathBuf,
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
}

impl Rsyslog {
    /// Starts `rsyslogd -n` with a configuration in `dir`, and waits until both inputs listen.
    ///
    /// # Errors
    /// When rsyslogd is missing (`apt-get install rsyslog`) or does not open its inputs.
    pub fn start(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let (udp, tcp) = (free_udp_port()?, free_port()?);
        let config = dir.join("rsyslog.conf");
        fs::write(
            &config,
            format!(
                "global(workDirectory=\"{dir}\" maxMessageSize=\"64k\")\n\
                 module(load=\"imudp\")\n\
                 module(load=\"imtcp\")\n\
                 template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
                 ruleset(name=\"udp\") {{ action(type=\"omfile\" file=\"{dir}/udp.log\" template=\"raw\") }}\n\
                 ruleset(name=\"tcp\") {{ action(type=\"omfile\" file=\"{dir}/tcp.log\" template=\"raw\") }}\n\
                 input(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\" ruleset=\"udp\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\" ruleset=\"tcp\")\n",
                dir = dir.display()
            ),
        )?;
        let daemon = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start rsyslogd (on Debian: apt-get install rsyslog)")?;
        let rsyslog = Self {
            _daemon: KilledOnDrop(daemon),
            dir: dir.to_owned(),
            udp: SocketAddr::from((Ipv4Addr::LOCALHOST, udp)),
            tcp: SocketAddr::from((Ipv4Addr::LOCALHOST, tcp)),
        };
        rsyslog.wait_until_listening()?;
        Ok(rsyslog)
    }

    fn wait_until_listening(&self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        while !(udp_bound(self.udp.port())? && TcpStream::connect(self.tcp).is_ok()) {
            ensure!(Instant::now() < deadline, "rsyslogd did not open its inputs in {START_TIMEOUT:?}");
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// The raw messages that came in by `input`, one a line.
    #[must_use]
    pub fn lines(&self, input: Input) -> Vec<String> {
        let file = match input {
            Input::Udp => "udp.log",
            Input::Tcp => "tcp.log",
        };
        fs::read_to_string(self.dir.join(file)).unwrap_or_default().lines().map(str::to_owned).collect()
    }

    /// Waits for a message by `input` that contains `text`, and returns it.
    ///
    /// # Errors
    /// When none comes within `timeout`.
    pub fn wait_for(&self, input: Input, text: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.lines(input).into_iter().find(|line| line.contains(text)) {
                return Ok(line);
            }
            if Instant::now() > deadline {
                bail!("no {input:?} message with {text:?} in {timeout:?}: {:?}", self.lines(input));
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A loopback UDP port nothing is bound to now.
fn free_udp_port() -> Result<u16> {
    Ok(std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// Whether a UDP socket is bound to `port` (`/proc/net/udp`).
fn udp_bound(port: u16) -> Result<bool> {
    let table = fs::read_to_string("/proc/net/udp")?;
    let local = format!(":{port:04X} ");
    Ok(table
        .lines()
        .skip(1)
        .any(|line| line.split_whitespace().nth(1).is_some_and(|a| format!("{a} ").ends_with(&local))))
}

/// One RFC 5424 message, its parts as sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    pub priority: u8,
    pub timestamp: String,
    pub hostname: String,
    pub app_name: String,
    pub proc_id: String,
    pub msg_id: String,
    /// Each SD-ELEMENT: its SD-ID and its parameters, values unescaped.
    pub structured_data: Vec<(String, Vec<(String, String)>)>,
    pub msg: String,
}

impl Message {
    /// The value of parameter `name` of element `id`.
    #[must_use]
    pub fn param(&self, id: &str, name: &str) -> Option<&str> {
        let (_, params) = self.structured_data.iter().find(|(sd_id, _)| sd_id == id)?;
        params.iter().find(|(param, _)| param == name).map(|(_, value)| value.as_str())
    }
}

/// Parses `line` as RFC 5424 (section 6): `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
/// STRUCTURED-DATA [MSG]`.
///
/// # Errors
/// Naming the first part that does not follow the RFC.
pub fn parse(line: &str) -> Result<Message> {
    let rest = line.strip_prefix('<').context("PRI: no '<'")?;
    let (pri, rest) = rest.split_once('>').context("PRI: no '>'")?;
    ensure!((1..=3).contains(&pri.len()) && pri.bytes().all(|b| b.is_ascii_digit()), "PRI {pri:?}");
    let priority: u8 = pri.parse().context("PRI")?;
    ensure!(priority <= 191, "PRI {priority} above 191");
    let rest = rest.strip_prefix("1 ").context("VERSION is not 1")?;
    let mut header = rest.splitn(6, ' ');
    let mut field = |name: &str, max: usize| -> Result<String> {
        let value = header.next().with_context(|| format!("no {name}"))?;
        ensure!(!value.is_empty() && value.len() <= max, "{name} {value:?}: 1 to {max} characters");
        ensure!(value.bytes().all(|b| (33..=126).contains(&b)), "{name} {value:?}: not PRINTUSASCII");
        Ok(value.to_owned())
    };
    let timestamp = field("TIMESTAMP", 64)?;
    ensure!(humantime::parse_rfc3339(&timestamp).is_ok(), "TIMESTAMP {timestamp:?} is not RFC 3339");
    let (hostname, app_name, proc_id, msg_id) =
        (field("HOSTNAME", 255)?, field("APP-NAME", 48)?, field("PROCID", 128)?, field("MSGID", 32)?);
    let rest = header.next().context("no STRUCTURED-DATA")?;
    let (structured_data, rest) = structured_data(rest)?;
    let msg = match rest {
        "" => String::new(),
        rest => rest.strip_prefix(' ').context("no space before MSG")?.to_owned(),
    };
    Ok(Message { priority, timestamp, hostname, app_name, proc_id, msg_id, structured_data, msg })
}

type Elements = Vec<(String, Vec<(String, String)>)>;

/// The SD-ELEMENTs at the start of `text` (or its NILVALUE), and what follows them.
fn structured_data(text: &str) -> Result<(Elements, &str)> {
    if let Some(rest) = text.strip_prefix('-') {
        return Ok((Vec::new(), rest));
    }
    let mut elements = Vec::new();
    let mut rest = text;
    while let Some(element) = rest.strip_prefix('[') {
        let end = element.find([' ', ']']).context("SD-ELEMENT not closed")?;
        let id = sd_name(&element[..end], "SD-ID")?;
        let mut params = Vec::new();
        rest = &element[end..];
        while let Some(param) = rest.strip_prefix(' ') {
            let (name, value) = param.split_once("=\"").context("PARAM without =\"")?;
            let name = sd_name(name, "PARAM-NAME")?;
            let (value, after) = param_value(value)?;
            params.push((name, value));
            rest = after;
        }
        rest = rest.strip_prefix(']').context("SD-ELEMENT not closed by ']'")?;
        elements.push((id, params));
    }
    ensure!(!elements.is_empty(), "STRUCTURED-DATA is neither '-' nor '[…]'");
    Ok((elements, rest))
}

/// An SD-NAME: 1 to 32 PRINTUSASCII but '=', ' ', ']' and '"'.
fn sd_name(name: &str, what: &str) -> Result<String> {
    let valid = (1..=32).contains(&name.len())
        && name.bytes().all(|b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'));
    ensure!(valid, "{what} {name:?} is not an SD-NAME");
    Ok(name.to_owned())
}

/// A PARAM-VALUE up to its closing '"', unescaped (only '"', '\' and ']' may be escaped, and
/// those three must be), and what follows.
fn param_value(text: &str) -> Result<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[i + 1..])),
            ']' => bail!("an unescaped ']' in PARAM-VALUE {text:?}"),
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\' | ']'))) => value.push(escaped),
                other => bail!("a backslash before {other:?} in PARAM-VALUE"),
            },
            c => value.push(c),
        }
    }
    bail!("PARAM-VALUE not closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_examples_parse() {
        let message = parse(
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" x="a\]\"b"] BOMAn application event"#,
        )
        .unwrap();
        assert_eq!(message.priority, 165);
        assert_eq!(message.param("exampleSDID@32473", "x"), Some("a]\"b"));
        assert_eq!(message.msg, "BOMAn application event");
        assert!(parse("<34>1 2003-10-11T22:14:15.003Z h su - ID47 - msg")
            .unwrap()
            .structured_data
            .is_empty());
    }

    #[test]
    fn malformed_messages_are_refused() {
        for bad in [
            "<34>2 2003-10-11T22:14:15.003Z h su - ID47 - m",
            "<34>1 yesterday h su - ID47 - m",
            "<34>1 2003-10-11T22:14:15.003Z h su - ID47 [a b=\"]\"] m",
            "<34>1 2003-10-11T22:14:15.003Z h su - ID47 [a b=\"c\" m",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
