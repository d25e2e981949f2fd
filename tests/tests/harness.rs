//! The harness itself: the actor, and the remote host's namespace, veth and cleanup.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::panic;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use integration_tests::{actor_exe, Actor, RemoteHost};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn namespace_exists(name: &str) -> bool {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&list.stdout).lines().any(|line| line.split_whitespace().next() == Some(name))
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", "dev", name]).output().unwrap().status.success()
}

#[test]
fn actor_reads_forks_and_sends_to_loopback() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("data");
    std::fs::write(&file, "x")?;
    let tcp = TcpListener::bind("127.0.0.1:0")?;
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    udp.set_read_timeout(Some(IO_TIMEOUT))?;

    let run =
        Actor::new(actor_exe!()).read(&file).fork().tcp(tcp.local_addr()?).udp(udp.local_addr()?).run()?;

    let child = run.child_pid.expect("--fork reports the child's pid");
    assert_ne!(child, run.pid);
    assert_eq!(run.sender(), child);
    let (mut stream, _) = tcp.accept()?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut received = String::new();
    stream.read_to_string(&mut received)?;
    assert_eq!(received, "vigie-actor\n");
    let mut datagram = [0u8; 64];
    assert_eq!(udp.recv(&mut datagram)?, "vigie-actor\n".len());
    Ok(())
}

#[test]
fn actor_reads_every_way_and_sends_every_way_to_loopback() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("data");
    std::fs::write(&file, "0123456789")?;
    let tcp = TcpListener::bind("127.0.0.1:0")?;
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    udp.set_read_timeout(Some(IO_TIMEOUT))?;
    let dest = tcp.local_addr()?;

    Actor::new(actor_exe!())
        .read_reopened(&file)
        .read_o_path(&file)
        .mmap(&file)
        .uring_read(&file)
        .uring_read_openat2(&file)
        .open_tcp(dest)
        .send(100_000)
        .sendfile(&file)
        .splice(&file)
        .uring_tcp(dest)
        .dns(udp.local_addr()?)
        .run()?;

    let (mut kept, _) = tcp.accept()?;
    kept.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut received = Vec::new();
    kept.read_to_end(&mut received)?;
    assert_eq!(received.len(), 100_000 + 2 * 10, "filler, then the file by sendfile and by splice");
    assert!(received.ends_with(b"01234567890123456789"));
    let (mut uring, _) = tcp.accept()?;
    let mut received = String::new();
    uring.read_to_string(&mut received)?;
    assert_eq!(received, "vigie-actor\n");
    let mut query = [0u8; 512];
    let len = udp.recv(&mut query)?;
    assert!(len > 12 && query[4..6] == [0, 1], "one question: {:?}", &query[..len]);
    Ok(())
}

#[test]
fn actor_relays_what_it_read_through_a_fifo_and_a_unix_socket() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (file, fifo, socket, copy) =
        (dir.path().join("data"), dir.path().join("fifo"), dir.path().join("sock"), dir.path().join("copy"));
    std::fs::write(&file, "relayed")?;
    let status = Command::new("mkfifo").arg(&fifo).status()?;
    assert!(status.success());

    let fifo_reader = Actor::new(actor_exe!()).read(&fifo).unix_send(&socket).spawn()?;
    let uring_copy = dir.path().join("uring-copy");
    let socket_reader =
        Actor::new(actor_exe!()).unix_listen(&socket).unix_accept().write_to(&copy).spawn()?;
    Actor::new(actor_exe!()).read(&file).uring_write_to(&uring_copy).write_to(&fifo).run()?;
    fifo_reader.finish()?;
    socket_reader.finish()?;

    assert_eq!(std::fs::read_to_string(&copy)?, "relayed");
    assert_eq!(std::fs::read_to_string(&uring_copy)?, "relayed");
    Ok(())
}

#[test]
fn actor_fails_loudly_on_a_missing_file() {
    let error = Actor::new(actor_exe!()).read("/nonexistent/vigie-it").run().unwrap_err();
    assert!(format!("{error:#}").contains("/nonexistent/vigie-it"), "{error:#}");
}

#[test]
#[ignore = "needs root (network namespaces): run with cargo xtask test"]
fn remote_host_answers_on_both_families_and_is_removed_on_drop() -> Result<()> {
    let remote = RemoteHost::start(actor_exe!())?;
    let (namespace, veth) = (remote.namespace().to_owned(), remote.host_veth().to_owned());
    assert!(namespace_exists(&namespace) && link_exists(&veth));

    for dest in [remote.tcp_v4(), remote.tcp_v6()] {
        let mut stream = TcpStream::connect_timeout(&dest, IO_TIMEOUT)?;
        stream.write_all(b"hello")?;
    }
    let run = Actor::new(actor_exe!())
        .tcp(remote.tcp_v4())
        .tcp(remote.tcp_v6())
        .udp(remote.tcp_v4())
        .udp(remote.tcp_v6())
        .run()?;
    assert_eq!(run.child_pid, None);

    drop(remote);
    assert!(!namespace_exists(&namespace), "{namespace} left behind");
    assert!(!link_exists(&veth), "{veth} left behind");
    Ok(())
}

#[test]
#[ignore = "needs root (network namespaces): run with cargo xtask test"]
fn remote_host_is_removed_when_the_test_panics() {
    let mut names = None;
    let outcome = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        let remote = RemoteHost::start(actor_exe!()).unwrap();
        names = Some((remote.namespace().to_owned(), remote.host_veth().to_owned()));
        panic!("a test failing while it holds a remote host");
    }));
    assert!(outcome.is_err());
    let (namespace, veth) = names.expect("the remote host was built");
    assert!(!namespace_exists(&namespace), "{namespace} left behind");
    assert!(!link_exists(&veth), "{veth} left behind");
}
