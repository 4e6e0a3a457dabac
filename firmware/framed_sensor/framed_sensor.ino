// Reference firmware: a skin-conductance (EDA/GSR) board streaming the emotion-edge framed protocol
// over USB serial. Board: any Arduino-core MCU with an ADC (written for ESP32 / RP2040); sensor: a
// GSR front end (e.g. Grove GSR, or a constant-voltage divider) on GSR_PIN.
//
// Host side:   emotion-edge devices check serial:framed:/dev/ttyUSB0
//              emotion-edge run --source serial:framed:/dev/ttyUSB0
// Protocol:    firmware_bridge/PROTOCOL.md (frame building in framed_protocol.h, tested on the host
//              against the Python reference encoder).
//
// Not run on hardware in this repository: the frame bytes are verified by the host test; the ADC
// scaling below is a placeholder you must calibrate for your front end (see MICROSIEMENS_PER_COUNT).

#include "framed_protocol.h"

const int GSR_PIN = A0;
const float RATE_HZ = 32.0f;          // EDA is slow; 32 Hz is plenty (the host model uses 4 Hz)
const int SAMPLES_PER_FRAME = 8;      // one frame every 250 ms
// Conductance per ADC count for YOUR front end (placeholder: 12-bit ADC, 0-40 µS full scale).
const float MICROSIEMENS_PER_COUNT = 40.0f / 4095.0f;

framed::FramedEncoder encoder;
uint8_t wire[128];
int16_t samples[SAMPLES_PER_FRAME];
int n_samples = 0;
uint16_t sequence = 0;
uint64_t frame_t0_us = 0;
uint64_t next_sample_us = 0;

// A 64-bit microsecond clock that never wraps (micros() wraps every ~71 minutes).
uint64_t micros64() {
  static uint32_t last = 0;
  static uint64_t high = 0;
  uint32_t now = micros();
  if (now < last) high += (1ULL << 32);
  last = now;
  return high + now;
}

void setup() {
  Serial.begin(115200);
#if defined(ARDUINO_ARCH_ESP32) || defined(ARDUINO_ARCH_RP2040)
  analogReadResolution(12);
#endif
  delay(100);
  Serial.write((uint8_t)0x00);  // delimiter: whatever the boot loader printed costs no frame
  next_sample_us = micros64();
}

void loop() {
  uint64_t now = micros64();
  if (now < next_sample_us) return;
  if (n_samples == 0) frame_t0_us = next_sample_us;  // scheduled time of the first sample
  samples[n_samples++] = (int16_t)analogRead(GSR_PIN);
  next_sample_us += (uint64_t)(1e6f / RATE_HZ);
  if (n_samples < SAMPLES_PER_FRAME) return;

  size_t n = encoder.encode(wire, sizeof wire, framed::STREAM_EDA, framed::FORMAT_INT16, sequence,
                            frame_t0_us, RATE_HZ, 1, MICROSIEMENS_PER_COUNT,
                            reinterpret_cast<const uint8_t *>(samples), sizeof samples);  // int16 LE
  Serial.write(wire, n);
  sequence++;  // counts frames made, sent or not: a gap tells the host what was lost
  n_samples = 0;
}
