//! Timings for the closing notes, not tests of speed: they are `#[ignore]`d, run by
//! `bench/starttls.sh`, and check only that every message arrived.

use std::time::{Duration, Instant};

use crate::support::postfix::{Postfix, rcpt, received_tls};
use crate::support::tls::TestPki;
use crate::support::{TestEnv, unique_name};

const RUNS: usize = 50;
/// Untimed runs first, so that Postfix has its smtpd processes and TLS state ready.
const WARM_UP: usize = 10;

/// One client to time: a program, its arguments, and the local part it delivers to.
struct Contender {
    label: &'static str,
    program: String,
    args: Vec<String>,
    local: String,
    times: Vec<Duration>,
}

impl Contender {
    fn new(label: &'static str, program: &str, args: &[&str], local: String) -> Contender {
        Contender {
            label,
            program: program.to_owned(),
            args: args
                .iter()
                .map(|a| a.replace("{rcpt}", &rcpt(&local)))
                .collect(),
            local,
            times: Vec::new(),
        }
    }

    fn run(&mut self, env: &TestEnv, timed: bool) {
        let mut cmd = env.command(&self.program);
        cmd.args(&self.args)
            .stdin(b"Subject: bench\r\n\r\nhello\r\n".to_vec());
        let started = Instant::now();
        let out = cmd.run();
        if timed {
            self.times.push(started.elapsed());
        }
        out.assert_success();
    }

    fn median_ms(&self) -> f64 {
        let mut times = self.times.clone();
        times.sort();
        times[times.len() / 2].as_secs_f64() * 1000.0
    }
}

#[test]
#[ignore = "a timing, run by bench/starttls.sh"]
fn bench_one_message_over_starttls_to_postfix() {
    let pf = Postfix::shared_tls();
    let ca = TestPki::shared().ca_cert().display().to_string();
    let server = format!("localhost:{}", pf.port());
    let url = format!("smtp://{server}");
    let outbox = env!("CARGO_BIN_EXE_outbox");
    let from = "bench@example.test";
    let mut contenders = vec![
        Contender::new(
            "outbox --tls starttls",
            outbox,
            &[
                "--server",
                &server,
                "--tls",
                "starttls",
                "--tls-ca-file",
                &ca,
                "-f",
                from,
                "-s",
                "bench",
                "{rcpt}",
            ],
            unique_name("bench-tls"),
        ),
        Contender::new(
            "outbox in clear",
            outbox,
            &["--server", &server, "-f", from, "-s", "bench", "{rcpt}"],
            unique_name("bench-plain"),
        ),
    ];
    if std::path::Path::new("/usr/bin/curl").exists() {
        contenders.push(Contender::new(
            "curl --ssl-reqd",
            "/usr/bin/curl",
            &[
                "-s",
                "--ssl-reqd",
                "--cacert",
                &ca,
                &url,
                "--mail-from",
                from,
                "--mail-rcpt",
                "{rcpt}",
                "-T",
                "-",
            ],
            unique_name("bench-curl-tls"),
        ));
        contenders.push(Contender::new(
            "curl in clear",
            "/usr/bin/curl",
            &[
                "-s",
                &url,
                "--mail-from",
                from,
                "--mail-rcpt",
                "{rcpt}",
                "-T",
                "-",
            ],
            unique_name("bench-curl-plain"),
        ));
    }
    let env = TestEnv::new();
    // Interleaved, so that no client gets the server in a better or worse moment.
    for round in 0..WARM_UP + RUNS {
        for c in &mut contenders {
            c.run(&env, round >= WARM_UP);
        }
    }
    for c in &contenders {
        let got = pf.wait_for_messages(&c.local, WARM_UP + RUNS, Duration::from_secs(60));
        let tls_wanted = c.label.contains("tls") || c.label.contains("ssl");
        assert_eq!(received_tls(&got[0]).is_some(), tls_wanted, "{}", c.label);
    }

    println!("one message to the test Postfix, median of {RUNS} runs, one process each:");
    for c in &contenders {
        let vs = match c.label {
            "outbox --tls starttls" => None,
            "outbox in clear" => None,
            "curl --ssl-reqd" => Some(contenders[0].median_ms()),
            _ => Some(contenders[1].median_ms()),
        };
        match vs {
            Some(ours) => println!(
                "  {:<22} {:8.2} ms   outbox/curl = {:.2}",
                c.label,
                c.median_ms(),
                ours / c.median_ms()
            ),
            None => println!("  {:<22} {:8.2} ms", c.label, c.median_ms()),
        }
    }
}
