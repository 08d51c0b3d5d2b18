// Phone tones made with Web Audio oscillators, so the page ships no audio
// files: the ring of an incoming call, the softer beep of a call waiting
// behind another, and the ringback a caller hears while the far end rings.

/**
 * Each tone: its frequencies (Hz, mixed), its loudness, and its cadence as
 * [start, end] bursts (s) within a period (s). The ringback is the North
 * American one (440+480 Hz, 2 s on, 4 s off); the call-waiting beep is
 * short and quiet on purpose, to be heard over a conversation without
 * drowning it.
 */
const TONES = {
  ring: { freqs: [400, 450], gain: 0.2, bursts: [[0, 0.4], [0.6, 1.0]], period: 3 },
  waiting: { freqs: [440], gain: 0.05, bursts: [[0, 0.3]], period: 4 },
  ringback: { freqs: [440, 480], gain: 0.08, bursts: [[0, 2]], period: 6 },
};

/** Seconds of fade at each edge of a burst: a hard edge clicks. */
const RAMP = 0.01;

export class Tones {
  constructor() {
    /** @type {AudioContext|null} */
    this.ctx = null;
    /** The tone playing: ring, waiting, ringback, or '' for none. */
    this.kind = '';
    this._nodes = null;
    this._timer = null;
  }

  /**
   * Creates (or resumes) the audio context. Browsers start one created
   * outside a user gesture suspended: call this from a click.
   */
  unlock() {
    if (!this.ctx) {
      const Ctx = globalThis.AudioContext ?? globalThis.webkitAudioContext;
      if (!Ctx) return;
      this.ctx = new Ctx();
      this._analyser = this.ctx.createAnalyser();
      this._analyser.fftSize = 1024;
      this._analyser.connect(this.ctx.destination);
    }
    if (this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
  }

  /** Plays kind (one of TONES) until stop() or another play(); '' stops. */
  play(kind) {
    if (kind === this.kind) return;
    this.stop();
    const tone = TONES[kind];
    if (!tone) return;
    this.unlock();
    if (!this.ctx) return;
    this.kind = kind;
    const ctx = this.ctx;
    const gain = ctx.createGain();
    gain.gain.value = 0;
    gain.connect(this._analyser);
    const oscs = tone.freqs.map((f) => {
      const o = ctx.createOscillator();
      o.frequency.value = f;
      o.connect(gain);
      o.start();
      return o;
    });
    this._nodes = { gain, oscs };
    // One period is scheduled ahead on the audio clock, so a late timer
    // never leaves a gap in the cadence.
    let next = ctx.currentTime + 0.05;
    const schedule = () => {
      for (const [a, b] of tone.bursts) {
        gain.gain.setValueAtTime(0, next + a);
        gain.gain.linearRampToValueAtTime(tone.gain, next + a + RAMP);
        gain.gain.setValueAtTime(tone.gain, next + b - RAMP);
        gain.gain.linearRampToValueAtTime(0, next + b);
      }
      next += tone.period;
    };
    schedule();
    schedule();
    this._timer = setInterval(schedule, tone.period * 1000);
  }

  stop() {
    clearInterval(this._timer);
    this._timer = null;
    if (this._nodes) {
      for (const o of this._nodes.oscs) o.stop();
      this._nodes.gain.disconnect();
      this._nodes = null;
    }
    this.kind = '';
  }

  /** The output's RMS level now (0 when silent): what a test can hear. */
  level() {
    if (!this._analyser) return 0;
    const buf = new Float32Array(this._analyser.fftSize);
    this._analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const x of buf) sum += x * x;
    return Math.sqrt(sum / buf.length);
  }
}
