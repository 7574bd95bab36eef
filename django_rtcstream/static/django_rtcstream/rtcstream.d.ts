// Types of rtcstream.js, django-rtcstream's browser client.
//
//   import { connect } from "/static/django_rtcstream/rtcstream.js";
//
// Copy this file next to your own code (or point a `paths` entry at it) to
// type-check calls to the client.

export type Modality = "video" | "audio" | "audio-video";
export type Mode = "send-receive" | "send" | "receive";
export type ClientState = "idle" | "connecting" | "connected" | "closing" | "closed" | "failed";

/** One additional input, as the stream's config describes it. */
export interface InputDescription {
  name: string;
  kind: "slider" | "number" | "dropdown" | "checkbox" | "textbox" | "any";
  label: string | null;
  default: unknown;
  type: "number" | "integer" | "choice" | "array" | "boolean" | "string" | "any";
  minimum?: number | null;
  maximum?: number | null;
  step?: number | null;
  choices?: unknown[];
  multiselect?: boolean;
}

/** GET <prefix>/<stream>/config */
export interface StreamConfig {
  name: string;
  modality: Modality;
  mode: Mode;
  inputs: InputDescription[];
  outputs: { kind: string; label: string | null }[];
  concurrency_limit: number | null;
  time_limit: number | null;
  track_constraints: MediaStreamConstraints | MediaTrackConstraints | null;
  urls: { offer: string; config: string; input: string; outputs: string; outputs_ticket: string; websocket: string };
  rtc_configuration: RTCConfiguration;
}

export interface ClientOptions {
  /** What to send: the camera/microphone (default), a canvas, nothing, or your own stream. */
  media?: "camera" | "canvas" | "none" | MediaStream;
  /** The canvas to send when `media` is "canvas" (its video; audio still comes from the microphone). */
  canvas?: HTMLCanvasElement;
  /** Frames per second captured from the canvas (default 30). */
  canvasFps?: number;
  /** getUserMedia constraints; default: the stream's track_constraints, else sensible defaults. */
  constraints?: MediaStreamConstraints | MediaTrackConstraints;
  /** Shows the local camera (muted). */
  localVideo?: HTMLVideoElement | null;
  /** Plays what the server sends (video, and audio for audio-video streams). */
  remoteVideo?: HTMLVideoElement | null;
  /** Plays what the server sends on audio-only streams. */
  remoteAudio?: HTMLAudioElement | null;
  /** "auto" (default): the WebSocket signaling, the HTTP offer if the socket cannot open. */
  signaling?: "auto" | "websocket" | "http";
  /** Input values sent as soon as the session is connected. */
  inputs?: Record<string, unknown>;
  /** Merged over the config's rtc_configuration (e.g. your own iceServers). */
  rtcConfiguration?: RTCConfiguration;
  /** Ask the server for its stats of the session: a "stats" event every STATS_INTERVAL. */
  serverStats?: boolean;
  /** Session id for the HTTP offer (default: a random one). */
  webrtcId?: string;
  /** CSRF token for the input hook when signed in (default: the csrftoken cookie). */
  csrfToken?: string;
  /** Milliseconds to wait for the media connection (default 20000). */
  connectTimeout?: number;
  /** Milliseconds to wait for the signaling socket to open before falling back (default 5000). */
  socketTimeout?: number;
  /** When the server's worker drains and the stream allows it, move to a new session
   * through the same URL (default true); see the "reconnecting"/"reconnected" events. */
  reconnectOnDrain?: boolean;
}

/**
 * Error codes: from the server (unknown_stream, concurrency_limit_reached,
 * permission_denied, invalid_input, unsupported_track, invalid_offer, ...) and
 * from the client (media_denied, no_device, device_busy, media_failed,
 * insecure_context, server_unreachable, server_error, connection_lost,
 * ice_failed, connect_timeout, handler_error, server_shutdown, closed).
 * `message` is meant for the person using the page: what happened, what to do.
 */
