// django-rtcstream browser client: a plain ES module (no build step, no dependencies).
//
//   import { connect } from "/static/django_rtcstream/rtcstream.js";
//   const client = await connect("/rtc/flip/", {
//     localVideo: document.querySelector("#me"),
//     remoteVideo: document.querySelector("#them"),
//   });
//   client.on("state", (state) => console.log(state));
//   client.onOutput((values) => console.log(values));
//   await client.setInput({ level: 0.5 });
//   await client.close();
//
// The client reads the stream's metadata (GET <prefix>/<stream>/config) to learn
// its modality, mode, inputs, track constraints and ICE servers, negotiates over
// the WebSocket signaling (falling back to the HTTP offer when the socket cannot
// be opened), trickles ICE candidates, and reports everything that happens as
// events. Every failure becomes an RTCStreamError whose message says what
// happened and what to do about it: these messages are meant for end users.

const DEFAULT_CONSTRAINTS = {
  video: { facingMode: "user", width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
};

// Session messages the server sends over the data channel ({"type", "data"}).
// Each becomes an event of the same name; every one also becomes a "message" event.
export const MESSAGE_TYPES = [
  "fetch_output", "send_input", "end_stream", "stopword", "log", "warning", "error",
  "connection", "update_connection", "pong", "stats",
];

/** An error with a stable `code` and a message meant for the person using the page. */
export class RTCStreamError extends Error {
  constructor(code, message, { detail = null, status = null, meta = null, cause = undefined } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "RTCStreamError";
    this.code = code;
    this.detail = detail; // the server's or the browser's own wording, for logs
    this.status = status; // HTTP status, when there was one
    this.meta = meta; // the server's failure "meta", when there was one
  }
}

/** Plain words for the server's failure codes ({"status": "failed", "meta": {"error": code}}). */
export function explainFailure(meta = {}, status = null, streamName = "") {
  const code = meta.error || "failed";
  const detail = meta.message || null;
  const name = streamName ? `"${streamName}"` : "this stream";
  const words = {
    unknown_stream: `There is no stream called ${name} on this server. Check the address, or ask the site's administrator which streams exist.`,
    concurrency_limit_reached: `The stream ${name} is full: ${meta.limit === 1 ? "its only place is taken" : meta.limit ? `all ${meta.limit} places are taken` : "it takes no more sessions now"}. Wait for someone to finish and press Start again.`,
    permission_denied: `You are not allowed to use ${name}. Sign in with an account that may use it, then try again.`,
    unsupported_track: `${name} does not take the media this page offered (${detail || "another kind of track"}). Reload the page and try again.`,
    invalid_offer: `The server could not use this browser's connection offer (${detail || "invalid offer"}). Try another browser, or reload the page.`,
    connection_already_exists: "This session is already connected. Reload the page to start a new one.",
    connection_closed: "The session has already ended. Press Start to begin a new one.",
    unknown_connection: "The server does not know this session any more: it has ended. Press Start to begin a new one.",
    request_too_large: "The connection offer was too large for the server. Try again with fewer devices, or ask the site's administrator.",
    invalid_input: `The server refused that value: ${detail || "it is not valid"}. Change it and try again.`,
    invalid_json: "The server could not read the request. Reload the page and try again.",
  };
  const message = words[code]
    || `The server refused the request (${code}${detail ? `: ${detail}` : ""}). Reload the page and try again; if it keeps happening, tell the site's administrator.`;
  return new RTCStreamError(code, message, { detail, status, meta });
}

/** Plain words for getUserMedia's failures. */
export function explainMediaError(error, kinds) {
  const device = kinds.includes("video") && kinds.includes("audio") ? "camera and microphone"
    : kinds.includes("video") ? "camera" : "microphone";
  const name = error && error.name;
  const detail = error && error.message ? `${name}: ${error.message}` : String(error);
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return new RTCStreamError("media_denied", `The browser was not allowed to use your ${device}. Allow access for this site (the icon in the address bar, or the browser's site settings), then press Start again.`, { detail, cause: error });
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return new RTCStreamError("no_device", `No ${device} was found${name === "OverconstrainedError" ? " that meets the stream's requirements" : ""}. Connect one (and check that it is switched on), then press Start again.`, { detail, cause: error });
  }
  if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") {
    return new RTCStreamError("device_busy", `Your ${device} could not be started: another application or tab may be using it. Close it there, then press Start again.`, { detail, cause: error });
  }
  return new RTCStreamError("media_failed", `Your ${device} could not be opened (${detail}). Check the device and press Start again.`, { detail, cause: error });
}

