import { Emitter } from './emitter.js';
import { extensionHeaders, extensionsOf } from './headers.js';
import { declaredRequest, declaredResponse } from './declared.js';
import { JsonRtcError, ErrorCode } from './errors.js';
import { originSessionId, isHoldOffer, candidatesToFragment, fragmentToCandidates, mediaKinds, announcesTrickle } from './sdp.js';
import { negotiatedCodecs, preferCodecs } from './codecs.js';

/** The states a Call goes through (its `state` event). */
export const CallState = Object.freeze({
  /** Outgoing, preparing media and the offer. */
  NEW: 'new',
  /** Outgoing, offer sent. */
  CALLING: 'calling',
  /** Outgoing, the callee's phone rings (180/183). */
  ALERTING: 'alerting',
  /** Incoming, waiting for accept() or decline(). */
  RINGING: 'ringing',
  /** Incoming, answered, waiting for the caller's `complete`. */
  CONNECTING: 'connecting',
  ESTABLISHED: 'established',
  /** Ended normally (hang-up, cancel, decline). */
  ENDED: 'ended',
  /** Ended by an error (rejected, session lost, media failure). */
  FAILED: 'failed',
});

const DTMF_DIGITS = /^[0-9A-D#*,]+$/i;

/** Reason phrases of the usual statuses of a transferred call. */
const TRANSFER_PHRASES = { 100: 'Trying', 180: 'Ringing', 183: 'Session Progress', 200: 'OK', 486: 'Busy Here', 480: 'Temporarily Unavailable', 487: 'Request Terminated', 603: 'Decline' };

/**
 * One call (one subsession of the call package). Created by
 * `session.call()` (outgoing) or delivered by the session's `incomingcall`
 * event. Media runs on an RTCPeerConnection with the promise-based API.
 *
 * Events: `state` ({state, previous, code?, reason?, by?}), `localstream`
 * (MediaStream), `remotestream` (MediaStream), `hold` ({held, remoteHeld}),
 * `mute` (boolean), `dtmf` ({digits, duration}), `transfer`
 * (TransferRequest), `transferprogress` ({code, reason}: the status of
 * the call the peer placed for our transfer), `ice`
 * (RTCIceConnectionState), `error` (Error),
 * `ended` ({state, code?, reason?, by?}).
 */
export class Call extends Emitter {
  /**
   * @param {import('./session.js').Session} session
   * @param {{id: string, direction: 'outgoing'|'incoming', caller: string, callee: string,
   *          options: import('./index.js').CallOptions, offer?: object}} init
   */
  constructor(session, init) {
    super();
    this.session = session;
    /** The subsession id. */
    this.id = init.id;
    this.direction = init.direction;
    this.caller = init.caller;
    this.callee = init.callee;
    this.options = init.options || {};
    this.state = init.direction === 'outgoing' ? CallState.NEW : CallState.RINGING;
    /** The other party. */
    this.remoteIdentity = init.direction === 'outgoing' ? init.callee : init.caller;
    /**
     * The media kinds of the call: what we offer on an outgoing call,
     * what the caller's offer carries on an incoming one.
     */
    this.kinds = init.offer?.payload?.sdp ? mediaKinds(init.offer.payload.sdp) : this.options.video ? ['audio', 'video'] : ['audio'];
    /** Video is offered: ours on an outgoing call, the caller's on an incoming one (answer with accept({video: true})). */
    this.video = this.options.video ?? this.kinds.includes('video');
    /** We put the call on hold. */
    this.held = false;
    /** The other party put the call on hold. */
    this.remoteHeld = false;
    this.muted = false;
    /** Date.now() when the call was established. */
    this.establishedAt = null;
    /** True for a call rebuilt after a page reload. */
    this.restored = false;
    /** @type {RTCPeerConnection|null} */
    this.peerConnection = null;
    /** @type {MediaStream|null} */
    this.localStream = this.options.localStream ?? null;
    /** @type {MediaStream|null} */
    this.remoteStream = null;
    this._ownStream = !this.options.localStream;
    this._offerFrame = init.offer ?? null;
    /**
     * The other side's extension headers (docs/protocol.md §2.4): the
     * caller's start on an incoming call, the answer on an outgoing one.
     */
    this.remoteHeaders = extensionsOf(init.offer?.header);
    /**
     * Incoming: the id of this session's call that this one replaces (an
     * attended transfer, docs/protocol.md §5.12), or null. The SDK
     * answers such a call without ringing and then ends the call it
     * replaces; `replacedCall` is that call while it lasts.
     */
    this.replaces = init.offer?.header?.replaces ?? null;
    this._startCorrelation = init.offer?.control?.correlation_id ?? null;
    this._remoteOrigin = null;
    this._localOfferPending = false;
    this._awaitingComplete = false;
    this._idle = false;
    this._trickleQueue = [];
    this._trickleEnd = false;
    this._sdpSent = false;
    this._remoteCandidates = [];
    this._chain = Promise.resolve();
    this._reofferWhenEstablished = false;
    this._restartOnAnswer = false;
    /** The negotiated codecs per media kind, saved for a reload (see _warmUp). */
    this._codecs = null;
    /** Whether the far end's last SDP announced trickle ICE (RFC 8840 a=ice-options:trickle), saved for a reload. */
    this._remoteTrickles = false;
    /** The re-offer prepared while the session resumes after a reload. */
    this._warm = null;
    /** The microphone being opened for it. */
    this._warmMedia = null;
    /** getUserMedia under way (_ensureMedia). */
    this._opening = null;
  }

  /** The call this one replaces (see `replaces`), while it is not over. */
  get replacedCall() {
    const old = this.replaces ? this.session.calls.get(this.replaces) : null;
    return old && !old.ended ? old : null;
  }

  /** Seconds since the call was established (0 before). */
  get duration() {
    return this.establishedAt ? Math.floor((Date.now() - this.establishedAt) / 1000) : 0;
  }

  get ended() {
    return this.state === CallState.ENDED || this.state === CallState.FAILED;
  }

  // ---- Public API ---------------------------------------------------------

  /**
   * Answers an incoming call.
   * @param {import('./index.js').CallOptions} [opts]
   * @returns {Promise<void>} once the answer is sent
   */
  async accept(opts = {}) {
    const headers = extensionHeaders(opts.headers);
    if (this.state !== CallState.RINGING) throw new JsonRtcError(ErrorCode.METHOD_NOT_ALLOWED, `cannot accept in state ${this.state}`);
    Object.assign(this.options, opts);
    if (opts.localStream) {
      this.localStream = opts.localStream;
      this._ownStream = false;
    }
    this.video = !!this.options.video;
    this._setState(CallState.CONNECTING);
    const offer = this._offerFrame;
    try {
      await this._ensureMedia();
      if (this.ended) return;
      const pc = await this._newPeerConnection();
      await pc.setRemoteDescription({ type: 'offer', sdp: offer.payload.sdp });
      this._remoteOrigin = originSessionId(offer.payload.sdp);
      this.remoteHeld = isHoldOffer(offer.payload.sdp);
      this._addLocalTracks(pc);
      this._flushRemoteCandidates();
      const sdp = await this._answer(pc);
      if (this.ended) return;
      this._awaitingComplete = true;
      this.session._send({
        type: 'response',
        pkg: 'call',
        action: 'start',
        subsession: this.id,
        correlation: offer.control.correlation_id,
        state: 'final',
        header: { initiator: this.caller, target: this.callee, response_code: 200, reason: 'OK', ...headers },
        payload: { sdp },
      });
      this._sdpSent = true;
    } catch (err) {
      this._fatal(err);
      throw err;
    }
  }

  /**
   * Rejects an incoming call (default 603 Decline; 486 Busy Here is the
   * other usual code).
   * @param {number} [code]
   * @param {string} [reason]
   */
  decline(code = ErrorCode.DECLINED, reason, opts = {}) {
    const headers = extensionHeaders(opts.headers);
    if (this.state !== CallState.RINGING) return;
    this.session._send({
      type: 'error',
      pkg: 'call',
      action: 'start',
      subsession: this.id,
      correlation: this._offerFrame?.control?.correlation_id,
      header: { initiator: this.caller, target: this.callee, error_code: code, reason: reason ?? (code === 486 ? 'Busy Here' : 'Declined'), ...headers },
    });
    this._terminate(CallState.ENDED, { code, reason: 'declined', by: 'local' });
  }

  /**
   * Ends the call: a cancel before the answer, a hang-up after it, a
   * decline (603) for an unanswered incoming call.
   */
  end(opts = {}) {
    const headers = extensionHeaders(opts.headers);
    if (this.ended) return;
    if (this.state === CallState.RINGING) {
      this.decline(undefined, undefined, opts);
      return;
    }
    if (this.state !== CallState.NEW && this.session.id) {
      const cancel = this.direction === 'outgoing' && this.state !== CallState.ESTABLISHED;
      try {
        this.session._send({
          type: 'message',
          pkg: 'call',
          action: 'shutdown',
          subsession: this.id,
          correlation: cancel ? this._startCorrelation : true,
          header: headers,
        });
        this.session._awaitFigures(this);
      } catch (err) {
        this.session.log.warn('jsonrtc: cannot send shutdown', err);
      }
    }
    this._terminate(CallState.ENDED, { reason: 'hung up', by: 'local' });
  }

  /**
   * Puts the call on hold (re-offer with sendonly). Like every re-offer it
   * needs an established call, or an outgoing one whose 183 with SDP was
   * PRACKed (docs/protocol.md §5.9: an UPDATE in the early dialog toward
   * SIP); it rejects with 405 otherwise.
   */
  hold(opts = {}) {
    return this._setHold(true, opts);
  }

  /** Takes the call off hold (re-offer with sendrecv). */
  resume(opts = {}) {
    return this._setHold(false, opts);
  }

  /**
   * Mutes or unmutes the local audio (and video) tracks. No signalling.
   * @param {boolean} [muted]
   */
  mute(muted = true) {
    this.muted = !!muted;
    for (const t of this.localStream?.getTracks() ?? []) t.enabled = !this.muted;
    this.emit('mute', this.muted);
    this.session._save();
  }

  unmute() {
    this.mute(false);
  }

  /**
   * Switches a local device during the call: track takes the place of
   * the local track of its kind, on the RTCPeerConnection's sender (no
   * re-offer: RTCRtpSender.replaceTrack keeps the negotiated codec and
   * direction) and in localStream. The mute state carries over. The old
   * track is stopped when the SDK opened it (not one from
   * `CallOptions.localStream`).
   * @param {MediaStreamTrack} track
   */
  async replaceTrack(track) {
    const stream = this.localStream;
    const old = stream?.getTracks().find((t) => t.kind === track.kind) ?? null;
    track.enabled = !this.muted;
    const sender = this.peerConnection?.getSenders().find((s) => (old && s.track === old) || s.track?.kind === track.kind);
    if (sender) await sender.replaceTrack(track);
    if (stream) {
      if (old) stream.removeTrack(old);
      stream.addTrack(track);
    }
    if (old && this._ownStream) old.stop();
    this.emit('localstream', stream);
  }

  /**
   * Sends DTMF digits: a `message`/`dtmf` frame (SIP INFO on the far side)
   * and, unless `inband` is false, RFC 4733 tones through RTCDTMFSender
   * when the browser has one.
   * @param {string} digits 0-9, A-D, * and #; ',' pauses
   * @param {{duration?: number, gap?: number, inband?: boolean}} [opts]
   */
  sendDTMF(digits, opts = {}) {
    const headers = extensionHeaders(opts.headers);
    if (this.state !== CallState.ESTABLISHED) throw new JsonRtcError(ErrorCode.METHOD_NOT_ALLOWED, 'the call is not established');
    if (typeof digits !== 'string' || !DTMF_DIGITS.test(digits)) throw new TypeError('invalid DTMF digits');
    const duration = opts.duration ?? 100;
    this.session._send({
      type: 'message',
      pkg: 'call',
      action: 'dtmf',
      subsession: this.id,
      correlation: true,
      header: headers,
      payload: { digits, duration },
    });
    if (opts.inband !== false) {
      const sender = this.peerConnection?.getSenders().find((s) => s.track?.kind === 'audio');
      if (sender?.dtmf?.canInsertDTMF) {
        try {
          sender.dtmf.insertDTMF(digits, Math.max(40, duration), opts.gap ?? 70);
        } catch (err) {
          this.session.log.warn('jsonrtc: insertDTMF', err);
        }
      }
    }
  }

  /**
   * Transfers the other party to `target` (SIP REFER). Blind by default;
   * attended with `opts.replaces`: the established consult call with
   * `target` (a Call of this session, or its id), which the other
   * party's new call replaces (docs/protocol.md §5.12). Once the
   * transfer succeeds both of our calls end (the gateway and the target
   * end them).
   * @param {string} target
   * @param {{replaces?: Call|string, headers?: object}} [opts]
   * @returns {Promise<number>} the response code (200/202)
   */
  async transfer(target, opts = {}) {
    const headers = extensionHeaders(opts.headers);
    if (this.state !== CallState.ESTABLISHED) throw new JsonRtcError(ErrorCode.METHOD_NOT_ALLOWED, 'the call is not established');
    const replaces = typeof opts.replaces === 'string' ? opts.replaces : opts.replaces?.id;
    if (opts.replaces !== undefined && (!replaces || replaces === this.id)) throw new TypeError('replaces must be another call of this session');
    const resp = await this.session._request({
      type: 'request',
      pkg: 'call',
      action: 'transfer',
      subsession: this.id,
      header: { refer_to: target, ...(replaces ? { replaces } : {}), ...headers },
    });
    return resp.header?.response_code ?? 202;
  }

  /**
   * Sends a request of a `call` action the gateway's configuration
   * declares (docs/protocol.md §2.8) in this call: its SIP request goes
   * in the call's dialog. Resolves with the response; rejects with a
   * JsonRtcError on an error frame.
   * @param {string} action
   * @param {Record<string, string|number|boolean>} [headers]
   * @param {object} [payload]
   * @returns {Promise<import('./index.js').DeclaredResponse>}
   */
  async request(action, headers, payload) {
    const f = declaredRequest('call', action, headers, payload);
    if (this.state !== CallState.ESTABLISHED) throw new JsonRtcError(ErrorCode.METHOD_NOT_ALLOWED, 'the call is not established');
    f.subsession = this.id;
    f.header = { initiator: this.session.identity, target: this.remoteIdentity, ...f.header };
    return declaredResponse(await this.session._request(f));
  }

  /**
   * Restarts ICE (after a network change): a re-offer with new ICE
   * credentials on the same RTCPeerConnection.
   * @param {{headers?: Record<string, string|number|boolean>}} [opts] extension headers of the re-offer
   * @returns {Promise<void>}
   */
  restartIce(opts = {}) {
    return this._reoffer({ headers: opts.headers, iceRestart: true });
  }

  /**
   * Sends a new offer on the same subsession, optionally on a new
   * RTCPeerConnection (the peer sees a new o= session id and builds one
   * too).
   * @param {{iceRestart?: boolean, newPeerConnection?: boolean, headers?: Record<string, string|number|boolean>}} [opts]
   * @returns {Promise<void>}
   */
  reoffer(opts = {}) {
    return this._reoffer(opts);
  }

  // ---- Outgoing -----------------------------------------------------------

  async _startOutgoing() {
    try {
      await this._ensureMedia();
      if (this.ended) return;
      const pc = await this._newPeerConnection();
      this._addLocalTracks(pc);
      this._localOfferPending = true;
      const sdp = await this._offer(pc, {});
      if (this.ended) return;
      const req = this.session._request(
        {
          type: 'request',
          pkg: 'call',
          action: 'start',
          subsession: this.id,
          header: {
            initiator: this.caller,
            target: this.callee,
            ...(this.options.replaces ? { replaces: this.options.replaces } : {}),
            ...extensionHeaders(this.options.headers),
          },
          payload: { sdp },
        },
        (f) => this._onProvisional(f),
      );
      this._startCorrelation = 'c' + (this.session._rel.nextSeq - 1);
      this._sdpSent = true;
      this._setState(CallState.CALLING);
      let resp;
      try {
        resp = await req;
      } catch (err) {
        this._localOfferPending = false;
        if (this.ended) return;
        if (err.timedOut) {
          // The gateway may hold the call still: cancel it there too.
          try {
            this.session._send({ type: 'message', pkg: 'call', action: 'shutdown', subsession: this.id, correlation: this._startCorrelation });
          } catch {
            /* the session is gone: so is the call */
          }
          this._terminate(CallState.FAILED, { code: err.code, reason: err.reason, by: 'local' });
          return;
        }
        const code = err.code ?? ErrorCode.SERVER_ERROR;
        this._terminate(code === ErrorCode.REQUEST_TERMINATED ? CallState.ENDED : CallState.FAILED, {
          code,
          reason: err.reason ?? err.message,
          by: 'remote',
        });
        return;
      }
      if (this.ended) return;
      this.remoteHeaders = extensionsOf(resp.header);
      await this._onFinalAnswer(resp);
    } catch (err) {
      this._fatal(err);
    }
  }

  _onProvisional(frame) {
    if (this.ended) return;
    const h = frame.header || {};
    const code = h.response_code ?? 180;
    if (this.state === CallState.CALLING) this._setState(CallState.ALERTING, { code, reason: h.reason });
    const sdp = frame.payload?.sdp;
    const pc = this.peerConnection;
    if (sdp && pc && pc.signalingState === 'have-local-offer') {
      pc.setRemoteDescription({ type: 'pranswer', sdp }).catch((err) => this.emit('error', err));
    }
    if (code !== 183) return;
    this._earlySdp = sdp;
    if (this.options.manualPrack) {
      // The application PRACKs it (prack), with a new offer or without.
      this._prackDue = true;
      this.emit('provisional', { code, reason: h.reason, sdp });
      return;
    }
    this.session
      ._request({ type: 'request', pkg: 'call', action: 'prack', subsession: this.id })
      .then(() => this._pracked())
      .catch(() => {});
  }

  /**
   * The 183 is PRACKed: when it brought SDP, the early offer/answer is
   * complete and the call may re-offer before the answer (docs/protocol.md
   * §5.9: an UPDATE in the early dialog toward SIP).
   */
  _pracked() {
    if (this._earlySdp) this._earlyDialog = true;
  }

  /** A re-offer may go now although the call is not answered. */
  _earlyReofferAllowed() {
    return this.direction === 'outgoing' && this.state === CallState.ALERTING && !!this._earlyDialog;
  }

  /**
   * PRACKs the last 183 of an outgoing call made with the `manualPrack`
   * option, which the SDK then leaves unacknowledged (docs/protocol.md
   * §5.6). With `offer`, the PRACK carries a new offer (RFC 6337 section
   * 3.1: the 183's SDP answered the call's first offer, and becomes final
   * for the peer connection), and the answer in the prack's response is
   * applied; the call's 200 repeats it. Rejects with 405 when no 183
   * waits for its PRACK, with 488 when an offer is asked for and the 183
   * brought no answer, and with the gateway's error otherwise (a 491 or
   * 503 there ends the offer, the gateway ends the call on a 503).
   * @param {{offer?: boolean, iceRestart?: boolean, headers?: object}} [opts]
   */
  prack(opts = {}) {
    const header = extensionHeaders(opts.headers);
    if (this.ended || !this._prackDue) {
      return Promise.reject(new JsonRtcError(ErrorCode.METHOD_NOT_ALLOWED, 'no provisional response waits for a PRACK'));
    }
    this._prackDue = false;
    const request = (payload) => this.session._request({ type: 'request', pkg: 'call', action: 'prack', subsession: this.id, header, ...(payload && { payload }) });
    if (!opts.offer) return request().then(() => this._pracked());
    const run = this._serial(async () => {
      const pc = this.peerConnection;
      const early = pc?.signalingState === 'have-remote-pranswer' ? pc.remoteDescription?.sdp : undefined;
      if (!early) throw new JsonRtcError(ErrorCode.NOT_ACCEPTABLE_HERE, 'no early answer to offer after');
      await pc.setRemoteDescription({ type: 'answer', sdp: early });
      this._applyDirection(pc);
      const sdp = await this._offer(pc, { iceRestart: !!opts.iceRestart });
      let resp;
      try {
        resp = await request({ sdp });
      } catch (err) {
        if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
        throw err;
      }
      if (this.ended) return;
      const answer = resp.payload?.sdp;
      if (!answer) throw new JsonRtcError(ErrorCode.NOT_ACCEPTABLE_HERE, "the prack's answer has no SDP");
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      this._remoteOrigin = originSessionId(answer);
      this._negotiated(pc);
      this._pracked();
    });
    // The call's 200 waits for it: it repeats the prack's answer.
    this._prackOffer = run.catch(() => {});
    return run;
  }

  async _onFinalAnswer(resp) {
    const sdp = resp.payload?.sdp;
    await this._prackOffer;
    // Likewise an early re-offer's: the 200 repeats its answer.
    await this._earlyReoffer;
    const pc = this.peerConnection;
    if (!sdp) {
      this._fatal(new JsonRtcError(ErrorCode.NOT_ACCEPTABLE_HERE, 'the answer has no SDP'));
      return;
    }
    if (pc && (pc.signalingState === 'have-local-offer' || pc.signalingState === 'have-remote-pranswer')) {
      await pc.setRemoteDescription({ type: 'answer', sdp });
      this._negotiated(pc);
    }
    this._localOfferPending = false;
    this._remoteOrigin = originSessionId(sdp);
    this._sendComplete(resp.control.correlation_id);
    if (this.ended) return;
    this._establish();
  }

  _sendComplete(correlation) {
    this.session._send({ type: 'message', pkg: 'call', action: 'complete', subsession: this.id, correlation });
    this._idle = true;
    this._flushTrickle();
  }

  _establish() {
    if (this.state !== CallState.ESTABLISHED) {
      this.establishedAt = this.establishedAt ?? Date.now();
      this._setState(CallState.ESTABLISHED, { code: 200 });
    }
    this._flushRemoteCandidates();
    if (this._reofferWhenEstablished) {
      this._reofferWhenEstablished = false;
      this._reoffer({ newPeerConnection: true }).catch((err) => this.emit('error', err));
    }
  }

  // ---- Incoming -----------------------------------------------------------

  _ring() {
    if (this.replacedCall) {
      // An attended transfer's new call takes over one we are in: no
      // ringing. The application hears of it first (incomingcall, with
      // `replaces`), and may answer it itself with its own options.
      queueMicrotask(() => this._takeOver());
      return;
    }
    this.session._send({
      type: 'response',
      pkg: 'call',
      action: 'start',
      subsession: this.id,
      correlation: this._offerFrame.control.correlation_id,
      state: 'subsequent',
      header: { initiator: this.caller, target: this.callee, response_code: 180, reason: 'Ringing' },
    });
  }

  /** Answers a replacing call, then ends the call it replaces. */
  async _takeOver() {
    const old = this.replacedCall;
    if (this.state === CallState.RINGING) {
      try {
        await this.accept({ video: old?.video ?? this.video });
      } catch (err) {
        this.session.log.warn('jsonrtc: cannot answer a replacing call', err);
        return;
      }
    }
    if (!this.ended) old?.end();
  }

  // ---- Frames from the gateway --------------------------------------------

  _onFrame(frame) {
    const c = frame.control;
    const h = frame.header || {};
    switch (`${c.type}/${h.action}`) {
      case 'request/start':
        if (this.state === CallState.RINGING) return; // a repeated offer
        this._onRemoteOffer(frame);
        return;
      case 'response/start':
        // Only answers to requests made before a page reload get here.
        if (this._restartOnAnswer && c.message_state !== 'subsequent' && frame.payload?.sdp) {
          // The answer is to the offer of the page before the reload: its
          // connection is gone, so the re-offer _warmUp built while the
          // call rang leaves with the complete.
          this._restartOnAnswer = false;
          this._sendComplete(c.correlation_id);
          this._establish();
          this._sendRestoredOffer();
        } else if (c.message_state === 'subsequent' && this.state === CallState.CALLING) {
          this._setState(CallState.ALERTING, { code: h.response_code ?? 180 });
        }
        return;
      case 'error/start':
        if (this.state !== CallState.ESTABLISHED && this.direction === 'outgoing') {
          const code = h.error_code;
          this._terminate(code === ErrorCode.REQUEST_TERMINATED ? CallState.ENDED : CallState.FAILED, { code, reason: h.reason, by: 'remote' });
        }
        return;
      case 'message/complete':
        if (this._awaitingComplete) {
          this._awaitingComplete = false;
          this._idle = true;
          this._flushTrickle();
          this._establish();
        }
        return;
      case 'message/shutdown': {
        // Media figures, when the call's media went through rtpengine
        // (docs/protocol.md §5.8).
        const media = Array.isArray(frame.payload?.media) ? frame.payload.media : undefined;
        this._terminate(CallState.ENDED, {
          reason: this.state === CallState.RINGING ? 'cancelled' : 'remote hang-up',
          by: 'remote',
          ...(media && { media }),
        });
        if (media) this.emit('media', { media, by: 'remote' });
        return;
      }
      case 'message/trickle':
        this._onTrickle(frame);
        return;
      case 'message/dtmf': {
        const p = frame.payload || {};
        this.emit('dtmf', { digits: String(p.digits ?? ''), duration: Number(p.duration ?? 0) });
        return;
      }
      case 'request/transfer':
        this._onTransferRequest(frame);
        return;
      case 'message/transfer':
        this.emit('transferprogress', { code: Number(h.response_code ?? 0), reason: h.reason ?? '' });
        return;
      case 'message/start':
        this._onRemoteAnswer(frame);
        return;
      default:
        if (c.type === 'request') this.session._reject(frame, 405, `${h.action} not allowed`);
    }
  }

  _onTransferRequest(frame) {
    const h = frame.header || {};
    let answered = false;
    const respond = (code, headers) => {
      if (answered) return;
      answered = true;
      const ok = code < 300;
      this.session._send({
        type: ok ? 'response' : 'error',
        pkg: 'call',
        action: 'transfer',
        subsession: this.id,
        correlation: frame.control.correlation_id,
        state: ok ? 'final' : undefined,
        header: { ...(ok ? { response_code: code, reason: 'Accepted' } : { error_code: code, reason: 'Declined' }), ...headers },
      });
    };
    // docs/protocol.md §5.12: after 202 the new call's status is reported
    // (message/transfer, same correlation), the last one from 200 on.
    let reporting = false;
    const report = (code, reason, opts = {}) => {
      const headers = extensionHeaders(opts.headers);
      if (!reporting || this.ended) return;
      if (code >= 200) reporting = false;
      this.session._send({
        type: 'message',
        pkg: 'call',
        action: 'transfer',
        subsession: this.id,
        correlation: frame.control.correlation_id,
        header: { response_code: code, reason: reason ?? TRANSFER_PHRASES[code] ?? '', ...headers },
      });
    };
    const req = {
      referTo: h.refer_to,
      // Attended: the token the new call carries (session.call(referTo, {replaces})).
      replaces: h.replaces,
      accept: (opts = {}) => {
        const headers = extensionHeaders(opts.headers);
        if (!answered) reporting = true;
        respond(202, headers);
      },
      reject: (code = 603, opts = {}) => respond(code, extensionHeaders(opts.headers)),
      report,
    };
    if (this.listenerCount('transfer') === 0) {
      req.reject(603);
      return;
    }
    this.emit('transfer', req);
  }

  /**
   * docs/protocol.md §5.9: the peer's changed answer to our current
   * description (a SIP re-INVITE without SDP, answered in its ACK). A
   * browser takes an answer only after an offer of its own: a fresh
   * offer, the same session, goes nowhere.
   */
  _onRemoteAnswer(frame) {
    const sdp = frame.payload?.sdp;
    if (!sdp) return;
    this._serial(async () => {
      const pc = this.peerConnection;
      if (!pc || this.ended) return;
      await pc.setLocalDescription(await pc.createOffer());
      await pc.setRemoteDescription({ type: 'answer', sdp });
      this._negotiated(pc);
    }).catch((err) => this.emit('error', err));
  }

  async _onRemoteOffer(frame) {
    const corr = frame.control.correlation_id;
    const sdp = frame.payload?.sdp;
    if (!sdp) {
      this.session._reject(frame, 488, 'an offer needs SDP');
      return;
    }
    const pc0 = this.peerConnection;
    let early = false;
    if (this._localOfferPending && pc0?.signalingState === 'have-remote-pranswer' && !this._awaitingComplete) {
      // The callee's UPDATE in the early dialog (RFC 3311 section 5.1):
      // its reliable 183 answered our offer, so that answer is final for
      // the connection, and a new exchange may begin before the 200.
      early = true;
      const answer = pc0.remoteDescription.sdp;
      await pc0.setRemoteDescription({ type: 'answer', sdp: answer });
      this._remoteOrigin = originSessionId(answer);
    }
    if ((this._localOfferPending && !early) || (pc0 && pc0.signalingState !== 'stable') || this._awaitingComplete) {
      this.session._send({
        type: 'error',
        pkg: 'call',
        action: 'start',
        subsession: this.id,
        correlation: corr,
        header: { error_code: ErrorCode.GLARE, reason: 'Glare' },
      });
      return;
    }
    this._awaitingComplete = true;
    this._idle = false;
    try {
      let pc = pc0;
      const origin = originSessionId(sdp);
      const rebuilt = !pc || origin !== this._remoteOrigin;
      if (rebuilt) {
        // The peer built a new RTCPeerConnection (e.g. it reloaded): so do we.
        await this._ensureMedia();
        pc = await this._newPeerConnection();
        await pc.setRemoteDescription({ type: 'offer', sdp });
        this._addLocalTracks(pc);
      } else {
        await pc.setRemoteDescription({ type: 'offer', sdp });
        this._applyDirection(pc);
      }
      this._remoteOrigin = origin;
      this._flushRemoteCandidates();
      // A peer that rebuilt its connection (it reloaded: its media is
      // down) and trickles gets the answer before our gathering ends; the
      // later candidates trickle once it confirms.
      const answer = await this._answer(pc, { trickled: rebuilt && this.session.rtc.trickle && announcesTrickle(sdp) });
      this._sdpSent = true;
      if (this.ended) return;
      this.session._send({
        type: 'response',
        pkg: 'call',
        action: 'start',
        subsession: this.id,
        correlation: corr,
        state: 'final',
        header: { response_code: 200, reason: 'OK' },
        payload: { sdp: answer },
      });
      const remoteHeld = isHoldOffer(sdp);
      if (remoteHeld !== this.remoteHeld) {
        this.remoteHeld = remoteHeld;
        this.emit('hold', { held: this.held, remoteHeld });
      }
      this.session._save();
    } catch (err) {
      this._awaitingComplete = false;
      this.emit('error', err);
      this.session._send({
        type: 'error',
        pkg: 'call',
        action: 'start',
        subsession: this.id,
        correlation: corr,
        header: { error_code: ErrorCode.NOT_ACCEPTABLE_HERE, reason: String(err?.message ?? err).slice(0, 200) },
      });
    }
  }

  // ---- Re-offers ----------------------------------------------------------

  _setHold(held, opts) {
    const headers = extensionHeaders(opts.headers);
    return this._serial(async () => {
      if (this.held === held) return;
      this.held = held;
      try {
        await this._reofferNow({ headers });
      } catch (err) {
        this.held = !held;
        throw err;
      }
      this.emit('hold', { held: this.held, remoteHeld: this.remoteHeld });
      this.session._save();
    });
  }

  _reoffer(opts) {
    const headers = extensionHeaders(opts.headers);
    return this._serial(() => this._reofferNow({ ...opts, headers }));
  }

  _serial(fn) {
    const run = this._chain.then(fn, fn);
    this._chain = run.catch(() => {});
    return run;
  }

  async _reofferNow({ iceRestart = false, newPeerConnection = false, headers = {}, prepared = null }, attempt = 0) {
    if (this.ended) return;
    const early = this.state !== CallState.ESTABLISHED && this._earlyReofferAllowed();
    if (this.state !== CallState.ESTABLISHED && !early) throw new JsonRtcError(ErrorCode.METHOD_NOT_ALLOWED, 'the call is not established');
    if (early) {
      let done;
      this._earlyReoffer = new Promise((r) => (done = r));
      try {
        return await this._earlyReofferNow({ iceRestart, headers });
      } finally {
        done();
      }
    }
    let pc = this.peerConnection;
    if (prepared) {
      // Built while the session resumed (_warmUp): the offer is ready.
      pc = prepared.pc;
    } else if (newPeerConnection || !pc) {
      await this._ensureMedia();
      pc = await this._newPeerConnection();
      this._addLocalTracks(pc);
    } else {
      this._applyDirection(pc);
    }
    this._localOfferPending = true;
    this._idle = false;
    try {
      const sdp = prepared ? prepared.sdp : await this._offer(pc, { iceRestart });
      if (this.ended) return;
      const resp = await this.session._request({
        type: 'request',
        pkg: 'call',
        action: 'start',
        subsession: this.id,
        header: headers,
        payload: { sdp },
      });
      if (this.ended) return;
      const answer = resp.payload?.sdp;
      if (!answer) throw new JsonRtcError(ErrorCode.NOT_ACCEPTABLE_HERE, 'the answer has no SDP');
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      this._remoteOrigin = originSessionId(answer);
      this._localOfferPending = false;
      this._negotiated(pc);
      this._sendComplete(resp.control.correlation_id);
    } catch (err) {
      this._localOfferPending = false;
      if (pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      }
      this._idle = true;
      if (this.ended) return;
      if (err instanceof JsonRtcError && err.code === ErrorCode.GLARE && attempt < 3) {
        // RFC 3261 section 14.1: wait a random while, then try again.
        await new Promise((r) => setTimeout(r, 200 + Math.random() * 1800));
        return this._reofferNow({ iceRestart, newPeerConnection: false, headers }, attempt + 1);
      }
      throw err;
    }
  }

  /**
   * A re-offer before the answer, once a PRACKed 183 answered our offer
   * (docs/protocol.md §5.9): that answer becomes final for the
   * connection, as for an offer in the PRACK, and the new exchange runs on
   * it. A refusal leaves the call as it was, ringing with early media.
   */
  async _earlyReofferNow({ iceRestart, headers }) {
    const pc = this.peerConnection;
    if (!pc) throw new JsonRtcError(ErrorCode.METHOD_NOT_ALLOWED, 'the call is not established');
    if (pc.signalingState === 'have-remote-pranswer') {
      const answer = pc.remoteDescription.sdp;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      this._remoteOrigin = originSessionId(answer);
    }
    this._applyDirection(pc);
    const sdp = await this._offer(pc, { iceRestart });
    let resp;
    try {
      resp = await this.session._request({ type: 'request', pkg: 'call', action: 'start', subsession: this.id, header: headers, payload: { sdp } });
    } catch (err) {
      if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      throw err;
    }
    if (this.ended) return;
    const answer = resp.payload?.sdp;
    if (!answer) throw new JsonRtcError(ErrorCode.NOT_ACCEPTABLE_HERE, 'the answer has no SDP');
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    this._remoteOrigin = originSessionId(answer);
    this._negotiated(pc);
  }

  // ---- Session events -----------------------------------------------------

  /** The session resumed in this page (the socket came back). */
  _onSessionResumed() {
    const pc = this.peerConnection;
    if (this.state === CallState.ESTABLISHED && pc && (pc.iceConnectionState === 'failed' || pc.iceConnectionState === 'disconnected')) {
      this.restartIce().catch((err) => this.emit('error', err));
    }
  }

  /**
   * The call was read back from storage, before the session resumes:
   * an established call builds its new RTCPeerConnection and its offer
   * now (codecs, ICE gathering), so that the offer
   * leaves as soon as the resume succeeds; so does an outgoing call still
   * ringing, whose offer leaves as soon as the far end answers. The offer does not wait for
   * the microphone either: its transceivers get their tracks when
   * getUserMedia returns (replaceTrack, no new negotiation). Nothing is
   * sent: a failed resume ends the call, which closes the connection.
   */
  _warmUp() {
    const ringing = this.direction === 'outgoing' && (this.state === CallState.CALLING || this.state === CallState.ALERTING);
    if (this.state !== CallState.ESTABLISHED && !ringing) return;
    this._localOfferPending = true;
    // Candidates gathered after the offer was read wait for its exchange
    // to end (_sendComplete) before they trickle.
    this._idle = false;
    const media = this._ensureMedia();
    this._warmMedia = media;
    this._warm = (async () => {
      const pc = await this._newPeerConnection();
      const label = new MediaStream();
      for (const kind of this.video ? ['audio', 'video'] : ['audio']) {
        pc.addTransceiver(kind, { direction: this.held ? 'sendonly' : 'sendrecv', streams: [label] });
      }
      preferCodecs(pc, this._codecs, this.session.log);
      media.then((stream) => this._attachTracks(pc, stream), () => {});
      // A far end that trickles takes the offer before gathering ends
      // (Chromium spaces its gathering phases 50 ms apart, 100-150 ms in
      // all): it answers with its own candidates and the checks start;
      // ours follow as trickle messages once the exchange is over.
      const sdp = await this._offer(pc, { trickled: this._remoteTrickles && this.session.rtc.trickle });
      return { pc, sdp };
    })();
    // Failures surface when the resume uses them (_resumeAfterReload).
    this._warm.catch(() => {});
    media.catch(() => {});
  }

  /** Gives the transceivers _warmUp made the microphone's (and camera's) tracks. */
  _attachTracks(pc, stream) {
    if (pc !== this.peerConnection || this.ended) return;
    for (const track of stream.getTracks()) {
      const t = pc.getTransceivers().find((x) => x.receiver.track?.kind === track.kind && !x.sender.track);
      if (!t) continue;
      track.enabled = !this.muted;
      t.sender.replaceTrack(track).catch((err) => this.emit('error', err));
      t.sender.setStreams?.(stream);
    }
  }

  /** The session resumed after a page reload: rebuild the media. */
  _resumeAfterReload() {
    // The application listens from its callrestored handler on: the
    // microphone opened while the session resumed is news to it.
    if (this.localStream) this.emit('localstream', this.localStream);
    this._warmMedia?.catch((err) => this.emit('error', err));
    this._warmMedia = null;
    switch (this.state) {
      case CallState.ESTABLISHED:
        this._sendRestoredOffer();
        break;
      case CallState.CONNECTING:
        this._reofferWhenEstablished = true;
        break;
      case CallState.CALLING:
      case CallState.ALERTING:
        this._restartOnAnswer = true;
        break;
      default:
        break;
    }
  }

  /** Sends the re-offer of a restored call: the one _warmUp prepared, else a new one. */
  _sendRestoredOffer() {
    const warm = this._warm;
    this._warm = null;
    const run = warm ? this._serial(async () => this._reofferNow({ headers: {}, prepared: await warm })) : this._reoffer({ newPeerConnection: true });
    run.catch((err) => this.emit('error', err));
  }

  // ---- Media --------------------------------------------------------------

  /** Keeps what an offer/answer exchange settled, for a reload. */
  _negotiated(pc) {
    this._codecs = negotiatedCodecs(pc);
    this._remoteTrickles = announcesTrickle(pc.remoteDescription?.sdp);
    this.session._save();
  }

  /** The local stream, opened once however many ask at once. */
  _ensureMedia() {
    if (this.localStream) return Promise.resolve(this.localStream);
    this._opening ??= this._openMedia().finally(() => {
      this._opening = null;
    });
    return this._opening;
  }

  async _openMedia() {
    try {
      this.localStream = await this.session.rtc.getUserMedia({ audio: true, video: this.video });
    } catch (err) {
      throw new JsonRtcError(ErrorCode.MEDIA_ERROR, `getUserMedia: ${err?.message ?? err}`);
    }
    this._ownStream = true;
    if (this.muted) for (const t of this.localStream.getTracks()) t.enabled = false;
    if (this.ended) {
      this._stopLocal();
      return this.localStream;
    }
    this.emit('localstream', this.localStream);
    return this.localStream;
  }

  async _newPeerConnection() {
    const RTC = this.session.rtc.RTCPeerConnection;
    const old = this.peerConnection;
    if (old) {
      old.ontrack = old.onicecandidate = old.oniceconnectionstatechange = null;
      old.close();
    }
    // Each peer connection makes its own DTLS certificate, so a re-offer
    // after a reload carries a new a=fingerprint: the DTLS association
    // died with the page, and a same fingerprint, setup role and
    // transport tell the far end to keep the old one (RFC 8842 §5), which
    // rtpengine does (its packets then never decrypt).
    const pc = new RTC({ iceServers: this.session.rtc.iceServers, iceTransportPolicy: this.session.rtc.iceTransportPolicy });
    this.peerConnection = pc;
    this._sdpSent = false;
    this._trickleQueue = [];
    this._trickleEnd = false;
    pc.ontrack = (ev) => {
      if (pc !== this.peerConnection) return;
      let stream = ev.streams?.[0];
      if (!stream) {
        stream = this.remoteStream ?? new MediaStream();
        stream.addTrack(ev.track);
      }
      if (stream !== this.remoteStream) {
        this.remoteStream = stream;
        this.emit('remotestream', stream);
      }
    };
    pc.onicecandidate = (ev) => {
      if (pc !== this.peerConnection) return;
      this._onLocalCandidate(ev.candidate);
    };
    pc.oniceconnectionstatechange = () => {
      if (pc !== this.peerConnection) return;
      const s = pc.iceConnectionState;
      this.emit('ice', s);
      if (s === 'failed' && this.state === CallState.ESTABLISHED) {
        // The offerer restarts at once; the answerer waits a little, so
        // that both do not offer together (glare).
        const delay = this.direction === 'outgoing' ? 0 : 1500;
        setTimeout(() => {
          if (pc === this.peerConnection && pc.iceConnectionState === 'failed' && this.session.connected) {
            this.restartIce().catch((err) => this.emit('error', err));
          }
        }, delay);
      }
    };
    return pc;
  }

  _addLocalTracks(pc) {
    const stream = this.localStream;
    if (!stream) return;
    for (const track of stream.getTracks()) {
      track.enabled = !this.muted;
      pc.addTrack(track, stream);
    }
    this._applyDirection(pc);
  }

  _applyDirection(pc) {
    for (const t of pc.getTransceivers()) {
      if (t.stopped || t.currentDirection === 'stopped') continue;
      if (!t.sender.track) continue;
      t.direction = this.held ? 'sendonly' : 'sendrecv';
    }
  }

  async _offer(pc, { iceRestart, trickled = false }) {
    const offer = await pc.createOffer({ iceRestart });
    await pc.setLocalDescription(offer);
    if (!trickled) await this._gathered(pc);
    this._sdpSent = true;
    return pc.localDescription.sdp;
  }

  async _answer(pc, { trickled = false } = {}) {
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    this._negotiated(pc);
    if (!trickled) await this._gathered(pc);
    return pc.localDescription.sdp;
  }

  /** Waits for ICE gathering, at most iceGatherTimeout; later candidates trickle. */
  _gathered(pc) {
    const timeout = this.session.rtc.trickle ? this.session.rtc.iceGatherTimeout : 10000;
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      };
      const check = () => {
        if (pc.iceGatheringState === 'complete') done();
      };
      const timer = setTimeout(done, timeout);
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  // ---- Trickle ICE --------------------------------------------------------

  _onLocalCandidate(candidate) {
    // Candidates gathered before the SDP was read are in it already.
    if (!this._sdpSent) return;
    if (!this.session.rtc.trickle) return;
    const sdp = this.peerConnection?.localDescription?.sdp ?? '';
    if (candidate) {
      if (candidate.candidate && sdp.includes(candidate.candidate)) return;
      this._trickleQueue.push({ candidate: candidate.candidate, sdpMid: candidate.sdpMid });
    } else {
      this._trickleEnd = true;
    }
    this._flushTrickle();
  }

  _flushTrickle() {
    if (!this._idle || this.ended) return;
    if (this._trickleQueue.length === 0 && !this._trickleEnd) return;
    const mids = this.peerConnection?.getTransceivers().map((t) => t.mid).filter((m) => m !== null) ?? [];
    const candidates = candidatesToFragment(this._trickleQueue, this._trickleEnd, this._trickleEnd ? mids : []);
    this._trickleQueue = [];
    this._trickleEnd = false;
    if (!candidates) return;
    this.session._send({ type: 'message', pkg: 'call', action: 'trickle', subsession: this.id, payload: { candidates } });
  }

  _onTrickle(frame) {
    const list = fragmentToCandidates(frame.payload?.candidates);
    this._remoteCandidates.push(...list);
    this._flushRemoteCandidates();
  }

  _flushRemoteCandidates() {
    const pc = this.peerConnection;
    if (!pc || !pc.remoteDescription) return;
    const list = this._remoteCandidates;
    this._remoteCandidates = [];
    for (const c of list) {
      pc.addIceCandidate(c.candidate ? c : { candidate: '', sdpMid: c.sdpMid }).catch((err) =>
        this.session.log.debug('jsonrtc: addIceCandidate', err),
      );
    }
  }

  // ---- Ending -------------------------------------------------------------

  _fatal(err) {
    if (this.ended) return;
    this.emit('error', err);
    const code = err?.code ?? ErrorCode.PEERCONNECTION_ERROR;
    if (this.state !== CallState.NEW) {
      try {
        if (this.state === CallState.RINGING || this.state === CallState.CONNECTING) {
          if (this.state === CallState.CONNECTING && this._sdpSent) {
            this.session._send({ type: 'message', pkg: 'call', action: 'shutdown', subsession: this.id, correlation: true });
          } else {
            this.session._send({
              type: 'error',
              pkg: 'call',
              action: 'start',
              subsession: this.id,
              correlation: this._offerFrame?.control?.correlation_id,
              header: { error_code: code < 1000 ? code : 488, reason: String(err?.message ?? err).slice(0, 200) },
            });
          }
        } else {
          this.session._send({
            type: 'message',
            pkg: 'call',
            action: 'shutdown',
            subsession: this.id,
            correlation: this.state === CallState.ESTABLISHED ? true : this._startCorrelation,
          });
        }
      } catch {
        /* the session is gone */
      }
    }
    this._terminate(CallState.FAILED, { code, reason: err?.reason ?? err?.message, by: 'local' });
  }

  _stopLocal() {
    if (this._ownStream && this.localStream) for (const t of this.localStream.getTracks()) t.stop();
  }

  _terminate(state, info = {}) {
    if (this.ended) return;
    const pc = this.peerConnection;
    if (pc) {
      pc.ontrack = pc.onicecandidate = pc.oniceconnectionstatechange = null;
      try {
        pc.close();
      } catch {
        /* ignore */
      }
    }
    this._stopLocal();
    this._setState(state, info);
    this.session._removeCall(this);
    this.emit('ended', { state, ...info });
  }

  _setState(state, info = {}) {
    const previous = this.state;
    if (previous === state) return;
    this.state = state;
    this.emit('state', { state, previous, ...info });
    this.session._save();
  }

  // ---- Persistence (page reload) ------------------------------------------

  _snapshot() {
    if (this.ended || this.state === CallState.NEW) return null;
    return {
      id: this.id,
      direction: this.direction,
      caller: this.caller,
      callee: this.callee,
      state: this.state,
      video: this.video,
      held: this.held,
      remoteHeld: this.remoteHeld,
      muted: this.muted,
      establishedAt: this.establishedAt,
      startCorrelation: this._startCorrelation,
      codecs: this._codecs ?? undefined,
      trickles: this._remoteTrickles || undefined,
      offer: this.state === CallState.RINGING ? this._offerFrame : undefined,
    };
  }

  /**
   * @param {import('./session.js').Session} session
   * @param {ReturnType<Call['_snapshot']>} data
   */
  static restore(session, data) {
    const call = new Call(session, {
      id: data.id,
      direction: data.direction,
      caller: data.caller,
      callee: data.callee,
      options: { video: data.video },
      offer: data.offer,
    });
    call.state = data.state;
    call.held = data.held;
    call.remoteHeld = data.remoteHeld;
    call.muted = data.muted;
    call.establishedAt = data.establishedAt;
    call._startCorrelation = data.startCorrelation;
    call._codecs = data.codecs ?? null;
    call._remoteTrickles = !!data.trickles;
    call.restored = true;
    call._idle = data.state === CallState.ESTABLISHED;
    call._awaitingComplete = data.state === CallState.CONNECTING;
    return call;
  }
}
