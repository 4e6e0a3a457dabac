"""The reference firmware's frame encoder (firmware/framed_sensor/framed_protocol.h), compiled for
the host with g++, must produce exactly the bytes of the Python reference encoder, and its frames
must decode. Skipped where no C++ compiler is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.protocols.framed import FramedDecoder, encode_frame

HEADER = Path(__file__).resolve().parent.parent / "firmware" / "framed_sensor" / "framed_protocol.h"

HARNESS = r"""
#include <cstdio>
#include <vector>
#include "framed_protocol.h"
static framed::FramedEncoder enc;
static void emit(uint8_t stream, uint8_t fmt, uint16_t seq, uint64_t t0, float rate, uint8_t ch, float scale,
                 const std::vector<uint8_t>& raw) {
  uint8_t out[4096];
  size_t n = enc.encode(out, sizeof out, stream, fmt, seq, t0, rate, ch, scale, raw.data(), raw.size());
  for (size_t i = 0; i < n; ++i) printf("%02x", out[i]);
  printf("\n");
}
int main() {
  printf("%04x\n", framed::crc16_ccitt_false((const uint8_t*)"123456789", 9));
  std::vector<uint8_t> eda;  // int16 LE 100, -2, 0, 513
  for (int16_t v : {100, -2, 0, 513}) { eda.push_back(v & 0xFF); eda.push_back((v >> 8) & 0xFF); }
  emit(framed::STREAM_EDA, framed::FORMAT_INT16, 65535, 123456789012ULL, 4.0f, 1, 0.01f, eda);
  std::vector<uint8_t> big;  // 300 int16 samples, none zero bytes: exercises full COBS groups
  for (int i = 0; i < 300; ++i) { int16_t v = 257 + i; big.push_back(v & 0xFF); big.push_back((v >> 8) & 0xFF); }
  emit(framed::STREAM_ECG, framed::FORMAT_INT16, 7, 1000000ULL, 250.0f, 1, 2.5f, big);
  std::vector<uint8_t> acc;  // 2 samples x 3 channels, int16 LE in 1/64 g: (2, 10, 63), (-64, 0, 1)
  for (int16_t v : {2, 10, 63, -64, 0, 1}) { acc.push_back(v & 0xFF); acc.push_back((v >> 8) & 0xFF); }
  emit(framed::STREAM_ACC, framed::FORMAT_INT16, 3, 2000000ULL, 32.0f, 3, 1.0f / 64, acc);
  return 0;
}
"""


@pytest.fixture(scope="module")
def firmware_output(tmp_path_factory):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not installed")
    work = tmp_path_factory.mktemp("fw")
    (work / "harness.cpp").write_text(HARNESS)
    exe = work / "harness"
    subprocess.run(
        [
            gxx,
            "-std=c++11",
            "-Wall",
            "-Werror",
            "-I",
            str(HEADER.parent),
            "-o",
            str(exe),
            str(work / "harness.cpp"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return subprocess.run(
        [str(exe)], check=True, capture_output=True, text=True, timeout=30
    ).stdout.split()


def test_firmware_crc_check_value(firmware_output):
    assert firmware_output[0] == "29b1"


def test_firmware_frames_match_python_encoder_and_decode(firmware_output):
    expected_eda = encode_frame("eda", [100, -2, 0, 513], 65535, 123456789012, 4.0, "int16", 0.01)
    expected_ecg = encode_frame("ecg", 257 + np.arange(300), 7, 1_000_000, 250.0, "int16", 2.5)
    assert bytes.fromhex(firmware_output[1]) == expected_eda
    assert bytes.fromhex(firmware_output[2]) == expected_ecg
    dec = FramedDecoder()
    res = dec.feed(bytes.fromhex(firmware_output[1]) + bytes.fromhex(firmware_output[2]), 10.0)
    assert res.decode_errors == 0
    np.testing.assert_allclose(
        res.blocks[0].data[:, 0], np.array([100, -2, 0, 513]) * np.float32(0.01)
    )
    np.testing.assert_allclose(res.blocks[1].data[:, 0], (257 + np.arange(300)) * 2.5)


def test_firmware_acc_frame_carries_three_axes_in_g(firmware_output):
    counts = np.array([[2, 10, 63], [-64, 0, 1]])
    assert bytes.fromhex(firmware_output[3]) == encode_frame("acc", counts, 3, 2_000_000, 32.0, "int16", 1 / 64)
    block = FramedDecoder().feed(bytes.fromhex(firmware_output[3]), 10.0).blocks[0]
    assert (block.stream, block.channels) == ("acc", ("x", "y", "z"))
    np.testing.assert_allclose(block.data, counts / 64.0)
