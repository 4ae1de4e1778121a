// Conversations and messages in IndexedDB: two object stores, messages indexed by conversation.
//
// conversation: {id, name, createdAt, updatedAt, model, settings: {system, temperature, top_p, max_tokens}}
// message:      {id, convId, seq, role, content, reasoning, status, error, timings,
//                stream: {identity, offset} while a reply is being generated}
//
// The database is named "llamacpy", not llama.cpp's "LlamaUi": both UIs may be served from the same origin
// (localhost:8080) and their schemas differ.

const DB_NAME = 'llamacpy';
const DB_VERSION = 1;
const EXPORT_FORMAT = 'llamacpy-conversations';

let opening = null;

function open() {
  opening ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, DB_VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      db.createObjectStore('conversations', { keyPath: 'id' });
      db.createObjectStore('messages', { keyPath: 'id' }).createIndex('convId', 'convId');
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  return opening;
}

function done(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function committed(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}

async function store(name, mode = 'readonly') {
  return (await open()).transaction(name, mode).objectStore(name);
}

/** A random hex id; crypto.randomUUID needs a secure context, which a LAN address is not. */
export function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export async function listConversations() {
  const all = await done((await store('conversations')).getAll());
  return all.sort((a, b) => b.updatedAt - a.updatedAt);
}

export async function getConversation(id) {
  return done((await store('conversations')).get(id));
}

export async function putConversation(conv) {
  await done((await store('conversations', 'readwrite')).put(conv));
  return conv;
}

export async function getMessages(convId) {
  const all = await done((await store('messages')).index('convId').getAll(convId));
  return all.sort((a, b) => a.seq - b.seq);
}

export async function putMessage(msg) {
  await done((await store('messages', 'readwrite')).put(msg));
  return msg;
}

export async function deleteMessages(ids) {
  const tx = (await open()).transaction('messages', 'readwrite');
  for (const id of ids) tx.objectStore('messages').delete(id);
  await committed(tx);
}

export async function deleteConversation(id) {
  const ids = (await getMessages(id)).map((m) => m.id);
  const tx = (await open()).transaction(['conversations', 'messages'], 'readwrite');
  tx.objectStore('conversations').delete(id);
  for (const mid of ids) tx.objectStore('messages').delete(mid);
  await committed(tx);
}

/** Every conversation with its messages, as a JSON-able object. */
export async function exportAll() {
  const conversations = [];
  for (const conv of await listConversations()) {
    const messages = (await getMessages(conv.id)).map(({ stream, ...m }) => m);
    conversations.push({ ...conv, messages });
  }
  return { format: EXPORT_FORMAT, version: 1, exportedAt: new Date().toISOString(), conversations };
}

/** Adds the conversations of an export (or a bare list / one conversation); ids already taken get new ones.
 * Returns the number imported. */
export async function importAll(data) {
  const list = Array.isArray(data) ? data : Array.isArray(data?.conversations) ? data.conversations : [data];
  let n = 0;
  for (const item of list) {
    if (!item || typeof item !== 'object' || !Array.isArray(item.messages)) {
      throw new Error('not a conversation export: each conversation needs a "messages" array');
    }
    const { messages, ...conv } = item;
    const taken = conv.id && (await getConversation(conv.id));
    conv.id = !conv.id || taken ? newId() : String(conv.id);
    conv.name = String(conv.name || 'Imported chat');
    conv.createdAt ??= Date.now();
    conv.updatedAt ??= conv.createdAt;
    conv.settings = { ...defaultSettings(), ...(conv.settings || {}) };
    await putConversation(conv);
    let seq = 0;
    for (const m of messages) {
      if (!['user', 'assistant', 'system'].includes(m?.role)) continue;
      const status = m.status === 'streaming' ? 'interrupted' : m.status || 'done';
      await putMessage({ ...m, id: newId(), convId: conv.id, seq: seq++, content: String(m.content ?? ''), status });
    }
    n++;
  }
  return n;
}

const SETTINGS_KEY = 'llamacpy.defaultSettings';

/** Settings of a new conversation: the last ones saved, else llama-server's sampling defaults. */
export function defaultSettings() {
  const base = { system: '', temperature: 0.8, top_p: 0.95, max_tokens: -1 };
  try {
    return { ...base, ...JSON.parse(localStorage.getItem(SETTINGS_KEY) || '{}') };
  } catch {
    return base;
  }
}

export function rememberSettings(settings) {
  localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
}
