// One reply being generated on the server, followed by this page.
//
// The POST carries X-Conversation-Id, so the server keeps generating when the connection drops and keeps
// the stream's bytes. This page counts the bytes it has parsed (up to the last complete line) and saves
// them with the reply's text in one IndexedDB record, so that text and offset always agree: after a dropped
// connection, a hidden tab coming back or a reload, `GET /v1/stream/<id>?from=<offset>` continues exactly
// where the saved text ends.

import * as api from './api.js';
import * as db from './db.js';
import * as resume from './resume.js';
import { DONE, dataOf, readLines } from './sse.js';

const SAVE_EVERY_MS = 250; // IndexedDB writes while streaming, at most this often
const KICK_AFTER_MS = 3000; // a tab coming back with no bytes for this long reconnects (dead socket)
const MAX_RETRIES = 6; // reconnections in a row that fail at the network level before giving up
const STOP_WAIT_MS = 3000; // how long Stop waits for the server to confirm the DELETE

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Generation {
  /**
   * @param {object} message the assistant message record being written (its content may already hold a
   *   prefix of the reply, matching `offset`)
   * @param {string} identity the X-Conversation-Id, frozen for the whole reply
   * @param {{onUpdate: (g: Generation) => void, onEnd: (g: Generation) => void}} hooks
   */
  constructor(message, identity, hooks) {
    this.message = message;
    this.convId = message.convId;
    this.identity = identity;
    this.hooks = hooks;
    this.offset = 0; // bytes of the server's stream parsed so far (complete lines only)
    this.state = 'streaming'; // streaming | resuming | lost | done | stopped
    this.ended = false;
    this.stopping = false;
    this.controller = new AbortController();
    this.reader = null;
    this.posted = null; // settles when the POST has answered (or failed)
    this.responded = false;
    this.kicked = false;
    this.lastBytesAt = Date.now();
    this.lastSave = 0;
    this.saveTimer = null;
  }

  get model() {
    const i = this.identity.indexOf('::');
    return i === -1 ? null : this.identity.slice(i + 2);
  }

  /** POST the chat request and follow its stream. */
  async send(body) {
    this.message.stream = { identity: this.identity, offset: 0 };
    resume.save(this.convId, { bytesReceived: 0, model: this.model });
    await db.putMessage(this.message);
    if (this.ended || this.stopping) return; // stopped before anything was sent
    let res = null;
    const posting = api.postChat(body, this.identity, this.controller.signal);
    this.posted = posting.then(() => {}, () => {});
    try {
      res = await posting;
    } catch {
      // The request may or may not have reached the server: try to attach to its stream from byte 0.
    }
    this.responded = true;
    if (this.ended || this.stopping) return;
    if (res && !res.ok) return this.end('lost', await api.errorText(res));
    await this.follow(res, false);
  }

  /** Follow an existing session of this conversation from `offset` (the saved text's end). */
  async attach(offset) {
    this.offset = offset;
    await this.follow(null, true);
  }

  /** Parse `res` (if any), then reconnect with GET ?from=offset until [DONE], an error frame, Stop, or the
   * stream is gone. */
  async follow(res, isReplay) {
    let failures = 0;
    for (;;) {
      if (res) {
        const before = this.offset;
        this.kicked = false;
        this.reader = res.body.getReader();
        const r = await readLines(this.reader, (line, n) => this.line(line, n), () => this.chunkParsed());
        if (this.ended || this.stopping) return;
        if (r.done || this.message.error) return this.end(this.message.error ? 'lost' : 'done');
        const progressed = this.offset > before;
        // A replay that ended cleanly without new bytes means the session ended without [DONE]
        // (stopped elsewhere or replaced): there is nothing more to wait for.
        if (isReplay && !progressed && !r.error && !this.kicked) {
          return this.end('lost', 'Stream connection lost and could not be resumed (no new bytes)');
        }
        failures = progressed ? 0 : failures + 1;
      }
      if (failures >= MAX_RETRIES) return this.end('lost', 'Stream connection lost and could not be resumed');
      this.setState('resuming');
      if (failures) await this.pause(Math.min(500 * 2 ** (failures - 1), 8000));
      if (this.ended || this.stopping) return;
      try {
        res = await api.openStream(this.identity, this.offset, this.controller.signal);
      } catch {
        if (this.ended || this.stopping) return;
        res = null;
        failures++;
        continue;
      }
      if (this.ended || this.stopping) return;
      if (res.status === 404 || res.status === 400) {
        return this.end('lost', `Stream connection lost and could not be resumed: ${await api.errorText(res)}`);
      }
      if (!res.ok) {
        res = null;
        failures++;
        continue;
      }
      isReplay = true;
      this.setState('streaming');
    }
  }

  line(text, nBytes) {
    if (this.stopping) return DONE;
    const data = dataOf(text);
    this.offset += nBytes;
    if (data === DONE) return DONE;
    if (!data) return;
    if (data.error) {
      this.message.error = data.error.message || JSON.stringify(data.error);
      return DONE;
    }
    const choice = data.choices?.[0];
    const delta = choice?.delta || {};
    if (typeof delta.content === 'string') this.message.content += delta.content;
    if (typeof delta.reasoning_content === 'string') {
      this.message.reasoning = (this.message.reasoning || '') + delta.reasoning_content;
    }
    if (choice?.finish_reason) this.message.finish = choice.finish_reason;
    if (data.timings) this.message.timings = data.timings;
  }

  chunkParsed() {
    this.lastBytesAt = Date.now();
    resume.save(this.convId, { bytesReceived: this.offset, model: this.model });
    this.scheduleSave();
    this.hooks.onUpdate(this);
  }

  scheduleSave() {
    if (this.saveTimer) return;
    const wait = Math.max(0, this.lastSave + SAVE_EVERY_MS - Date.now());
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      this.lastSave = Date.now();
      if (!this.ended) this.save();
    }, wait);
  }

  save() {
    // text and offset are read in the same turn of the event loop, so they always match
    this.message.stream = { identity: this.identity, offset: this.offset };
    return db.putMessage({ ...this.message });
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.hooks.onUpdate(this);
  }

  /** Wait before reconnecting; `retryNow` (the network is back) cuts the wait short. */
  pause(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    }).finally(() => (this.wakeUp = null));
  }

  retryNow() {
    this.wakeUp?.();
  }

  /** The tab is visible again: a socket silent for a while probably died in the background. */
  kickIfStale() {
    if (this.ended || this.state !== 'streaming' || Date.now() - this.lastBytesAt < KICK_AFTER_MS) return;
    this.kicked = true;
    this.reader?.cancel().catch(() => {});
  }

  /** Stop: the server stops generating (DELETE), the partial reply stays. */
  async stop() {
    if (this.ended || this.stopping) return;
    this.stopping = true; // from here on nothing more is parsed
    this.hooks.onUpdate(this);
    const deleted = api.deleteStream(this.identity).catch(() => {});
    if (this.posted && !this.responded) {
      // The server may not have opened the stream yet (still reading the prompt), so that DELETE found
      // nothing: wait for the POST's answer (the stream exists by then) and stop it again.
      await Promise.race([this.posted, sleep(STOP_WAIT_MS)]);
      await Promise.race([api.deleteStream(this.identity).catch(() => {}), sleep(STOP_WAIT_MS)]);
    }
    this.controller.abort();
    await Promise.race([deleted, sleep(STOP_WAIT_MS)]);
    await this.end('stopped');
  }

  async end(state, error) {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.saveTimer);
    this.controller.abort();
    this.state = state;
    const m = this.message;
    if (error) m.error = error;
    m.status = { done: 'done', stopped: 'stopped', lost: 'error' }[state];
    if (state === 'done' && m.error) m.status = 'error';
    delete m.stream;
    resume.clear(this.convId);
    await db.putMessage({ ...m });
    this.hooks.onEnd(this);
  }
}
