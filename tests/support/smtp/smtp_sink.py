#!/usr/bin/env python3
"""A real SMTP server that keeps what it receives, for regstack-rs tests.

Built on aiosmtpd (see requirements.txt). Every message that is accepted is
appended to --out as one JSON line:

    {"mail_from": "...", "rcpt_tos": ["..."], "data": "<the raw message>"}

Once the socket is bound, one line ``LISTENING <port>`` is printed to
stdout (so ``--port 0`` lets the OS pick a free port). The process runs
until it is killed.

Modes (--tls):
  none      plain SMTP, no TLS offered;
  starttls  STARTTLS offered and required before MAIL/AUTH;
  implicit  TLS from the first byte (SMTPS, port-465 style).
TLS modes use a self-signed certificate generated at start (clients must
accept invalid certificates). --auth-user/--auth-password make AUTH
PLAIN/LOGIN mandatory with exactly those credentials.

Example:
  python smtp_sink.py --host 127.0.0.1 --port 0 --out /tmp/mail.jsonl \
      --tls starttls --auth-user alice --auth-password s3cret
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import json
import ssl
import sys
import tempfile
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def self_signed_context(host: str) -> ssl.SSLContext:
    """Server-side TLS context with a fresh self-signed certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "regstack-smtp-sink")])
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        sans.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        sans.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # load_cert_chain only reads files; they live just long enough for that.
    with tempfile.TemporaryDirectory() as tmp:
        cert_path = Path(tmp, "cert.pem")
        key_path = Path(tmp, "key.pem")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        ctx.load_cert_chain(cert_path, key_path)
    return ctx


class Recorder:
    """aiosmtpd handler: append each message to the output file."""

    def __init__(self, out: Path) -> None:
        self.out = out

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            data = content
        else:
            data = content.decode("utf-8", errors="replace")
        line = json.dumps(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "data": data,
            }
        )
        # One write per message, flushed before the 250 reply, so a test that
        # sees the send succeed can read the line at once.
        with self.out.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
        return "250 Message accepted for delivery"


def authenticator(user: str, password: str):
    def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
        if (
            mechanism in ("PLAIN", "LOGIN")
            and isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        ):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    return check


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="JSON-lines file to append to")
    p.add_argument("--tls", choices=("none", "starttls", "implicit"), default="none")
    p.add_argument("--auth-user")
    p.add_argument("--auth-password")
    args = p.parse_args()
    if (args.auth_user is None) != (args.auth_password is None):
        p.error("--auth-user and --auth-password go together")

    args.out.touch()
    handler = Recorder(args.out)
    tls_ctx = self_signed_context(args.host) if args.tls != "none" else None
    auth = args.auth_user is not None

    def factory() -> SMTP:
        kwargs = {
            "hostname": "regstack-smtp-sink",  # avoids a slow getfqdn()
            "ident": "regstack smtp sink",
        }
        if args.tls == "starttls":
            kwargs.update(tls_context=tls_ctx, require_starttls=True)
        if auth:
            kwargs.update(
                authenticator=authenticator(args.auth_user, args.auth_password),
                auth_required=True,
                # STARTTLS mode: AUTH only after the upgrade. aiosmtpd does
                # not see implicit TLS (it only tracks its own STARTTLS), so
                # there the check is off: the socket is TLS from byte one.
                # Plain mode with auth is a test of plain auth on purpose.
                auth_require_tls=args.tls == "starttls",
            )
        return SMTP(handler, **kwargs)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory,
        host=args.host,
        port=args.port,
        ssl=tls_ctx if args.tls == "implicit" else None,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
