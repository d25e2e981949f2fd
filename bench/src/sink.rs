//! The namespace host's listener: reads every connection to its end and answers how many
//! bytes it got, so a sender's clock stops only when its data has really arrived.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};

/// A connection silent for this long is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_mins(1);

/// Serves until killed or until `limit` has passed.
pub fn run(listen: SocketAddr, limit: Duration) -> Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    thread::spawn(move || {
        thread::sleep(limit);
        std::process::exit(0);
    });
    println!("ready");
    io::stdout().flush()?;
    for connection in listener.incoming() {
        let Ok(connection) = connection else { continue };
        thread::spawn(move || {
            let _ = serve(connection);
        });
    }
    Ok(())
}

fn serve(mut connection: TcpStream) -> io::Result<()> {
    connection.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut buf = vec![0; 256 * 1024];
    let mut received = 0_u64;
    loop {
        match connection.read(&mut buf)? {
            0 => break,
            n => received += n as u64,
        }
    }
    connection.write_all(&received.to_le_bytes())
}
