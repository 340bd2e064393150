//! Messages to the local syslog daemon, as syslog(3) sends them, but never waiting:
//! a full queue drops the message rather than hold up a delivery.

use std::io::{self, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;

/// The mail system's facility (RFC 5424 §6.2.1).
pub const FACILITY_MAIL: u8 = 2;
/// The tag before the process id: `outbox[1234]:`.
pub const TAG: &str = "outbox";

/// `<PRI>Mmm dd hh:mm:ss outbox[PID]: TEXT`, what glibc's syslog(3) writes to the
/// local socket (the BSD format of RFC 3164 §4.1, without the host name, which the
/// daemon adds). `stamp` is the local time as `Mmm dd hh:mm:ss`.
pub fn message(severity: u8, stamp: &str, pid: u32, text: &str) -> String {
    let pri = FACILITY_MAIL * 8 + severity;
    format!("<{pri}>{stamp} {TAG}[{pid}]: {text}")
}

/// A connection to the syslog socket: datagrams as a rule, a stream where the daemon
/// listens on one (as syslog-ng may).
pub enum Connection {
    Datagram(UnixDatagram),
    Stream(UnixStream),
}

impl Connection {
    /// Connects to `path` without waiting: a datagram socket, else (the socket being
    /// a stream one) a stream.
    pub fn open(path: &Path) -> io::Result<Connection> {
        let datagram = UnixDatagram::unbound()?;
        match datagram.connect(path) {
            Ok(()) => {
                datagram.set_nonblocking(true)?;
                Ok(Connection::Datagram(datagram))
            }
            Err(e)
                if rustix::io::Errno::from_io_error(&e) == Some(rustix::io::Errno::PROTOTYPE) =>
            {
                Ok(Connection::Stream(stream(path)?))
            }
            Err(e) => Err(e),
        }
    }

    /// Sends one message. A full queue is an error (`WouldBlock`): the message is
    /// dropped, not waited for.
    pub fn send(&mut self, message: &str) -> io::Result<()> {
        match self {
            Connection::Datagram(socket) => socket.send(message.as_bytes()).map(drop),
            Connection::Stream(stream) => {
                // A stream has no message bounds: syslog(3) ends each with a NUL, and
                // daemons reading a stream socket split on it.
                let mut framed = Vec::with_capacity(message.len() + 1);
                framed.extend_from_slice(message.as_bytes());
                framed.push(0);
                let sent = stream.write(&framed)?;
                if sent < framed.len() {
                    // The rest would wait for the daemon. The connection is given up
                    // (by the caller) so that the next message starts whole.
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "the syslog daemon is not reading (a message was cut short)",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// A stream connection made without waiting: a listener whose backlog is full
/// refuses at once (`EAGAIN`) instead of holding the connect.
fn stream(path: &Path) -> io::Result<UnixStream> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.connect(&SockAddr::unix(path)?)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_what_syslog_3_sends() {
        assert_eq!(
            message(6, "Dec  1 22:40:00", 4242, "id=Q1 status=sent"),
            "<22>Dec  1 22:40:00 outbox[4242]: id=Q1 status=sent"
        );
        assert_eq!(
            message(4, "Jan 31 01:02:03", 1, "x"),
            "<20>Jan 31 01:02:03 outbox[1]: x"
        );
    }

    #[test]
    fn a_stream_socket_gets_messages_ended_by_nul() {
        use std::io::Read;
        let dir = crate::log::tests::TempDir::new("stream");
        let path = dir.path().join("log");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut connection = Connection::open(&path).unwrap();
        assert!(matches!(connection, Connection::Stream(_)));
        connection.send("<22>one").unwrap();
        connection.send("<22>two").unwrap();
        drop(connection);
        let (mut peer, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"<22>one\0<22>two\0");
    }

    #[test]
    fn no_socket_is_an_error() {
        let dir = crate::log::tests::TempDir::new("nosocket");
        let error = Connection::open(&dir.path().join("log")).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }
}
