"""A small LMTP server for the tests: aiosmtpd's LMTP class, on a TCP port or a
Unix socket. Each message is written as JSON to OUTDIR. A recipient whose local part
starts with "full" gets 452 after the data (a full mailbox), the others 250: one reply
per recipient, as RFC 2033 asks. Exits when its parent (the test process) is gone.

usage: lmtpd.py tcp PORT OUTDIR PARENT_PID | unix PATH OUTDIR PARENT_PID
"""
import base64
import json
import os
import sys
import time

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP


class Handler:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": base64.b64encode(envelope.original_content or b"").decode(),
        }
        tmp = os.path.join(self.outdir, f".{self.count}.json")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.outdir, f"{self.count:04}.json"))
        replies = []
        for rcpt in envelope.rcpt_tos:
            if rcpt.split("@")[0].startswith("full"):
                replies.append(f"452 4.2.2 <{rcpt}> mailbox full")
            else:
                replies.append(f"250 2.0.0 <{rcpt}> delivered")
        return "\r\n".join(replies)


class TcpLmtp(Controller):
    def factory(self):
        return LMTP(self.handler)


class UnixLmtp(UnixSocketController):
    def factory(self):
        return LMTP(self.handler)


def main():
    kind, where, outdir, parent = sys.argv[1:5]
    handler = Handler(outdir)
    if kind == "tcp":
        controller = TcpLmtp(handler, hostname="127.0.0.1", port=int(where))
    else:
        controller = UnixLmtp(handler, unix_socket=where)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            try:
                os.kill(int(parent), 0)
            except OSError:
                break
            time.sleep(0.2)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
