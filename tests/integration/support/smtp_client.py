"""A scriptable SMTP client for the self-tests of the test servers (run by
support/pyclient.rs with /usr/bin/python3; no outbox involved).

    smtp_client.py HOST:PORT [options]      ([::1]:PORT for IPv6)

    --tls none|starttls|implicit   (default none)
    --cafile FILE       verify the server's chain against FILE and its name
                        against --servername (default: no verification)
    --servername NAME   SNI and name to verify (default: HOST)
    --ehlo NAME         (default client.test)
    --auth MECH --user U --password P
                        PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256, XOAUTH2 (or any
                        name, sent as a bare "AUTH NAME"); done by hand so
                        that passwords may be non-ASCII
    --no-initial-response   PLAIN, LOGIN, SCRAM, XOAUTH2: wait for a 334 first
    --smtplib           authenticate with smtplib's own login() instead
                        (PLAIN, LOGIN, CRAM-MD5; ASCII only)
    --from ADDR --to ADDR [--to ADDR ...] --data TEXT
                        send one message (TEXT: \\n becomes CRLF)

Prints one "key: value" line per step, e.g.

    greeting: 220 mx.outbox.test ESMTP ...
    ehlo: SIZE 8BITMIME SMTPUTF8 STARTTLS HELP      (keywords)
    starttls: 220 Ready to start TLS
    tls: TLSv1.3 TLS_AES_256_GCM_SHA384
    ehlo: SIZE 8BITMIME SMTPUTF8 AUTH PLAIN HELP
    auth-step: 334 <decoded challenge>               (intermediate)
    auth: 235 2.7.0 Authentication successful        (final reply)
    mail: 250 ...  rcpt: 250 ...  data: 250 ...
    quit: 221 Bye

and "error: <exception>" plus exit status 1 when something raises (for
example a certificate that does not verify).
"""

import argparse
import base64
import hashlib
import hmac
import secrets
import smtplib
import ssl
import sys
import unicodedata


def out(key, value):
    print(f"{key}: {value}", flush=True)


def text(msg):
    return msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)


