"""The embedded MQTT broker: its pure codec on spec byte vectors and garbage, then real paho
clients over loopback (pub/sub, wildcards, retained, will, keep-alive, QoS 1, order, take-over)."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge import broker as b
from edge.broker import EmbeddedBroker, MqttCodec

# ---------------------------------------------------------------------------------------------
# codec (pure)


@pytest.mark.parametrize(
    "length, encoded",
    [
        # MQTT 3.1.1, section 2.2.3, table 2.4: the boundaries of each varint size
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_matches_the_spec_table(length, encoded):
    assert b._remaining_length(length) == encoded


def _connect_bytes(
    client_id: str,
    *,
    keepalive: int = 60,
    clean: bool = True,
    will=None,
    username: str | None = None,
    password: bytes | None = None,
    level: int = 4,
) -> bytes:
    """A CONNECT built by hand from the 3.1.1 layout (section 3.1)."""

    def utf8(text: str) -> bytes:
        raw = text.encode()
        return struct.pack(">H", len(raw)) + raw

    flags = 0x02 if clean else 0
    payload = utf8(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += utf8(topic) + struct.pack(">H", len(message)) + message
    if username is not None:
        flags |= 0x80
        payload += utf8(username)
    if password is not None:
        flags |= 0x40
        payload += struct.pack(">H", len(password)) + password
    body = utf8("MQTT") + bytes([level, flags]) + struct.pack(">H", keepalive) + payload
    return b.encode_packet(0x10, body)


def _short_connect() -> bytes:
    """A CONNECT whose client id runs past the end of the packet (length cut by one byte)."""
    raw = _connect_bytes("x")
    return raw[:1] + bytes([raw[1] - 1]) + raw[2:-1]


def test_codec_decodes_connect_with_will_and_credentials_fed_byte_by_byte():
    raw = _connect_bytes(
        "dev-1",
        keepalive=30,
        will=("e/dev-1/status", b"offline", 1, True),
        username="ann",
        password=b"s3cret",
    )
    codec = MqttCodec()
    packets = []
    for i in range(len(raw)):
        packets += codec.feed(raw[i : i + 1])
    assert packets == [
        b.Connect(
            "MQTT",
            4,
            True,
            30,
            "dev-1",
            b.Will("e/dev-1/status", b"offline", 1, True),
            "ann",
            b"s3cret",
        )
    ]


def test_codec_splits_several_packets_in_one_read_and_keeps_a_partial_one():
    first = b.encode_publish("a/b", b"x" * 200, 1, False, packet_id=7)  # 2-byte remaining length
    second = b"\xc0\x00"  # PINGREQ
    third = b.encode_publish("a/c", b"yz", 0, True)
    codec = MqttCodec(expect_connect=False)
    stream = first + second + third
    assert codec.feed(stream[:-3]) == [
        b.Publish("a/b", b"x" * 200, 1, False, False, 7),
        b.Pingreq(),
    ]
    assert codec.feed(stream[-3:]) == [b.Publish("a/c", b"yz", 0, True, False, None)]


def test_codec_decodes_subscribe_and_unsubscribe():
    sub = b.encode_packet(0x82, struct.pack(">H", 9) + b"\x00\x03a/#\x01" + b"\x00\x03+/x\x00")
    unsub = b.encode_packet(0xA2, struct.pack(">H", 10) + b"\x00\x03a/#")
    assert MqttCodec(expect_connect=False).feed(sub + unsub) == [
        b.Subscribe(9, (("a/#", 1), ("+/x", 0))),
        b.Unsubscribe(10, ("a/#",)),
    ]


@pytest.mark.parametrize(
    "garbage, reason_part",
    [
        (b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes"),
        (b"\x00\x00", "not sent by clients"),
        (b"\xf0\x00", "not sent by clients"),
        (b"\x20\x02\x00\x00", "not sent by clients"),  # CONNACK from a client
        (b"\x80\x06\x00\x01\x00\x01a\x00", "reserved flags"),  # SUBSCRIBE must have flags 0b0010
        (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
        (b"\x30\x05\x00\x03a/#", "invalid PUBLISH topic"),
        (b"\x30\x04\x00\x05ab", "longer than the packet"),
        (b"\x30\x04\x00\x02\xff\xfe", "not UTF-8"),
        (b"\x82\x02\x00\x01", "without topic filters"),
        (b"\xc0\x01\x00", "with a body"),
        (_short_connect(), "string longer than the packet"),
    ],
)
def test_codec_reports_malformed_packets_and_then_stays_silent(garbage, reason_part):
    codec = MqttCodec(expect_connect=False)
    packets = codec.feed(garbage)
    assert isinstance(packets[-1], b.Malformed), packets
    assert reason_part in packets[-1].reason
    assert codec.feed(b"\xc0\x00") == []  # no resynchronising inside a broken stream


def test_codec_refuses_packets_over_the_size_limit_before_buffering_them():
    codec = MqttCodec(max_packet_bytes=1000, expect_connect=False)
    packets = codec.feed(b"\x30\xe9\x07")  # claims 1001 bytes
    assert len(packets) == 1 and "exceeds 1000" in packets[0].reason


def test_codec_refuses_a_stream_that_does_not_open_with_connect_on_its_first_byte():
    packets = MqttCodec().feed(b"G")  # e.g. an HTTP request sent to the MQTT port
    assert len(packets) == 1 and "first packet is not CONNECT" in packets[0].reason
    connect = _connect_bytes("ok")
    assert MqttCodec().feed(connect + b"\xc0\x00")[1] == b.Pingreq()  # after CONNECT anything goes


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_codec_never_raises_on_arbitrary_bytes(chunks, expect_connect):
    codec = MqttCodec(max_packet_bytes=4096, expect_connect=expect_connect)
    for chunk in chunks:
        for packet in codec.feed(chunk):
            assert isinstance(
                packet,
                (
                    b.Connect,
                    b.Publish,
                    b.Ack,
                    b.Subscribe,
                    b.Unsubscribe,
                    b.Pingreq,
                    b.Disconnect,
                    b.Malformed,
                ),
            )


@pytest.mark.parametrize(
    "topic_filter, topic, expected",
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/+", "a/b", True),
        ("+", "a/b", False),
        ("a/+/c", "a//c", True),
        ("+/b", "/b", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/b", "a/B", False),
    ],
)
def test_topic_matching(topic_filter, topic, expected):
    assert b.topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize(
    "topic_filter, valid",
    [
        ("a/#", True),
        ("#", True),
        ("+/b/+", True),
        ("a/#/b", False),
        ("a#", False),
        ("a/b+", False),
        ("", False),
    ],
)
def test_topic_filter_validation(topic_filter, valid):
    assert b.valid_topic_filter(topic_filter) is valid


# ---------------------------------------------------------------------------------------------
# the broker with real clients over loopback


_OPEN_CLIENTS: list[Client] = []


@pytest.fixture(autouse=True)
def _close_clients():
    """Stop every paho client a test made, so none keeps reconnecting into later tests."""
    yield
    while _OPEN_CLIENTS:
        _OPEN_CLIENTS.pop().close()


class Client:
    """A paho client that records messages; waits with timeouts so a broken broker fails fast."""

    def __init__(self, port: int, client_id: str = "", **kwargs) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.cond = threading.Condition()
        self.disconnected = threading.Event()
        self.connect_rc = None
        self.connected = threading.Event()
        self.c = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        for key, value in kwargs.items():
            getattr(self.c, key)(*value) if isinstance(value, tuple) else getattr(self.c, key)(
                **value
            )
        self.c.on_message = self._on_message
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        _OPEN_CLIENTS.append(self)
        assert self.connected.wait(5), "no CONNACK"

    def _on_connect(self, client, userdata, flags, rc, props):
        self.connect_rc = rc
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def subscribe(self, topic_filter: str, qos: int = 1) -> list:
        done = threading.Event()
        granted = []
        self.c.on_subscribe = lambda c, u, mid, codes, p: (granted.extend(codes), done.set())
        self.c.subscribe(topic_filter, qos)
        assert done.wait(5), "no SUBACK"
        return granted

    def wait_for(self, n: int, timeout_s: float = 5.0) -> list[mqtt.MQTTMessage]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.messages) >= n, timeout_s)
            return list(self.messages)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def broker():
    with EmbeddedBroker() as running:
        yield running
        while _OPEN_CLIENTS:  # while the broker is still up, so that they leave at once
            _OPEN_CLIENTS.pop().close()


def test_pubsub_with_wildcards_delivers_only_matching_topics(broker):
    sub = Client(broker.port, "sub")
    assert sub.subscribe("home/+/temp", 1) == [1]
    sub.subscribe("alarm/#", 0)
    pub = Client(broker.port, "pub")
    for topic in (
        "home/kitchen/temp",
        "home/kitchen/humidity",
        "alarm",
        "alarm/door/open",
        "other/x",
        "home/a/b/temp",
    ):
        pub.c.publish(topic, topic.encode(), qos=1).wait_for_publish(5)
    got = sub.wait_for(3)
    time.sleep(0.2)  # nothing else may arrive
    assert [m.topic for m in sub.messages] == ["home/kitchen/temp", "alarm", "alarm/door/open"]
    assert [m.payload for m in got] == [b"home/kitchen/temp", b"alarm", b"alarm/door/open"]
    sub.close()
    pub.close()


def test_dollar_topics_are_not_matched_by_a_leading_wildcard(broker):
    sub = Client(broker.port, "sub")
    sub.subscribe("#")
    sub.subscribe("$SYS/health")
    pub = Client(broker.port, "pub")
    pub.c.publish("$SYS/health", b"1", qos=1).wait_for_publish(5)
    pub.c.publish("plain", b"2", qos=1).wait_for_publish(5)
    got = sub.wait_for(2)
    time.sleep(0.2)
    assert sorted(m.topic for m in sub.messages) == ["$SYS/health", "plain"]  # once each, not twice
    assert len(got) == 2


def test_qos1_is_acknowledged_and_downgraded_to_the_subscription_qos(broker):
    sub0 = Client(broker.port, "sub0")
    sub0.subscribe("t", 0)
    sub1 = Client(broker.port, "sub1")
    sub1.subscribe("t", 2)  # QoS 2 is granted as 1
    pub = Client(broker.port, "pub")
    info = pub.c.publish("t", b"hello", qos=1)
    info.wait_for_publish(5)
    assert info.is_published()  # the broker's PUBACK arrived
    assert [m.qos for m in sub0.wait_for(1)] == [0]
    assert [m.qos for m in sub1.wait_for(1)] == [1]
    qos2 = pub.c.publish("t", b"exactly-once", qos=2)
    qos2.wait_for_publish(5)
    assert qos2.is_published()  # PUBREC/PUBREL/PUBCOMP completed
    assert [m.payload for m in sub1.wait_for(2)] == [b"hello", b"exactly-once"]


def test_many_qos1_messages_arrive_complete_and_in_order(broker):
    sub = Client(broker.port, "sub")
    sub.subscribe("seq/#", 1)
    pub = Client(broker.port, "pub")
    infos = [pub.c.publish("seq/n", str(i).encode(), qos=1) for i in range(2000)]
    for info in infos:
        info.wait_for_publish(10)
    got = sub.wait_for(2000, timeout_s=20)
    assert [int(m.payload) for m in got] == list(range(2000))


def test_retained_message_reaches_later_subscribers_and_empty_payload_clears_it(broker):
    pub = Client(broker.port, "pub")
    pub.c.publish("dev/status", b"online", qos=1, retain=True).wait_for_publish(5)
    pub.c.publish("dev/status", b"offline", qos=1, retain=True).wait_for_publish(5)  # replaces
    late = Client(broker.port, "late")
    late.subscribe("dev/+", 1)
    got = late.wait_for(1)
    assert [(m.payload, m.retain) for m in got] == [(b"offline", True)]
    pub.c.publish("dev/status", b"live", qos=1).wait_for_publish(5)
    assert (late.wait_for(2)[1].payload, late.messages[1].retain) == (b"live", False)
    pub.c.publish("dev/status", b"", qos=1, retain=True).wait_for_publish(5)
    later = Client(broker.port, "later")
    later.subscribe("dev/#", 1)
    time.sleep(0.3)
    assert later.messages == []  # the retained message was cleared


def test_last_will_on_unclean_disconnect_but_not_on_disconnect(broker):
    watcher = Client(broker.port, "watcher")
    watcher.subscribe("wills/#", 1)
    for name, clean in (("polite", True), ("crashed", False)):
        sock = socket.create_connection(("127.0.0.1", broker.port))
        sock.sendall(_connect_bytes(name, will=(f"wills/{name}", b"offline", 1, False)))
        assert sock.recv(4) == b"\x20\x02\x00\x00"  # CONNACK accepted
        if clean:
            sock.sendall(b"\xe0\x00")  # DISCONNECT
        sock.close()
    got = watcher.wait_for(1)
    time.sleep(0.3)
    assert [(m.topic, m.payload) for m in watcher.messages] == [("wills/crashed", b"offline")]
    assert len(got) == 1


def test_keepalive_timeout_publishes_the_will_after_one_and_a_half_keepalives(broker):
    watcher = Client(broker.port, "watcher")
    watcher.subscribe("wills/#", 1)
    sock = socket.create_connection(("127.0.0.1", broker.port))
    sock.sendall(_connect_bytes("silent", keepalive=1, will=("wills/silent", b"gone", 0, False)))
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    started = time.monotonic()
    got = watcher.wait_for(1, timeout_s=5)
    elapsed = time.monotonic() - started
    assert [m.payload for m in got] == [b"gone"]
    assert 1.3 < elapsed < 4.5
    sock.settimeout(2)
    assert sock.recv(10) == b""  # the broker closed the silent connection
    sock.close()


def test_pingreq_keeps_a_quiet_client_alive(broker):
    sock = socket.create_connection(("127.0.0.1", broker.port))
    sock.sendall(_connect_bytes("pinger", keepalive=1))
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    sock.settimeout(2)
    for _ in range(4):  # 2.8 s in all: well past 1.5 x keep-alive without the pings
        time.sleep(0.7)
        sock.sendall(b"\xc0\x00")
        assert sock.recv(2) == b"\xd0\x00"  # PINGRESP
    assert "pinger" in broker.client_ids
    sock.close()


def test_mqtt_3_1_clients_are_accepted(broker):
    sub = Client(broker.port, "old-sub")
    sub.subscribe("v31/#")
    old = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id="old-pub",
        protocol=mqtt.MQTTv31,
    )
    old.connect("127.0.0.1", broker.port)
    old.loop_start()
    old.publish("v31/x", b"MQIsdp", qos=1).wait_for_publish(5)
    old.disconnect()
    old.loop_stop()
    assert [m.payload for m in sub.wait_for(1)] == [b"MQIsdp"]


def test_a_new_connection_with_the_same_client_id_takes_over(broker):
    watcher = Client(broker.port, "watcher")
    watcher.subscribe("status/#", 1)
    first = Client(broker.port, "device-7", will_set=("status/device-7", b"offline", 1, True))
    second = Client(broker.port, "device-7")
    assert first.disconnected.wait(5)  # the broker closed the older connection
    assert [m.payload for m in watcher.wait_for(1)] == [b"offline"]  # its will went out
    first.c.loop_stop()
    assert broker.client_ids.count("device-7") == 1
    second.close()


def test_malformed_packet_closes_only_that_client_with_one_log_line(broker, caplog):
    bystander = Client(broker.port, "bystander")
    bystander.subscribe("x", 1)
    sock = socket.create_connection(("127.0.0.1", broker.port))
    sock.sendall(_connect_bytes("bad-device"))
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    with caplog.at_level(logging.WARNING, logger="edge.broker"):
        sock.sendall(b"\x82\x02\x00\x01")  # SUBSCRIBE without topic filters
        sock.settimeout(3)
        assert sock.recv(10) == b""
        time.sleep(0.1)
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.broker"]
    assert len(lines) == 1 and "bad-device" in lines[0] and "malformed" in lines[0]
    pub = Client(broker.port, "pub")
    pub.c.publish("x", b"still works", qos=1).wait_for_publish(5)
    assert [m.payload for m in bystander.wait_for(1)] == [b"still works"]


def test_garbage_before_connect_is_refused(broker):
    sock = socket.create_connection(("127.0.0.1", broker.port))
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(3)
    assert sock.recv(10) == b""


def test_username_and_password_are_checked_when_configured():
    with EmbeddedBroker(users={"edge": "pw-1"}) as secured:
        ok = Client(secured.port, "ok", username_pw_set=("edge", "pw-1"))
        assert not ok.connect_rc.is_failure
        bad = Client(secured.port, "bad", username_pw_set=("edge", "wrong"))
        assert bad.connect_rc.is_failure and "user name or password" in str(bad.connect_rc).lower()
        bad.c.loop_stop()
        ok.close()


def test_stop_disconnects_clients_and_frees_the_port():
    broker = EmbeddedBroker()
    port = broker.start()
    client = Client(port, "c")
    broker.stop()
    assert client.disconnected.wait(5)
    client.c.loop_stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    again = EmbeddedBroker(port=port)  # restart on the same port
    assert again.start() == port
    again.stop()


def test_start_on_a_busy_port_says_which_port():
    with EmbeddedBroker() as running:
        with pytest.raises(OSError, match=f"127.0.0.1:{running.port}"):
            EmbeddedBroker(port=running.port).start()


def test_a_subscriber_that_stops_reading_does_not_stall_the_others(caplog):
    with EmbeddedBroker(max_buffer_bytes=1024 * 1024) as small:
        stalled = socket.socket()
        stalled.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
        )  # before connect: small window
        stalled.connect(("127.0.0.1", small.port))
        stalled.sendall(_connect_bytes("stalled"))
        assert stalled.recv(4) == b"\x20\x02\x00\x00"
        stalled.sendall(b.encode_packet(0x82, struct.pack(">H", 1) + b"\x00\x04bulk\x00"))
        assert stalled.recv(5) == b"\x90\x03\x00\x01\x00"  # SUBACK, QoS 0 granted; then never reads
        healthy = Client(small.port, "healthy")
        healthy.subscribe("bulk", 1)
        pub = Client(small.port, "pub")
        chunk = b"x" * 8192
        with caplog.at_level(logging.WARNING, logger="edge.broker"):
            infos = [
                pub.c.publish("bulk", chunk, qos=1) for _ in range(1500)
            ]  # 12 MB, well past the kernel buffers
            for info in infos:
                info.wait_for_publish(20)
            got = healthy.wait_for(1500, timeout_s=30)
        assert len(got) == 1500
        drops = [r.getMessage() for r in caplog.records if "is not reading" in r.getMessage()]
        assert len(drops) == 1 and "stalled" in drops[0]
        stalled.close()
        while _OPEN_CLIENTS:
            _OPEN_CLIENTS.pop().close()
