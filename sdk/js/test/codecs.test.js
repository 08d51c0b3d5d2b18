import { test } from 'node:test';
import assert from 'node:assert/strict';
import { negotiatedCodecs, preferCodecs } from '../src/codecs.js';

const log = { debug() {} };

/** A transceiver of kind whose sender reports codecs and records setCodecPreferences. */
function transceiver(kind, codecs = []) {
  return {
    receiver: { track: { kind } },
    sender: { track: null, getParameters: () => ({ codecs }) },
    preferred: null,
    setCodecPreferences(list) {
      this.preferred = list;
    },
  };
}

const pc = (...ts) => ({ getTransceivers: () => ts });

const AUDIO_CAPS = [
  { mimeType: 'audio/opus', clockRate: 48000, channels: 2, sdpFmtpLine: 'minptime=10;useinbandfec=1' },
  { mimeType: 'audio/PCMU', clockRate: 8000 },
  { mimeType: 'audio/PCMA', clockRate: 8000 },
  { mimeType: 'audio/telephone-event', clockRate: 8000 },
  { mimeType: 'audio/telephone-event', clockRate: 48000 },
];
const VIDEO_CAPS = [
  { mimeType: 'video/VP8', clockRate: 90000 },
  { mimeType: 'video/rtx', clockRate: 90000 },
  { mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f' },
];

function withCapabilities(fn) {
  const saved = globalThis.RTCRtpReceiver;
  globalThis.RTCRtpReceiver = { getCapabilities: (kind) => ({ codecs: kind === 'audio' ? AUDIO_CAPS : VIDEO_CAPS }) };
  try {
    return fn();
  } finally {
    globalThis.RTCRtpReceiver = saved;
  }
}

test('codecs: negotiatedCodecs keeps each kind\'s codecs in their negotiated order', () => {
  const got = negotiatedCodecs(
    pc(
      transceiver('audio', [{ payloadType: 0, mimeType: 'audio/PCMU', clockRate: 8000, channels: 1, rid: 'x' }, { payloadType: 101, mimeType: 'audio/telephone-event', clockRate: 8000 }]),
      transceiver('video', []),
    ),
  );
  assert.deepEqual(got, {
    audio: [
      { payloadType: 0, mimeType: 'audio/PCMU', clockRate: 8000, channels: 1, sdpFmtpLine: undefined },
      { payloadType: 101, mimeType: 'audio/telephone-event', clockRate: 8000, channels: undefined, sdpFmtpLine: undefined },
    ],
  });
});

test('codecs: preferCodecs offers the saved codecs alone, in their order, matched on rate, channels and fmtp', () => {
  withCapabilities(() => {
    const audio = transceiver('audio');
    const video = transceiver('video');
    const saved = {
      audio: [
        { payloadType: 0, mimeType: 'audio/pcmu', clockRate: 8000, channels: 1 },
        { payloadType: 126, mimeType: 'audio/telephone-event', clockRate: 8000 },
      ],
      video: [
        { payloadType: 102, mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f' },
        // rtx's capability has no fmtp: its apt= depends on the payload types.
        { payloadType: 103, mimeType: 'video/rtx', clockRate: 90000, sdpFmtpLine: 'apt=102' },
      ],
    };
    assert.deepEqual(preferCodecs(pc(audio, video), saved, log), ['audio', 'video']);
    assert.deepEqual(audio.preferred, [AUDIO_CAPS[1], AUDIO_CAPS[3]]);
    assert.deepEqual(video.preferred, [VIDEO_CAPS[2], VIDEO_CAPS[1]]);
  });
});

test('codecs: preferCodecs leaves the browser\'s list where no saved media codec is left', () => {
  withCapabilities(() => {
    const audio = transceiver('audio');
    const video = transceiver('video');
    const saved = {
      // G.729 is not the browser's; telephone-event alone would offer no codec.
      audio: [{ payloadType: 18, mimeType: 'audio/G729', clockRate: 8000 }, { payloadType: 101, mimeType: 'audio/telephone-event', clockRate: 8000 }],
      // Another H264 profile than the browser's.
      video: [{ payloadType: 102, mimeType: 'video/H264', clockRate: 90000, sdpFmtpLine: 'profile-level-id=640c1f' }],
    };
    assert.deepEqual(preferCodecs(pc(audio, video), saved, log), []);
    assert.equal(audio.preferred, null);
    assert.equal(video.preferred, null);
    assert.deepEqual(preferCodecs(pc(audio), null, log), [], 'nothing saved');
  });
  assert.deepEqual(preferCodecs(pc(transceiver('audio')), { audio: [{ mimeType: 'audio/PCMU', clockRate: 8000 }] }, log), [], 'no RTCRtpReceiver (not a browser)');
});