def b64(data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(data).decode("ascii")


def show_ehlo(s, code, msg):
    if code != 250:
        out("ehlo", f"{code} {text(msg)}")
        return
    keywords = [l.split(" ")[0].upper() for l in text(msg).split("\n")[1:]]
    out("ehlo", " ".join(keywords))
    auth = s.esmtp_features.get("auth")
    if auth is not None:
        out("ehlo-auth", auth.strip())


class Auth:
    def __init__(self, s, args):
        self.s = s
        self.args = args

    def cmd(self, line):
        code, msg = self.s.docmd(line)
        return code, text(msg)

    def step(self, code, msg):
        """Show an intermediate 334 (decoded) and return its payload."""
        try:
            decoded = base64.b64decode(msg).decode("utf-8", "replace")
        except Exception:
            decoded = msg
        out("auth-step", f"{code} {decoded}")
        return decoded

    def start(self, mech, initial):
        if initial is not None and self.args.initial_response:
            return self.cmd(f"AUTH {mech} {b64(initial) or '='}")
        code, msg = self.cmd(f"AUTH {mech}")
        if code != 334 or initial is None:
            return code, msg
        self.step(code, msg)
        return self.cmd(b64(initial))

    def run(self):
        mech = self.args.auth.upper()
        user, password = self.args.user or "", self.args.password or ""
        if mech == "PLAIN":
            return self.start("PLAIN", f"\0{user}\0{password}")
        if mech == "LOGIN":
            if self.args.initial_response:
                code, msg = self.cmd(f"AUTH LOGIN {b64(user)}")
            else:
                code, msg = self.cmd("AUTH LOGIN")
                if code != 334:
                    return code, msg
                self.step(code, msg)
                code, msg = self.cmd(b64(user))
            if code != 334:
                return code, msg
            self.step(code, msg)
            return self.cmd(b64(password))
        if mech == "CRAM-MD5":
            code, msg = self.cmd("AUTH CRAM-MD5")
            if code != 334:
                return code, msg
            challenge = base64.b64decode(msg)
            self.step(code, msg)
            digest = hmac.new(password.encode("utf-8"), challenge, "md5").hexdigest()
            return self.cmd(b64(f"{user} {digest}"))
        if mech == "SCRAM-SHA-256":
            return self.scram(user, password)
        if mech == "XOAUTH2":
            code, msg = self.start(
                "XOAUTH2", f"user={user}\x01auth=Bearer {password}\x01\x01"
            )
            if code == 334:
                self.step(code, msg)
                return self.cmd("")
            return code, msg
        return self.cmd(f"AUTH {mech}")

    def scram(self, user, password):
        name = user.replace("=", "=3D").replace(",", "=2C")
        client_nonce = b64(secrets.token_bytes(18))
        bare = f"n={name},r={client_nonce}"
        code, msg = self.start("SCRAM-SHA-256", "n,," + bare)
        if code != 334:
            return code, msg
        server_first = self.step(code, msg)
        attrs = dict(a.split("=", 1) for a in server_first.split(","))
        nonce, salt, rounds = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(client_nonce):
            raise RuntimeError("server nonce does not extend the client nonce")
        without_proof = f"c={b64('n,,')},r={nonce}"
        normalized = unicodedata.normalize("NFKC", password)
        salted = hashlib.pbkdf2_hmac("sha256", normalized.encode("utf-8"), salt, rounds)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        auth_message = f"{bare},{server_first},{without_proof}".encode("utf-8")
        signature = hmac.new(stored_key, auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        code, msg = self.cmd(b64(f"{without_proof},p={b64(proof)}"))
        if code != 334:
            return code, msg
        server_final = self.step(code, msg)
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        expected = "v=" + b64(hmac.new(server_key, auth_message, "sha256").digest())
        out("scram-server-signature", "ok" if server_final == expected else "MISMATCH")
        return self.cmd("")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("--tls", default="none", choices=["none", "starttls", "implicit"])
    p.add_argument("--cafile")
    p.add_argument("--servername")
    p.add_argument("--ehlo", default="client.test")
    p.add_argument("--auth")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--no-initial-response", dest="initial_response", action="store_false")
    p.add_argument("--smtplib", action="store_true")
    p.add_argument("--from", dest="mail_from")
    p.add_argument("--to", action="append", default=[])
    p.add_argument("--data")
    args = p.parse_args()

    host, _, port = args.addr.rpartition(":")
    host = host.strip("[]")
    servername = args.servername or host

    if args.cafile:
        ctx = ssl.create_default_context(cafile=args.cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    if args.tls == "implicit":
        s = smtplib.SMTP_SSL(context=ctx, timeout=15)
    else:
        s = smtplib.SMTP(timeout=15)
    # smtplib takes the SNI / verified name from _host (set only by the
    # constructor's host argument, which would connect at once).
    s._host = servername
    code, msg = s.connect(host, int(port))
    out("greeting", f"{code} {text(msg)}")
    if args.tls == "implicit":
        out("tls", f"{s.sock.version()} {s.sock.cipher()[0]}")
    show_ehlo(s, *s.ehlo(args.ehlo))

    if args.tls == "starttls":
        code, msg = s.starttls(context=ctx)
        out("starttls", f"{code} {text(msg)}")
        out("tls", f"{s.sock.version()} {s.sock.cipher()[0]}")
        show_ehlo(s, *s.ehlo(args.ehlo))

    if args.auth:
        if args.smtplib:
            s.esmtp_features["auth"] = args.auth.upper()
            try:
                code, msg = s.login(args.user, args.password)
            except smtplib.SMTPAuthenticationError as e:
                code, msg = e.smtp_code, e.smtp_error
        else:
            code, msg = Auth(s, args).run()
        out("auth", f"{code} {text(msg)}")

    if args.mail_from is not None:
        data = (args.data or "").replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
        code, msg = s.mail(args.mail_from)
        out("mail", f"{code} {text(msg)}")
        for rcpt in args.to:
            code, msg = s.rcpt(rcpt)
            out("rcpt", f"{code} {text(msg)}")
        try:
            code, msg = s.data(data)
            out("data", f"{code} {text(msg)}")
        except smtplib.SMTPDataError as e:
            out("data", f"{e.smtp_code} {text(e.smtp_error)}")

    code, msg = s.docmd("QUIT")
    out("quit", f"{code} {text(msg)}")
    s.close()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        out("error", f"{type(e).__name__}: {e}")
        sys.exit(1)
