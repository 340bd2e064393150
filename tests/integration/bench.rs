//! Timings for the closing notes, not tests of speed: they are `#[ignore]`d, run by
//! `bench/starttls.sh`, and check only that every message arrived.

use std::time::{Duration, Instant};

use crate::support::postfix::{Postfix, rcpt, received_tls};
use crate::support::tls::TestPki;
use crate::support::{TestEnv, unique_name};

const RUNS: usize = 50;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Median wall time of `RUNS` runs of `args` (one process each), each delivering one
/// message to `local` on `pf`.
fn time_runs(pf: &Postfix, local: &str, program: &str, args: &[String]) -> Duration {
    let env = TestEnv::new();
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let mut cmd = env.command(program);
        cmd.args(args)
            .stdin(b"Subject: bench\r\n\r\nhello\r\n".to_vec());
        let started = Instant::now();
        let out = cmd.run();
        times.push(started.elapsed());
        out.assert_success();
    }
    let got = pf.wait_for_messages(local, RUNS, Duration::from_secs(60));
    assert_eq!(got.len(), RUNS);
    median(times)
}

#[test]
#[ignore = "a timing, run by bench/starttls.sh"]
fn bench_one_message_over_starttls_to_postfix() {
    let pf = Postfix::shared_tls();
    let port = pf.port();
    let ca = TestPki::shared().ca_cert().display().to_string();
    let outbox = env!("CARGO_BIN_EXE_outbox");
    let server = format!("localhost:{port}");

    let local = unique_name("bench-starttls");
    let args: Vec<String> = [
        "--server",
        &server,
        "--tls",
        "starttls",
        "--tls-ca-file",
        &ca,
        "-f",
        "bench@example.test",
        "-s",
        "bench",
        &rcpt(&local),
    ]
    .map(str::to_owned)
    .to_vec();
    let tls = time_runs(pf, &local, outbox, &args);
    let sample = pf.wait_for_messages(&local, RUNS, Duration::from_secs(5));
    assert!(received_tls(&sample[0]).is_some());

    let local = unique_name("bench-plain");
    let args: Vec<String> = [
        "--server",
        &server,
        "-f",
        "bench@example.test",
        "-s",
        "bench",
        &rcpt(&local),
    ]
    .map(str::to_owned)
    .to_vec();
    let plain = time_runs(pf, &local, outbox, &args);

    println!("one message to the test Postfix, median of {RUNS} runs, one process each:");
    println!(
        "  outbox --tls starttls  {:8.2} ms",
        tls.as_secs_f64() * 1000.0
    );
    println!(
        "  outbox in clear        {:8.2} ms",
        plain.as_secs_f64() * 1000.0
    );

    if std::path::Path::new("/usr/bin/curl").exists() {
        let local = unique_name("bench-curl");
        let args: Vec<String> = [
            "-s",
            "--ssl-reqd",
            "--cacert",
            &ca,
            &format!("smtp://{server}"),
            "--mail-from",
            "bench@example.test",
            "--mail-rcpt",
            &rcpt(&local),
            "-T",
            "-",
        ]
        .map(str::to_owned)
        .to_vec();
        let curl = time_runs(pf, &local, "/usr/bin/curl", &args);
        println!(
            "  curl --ssl-reqd        {:8.2} ms   outbox/curl = {:.2}",
            curl.as_secs_f64() * 1000.0,
            tls.as_secs_f64() / curl.as_secs_f64()
        );
        let local = unique_name("bench-curl-plain");
        let args: Vec<String> = [
            "-s",
            &format!("smtp://{server}"),
            "--mail-from",
            "bench@example.test",
            "--mail-rcpt",
            &rcpt(&local),
            "-T",
            "-",
        ]
        .map(str::to_owned)
        .to_vec();
        let curl_plain = time_runs(pf, &local, "/usr/bin/curl", &args);
        println!(
            "  curl in clear          {:8.2} ms   outbox/curl = {:.2}",
            curl_plain.as_secs_f64() * 1000.0,
            plain.as_secs_f64() / curl_plain.as_secs_f64()
        );
    }
}
