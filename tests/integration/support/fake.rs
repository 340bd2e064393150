//! A scripted SMTP peer on loopback, for what a real server cannot be made to do:
//! garbage, silence, a 421 at a chosen moment, a dropped connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One step of the peer's script.
#[derive(Clone, Debug)]
pub enum Step {
    /// Write these bytes to the client.
    Send(Vec<u8>),
    /// Read one line from the client (recorded).
    Line,
    /// Read the message up to and including the final `.CRLF` (recorded).
    Data,
    /// Say nothing for this long.
    Silence(Duration),
    /// Close the connection now.
    Close,
    /// Note the time (see [`FakeServer::received_with_marks`]).
    Mark,
    /// Take what the client sends slowly: 100 bytes, then a pause of the first
    /// duration, until the client closes or the second duration has passed (then the
    /// connection is closed).
    Drip(Duration, Duration),
}

pub fn send(s: &str) -> Step {
    Step::Send(s.as_bytes().to_vec())
}

/// The script of a lock-step server that takes one message: `greeting`, `ehlo` as the
/// reply to EHLO, MAIL and RCPT accepted, 354, the message read, `verdict` after the
/// dot, and 221 to QUIT.
pub fn one_message(greeting: &str, ehlo: &str, verdict: &str) -> Vec<Step> {
    vec![
        send(greeting),
        Step::Line,
        send(ehlo),
        Step::Line,
        send("250 ok\r\n"),
        Step::Line,
        send("250 ok\r\n"),
        Step::Line,
        send("354 go on\r\n"),
        Step::Data,
        send(verdict),
        Step::Line,
        send("221 bye\r\n"),
        Step::Close,
    ]
}

/// A peer that takes one connection and plays its script.
pub struct FakeServer {
    addr: String,
    handle: JoinHandle<(Vec<u8>, Vec<Instant>)>,
}

impl FakeServer {
    pub fn start(script: Vec<Step>) -> FakeServer {
        FakeServer::start_with(script, None)
    }

    /// As [`FakeServer::start`], with a receive buffer of about `bytes` (the kernel
    /// doubles it): a client writing more than the buffers hold stalls soon when the
    /// script stops reading.
    pub fn start_with_receive_buffer(script: Vec<Step>, bytes: usize) -> FakeServer {
        FakeServer::start_with(script, Some(bytes))
    }

    fn start_with(script: Vec<Step>, receive_buffer: Option<usize>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        if let Some(bytes) = receive_buffer {
            // Accepted connections take the listener's buffer size.
            socket2::SockRef::from(&listener)
                .set_recv_buffer_size(bytes)
                .expect("set the receive buffer");
        }
        let addr = listener.local_addr().expect("local address").to_string();
        let handle = std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return (Vec::new(), Vec::new());
            };
            let mut marks = Vec::new();
            let got = play(stream, script, &mut marks);
            (got, marks)
        });
        FakeServer { addr, handle }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Everything the client sent, once the connection has ended.
    pub fn received(self) -> Vec<u8> {
        self.received_with_marks().0
    }

    /// Everything the client sent, and when the script passed each `Step::Mark`.
    pub fn received_with_marks(self) -> (Vec<u8>, Vec<Instant>) {
        self.handle.join().expect("the fake server thread panicked")
    }

    pub fn received_string(self) -> String {
        String::from_utf8_lossy(&self.received()).into_owned()
    }
}

fn play(stream: TcpStream, script: Vec<Step>, marks: &mut Vec<Instant>) -> Vec<u8> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return Vec::new(),
    };
    let mut reader = BufReader::new(stream);
    let mut got = Vec::new();
    for step in script {
        match step {
            Step::Send(bytes) => {
                if writer.write_all(&bytes).is_err() {
                    return got;
                }
            }
            Step::Line => {
                if reader.read_until(b'\n', &mut got).unwrap_or(0) == 0 {
                    return got;
                }
            }
            Step::Data => loop {
                let start = got.len();
                if reader.read_until(b'\n', &mut got).unwrap_or(0) == 0 {
                    return got;
                }
                if &got[start..] == b".\r\n" {
                    break;
                }
            },
            Step::Silence(d) => std::thread::sleep(d),
            Step::Close => return got,
            Step::Mark => marks.push(Instant::now()),
            Step::Drip(pause, total) => {
                let until = Instant::now() + total;
                let buffered = reader.buffer().len();
                got.extend_from_slice(reader.buffer());
                reader.consume(buffered);
                let mut some = [0u8; 100];
                loop {
                    // Past the BufReader, which would take its whole capacity at once.
                    match reader.get_mut().read(&mut some) {
                        Ok(0) | Err(_) => return got,
                        Ok(n) => got.extend_from_slice(&some[..n]),
                    }
                    if Instant::now() >= until {
                        return got;
                    }
                    std::thread::sleep(pause);
                }
            }
        }
    }
    // Whatever else the client sends until it closes.
    let _ = reader.read_to_end(&mut got);
    got
}
