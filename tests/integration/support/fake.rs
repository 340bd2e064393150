//! A scripted SMTP peer on loopback, for what a real server cannot be made to do:
//! garbage, silence, a 421 at a chosen moment, a dropped connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

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
}

pub fn send(s: &str) -> Step {
    Step::Send(s.as_bytes().to_vec())
}

/// A peer that takes one connection and plays its script.
pub struct FakeServer {
    addr: String,
    handle: JoinHandle<Vec<u8>>,
}

impl FakeServer {
    pub fn start(script: Vec<Step>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address").to_string();
        let handle = std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return Vec::new();
            };
            play(stream, script)
        });
        FakeServer { addr, handle }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Everything the client sent, once the connection has ended.
    pub fn received(self) -> Vec<u8> {
        self.handle.join().expect("the fake server thread panicked")
    }

    pub fn received_string(self) -> String {
        String::from_utf8_lossy(&self.received()).into_owned()
    }
}

fn play(stream: TcpStream, script: Vec<Step>) -> Vec<u8> {
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
        }
    }
    // Whatever else the client sends until it closes.
    let _ = reader.read_to_end(&mut got);
    got
}