const CLOSE_REASONS = {
  time_limit: ["closed", "The session reached its time limit and was ended. Press Start to begin a new one."],
  handler_finished: ["closed", "The stream finished. Press Start to run it again."],
  closed_by_handler: ["closed", "The stream ended the session. Press Start to begin a new one."],
  closed_by_server: ["closed", "The server ended the session. Press Start to begin a new one."],
  server_shutdown: ["failed", "The server is shutting down, so the session was ended. Wait a moment, then press Start again."],
  connect_timeout: ["failed", "The media connection could not be set up in time: a firewall or network may be blocking it. Try another network; if it keeps happening, the site may need a TURN server (tell its administrator)."],
  ice_failed: ["failed", "The media connection failed: a firewall or network is blocking it. Try another network; if it keeps happening, the site may need a TURN server (tell its administrator)."],
  worker_lost: ["failed", "The server lost this session. Press Start to begin a new one."],
};

function closeReason(reason) {
  const text = String(reason || "");
  if (text.startsWith("handler_error")) {
    return ["failed", "The stream's handler failed, so the session was ended. Press Start to try again; if it keeps happening, tell the site's administrator."];
  }
  return CLOSE_REASONS[text] || null;
}

function randomId() {
  const bytes = new Uint8Array(18);
  crypto.getRandomValues(bytes);
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function cookie(name) {
  const match = document.cookie.match(new RegExp(`(?:^|; )${name}=([^;]*)`));
  return match ? decodeURIComponent(match[1]) : null;
}

function configUrl(url) {
  const absolute = new URL(url, document.baseURI);
  if (!absolute.pathname.endsWith("/config")) {
    absolute.pathname = absolute.pathname.replace(/\/?$/, "/") + "config";
  }
  return absolute.href;
}

function serverUnreachable(error) {
  return new RTCStreamError("server_unreachable", "The server cannot be reached. Check your internet connection and that the site is up, then press Start again.", { detail: String(error && error.message || error), cause: error });
}

/**
 * A connection to one stream. Create it, then `await start()`; or use `connect()`.
 *
 * Events (listen with `client.on(type, fn)` or `addEventListener`, detail in `event.detail`):
 * "state" (a state name), "track" (the remote MediaStream), "message" (every session
 * message), one event per message type (fetch_output, warning, log, end_stream, ...;
 * detail: the message's data), "output" (values from the output hook), "error"
 * (an RTCStreamError) and "closed" ({reason}).
 *
 * When the server's worker drains (it is being stopped) it sends a "draining" message;
 * if the stream allows it and `reconnectOnDrain` is on (the default), the client opens
 * a new session through the same URL (a load balancer's next worker), switches to it
 * once it is connected and hangs up the old one: "reconnecting" ({seconds}) then
 * "reconnected" ({webrtcId, previous}) are emitted, the state stays "connected".
 */
export class RTCStreamClient extends EventTarget {
  /**
   * @param {string} url the stream's URL ("/rtc/flip/") or its config URL ("/rtc/flip/config")
   * @param {object} options see rtcstream.d.ts (ClientOptions)
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { signaling: "auto", connectTimeout: 20000, socketTimeout: 5000, reconnectOnDrain: true, ...options };
    this.state = "idle";
    this.config = null;
    this.webrtcId = null;
    this.token = null;
    this.signaling = null; // "websocket" or "http", once chosen
    this.pc = null;
    this.channel = null;
    this.socket = null;
    this.localStream = null;
    this.remoteStream = null;
    this.lastError = null;
    this._ownLocal = false;
    this._pendingInputs = { ...(options.inputs || {}) };
    this._outputListeners = new Set();
    this._events = null;
    this._openingOutputs = false;
    this._outputRetries = 0;
    this._closing = false;
    this._connected = null;
    this._aborted = null;
    this._candidateQueue = [];
    this._candidateSink = null;
    this._endReason = null;
    this._moving = null; // the move to a new session while the worker drains
    this._leaving = null; // the connection that move leaves, until it is hung up
    this._drained = new Set(); // sessions whose draining message was acted on
  }

  get modality() { return this.config && this.config.modality; }
  get mode() { return this.config && this.config.mode; }
  get kinds() { return this.modality === "audio-video" ? ["audio", "video"] : [this.modality]; }
  get sends() { return this.mode === "send-receive" || this.mode === "send"; }
  get receives() { return this.mode === "send-receive" || this.mode === "receive"; }

  /** Listen to an event; the callback gets `event.detail`. Returns a function that unsubscribes. */
  on(type, callback) {
    const listener = (event) => callback(event.detail, event);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  }

  _fail(error) {
    this.lastError = error;
    this._emit("error", error);
    return error;
  }

  async _fetchJSON(url, { method = "GET", body = undefined, headers = {}, keepalive = false } = {}) {
    let response;
    try {
      response = await fetch(url, {
        method,
        headers: { Accept: "application/json", ...(body !== undefined ? { "Content-Type": "application/json" } : {}), ...headers },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        credentials: "same-origin",
        keepalive,
      });
    } catch (error) {
      throw serverUnreachable(error);
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = null;
    }
    if (!response.ok || (data && data.status === "failed")) {
      if (data && data.meta) throw explainFailure(data.meta, response.status, this.config ? this.config.name : this._guessName());
      if (response.status >= 500) {
        throw new RTCStreamError("server_error", `The server had a problem (HTTP ${response.status}). Wait a moment and try again; if it keeps happening, tell the site's administrator.`, { status: response.status });
      }
      throw new RTCStreamError("http_error", `The server answered HTTP ${response.status}. Reload the page and try again.`, { status: response.status });
    }
    return data;
  }

  _guessName() {
    const parts = new URL(configUrl(this.url)).pathname.split("/").filter(Boolean);
    return parts.length >= 2 ? parts[parts.length - 2] : "";
  }

  /** Connect: read the config, open local media, negotiate; resolves once media flows. */
  async start() {
    if (this.state === "connecting" || this.state === "connected") return this;
    this._closing = false;
    this.lastError = null;
    this._endReason = null;
    this._setState("connecting");
    // Every step races `aborted`, which close() and server-side ends reject, so a
    // start() never hangs on a session that is already gone.
    let abort;
    const aborted = new Promise((resolve, reject) => { abort = reject; });
    aborted.catch(() => {});
    this._aborted = abort;
    const step = (promise) => {
      promise.catch(() => {}); // an abandoned step's late failure is not news
      return Promise.race([promise, aborted]);
    };
    try {
      this.config = await step(this._fetchJSON(configUrl(this.url)));
      await step(this._openLocalMedia());
      this._createPeerConnection();
      await step(this._negotiate());
      await step(this._waitConnected());
    } catch (error) {
      if (this.state === "closed") return this; // closed by the user while connecting
      if (this.state === "failed") throw this.lastError || error; // already reported
      const failure = error instanceof RTCStreamError ? error
        : new RTCStreamError("failed", `Could not connect: ${error && error.message || error}. Reload the page and try again.`, { cause: error });
      this._fail(failure);
      await this._teardown("failed", failure.code);
      throw failure;
    } finally {
      this._aborted = null;
    }
    return this;
  }

  _constraints() {
    const given = this.options.constraints !== undefined ? this.options.constraints : this.config.track_constraints;
    const result = {};
    for (const kind of this.kinds) {
      let value = DEFAULT_CONSTRAINTS[kind];
      if (given && typeof given === "object" && ("audio" in given || "video" in given)) {
        if (kind in given) value = given[kind];
      } else if (given !== null && given !== undefined) {
        value = given; // FastRTC: a single-modality stream's constraints are that kind's
      }
      result[kind] = value;
    }
    return result;
  }

  async _openLocalMedia() {
    if (!this.sends) return;
    let media = this.options.media;
    if (media === undefined) media = "camera";
    if (media === "none" || media === null) return;
    if (typeof MediaStream !== "undefined" && media instanceof MediaStream) {
      this.localStream = media;
      this._ownLocal = false;
    } else {
      const constraints = this._constraints();
      const wanted = {};
      if (media === "canvas") {
        const canvas = this.options.canvas;
        if (!canvas || typeof canvas.captureStream !== "function") {
          throw new RTCStreamError("no_canvas", "The page asked to stream a canvas but gave none. Pass options.canvas (an HTMLCanvasElement).");
        }
        this.localStream = canvas.captureStream(this.options.canvasFps || 30);
        if (!this.kinds.includes("audio")) {
          this._ownLocal = true;
          this._attachLocal();
          return;
        }
        wanted.audio = constraints.audio;
      } else {
        for (const kind of this.kinds) wanted[kind] = constraints[kind];
      }
      if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw new RTCStreamError("insecure_context", "This browser only lets secure pages use a camera or microphone: open this page over https:// (or on localhost).");
      }
      let captured;
      try {
        captured = await navigator.mediaDevices.getUserMedia(wanted);
      } catch (error) {
        throw explainMediaError(error, Object.keys(wanted));
      }
      if (this._closing) { // closed while the browser asked for the devices
        for (const track of captured.getTracks()) track.stop();
        throw new RTCStreamError("closed", "The session was closed before it connected.");
      }
      if (this.localStream) {
        for (const track of captured.getTracks()) this.localStream.addTrack(track);
      } else {
        this.localStream = captured;
      }
      this._ownLocal = true;
    }
    this._attachLocal();
  }

  _attachLocal() {
    const element = this.options.localVideo;
    if (element && this.localStream) {
      element.muted = true; // never play one's own microphone back
      element.srcObject = this.localStream;
      element.play && element.play().catch(() => {});
    }
  }

  _createPeerConnection() {
    const configuration = { ...(this.config.rtc_configuration || {}), ...(this.options.rtcConfiguration || {}) };
    const pc = new RTCPeerConnection(configuration);
    this.pc = pc;
    this.remoteStream = new MediaStream();
    for (const kind of this.kinds) {
      const track = this.localStream ? this.localStream.getTracks().find((t) => t.kind === kind) : null;
      if (track && this.sends) {
        pc.addTransceiver(track, { direction: this.receives ? "sendrecv" : "sendonly", streams: [this.localStream] });
      } else if (this.receives) {
        pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
    // Candidates gathered before the signaling path is chosen wait in a queue.
    this._candidateQueue = [];
    this._candidateSink = null;
    pc.onicecandidate = (event) => {
      const candidate = event.candidate ? event.candidate.toJSON() : null;
      if (this._candidateSink) this._candidateSink(candidate);
      else this._candidateQueue.push(candidate);
    };
    // The server sends its messages over this channel; without one no media flows (FastRTC).
    this.channel = pc.createDataChannel("text");
    this.channel.onmessage = (event) => this._onMessage(event.data);
    if (this.options.serverStats) {
      // Ask for the server's view of the link: a "stats" message every STATS_INTERVAL.
      this.channel.onopen = () => this.channel.send(JSON.stringify({ type: "stats", data: true }));
    }
    this.channel.onclose = () => {
      if (pc !== this.pc) return; // a connection left behind by a move
      if (!this._closing && this.state === "connected") this._serverEnded(this._endReason || "closed_by_server");
    };
    const remoteStream = this.remoteStream;
    pc.ontrack = (event) => {
      remoteStream.addTrack(event.track);
      if (pc !== this.pc) return;
      this._attachRemote();
      this._emit("track", this.remoteStream);
    };
    pc.onconnectionstatechange = () => {
      if (pc === this.pc) this._onConnectionState(pc.connectionState);
    };
  }

  _attachRemote() {
    const { remoteVideo, remoteAudio } = this.options;
    const hasVideo = this.remoteStream.getVideoTracks().length > 0;
    const target = hasVideo && remoteVideo ? remoteVideo : remoteAudio || remoteVideo;
    if (target && target.srcObject !== this.remoteStream) {
      target.srcObject = this.remoteStream;
      target.play && target.play().catch(() => {});
    }
  }

  _onConnectionState(state) {
    if (state === "connected") {
      this._setState("connected");
      if (this._connected) this._connected.resolve();
      this._flushInputs();
      this._openOutputs();
    } else if (state === "failed") {
      const error = new RTCStreamError("ice_failed", CLOSE_REASONS.ice_failed[1]);
      if (this._connected && (this.state === "connecting" || this._leaving)) this._connected.reject(error);
      else if (!this._closing) this._serverEnded("ice_failed");
    } else if (state === "disconnected" && this.state === "connected") {
      this._emit("state-detail", "disconnected"); // often recovers by itself
    }
  }

  _trickleTo(sink) {
    this._candidateSink = sink;
    for (const candidate of this._candidateQueue.splice(0)) sink(candidate);
  }

  _waitConnected() {
    if (this.pc.connectionState === "connected") return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new RTCStreamError("connect_timeout", CLOSE_REASONS.connect_timeout[1]));
      }, this.options.connectTimeout);
      this._connected = {
        resolve: () => { clearTimeout(timer); resolve(); },
        reject: (error) => { clearTimeout(timer); reject(error); },
      };
    });
  }

  async _negotiate() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    const choice = this.options.signaling;
    if (choice !== "http" && this.config.urls && this.config.urls.websocket) {
      let socket = null;
      try {
        socket = await this._openSocket(this.config.urls.websocket);
      } catch (error) {
        if (choice === "websocket") throw error;
        socket = null; // "auto": fall back to the HTTP offer
      }
      if (socket) {
        this.signaling = "websocket";
        await this._negotiateSocket(socket, offer);
        return;
      }
    }
    this.signaling = "http";
    await this._negotiateHttp(offer);
  }

  _openSocket(url) {
    return new Promise((resolve, reject) => {
      let socket;
      try {
        socket = new WebSocket(url);
      } catch (error) {
        reject(serverUnreachable(error));
        return;
      }
      const timer = setTimeout(() => {
        socket.close();
        reject(serverUnreachable(new Error("the signaling socket did not open in time")));
      }, this.options.socketTimeout);
      socket.onopen = () => { clearTimeout(timer); resolve(socket); };
      socket.onerror = () => { clearTimeout(timer); reject(serverUnreachable(new Error("the signaling socket could not be opened"))); };
    });
  }

  _negotiateSocket(socket, offer) {
    this.socket = socket;
    return new Promise((resolve, reject) => {
      let answered = false;
      socket.onmessage = async (event) => {
        if (socket !== this.socket) return; // a socket left behind by a move
        let message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        if (message.type === "answer") {
          answered = true;
          this.webrtcId = message.webrtc_id;
          this.token = message.token || null;
          try {
            await this.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
            resolve();
          } catch (error) {
            reject(new RTCStreamError("invalid_answer", `The server's answer could not be used (${error.message}). Reload the page and try again.`, { cause: error }));
          }
        } else if (message.type === "ice-candidate") {
          try {
            await this.pc.addIceCandidate(message.candidate || null);
          } catch (error) {
            // A candidate this browser cannot use is not fatal: others may work.
          }
        } else if (message.type === "failed") {
          const failure = explainFailure(message.meta || {}, null, this.config.name);
          if (!answered) reject(failure);
          else if (failure.code !== "unknown_connection") this._fail(failure);
        } else if (message.type === "closed") {
          this._endReason = message.data;
          if (!this._closing) this._serverEnded(message.data);
        }
        // Session messages also arrive over the data channel, which is where they are read.
      };
      socket.onclose = (event) => {
        if (socket !== this.socket) return;
        if (!answered) {
          if (event.code === 4404) reject(explainFailure({ error: "unknown_stream" }, 404, this.config.name));
          else reject(serverUnreachable(new Error(`the signaling socket closed (${event.code})`)));
        } else if (!this._closing && this.state !== "closed" && this.state !== "failed") {
          // The session lives as long as its socket: losing the socket ends it.
          this._serverEnded(this._endReason || "connection_lost");
        }
      };
      socket.send(JSON.stringify({ type: "offer", sdp: offer.sdp }));
      // The consumer handles messages in order, so candidates sent now follow the offer.
      this._trickleTo((candidate) => {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "ice-candidate", candidate }));
      });
    });
  }

  async _negotiateHttp(offer) {
    const url = this.config.urls.offer;
    const webrtcId = (!this._leaving && this.options.webrtcId) || randomId(); // a move needs a new id
    this.webrtcId = webrtcId;
    // Candidates race the offer, as FastRTC's client does; the server holds early ones.
    this._trickleTo((candidate) => {
      if (!candidate || !candidate.candidate) return; // end-of-candidates needs no message over HTTP
      this._fetchJSON(url, { method: "POST", body: { type: "ice-candidate", candidate, webrtc_id: webrtcId } })
        .catch(() => {}); // a refused candidate is not fatal: others may work
    });
    const answer = await this._fetchJSON(url, { method: "POST", body: { sdp: offer.sdp, type: "offer", webrtc_id: webrtcId } });
    this.webrtcId = answer.webrtc_id || webrtcId;
    this.token = answer.token || null;
    await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  }

  _onMessage(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch (error) {
      message = { type: "log", data: String(raw) };
    }
    if (!message || typeof message !== "object") return;
    const data = message.data !== undefined ? message.data : message.message; // FastRTC's warnings use "message"
    this._emit("message", { type: message.type, data });
    if (message.type === "error") {
      this._endReason = "handler_error";
      this._fail(new RTCStreamError("handler_error", "The stream's handler reported an error, so the session may end. Press Start to try again; if it keeps happening, tell the site's administrator.", { detail: data }));
      this._emit("handler-error", data);
      return;
    }
    if (message.type === "end_stream") this._endReason = this._endReason || data;
    if (message.type) this._emit(message.type, data);
    if (message.type === "draining") this._onDraining(data || {});
  }

  _onDraining(data) {
    if (!this.options.reconnectOnDrain || !data.reconnect || this.state !== "connected") return;
    if (this._moving || this._drained.has(this.webrtcId)) return;
    this._drained.add(this.webrtcId);
    this._moving = this._moveToNewSession(Number(data.seconds) || 10).finally(() => { this._moving = null; });
  }

  // Make before break: negotiate a new session (same URL: the load balancer picks a
  // worker that is not draining; a draining one answers 503 and is tried again), then
  // hang up the old one. The local tracks are sent on both meanwhile.
  async _moveToNewSession(seconds) {
    const old = { pc: this.pc, channel: this.channel, socket: this.socket, webrtcId: this.webrtcId, token: this.token, signaling: this.signaling, events: this._events, remoteStream: this.remoteStream };
    const deadline = Date.now() + seconds * 1000;
    this._leaving = old;
    this._emit("reconnecting", { seconds });
    this._events = null; // the new session's outputs are read once it is connected
    let moved = false;
    while (!moved && Date.now() < deadline && !this._closing) {
      try {
        this._createPeerConnection();
        await this._negotiate();
        await this._waitConnected();
        moved = true;
      } catch (error) {
        const failed = { pc: this.pc, socket: this.socket };
        this.pc = old.pc; this.channel = old.channel; this.socket = old.socket; this.webrtcId = old.webrtcId;
        this.token = old.token; this.signaling = old.signaling; this.remoteStream = old.remoteStream;
        if (failed.socket && failed.socket !== old.socket) try { failed.socket.close(); } catch (e) { /* closed */ }
        if (failed.pc && failed.pc !== old.pc) failed.pc.close();
        const wait = Math.min(1000, Math.max(0, deadline - Date.now()));
        await new Promise((resolve) => setTimeout(resolve, wait));
      }
    }
    this._leaving = null;
    if (!moved) {
      if (this._closing) return;
      this._events = old.events; // stay until the draining worker ends the session
      const gone = !old.pc || ["closed", "failed"].includes(old.pc.connectionState) || !old.channel || old.channel.readyState !== "open";
      if (gone) this._serverEnded(this._endReason || "server_shutdown"); // it ended meanwhile
      return;
    }
    if (old.events) old.events.close();
    // Hang up before closing the old peer connection: were the connection to close
    // first, the server would record a lost peer instead of a hang-up.
    if (old.signaling === "http" && old.webrtcId && old.token) {
      const hangup = this._fetchJSON(this.config.urls.offer, { method: "POST", body: { type: "close", webrtc_id: old.webrtcId, token: old.token } }).catch(() => {});
      await Promise.race([hangup, new Promise((resolve) => setTimeout(resolve, 2000))]);
    } else if (old.socket && old.socket.readyState === WebSocket.OPEN) {
      try {
        old.socket.send(JSON.stringify({ type: "close" }));
        old.socket.close();
      } catch (error) { /* closed */ }
    }
    if (old.pc) old.pc.close();
    this._emit("reconnected", { webrtcId: this.webrtcId, previous: old.webrtcId });
  }

  _serverEnded(reason) {
    const known = closeReason(reason);
    let state = "closed";
    if (known) {
      state = known[0];
      if (state === "failed") this._fail(new RTCStreamError(String(reason).split(":")[0], known[1], { detail: reason }));
    } else if (reason === "connection_lost") {
      state = "failed";
      this._fail(new RTCStreamError("connection_lost", "The connection to the server was lost: the server may have restarted, or your network dropped. Wait a moment, check your connection, then press Start again.", { detail: reason }));
    } else if (reason && reason !== "client_hangup" && reason !== "client_disconnected") {
      this._emit("notice", `The session ended (${reason}). Press Start to begin a new one.`);
    }
    this._teardown(state, reason);
  }

  /** Set the stream's additional inputs by name, e.g. `setInput({level: 0.5})`.
   * Before the session is connected the values are kept and sent once it is. */
  async setInput(values) {
    Object.assign(this._pendingInputs, values);
    if (this.state !== "connected") return { status: "pending", inputs: { ...this._pendingInputs } };
    const body = { ...this._pendingInputs };
    this._pendingInputs = {};
    const headers = {};
    if (this.token) headers["X-Session-Token"] = this.token;
    const csrf = this.options.csrfToken || cookie("csrftoken");
    if (csrf) headers["X-CSRFToken"] = csrf;
    return this._fetchJSON(this.config.urls.input, { method: "POST", headers, body: { webrtc_id: this.webrtcId, token: this.token, ...body } });
  }

  _flushInputs() {
    if (Object.keys(this._pendingInputs).length === 0) return;
    this.setInput({}).catch((error) => this._fail(error));
  }

  /** Receive the session's additional outputs (from the SSE output hook).
   * `callback(values)` gets each output's JSON; returns a function that unsubscribes. */
  onOutput(callback) {
    this._outputListeners.add(callback);
    if (this.state === "connected") this._openOutputs();
    return () => this._outputListeners.delete(callback);
  }

  // EventSource cannot send headers: rather than put the session token in the URL (and in
  // every access log on the way), ask for a single-use ticket with a POST that carries it.
  async _outputsTicket() {
    const headers = {};
    if (this.token) headers["X-Session-Token"] = this.token;
    const url = this.config.urls.outputs_ticket || `${this.config.urls.outputs}/ticket`;
    const reply = await this._fetchJSON(url, { method: "POST", headers, body: { webrtc_id: this.webrtcId } });
    return reply.ticket;
  }

  async _openOutputs() {
    if (this._events || this._openingOutputs || this._outputListeners.size === 0 || !this.config.urls.outputs) return;
    this._openingOutputs = true;
    let ticket;
    try {
      ticket = await this._outputsTicket();
    } catch (error) {
      if (this.state === "connected") this._fail(error);
      return;
    } finally {
      this._openingOutputs = false;
    }
    if (this._events || this.state !== "connected") return;
    const url = new URL(this.config.urls.outputs);
    url.searchParams.set("webrtc_id", this.webrtcId);
    url.searchParams.set("ticket", ticket);
    const events = new EventSource(url.href, { withCredentials: true });
    this._events = events;
    events.addEventListener("open", () => { this._outputRetries = 0; });
    events.addEventListener("error", () => {
      // A dropped stream reconnects to the same URL, whose ticket is used up: the server
      // refuses it and the EventSource gives up. Open it again with a fresh ticket.
      if (events.readyState !== EventSource.CLOSED || this._events !== events) return;
      this._events = null;
      if (this.state !== "connected" || this._outputRetries >= 3) return;
      this._outputRetries += 1;
      setTimeout(() => this._openOutputs(), 500 * this._outputRetries);
    });
    events.addEventListener("output", (event) => {
      let values;
      try {
        values = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      this._emit("output", values);
      for (const listener of this._outputListeners) {
        try {
          listener(values);
        } catch (error) {
          console.error(error);
        }
      }
    });
    events.addEventListener("end", () => {
      events.close();
      if (this._events === events) this._events = null;
    });
  }

  /** Counters from getStats(): frames and packets in each direction, per kind. */
  async stats() {
    const result = { video: {}, audio: {} };
    if (!this.pc) return result;
    const report = await this.pc.getStats();
    report.forEach((entry) => {
      if (entry.type === "inbound-rtp" && result[entry.kind]) {
        Object.assign(result[entry.kind], {
          packetsReceived: entry.packetsReceived, bytesReceived: entry.bytesReceived,
          framesDecoded: entry.framesDecoded, totalAudioEnergy: entry.totalAudioEnergy,
        });
      } else if (entry.type === "outbound-rtp" && result[entry.kind]) {
        Object.assign(result[entry.kind], { packetsSent: entry.packetsSent, framesEncoded: entry.framesEncoded });
      }
    });
    return result;
  }

  /** Hang up: tell the server, stop the local media this client opened, free everything. */
  async close() {
    if (this.state === "idle" || this.state === "closed" || this.state === "failed") return;
    this._closing = true;
    this._setState("closing");
    if (this.signaling === "http" && this.webrtcId && this.token && this.config) {
      try {
        await this._fetchJSON(this.config.urls.offer, { method: "POST", body: { type: "close", webrtc_id: this.webrtcId, token: this.token }, keepalive: true });
      } catch (error) {
        // The session may already be gone; closing the peer connection ends it anyway.
      }
    } else if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type: "close" }));
    }
    await this._teardown("closed", "client_hangup");
  }

  async _teardown(state, reason) {
    this._closing = true;
    if (this._leaving) { // closed in the middle of a move: the old connection goes too
      const { pc, socket } = this._leaving;
      this._leaving = null;
      if (socket && socket !== this.socket) try { socket.close(); } catch (error) { /* closed */ }
      if (pc && pc !== this.pc) pc.close();
    }
    if (this._aborted) {
      this._aborted(this.lastError || new RTCStreamError("closed", "The session was closed before it connected."));
    }
    if (this._connected) {
      const waiting = this._connected;
      this._connected = null;
      waiting.reject(this.lastError || new RTCStreamError("closed", "The session was closed before it connected."));
    }
    if (this._events) {
      this._events.close();
      this._events = null;
    }
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.onclose = null;
      socket.onmessage = null;
      try {
        socket.close();
      } catch (error) { /* already closed */ }
    }
    if (this.channel) {
      this.channel.onclose = null;
      this.channel = null;
    }
    if (this.pc) {
      const pc = this.pc;
      this.pc = null;
      pc.onconnectionstatechange = null;
      pc.ontrack = null;
      pc.onicecandidate = null;
      pc.close();
    }
    if (this.localStream && this._ownLocal) {
      for (const track of this.localStream.getTracks()) track.stop();
    }
    this.localStream = null;
    const { localVideo, remoteVideo, remoteAudio } = this.options;
    for (const element of [localVideo, remoteVideo, remoteAudio]) {
      if (element) element.srcObject = null;
    }
    this._endReason = null;
    this._setState(state);
    this._emit("closed", { reason });
  }
}

/** Create a client for `url` and start it; resolves with the connected client. */
export async function connect(url, options = {}) {
  const client = new RTCStreamClient(url, options);
  await client.start();
  return client;
}

/**
 * Measure the loudness of a MediaStream's audio with WebAudio.
 * `level()` returns the RMS of the latest 2048 samples, 0 (silence) to 1 (full scale).
 * Create it from a user gesture (a click) so the browser lets the AudioContext run.
 */
export function audioLevel(stream, { context = null } = {}) {
  const AudioContextClass = window.AudioContext || window.webkitAudioContext;
  const audio = context || new AudioContextClass();
  const source = audio.createMediaStreamSource(stream);
  const analyser = audio.createAnalyser();
  analyser.fftSize = 2048;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  if (audio.state === "suspended") audio.resume().catch(() => {});
  return {
    level() {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
      return Math.sqrt(sum / samples.length);
    },
    close() {
      source.disconnect();
      if (!context) audio.close().catch(() => {});
    },
  };
}
