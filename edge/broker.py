"""A small embedded MQTT 3.1.1 broker for machines without mosquitto (the demo, tests).

Two layers, as in the house style:

* :class:`MqttCodec` is pure: bytes in, whole packets out. It never raises on garbage; a
  malformed packet comes out as a :class:`Malformed` value (with the reason) and the codec
  stops decoding that stream. The ``encode_*`` functions build the packets the broker sends.
* :class:`EmbeddedBroker` is the asyncio transport and routing, run in a daemon thread with
  its own event loop, so that synchronous code (the demo, tests) can start and stop it.

Supported (MQTT 3.1.1, also accepts 3.1 "MQIsdp" CONNECTs): CONNECT/CONNACK (username and
password checked when ``users`` is given), PUBLISH QoS 0/1 and inbound QoS 2
(PUBREC/PUBREL/PUBCOMP; delivered once), PUBACK, SUBSCRIBE/SUBACK with ``+`` and ``#``
(``$``-topics are not matched by a wildcard at the first level), UNSUBSCRIBE/UNSUBACK,
retained messages (an empty retained payload clears the topic), Last Will on an unclean
disconnect (socket closed, protocol error, keep-alive timeout at 1.5 x keep-alive, client-id
take-over), PINGREQ/PINGRESP, DISCONNECT.

Limits (by design, for a local demo/test broker): clean sessions only — a CONNECT with
clean-session 0 is accepted but gets a fresh session (CONNACK session-present 0) and nothing
is queued for offline clients; outbound QoS is at most 1 (QoS 2 subscriptions are granted 1);
no retransmission of unacknowledged QoS 1 messages (there is no session to resume); retained
messages live in memory only; no TLS, no ACLs, no MQTT 5 (a v5 CONNECT gets CONNACK 1,
"unacceptable protocol version", and the daemon falls back to 3.1.1); a subscriber whose socket
buffer exceeds ``max_buffer_bytes`` (a stalled reader) has further messages dropped, counted and
logged once.

Resource limits (constructor arguments, defaults in the module constants): a packet of at most
``max_packet_bytes`` (1 MiB), a CONNECT of at most 64 KiB (checked on its length header, before
the body is buffered), ``max_connections`` (64) at once, a CONNECT within ``connect_timeout_s``
(10 s), retained messages of at most ``max_retained_bytes`` (64 KiB) on at most 10 000 topics.
Past a limit the connection is closed (packets) or the message is not kept (retained), with one
log line. Worst case memory: about ``max_connections`` x ``max_packet_bytes`` of partial packets.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
import threading
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

# CONNACK return codes (MQTT 3.1.1, 3.2.2.3)
CONNACK_ACCEPTED = 0
CONNACK_BAD_PROTOCOL_LEVEL = 1
CONNACK_IDENTIFIER_REJECTED = 2
CONNACK_BAD_CREDENTIALS = 4

MAX_REMAINING_LENGTH = 268_435_455  # 4-byte varint ceiling (MQTT 3.1.1, 2.2.3)

# Limits, so that no client can make the broker hold much memory (a state is ~1 KB):
MAX_PACKET_BYTES = 1024 * 1024  # any packet after CONNECT
MAX_CONNECT_BYTES = 64 * 1024  # CONNECT (client id, will, credentials): judged before any login
MAX_CONNECTIONS = 64  # open connections; more are closed at once
MAX_RETAINED_BYTES = 64 * 1024  # a bigger retained message is delivered but not kept
MAX_RETAINED_TOPICS = 10_000  # retained topics kept; a new one past this is delivered, not kept


# ---------------------------------------------------------------------------------------------
# Packets (what the codec hands on)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True)
class Connect:
    protocol_name: str
    protocol_level: int
    clean_session: bool
    keepalive_s: int
    client_id: str
    will: Will | None
    username: str | None
    password: bytes | None = field(repr=False)


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None


@dataclass(frozen=True)
class Ack:
    """PUBACK, PUBREC, PUBREL or PUBCOMP: a packet type and a packet identifier."""

    kind: int
    packet_id: int


@dataclass(frozen=True)
class Subscribe:
    packet_id: int
    filters: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Unsubscribe:
    packet_id: int
    filters: tuple[str, ...]


@dataclass(frozen=True)
class Pingreq:
    pass


@dataclass(frozen=True)
class Disconnect:
    pass


@dataclass(frozen=True)
class Malformed:
    """The stream broke the protocol; ``reason`` says how. The connection must be closed."""

    reason: str


Packet = Connect | Publish | Ack | Subscribe | Unsubscribe | Pingreq | Disconnect | Malformed


# ---------------------------------------------------------------------------------------------
# Codec (pure)


class _Bad(Exception):
    """Internal: a field could not be decoded (never leaves this module)."""


class _Body:
    """A cursor over one packet's variable header and payload."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        if self.pos + 1 > len(self.data):
            raise _Bad("truncated")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def u16(self) -> int:
        if self.pos + 2 > len(self.data):
            raise _Bad("truncated")
        (value,) = struct.unpack_from(">H", self.data, self.pos)
        self.pos += 2
        return value

    def binary(self) -> bytes:
        length = self.u16()
        if self.pos + length > len(self.data):
            raise _Bad("string longer than the packet")
        value = self.data[self.pos : self.pos + length]
        self.pos += length
        return bytes(value)

    def text(self, what: str) -> str:
        raw = self.binary()
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Bad(f"{what} is not UTF-8") from None
        if "\x00" in value:
            raise _Bad(f"{what} contains U+0000")
        return value

    def rest(self) -> bytes:
        value = bytes(self.data[self.pos :])
        self.pos = len(self.data)
        return value