export class RTCStreamError extends Error {
  readonly name: "RTCStreamError";
  readonly code: string;
  /** The server's or browser's own wording, for logs. */
  readonly detail: string | null;
  readonly status: number | null;
  readonly meta: Record<string, unknown> | null;
}

export interface SessionMessage {
  type: string;
  data: unknown;
}

export interface ClientEvents {
  state: ClientState;
  "state-detail": "disconnected";
  track: MediaStream;
  message: SessionMessage;
  output: unknown;
  error: RTCStreamError;
  notice: string;
  closed: { reason: string };
  "handler-error": unknown;
  fetch_output: unknown;
  send_input: unknown;
  end_stream: unknown;
  stopword: unknown;
  log: unknown;
  warning: unknown;
  connection: unknown;
  pong: unknown;
  stats: ServerStats;
}

/** The server's sample of a session (sessions/stats.py; null: not available). */
export interface ServerStats {
  t: number;
  rtt_ms: number | null;
  jitter_in_ms: number | null;
  jitter_out_ms: number | null;
  packets_lost_in: number | null;
  packets_lost_out: number | null;
  loss_in: number | null;
  loss_out: number | null;
  bitrate_in_kbps: number | null;
  bitrate_out_kbps: number | null;
  bytes_in: number | null;
  bytes_out: number | null;
  frames_in: number;
  frames_out: number;
  frames_decoded: number | null;
  frames_dropped: number;
  fps_in: number | null;
  fps_out: number | null;
  audio_level_in: number | null;
}

export interface StreamStats {
  video: { packetsReceived?: number; bytesReceived?: number; framesDecoded?: number; packetsSent?: number; framesEncoded?: number };
  audio: { packetsReceived?: number; bytesReceived?: number; totalAudioEnergy?: number; packetsSent?: number };
}

export class RTCStreamClient extends EventTarget {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly options: ClientOptions;
  readonly state: ClientState;
  readonly config: StreamConfig | null;
  readonly webrtcId: string | null;
  /** The session token: proves to the hooks that this client owns the session. */
  readonly token: string | null;
  readonly signaling: "websocket" | "http" | null;
  readonly pc: RTCPeerConnection | null;
  readonly localStream: MediaStream | null;
  readonly remoteStream: MediaStream | null;
  readonly lastError: RTCStreamError | null;
  readonly modality: Modality | null;
  readonly mode: Mode | null;

  /** Resolves once media flows; rejects with an RTCStreamError. */
  start(): Promise<this>;
  /** Listen to an event; returns a function that unsubscribes. */
  on<K extends keyof ClientEvents>(type: K, callback: (detail: ClientEvents[K], event: CustomEvent<ClientEvents[K]>) => void): () => void;
  on(type: string, callback: (detail: unknown, event: CustomEvent) => void): () => void;
  /** Set inputs by name through the input hook; kept and sent on connect when not connected yet. */
  setInput(values: Record<string, unknown>): Promise<{ status: string; inputs: Record<string, unknown> }>;
  /** Receive the session's additional outputs (SSE output hook); returns a function that unsubscribes. */
  onOutput(callback: (values: unknown) => void): () => void;
  stats(): Promise<StreamStats>;
  /** Hang up and release the media this client opened. */
  close(): Promise<void>;
}

export function connect(url: string, options?: ClientOptions): Promise<RTCStreamClient>;

export interface AudioLevel {
  /** RMS of the latest samples, 0 (silence) to 1 (full scale). */
  level(): number;
  close(): void;
}

export function audioLevel(stream: MediaStream, options?: { context?: AudioContext | null }): AudioLevel;

export function explainFailure(meta?: { error?: string; message?: string; limit?: number }, status?: number | null, streamName?: string): RTCStreamError;
export function explainMediaError(error: unknown, kinds: string[]): RTCStreamError;
export const MESSAGE_TYPES: string[];
