"""An aiosmtpd-based SMTP server for the outbox integration tests.

Started by support/aiosmtpd.rs (`SmtpServer`) as

    /usr/bin/python3 smtpd.py CONFIG.json

which documents the behaviour; this file is its implementation. Needs
aiosmtpd 1.4 (Debian 12: python3-aiosmtpd).

CONFIG (written by the Rust side):

    dir               instance directory; the server writes
                        ready             "PORT PORT6\n" once it answers (PORT6 is 0
                                          when [::1] could not be bound)
                        messages/NNNNNN   one file per accepted message
                        auth/NNNNNN       one file per AUTH attempt
                      Each record is lines of "KEY HEX" (the value's UTF-8 or
                      raw bytes in hex); a KEY may repeat (rcpt_to, mail_option).
                      Files appear atomically (written, then renamed).
    mode              "plain" | "starttls" | "implicit"
    cert, key         PEM files (starttls, implicit)
    mechanisms        AUTH mechanisms to advertise, in this order. PLAIN, LOGIN,
                      CRAM-MD5, SCRAM-SHA-256 and XOAUTH2 are implemented; any
                      other name is advertised only (AUTH with it gets 504).
                      Empty: no AUTH at all (not advertised, AUTH gets 502).
    users             {"user": "password"}; XOAUTH2 takes the password as the
                      bearer token.
    auth_require_tls  AUTH only after STARTTLS (ignored in implicit mode, where
                      every session is TLS)
    require_starttls  refuse everything but EHLO/NOOP/QUIT/STARTTLS before
                      STARTTLS (530)
    auth_required     refuse MAIL/RCPT/DATA before AUTH (530 5.7.0)
    hostname          name in the greeting and the EHLO reply
    ipv6              also listen on [::1] (same port), if possible
    parent_pid        the test process (our parent)

The server exits when its parent (the test process) goes away, and then
removes its instance directory, since nobody else will.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
import shutil
import socket
import ssl
import stringprep
import sys
import time
import unicodedata

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, auth_mechanism, syntax

log = logging.getLogger("outbox.smtpd")

IMPLEMENTED = ("PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2")
SCRAM_ITERATIONS = 4096
INVALID = "535 5.7.8 Authentication credentials invalid"

_counter = itertools.count(1)


def write_record(directory, fields):
    """Write [(key, str|bytes)] as "KEY HEX" lines, atomically."""
    n = next(_counter)
    lines = []
    for key, value in fields:
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        lines.append(f"{key} {value.hex()}\n")
    tmp = os.path.join(directory, f".{n:06}.tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.writelines(lines)
    os.rename(tmp, os.path.join(directory, f"{n:06}"))


def saslprep(s):
    """RFC 4013 mapping and normalisation (prohibited characters are not
    checked: this is a test server)."""
    s = "".join(
        " " if stringprep.in_table_c12(c) else c
        for c in s
        if not stringprep.in_table_b1(c)
    )
    return unicodedata.normalize("NFKC", s)


def b64(data):
    return base64.b64encode(data).decode("ascii")


def tls_info(server):
    """(tls, version, sni) of the session `server` is handling."""
    transport = server.transport
    sslobj = transport.get_extra_info("ssl_object") if transport else None
    if sslobj is None:
        return False, None, None
    return True, sslobj.version(), getattr(sslobj, "outbox_sni", None)


class AuthInfo:
    """Stored as session.auth_data after a successful AUTH."""

    def __init__(self, user, mechanism):
        self.user = user
        self.mechanism = mechanism

    @property
    def login(self):
        return self.user


class AuthError(Exception):
    """A malformed AUTH exchange: reply with this text (a 501)."""


class TestSMTP(SMTP):
    # aiosmtpd's defaults are "User Name\x00" and "Password\x00".
    AuthLoginUsernameChallenge = "Username:"
    AuthLoginPasswordChallenge = "Password:"

    def __init__(self, handler, **kwargs):
        self.outbox_handler = handler
        super().__init__(handler, **kwargs)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg):
        if not self.outbox_handler.mechanisms:
            return await self.push("502 5.5.1 Error: AUTH not available")
        if arg:
            # Mechanism names are case-insensitive (RFC 4954); aiosmtpd
            # compares them as given.
            mech, sep, rest = arg.partition(" ")
            arg = mech.upper() + sep + rest
        return await super().smtp_AUTH(arg)


class Handler:
    def __init__(self, config):
        self.dir = config["dir"]
        self.messages_dir = os.path.join(self.dir, "messages")
        self.attempts_dir = os.path.join(self.dir, "auth")
        self.hostname = config["hostname"]
        self.mechanisms = [m.upper() for m in config["mechanisms"]]
        self.users = dict(config["users"])

    # --- hooks ---------------------------------------------------------

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # With this (5-argument) hook, aiosmtpd leaves this to us.
        session.host_name = hostname
        out = []
        for line in responses:
            if line.startswith("250-AUTH"):
                # aiosmtpd lists them sorted; advertise in the configured
                # order, including advertise-only names, or not at all.
                if self.mechanisms:
                    out.append("250-AUTH " + " ".join(self.mechanisms))
                continue
            out.append(line)
        return out

    async def handle_DATA(self, server, session, envelope):
        tls, version, sni = tls_info(server)
        auth = session.auth_data if session.authenticated else None
        # aiosmtpd gives the null reverse path as "<>".
        mail_from = envelope.mail_from or ""
        fields = [("mail_from", "" if mail_from == "<>" else mail_from)]
        fields += [("mail_option", o) for o in envelope.mail_options]
        fields += [("rcpt_to", r) for r in envelope.rcpt_tos]
        fields += [
            ("helo", session.host_name or ""),
            ("tls", "1" if tls else "0"),
        ]
        if version:
            fields.append(("tls_version", version))
        if sni:
            fields.append(("sni", sni))
        if isinstance(auth, AuthInfo):
            fields += [("auth_user", auth.user), ("mechanism", auth.mechanism)]
        fields.append(("data", envelope.original_content or b""))
        write_record(self.messages_dir, fields)
        log.info(
            "message from <%s> to %s (%d bytes, tls=%s, auth=%s)",
            envelope.mail_from,
            envelope.rcpt_tos,
            len(envelope.original_content or b""),
            version if tls else "no",
            f"{auth.user}/{auth.mechanism}" if isinstance(auth, AuthInfo) else "no",
        )
        return "250 2.0.0 OK: queued"

    # --- authentication ------------------------------------------------

    def record_auth(self, server, mechanism, user, success):
        tls, _, _ = tls_info(server)
        fields = [
            ("mechanism", mechanism),
            ("success", "1" if success else "0"),
            ("tls", "1" if tls else "0"),
        ]
        if user is not None:
            fields.append(("user", user))
        write_record(self.attempts_dir, fields)
        log.info("AUTH %s user=%r tls=%s: %s", mechanism, user, tls,
                 "success" if success else "failure")

    def result(self, server, mechanism, user, ok):
        self.record_auth(server, mechanism, user, ok)
        if ok:
            return AuthResult(success=True, auth_data=AuthInfo(user, mechanism))
        return AuthResult(success=False, handled=False, message=INVALID)

    def password_ok(self, user, password):
        want = self.users.get(user)
        return want is not None and hmac.compare_digest(
            want.encode("utf-8"), password
        )

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        """aiosmtpd's own PLAIN and LOGIN end here."""
        user = auth_data.login.decode("utf-8", "replace")
        return self.result(
            server, mechanism, user, self.password_ok(user, auth_data.password)
        )

    async def initial_or_challenge(self, server, args):
        """The initial response (AUTH MECH <b64>, "=" is empty) or, if none,
        the answer to an empty 334. None if the client aborted or sent bad
        base64 (already answered)."""
        if len(args) > 1:
            if args[1] == "=":
                return b""
            try:
                return base64.b64decode(args[1], validate=True)
            except binascii.Error:
                await server.push("501 5.5.2 Can't decode base64")
                return None
        resp = await server.challenge_auth("")
        return None if resp is MISSING else resp

    async def run_mechanism(self, server, mechanism, args, impl):
        try:
            return await impl(server, args)
        except AuthError as e:
            self.record_auth(server, mechanism, None, False)
            await server.push(f"501 5.5.2 {e}")
            return AuthResult(success=False, handled=True)

    @auth_mechanism("CRAM-MD5")
    async def auth_CRAM_MD5(self, server, args):
        return await self.run_mechanism(server, "CRAM-MD5", args, self._cram_md5)

    async def _cram_md5(self, server, args):
        if len(args) > 1:
            raise AuthError("CRAM-MD5 takes no initial response")
        challenge = (
            f"<{secrets.randbelow(10**12)}.{int(time.time())}@{self.hostname}>"
        ).encode("ascii")
        resp = await server.challenge_auth(challenge)
        if resp is MISSING:
            return AuthResult(success=False, handled=True)
        user_b, sep, digest = resp.rpartition(b" ")
        if not sep:
            raise AuthError("CRAM-MD5 response is not 'user digest'")
        user = user_b.decode("utf-8", "replace")
        want = self.users.get(user)
        ok = want is not None and hmac.compare_digest(
            hmac.new(want.encode("utf-8"), challenge, "md5").hexdigest().encode(),
            digest.lower(),
        )
        return self.result(server, "CRAM-MD5", user, ok)

    @auth_mechanism("SCRAM-SHA-256")
    async def auth_SCRAM_SHA_256(self, server, args):
        return await self.run_mechanism(server, "SCRAM-SHA-256", args, self._scram)

    async def _scram(self, server, args):
        """RFC 5802 / RFC 7677, without channel binding."""
        client_first = await self.initial_or_challenge(server, args)
        if client_first is None:
            return AuthResult(success=False, handled=True)
        try:
            client_first = client_first.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthError("client-first-message is not UTF-8")
        parts = client_first.split(",", 2)
        if len(parts) != 3:
            raise AuthError("malformed client-first-message")
        cbind, authzid, bare = parts
        if cbind.startswith("p="):
            raise AuthError("channel binding is not supported")
        if cbind not in ("n", "y") or (authzid and not authzid.startswith("a=")):
            raise AuthError("malformed GS2 header")
        gs2_header = f"{cbind},{authzid},"
        attrs = bare.split(",")
        if len(attrs) < 2 or not attrs[0].startswith("n=") or not attrs[1].startswith("r="):
            raise AuthError("malformed client-first-message-bare")
        user = attrs[0][2:].replace("=2C", ",").replace("=3D", "=")
        client_nonce = attrs[1][2:]
        if not client_nonce:
            raise AuthError("empty client nonce")

        nonce = client_nonce + b64(secrets.token_bytes(18))
        salt = secrets.token_bytes(16)
        server_first = f"r={nonce},s={b64(salt)},i={SCRAM_ITERATIONS}"
        resp = await server.challenge_auth(server_first)
        if resp is MISSING:
            return AuthResult(success=False, handled=True)
        try:
            client_final = resp.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthError("client-final-message is not UTF-8")
        without_proof, sep, proof_b64 = client_final.rpartition(",p=")
        if not sep:
            raise AuthError("client-final-message has no proof")
        fattrs = without_proof.split(",")
        if len(fattrs) < 2 or not fattrs[0].startswith("c=") or not fattrs[1].startswith("r="):
            raise AuthError("malformed client-final-message")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
            cbind_data = base64.b64decode(fattrs[0][2:], validate=True)
        except binascii.Error:
            raise AuthError("bad base64 in client-final-message")

        password = self.users.get(user)
        ok = False
        if (
            password is not None
            and fattrs[1][2:] == nonce
            and cbind_data == gs2_header.encode("utf-8")
            and len(proof) == 32
        ):
            salted = hashlib.pbkdf2_hmac(
                "sha256", saslprep(password).encode("utf-8"), salt, SCRAM_ITERATIONS
            )
            client_key = hmac.new(salted, b"Client Key", "sha256").digest()
            stored_key = hashlib.sha256(client_key).digest()
            auth_message = f"{bare},{server_first},{without_proof}".encode("utf-8")
            signature = hmac.new(stored_key, auth_message, "sha256").digest()
            candidate = bytes(a ^ b for a, b in zip(proof, signature))
            ok = hmac.compare_digest(hashlib.sha256(candidate).digest(), stored_key)
        if not ok:
            return self.result(server, "SCRAM-SHA-256", user, False)

        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        server_signature = hmac.new(server_key, auth_message, "sha256").digest()
        resp = await server.challenge_auth(f"v={b64(server_signature)}")
        if resp is MISSING:
            self.record_auth(server, "SCRAM-SHA-256", user, False)
            return AuthResult(success=False, handled=True)
        if resp != b"":
            raise AuthError("expected an empty response to the server-final-message")
        return self.result(server, "SCRAM-SHA-256", user, True)

    @auth_mechanism("XOAUTH2")
    async def auth_XOAUTH2(self, server, args):
        return await self.run_mechanism(server, "XOAUTH2", args, self._xoauth2)

    async def _xoauth2(self, server, args):
        raw = await self.initial_or_challenge(server, args)
        if raw is None:
            return AuthResult(success=False, handled=True)
        fields = raw.split(b"\x01")
        if len(fields) != 4 or fields[2:] != [b"", b""]:
            raise AuthError("malformed XOAUTH2 response")
        if not fields[0].startswith(b"user=") or not fields[1].startswith(b"auth="):
            raise AuthError("malformed XOAUTH2 response")
        user = fields[0][5:].decode("utf-8", "replace")
        scheme, _, token = fields[1][5:].partition(b" ")
        ok = scheme.lower() == b"bearer" and self.password_ok(user, token)
        if ok:
            return self.result(server, "XOAUTH2", user, True)
        error = json.dumps(
            {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
        )
        # The client answers the error challenge with an empty line.
        resp = await server.challenge_auth(error)
        if resp is MISSING:
            self.record_auth(server, "XOAUTH2", user, False)
            return AuthResult(success=False, handled=True)
        return self.result(server, "XOAUTH2", user, False)


def server_tls_context(config):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(config["cert"], config["key"])

    def remember_sni(sslobj, server_name, _ctx):
        try:
            sslobj.outbox_sni = server_name
        except AttributeError:
            pass

    ctx.sni_callback = remember_sni
    return ctx


async def probe(port, implicit):
    """Connect to ourselves and read the 220 (after the TLS handshake in
    implicit mode)."""
    client_ctx = None
    if implicit:
        client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_ctx.check_hostname = False
        client_ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
    try:
        line = await asyncio.wait_for(reader.readline(), 10)
        if not line.startswith(b"220 "):
            raise RuntimeError(f"self-probe got {line!r}")
        writer.write(b"QUIT\r\n")
        await writer.drain()
        await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def watch_parent(parent, directory):
    while True:
        if os.getppid() != parent:
            log.info("parent process gone; exiting")
            shutil.rmtree(directory, ignore_errors=True)
            os._exit(0)
        await asyncio.sleep(0.2)


async def serve(config):
    loop = asyncio.get_running_loop()
    # The test process's pid comes from the config: if it died while we
    # were starting, os.getppid() would already be someone else's.
    asyncio.ensure_future(watch_parent(config["parent_pid"], config["dir"]))
    handler = Handler(config)
    os.makedirs(handler.messages_dir, exist_ok=True)
    os.makedirs(handler.attempts_dir, exist_ok=True)

    mode = config["mode"]
    ctx = server_tls_context(config) if mode in ("starttls", "implicit") else None
    implicit = mode == "implicit"
    excluded = [m for m in IMPLEMENTED if m not in handler.mechanisms]

    def factory():
        return TestSMTP(
            handler,
            hostname=config["hostname"],
            ident="ESMTP outbox aiosmtpd test server",
            tls_context=ctx if mode == "starttls" else None,
            require_starttls=bool(config["require_starttls"]) and mode == "starttls",
            auth_require_tls=bool(config["auth_require_tls"]) and not implicit,
            auth_required=bool(config["auth_required"]),
            authenticator=handler.authenticator,
            auth_exclude_mechanism=excluded,
            enable_SMTPUTF8=True,
            decode_data=False,
            loop=loop,
        )

    ssl_arg = ctx if implicit else None
    server4 = await loop.create_server(
        factory, host="127.0.0.1", port=0, ssl=ssl_arg, reuse_address=True
    )
    port = server4.sockets[0].getsockname()[1]
    port6 = 0
    if config.get("ipv6"):
        try:
            await loop.create_server(
                factory, host="::1", port=port, ssl=ssl_arg, family=socket.AF_INET6
            )
            port6 = port
        except OSError as e:
            log.info("not listening on [::1]:%d: %s", port, e)
    await probe(port, implicit)

    ready = os.path.join(config["dir"], "ready")
    with open(ready + ".tmp", "w", encoding="ascii") as f:
        f.write(f"{port} {port6}\n")
    os.rename(ready + ".tmp", ready)
    log.info(
        "listening on 127.0.0.1:%d%s, mode %s, AUTH %s",
        port,
        f" and [::1]:{port6}" if port6 else "",
        mode,
        " ".join(handler.mechanisms) or "(none)",
    )
    await asyncio.Event().wait()


class DropDeprecation(logging.Filter):
    def filter(self, record):
        return "deprecated" not in record.getMessage()


def main():
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    logging.getLogger("mail.log").addFilter(DropDeprecation())
    with open(sys.argv[1], encoding="utf-8") as f:
        config = json.load(f)
    try:
        asyncio.run(serve(config))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
