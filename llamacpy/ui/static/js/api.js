// The server's HTTP API. Paths are relative to the page, so the UI also works under a path prefix.
//
// With --api-key every request needs the key, the stream routes included. The key is asked for once (the
// first 401), kept in localStorage and sent as `Authorization: Bearer <key>` from then on.

const KEY_STORAGE = 'llamacpy.apiKey';

let askKey = null; // () => Promise<boolean>: shows the key dialog; true when a new key was entered
let asking = null;

export function setKeyPrompt(fn) {
  askKey = fn;
}

export function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || '';
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

function authHeaders() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** fetch with the key; a 401 asks for the key (one dialog for concurrent requests) and retries once. */
export async function call(path, init = {}) {
  for (let retried = false; ; retried = true) {
    const res = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
    if (res.status !== 401 || retried || !askKey) return res;
    asking ??= askKey().finally(() => (asking = null));
    if (!(await asking)) return res;
  }
}

/** The message of an error response (llama-server's {"error": {"message"}} or plain text). */
export async function errorText(res) {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    return body?.error?.message || text || `HTTP ${res.status}`;
  } catch {
    return text || `HTTP ${res.status}`;
  }
}

async function json(path, init) {
  const res = await call(path, init);
  if (!res.ok) throw new Error(await errorText(res));
  return res.json();
}

export const health = () => fetch('health').then((r) => r.status).catch(() => 0);
export const props = () => json('props');
export const models = () => json('v1/models').then((body) => body.data || []);
/** Router mode's feed of model status changes (SSE: `event: model_status`, data {model, status}). */
export const modelEvents = () => call('models/sse');

export function postChat(body, identity, signal) {
  return call('v1/chat/completions', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Conversation-Id': identity },
    body: JSON.stringify(body),
    signal,
  });
}

// The query form (`?conv_id=`) rather than the path form (`/v1/stream/<id>`): ids can carry model names
// with slashes, which a path segment does not survive everywhere (the later llama.cpp made the same move).
const streamUrl = (identity, from) =>
  `v1/stream?conv_id=${encodeURIComponent(identity)}${from === undefined ? '' : `&from=${from}`}`;

export function openStream(identity, from, signal) {
  return call(streamUrl(identity, from), { signal });
}

export async function deleteStream(identity) {
  await call(streamUrl(identity), { method: 'DELETE' });
}

/** Sessions of these identities (each also matches `id::model`); [] when the server cannot say. */
export async function lookup(identities) {
  if (!identities.length) return [];
  try {
    const res = await call('v1/streams/lookup', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ conversation_ids: identities }),
    });
    const body = res.ok ? await res.json() : [];
    return Array.isArray(body) ? body : [];
  } catch {
    return [];
  }
}

/** The live session to follow: running ones only, the latest started first, the first on ties. */
export function selectActive(sessions) {
  let best = null;
  for (const s of sessions) {
    if (!s.is_done && (!best || s.started_at > best.started_at)) best = s;
  }
  return best;
}
