// emotion-edge framed protocol, version 1 (spec: firmware_bridge/PROTOCOL.md) — sender side.
//
// Plain C++ (no Arduino dependency) so the same code runs in the sketch and in the host-side test
// (tests/test_protocol_framed_firmware.py compiles it with g++ and compares its bytes with the
// Python reference encoder, firmware_bridge.protocols.framed.encode_frame).
//
// Usage: FramedEncoder enc; size_t n = enc.encode(out, sizeof out, STREAM_EDA, FORMAT_INT16,
//        seq, t0_us, 4.0f, 1, 0.01f, raw_bytes, raw_len);  then write out[0..n) to the wire.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

namespace framed {

enum : uint8_t { VERSION = 1 };
enum Stream : uint8_t { STREAM_EDA = 1, STREAM_ECG = 2, STREAM_EEG = 3, STREAM_BVP = 4, STREAM_IBI = 5,
                        STREAM_TEMP = 6, STREAM_ACC = 7 };  // temp: °C, 1 channel; acc: g, 3 channels x y z
enum Format : uint8_t { FORMAT_INT16 = 0, FORMAT_INT24 = 1, FORMAT_INT32 = 2, FORMAT_FLOAT32 = 3 };
const size_t HEADER_BYTES = 22;
const size_t MAX_FRAME_BYTES = 2048;

// CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor ("123456789" -> 0x29B1).
inline uint16_t crc16_ccitt_false(const uint8_t *data, size_t len) {
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < len; ++i) {
    crc ^= (uint16_t)data[i] << 8;
    for (int b = 0; b < 8; ++b) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
  }
  return crc;
}

// COBS-encode len bytes into out (room for len + len/254 + 1); returns the encoded length.
// Canonical form: a final run of exactly 254 non-zero bytes gets no extra 0x01 code.
inline size_t cobs_encode(const uint8_t *in, size_t len, uint8_t *out) {
  size_t code_at = 0, o = 1;
  uint8_t code = 1;
  for (size_t i = 0; i < len; ++i) {
    if (in[i] == 0) {
      out[code_at] = code; code_at = o++; code = 1;
    } else {
      out[o++] = in[i];
      if (++code == 0xFF) {
        out[code_at] = code; code = 1;
        if (i + 1 == len) return o;  // canonical: nothing after a final full group
        code_at = o++;
      }
    }
  }
  out[code_at] = code;
  return o;
}

inline void put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = (uint8_t)(v >> (8 * i));
}

inline void put_f32(uint8_t *p, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);  // IEEE-754 little-endian on ESP32, RP2040, x86
  put_le(p, u, 4);
}

class FramedEncoder {
 public:
  // Builds one frame, COBS-encodes it into out and appends the 0x00 delimiter. samples: n x channels
  // values already in the sample format's little-endian byte layout. Returns bytes written, 0 if
  // it does not fit.
  size_t encode(uint8_t *out, size_t out_cap, uint8_t stream, uint8_t format, uint16_t sequence,
                uint64_t t0_us, float rate_hz, uint8_t channels, float scale, const uint8_t *samples,
                size_t samples_len) {
    size_t frame_len = HEADER_BYTES + samples_len + 2;
    if (frame_len > MAX_FRAME_BYTES || out_cap < frame_len + frame_len / 254 + 2) return 0;
    uint8_t *f = frame_;
    f[0] = VERSION;
    f[1] = stream;
    f[2] = format;
    put_le(f + 3, sequence, 2);
    put_le(f + 5, t0_us, 8);
    put_f32(f + 13, rate_hz);
    f[17] = channels;
    put_f32(f + 18, scale);
    memcpy(f + HEADER_BYTES, samples, samples_len);
    uint16_t crc = crc16_ccitt_false(f, HEADER_BYTES + samples_len);
    put_le(f + HEADER_BYTES + samples_len, crc, 2);
    size_t n = cobs_encode(f, frame_len, out);
    out[n++] = 0x00;
    return n;
  }

 private:
  uint8_t frame_[MAX_FRAME_BYTES];
};

}  // namespace framed