def valid_topic_name(topic: str) -> bool:
    """A PUBLISH topic: non-empty, no wildcards."""
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic


def valid_topic_filter(topic_filter: str) -> bool:
    """A SUBSCRIBE filter: ``#`` only as the whole last level, ``+`` only as a whole level."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT matching; a filter starting with a wildcard does not match a ``$``-topic."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True  # also matches the parent level ("a/#" matches "a")
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def _decode_connect(body: _Body) -> Connect:
    protocol_name = body.text("protocol name")
    protocol_level = body.u8()
    if protocol_name not in ("MQTT", "MQIsdp"):
        raise _Bad(f"unknown protocol name {protocol_name!r}")
    if protocol_level not in (3, 4):
        # e.g. MQTT 5 (level 5, whose CONNECT carries properties we do not parse): the broker
        # answers CONNACK 1 (3.1.1, 3.1.2.2), so a v5 client knows to fall back to 3.1.1
        return Connect(protocol_name, protocol_level, True, 0, "", None, None, None)
    flags = body.u8()
    if flags & 0x01:
        raise _Bad("CONNECT reserved flag set")
    keepalive_s = body.u16()
    client_id = body.text("client id")
    will = None
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    if will_flag:
        if will_qos > 2:
            raise _Bad("will QoS 3")
        will_topic = body.text("will topic")
        if not valid_topic_name(will_topic):
            raise _Bad(f"invalid will topic {will_topic!r}")
        will = Will(will_topic, body.binary(), will_qos, will_retain)
    elif will_qos or will_retain:
        raise _Bad("will QoS/retain set without a will")
    username = body.text("username") if flags & 0x80 else None
    password = body.binary() if flags & 0x40 else None
    if password is not None and username is None and protocol_level >= 4:
        raise _Bad("password without username")
    if body.remaining():
        raise _Bad("bytes after CONNECT payload")
    return Connect(
        protocol_name,
        protocol_level,
        bool(flags & 0x02),
        keepalive_s,
        client_id,
        will,
        username,
        password,
    )


def _decode(first_byte: int, data: bytes) -> Packet:
    kind, flags = first_byte >> 4, first_byte & 0x0F
    body = _Body(data)
    try:
        if kind == PUBLISH:
            qos = (flags >> 1) & 0x03
            if qos == 3:
                return Malformed("PUBLISH with QoS 3")
            topic = body.text("topic")
            if not valid_topic_name(topic):
                return Malformed(f"invalid PUBLISH topic {topic!r}")
            packet_id = body.u16() if qos else None
            if packet_id == 0:
                return Malformed("PUBLISH packet id 0")
            return Publish(
                topic, body.rest(), qos, bool(flags & 0x01), bool(flags & 0x08), packet_id
            )
        expected_flags = 0x02 if kind in (PUBREL, SUBSCRIBE, UNSUBSCRIBE) else 0x00
        if flags != expected_flags:
            return Malformed(f"packet type {kind} with reserved flags {flags:#x}")
        if kind == CONNECT:
            return _decode_connect(body)
        if kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            packet_id = body.u16()
            if body.remaining():
                return Malformed(f"packet type {kind}: {body.remaining()} extra bytes")
            return Ack(kind, packet_id)
        if kind == SUBSCRIBE:
            packet_id = body.u16()
            subs = []
            while body.remaining():
                topic_filter = body.text("topic filter")
                qos = body.u8()
                if qos & 0xFC:
                    return Malformed(f"SUBSCRIBE requested QoS byte {qos:#x}")
                subs.append((topic_filter, qos))
            if not subs or packet_id == 0:
                return Malformed("SUBSCRIBE without topic filters or with packet id 0")
            return Subscribe(packet_id, tuple(subs))
        if kind == UNSUBSCRIBE:
            packet_id = body.u16()
            names = []
            while body.remaining():
                names.append(body.text("topic filter"))
            if not names or packet_id == 0:
                return Malformed("UNSUBSCRIBE without topic filters or with packet id 0")
            return Unsubscribe(packet_id, tuple(names))
        if kind in (PINGREQ, DISCONNECT):
            if data:
                return Malformed(f"packet type {kind} with a body")
            return Pingreq() if kind == PINGREQ else Disconnect()
        return Malformed(f"packet type {kind} is not sent by clients")
    except _Bad as exc:
        return Malformed(f"packet type {kind}: {exc}")


class MqttCodec:
    """Bytes in, packets out; buffers partial packets; silent after a :class:`Malformed`."""

    def __init__(
        self, max_packet_bytes: int = MAX_PACKET_BYTES, *, expect_connect: bool = True
    ) -> None:
        self.max_packet_bytes = max_packet_bytes
        self.failed: str | None = None
        self._buffer = bytearray()
        # a server's stream must open with CONNECT: judge that on the first byte, so that garbage
        # (an HTTP request, a wrong port) is refused at once instead of waiting for a body
        self._expect_connect = expect_connect

    def feed(self, data: bytes) -> list[Packet]:
        if self.failed is not None:
            return []
        self._buffer += data
        packets: list[Packet] = []
        if self._expect_connect and self._buffer:
            if self._buffer[0] != CONNECT << 4:
                return self._fail(
                    packets, f"first packet is not CONNECT (byte {self._buffer[0]:#04x})"
                )
        while len(self._buffer) >= 2:
            length = 0
            header_len = 0
            for index in range(4):
                if 1 + index >= len(self._buffer):
                    return packets  # varint not complete yet
                byte = self._buffer[1 + index]
                length |= (byte & 0x7F) << (7 * index)
                if not byte & 0x80:
                    header_len = 2 + index
                    break
            else:
                return self._fail(packets, "remaining length longer than 4 bytes")
            limit = (
                min(self.max_packet_bytes, MAX_CONNECT_BYTES)
                if self._expect_connect
                else self.max_packet_bytes
            )
            if length > limit:
                what = "CONNECT" if self._expect_connect else "packet"
                return self._fail(packets, f"{what} of {length} bytes exceeds {limit}")
            if len(self._buffer) < header_len + length:
                return packets
            first_byte = self._buffer[0]
            body = bytes(self._buffer[header_len : header_len + length])
            del self._buffer[: header_len + length]
            packet = _decode(first_byte, body)
            self._expect_connect = False
            if isinstance(packet, Malformed):
                return self._fail(packets, packet.reason)
            packets.append(packet)
        return packets

    def _fail(self, packets: list[Packet], reason: str) -> list[Packet]:
        self.failed = reason
        self._buffer.clear()
        packets.append(Malformed(reason))
        return packets


def _remaining_length(length: int) -> bytes:
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"MQTT packet body of {length} bytes is out of range")
    out = bytearray()
    while True:
        byte = length % 128
        length //= 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def encode_packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _remaining_length(len(body)) + body


def encode_connack(session_present: bool, return_code: int) -> bytes:
    return encode_packet(CONNACK << 4, bytes([1 if session_present else 0, return_code]))


def encode_publish(
    topic: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool = False,
    packet_id: int | None = None,
) -> bytes:
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = _utf8(topic) + (struct.pack(">H", packet_id) if qos else b"") + payload
    return encode_packet((PUBLISH << 4) | flags, body)


def encode_ack(kind: int, packet_id: int) -> bytes:
    return encode_packet(
        (kind << 4) | (0x02 if kind == PUBREL else 0), struct.pack(">H", packet_id)
    )


def encode_suback(packet_id: int, return_codes: list[int]) -> bytes:
    return encode_packet(SUBACK << 4, struct.pack(">H", packet_id) + bytes(return_codes))


def encode_unsuback(packet_id: int) -> bytes:
    return encode_packet(UNSUBACK << 4, struct.pack(">H", packet_id))


PINGRESP_BYTES = bytes([PINGRESP << 4, 0])


# ---------------------------------------------------------------------------------------------
# Broker (asyncio, one event loop in a daemon thread)


class _Session:
    """One connected client: its writer, subscriptions, will and packet-id bookkeeping."""

    def __init__(
        self,
        client_id: str,
        peer: str,
        writer: asyncio.StreamWriter,
        will: Will | None,
        keepalive_s: int,
        max_buffer_bytes: int,
    ) -> None:
        self.client_id = client_id
        self.peer = peer
        self.writer = writer
        self.will = will
        self.keepalive_s = keepalive_s
        self.subscriptions: dict[str, int] = {}
        self.inflight_out: set[int] = set()
        self.qos2_in: set[int] = set()
        self.closed = False
        self.dropped = 0
        self._next_id = 0
        self._max_buffer_bytes = max_buffer_bytes

    @property
    def name(self) -> str:
        return f"client {self.client_id!r} ({self.peer})"

    def send(self, data: bytes) -> bool:
        if self.closed:
            return False
        transport = self.writer.transport
        if transport.is_closing():
            return False
        if transport.get_write_buffer_size() > self._max_buffer_bytes:
            if self.dropped == 0:
                log.warning(
                    "broker: %s is not reading (%d bytes buffered); dropping its messages",
                    self.name,
                    transport.get_write_buffer_size(),
                )
            self.dropped += 1
            return False
        self.writer.write(data)
        return True

    def next_packet_id(self) -> int | None:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self.inflight_out:
                return self._next_id
        return None

    def deliver(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if qos == 0:
            self.send(encode_publish(topic, payload, 0, retain))
            return
        packet_id = self.next_packet_id()
        if packet_id is None:
            self.dropped += 1
            return
        if self.send(encode_publish(topic, payload, 1, retain, packet_id=packet_id)):
            self.inflight_out.add(packet_id)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()


class EmbeddedBroker:
    """An MQTT 3.1.1 broker on ``host:port`` (port 0 picks a free one) in a daemon thread.

    ``users`` (username -> password), when given, is required of every client; otherwise
    anonymous clients are accepted. ``start()`` returns the bound port; ``stop()`` closes every
    client and the listener and joins the thread.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        users: dict[str, str] | None = None,
        max_packet_bytes: int = MAX_PACKET_BYTES,
        max_buffer_bytes: int = 16 * 1024 * 1024,
        connect_timeout_s: float = 10.0,
        max_connections: int = MAX_CONNECTIONS,
        max_retained_bytes: int = MAX_RETAINED_BYTES,
    ) -> None:
        self.max_connections = max_connections
        self.max_retained_bytes = max_retained_bytes
        self.refused_connections = 0
        self._retained_warned = False
        self.host = host
        self.port = port
        self.users = dict(users) if users is not None else None
        self.max_packet_bytes = max_packet_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self.connect_timeout_s = connect_timeout_s
        self.retained: dict[str, tuple[bytes, int]] = {}
        self._clients: dict[str, _Session] = {}
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping = False
        self._auto_ids = itertools.count(1)

    # -- lifetime (called from any thread) ---------------------------------------------------

    def start(self) -> int:
        if self._thread is not None:
            raise RuntimeError("embedded broker already started")
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt-broker-{self.port}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise OSError(
                f"embedded MQTT broker: cannot listen on {self.host}:{self.port}: "
                f"{self._start_error}"
            ) from self._start_error
        log.info("broker: listening on %s:%d", self.host, self.port)
        return self.port

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        loop, thread = self._loop, self._thread
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        except RuntimeError:
            pass  # loop already closed
        thread.join(timeout=10)
        self._thread = None
        log.info("broker: stopped (%s:%d)", self.host, self.port)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def client_ids(self) -> list[str]:
        """The ids of the clients connected now (a snapshot; for health and tests)."""
        return list(self._clients)

    # -- event loop thread -------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle_client, self.host, self.port)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._start_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _shutdown(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for session in list(self._clients.values()):
            session.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

    async def _handle_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        if len(self._tasks) > self.max_connections:
            self.refused_connections += 1
            if self.refused_connections == 1 or self.refused_connections % 1000 == 0:
                log.warning("broker: more than %d connections; closing %s (%d refused so far)",
                            self.max_connections, peer, self.refused_connections)
            writer.close()
            if task is not None:
                self._tasks.discard(task)
            return
        codec = MqttCodec(self.max_packet_bytes)
        session: _Session | None = None
        clean_disconnect = False
        try:
            timeout_s: float | None = self.connect_timeout_s
            while not self._stopping:
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout_s)
                except asyncio.TimeoutError:
                    who = session.name if session else f"connection {peer}"
                    log.info(
                        "broker: %s sent nothing for %.1f s (keep-alive); closing", who, timeout_s
                    )
                    break
                except (ConnectionError, OSError):
                    break
                if not data:
                    break
                stop_reading = False
                for packet in codec.feed(data):
                    if isinstance(packet, Malformed):
                        who = session.name if session else f"connection {peer}"
                        log.warning(
                            "broker: %s: malformed packet (%s); closing", who, packet.reason
                        )
                        stop_reading = True
                        break
                    if session is None:
                        if not isinstance(packet, Connect):
                            log.warning(
                                "broker: connection %s: first packet is not CONNECT; closing", peer
                            )
                            stop_reading = True
                            break
                        session = self._on_connect(packet, peer, writer)
                        if session is None:
                            stop_reading = True
                            break
                        timeout_s = 1.5 * session.keepalive_s if session.keepalive_s else None
                        continue
                    if isinstance(packet, Disconnect):
                        clean_disconnect = True
                        stop_reading = True
                        break
                    if not self._on_packet(session, packet):
                        stop_reading = True
                        break
                if stop_reading:
                    break
                if session is not None and session.closed:
                    break  # taken over by a newer connection with the same client id
        except asyncio.CancelledError:
            pass
        finally:
            self._forget(session, clean_disconnect)
            writer.close()
            if task is not None:
                self._tasks.discard(task)

    def _forget(self, session: _Session | None, clean_disconnect: bool) -> None:
        if session is None:
            return
        if self._clients.get(session.client_id) is session:
            del self._clients[session.client_id]
        will, session.will = session.will, None
        if will is not None and not clean_disconnect and not self._stopping:
            log.debug(
                "broker: %s gone without DISCONNECT; publishing its will on %s",
                session.name,
                will.topic,
            )
            self._route(will.topic, will.payload, will.qos, will.retain)
        session.close()
        log.debug("broker: %s disconnected", session.name)

    def _on_connect(
        self, packet: Connect, peer: str, writer: asyncio.StreamWriter
    ) -> _Session | None:
        def refuse(code: int, why: str) -> None:
            log.info("broker: connection %s refused (%s)", peer, why)
            writer.write(encode_connack(False, code))

        if packet.protocol_level not in (3, 4):
            refuse(CONNACK_BAD_PROTOCOL_LEVEL, f"protocol level {packet.protocol_level}")
            return None
        client_id = packet.client_id
        if not client_id:
            if not packet.clean_session:
                refuse(CONNACK_IDENTIFIER_REJECTED, "empty client id without clean session")
                return None
            client_id = f"auto-{next(self._auto_ids)}"
        if self.users is not None:
            password = (packet.password or b"").decode("utf-8", "replace")
            if packet.username is None or self.users.get(packet.username) != password:
                refuse(CONNACK_BAD_CREDENTIALS, f"bad username or password for {client_id!r}")
                return None
        old = self._clients.get(client_id)
        if old is not None:
            log.info("broker: %s taken over by a new connection from %s", old.name, peer)
            self._forget(old, clean_disconnect=False)
        session = _Session(
            client_id, peer, writer, packet.will, packet.keepalive_s, self.max_buffer_bytes
        )
        self._clients[client_id] = session
        session.send(encode_connack(False, CONNACK_ACCEPTED))
        log.debug("broker: %s connected (keep-alive %d s)", session.name, packet.keepalive_s)
        return session

    def _on_packet(self, session: _Session, packet: Packet) -> bool:
        """Handle one packet from a connected client; False closes the connection."""
        if isinstance(packet, Publish):
            if packet.qos == 2:
                assert packet.packet_id is not None
                if packet.packet_id not in session.qos2_in:  # a DUP re-send is not delivered twice
                    session.qos2_in.add(packet.packet_id)
                    self._route(packet.topic, packet.payload, 2, packet.retain)
                session.send(encode_ack(PUBREC, packet.packet_id))
                return True
            self._route(packet.topic, packet.payload, packet.qos, packet.retain)
            if packet.qos == 1:
                assert packet.packet_id is not None
                session.send(encode_ack(PUBACK, packet.packet_id))
            return True
        if isinstance(packet, Ack):
            if packet.kind == PUBACK:
                session.inflight_out.discard(packet.packet_id)
            elif packet.kind == PUBREL:
                session.qos2_in.discard(packet.packet_id)
                session.send(encode_ack(PUBCOMP, packet.packet_id))
            # PUBREC/PUBCOMP only answer QoS 2 sent by the broker, which it never sends: ignored.
            return True
        if isinstance(packet, Subscribe):
            codes = []
            granted_filters = []
            for topic_filter, qos in packet.filters:
                if not valid_topic_filter(topic_filter):
                    codes.append(0x80)
                    continue
                granted = min(qos, 1)
                session.subscriptions[topic_filter] = granted
                codes.append(granted)
                granted_filters.append((topic_filter, granted))
            session.send(encode_suback(packet.packet_id, codes))
            for topic_filter, granted in granted_filters:
                for topic, (payload, stored_qos) in list(self.retained.items()):
                    if topic_matches(topic_filter, topic):
                        session.deliver(topic, payload, min(stored_qos, granted), retain=True)
            return True
        if isinstance(packet, Unsubscribe):
            for topic_filter in packet.filters:
                session.subscriptions.pop(topic_filter, None)
            session.send(encode_unsuback(packet.packet_id))
            return True
        if isinstance(packet, Pingreq):
            session.send(PINGRESP_BYTES)
            return True
        if isinstance(packet, Connect):
            log.warning("broker: %s sent a second CONNECT; closing", session.name)
            return False
        return False

    def _route(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        if retain:
            if not payload:
                self.retained.pop(topic, None)
            elif len(payload) > self.max_retained_bytes or (
                topic not in self.retained and len(self.retained) >= MAX_RETAINED_TOPICS
            ):
                if not self._retained_warned:  # delivered now, not kept for later subscribers
                    self._retained_warned = True
                    log.warning("broker: retained message on %s not kept (%d bytes; limits %d "
                                "bytes, %d topics)", topic, len(payload), self.max_retained_bytes,
                                MAX_RETAINED_TOPICS)
            else:
                self.retained[topic] = (payload, min(qos, 1))
        for session in list(self._clients.values()):
            granted = -1
            for topic_filter, sub_qos in session.subscriptions.items():
                if sub_qos > granted and topic_matches(topic_filter, topic):
                    granted = sub_qos
            if granted >= 0:
                session.deliver(topic, payload, min(qos, granted), retain=False)
