// The chat page: conversations (IndexedDB), replies streamed by Generation objects that outlive the view
// (switching conversations never stops one), reattaching to replies still generating on the server, and
// the spinners of every conversation that is.

import * as api from './api.js';
import * as db from './db.js';
import { Generation } from './generation.js';
import * as resume from './resume.js';
import { dataOf, readLines } from './sse.js';
import * as view from './view.js';

const MODEL_KEY = 'llamacpy.model';
const REMOTE_POLL_MS = 2000; // while another tab or device generates, how often its spinner is re-checked
const HEALTH_POLL_MS = 1000;
const MODEL_EVENTS_RETRY_MS = 5000; // router mode: how soon a dropped /models/sse feed is reopened

const $ = (sel) => document.querySelector(sel);

const app = {
  convs: [],
  current: null, // the open conversation, null for a new chat
  messages: [], // the open conversation's messages; a streaming reply is its Generation's own object
  gens: new Map(), // conversation id -> Generation followed by this page
  remote: new Set(), // conversation ids the server says are generating
  attaching: new Set(),
  models: [],
  model: localStorage.getItem(MODEL_KEY),
  router: false, // router mode: requests name a model and identities are `<conv>::<model>`
  watchingModels: false, // router mode: following /models/sse
  ready: false,
  openToken: 0,
  pollTimer: null,
  queued: new Set(),
  repliesEnded: 0, // replies this page followed to their end (tests wait on it)
};

// -- identities ------------------------------------------------------------------------------------------------

const sendModel = () => (app.router ? app.model : null);

/** The X-Conversation-Id to look a conversation's stream up by: the model frozen when it was sent wins. */
function identityOf(conv) {
  return resume.identity(conv.id, resume.frozenModel(conv.id, app.router ? conv.model ?? app.model : null));
}

// -- rendering -------------------------------------------------------------------------------------------------

function running() {
  return new Set([...app.gens.keys(), ...app.remote]);
}

function renderSidebar() {
  view.renderSidebar(app.convs, app.current?.id ?? null, running(), {
    picked: () => document.body.classList.remove('sidebar-open'),
    rename: renameConversation,
    remove: deleteConversation,
  });
}

function renderMessages() {
  const gen = app.current && app.gens.get(app.current.id);
  view.renderMessages(app.messages, gen || null, { edit: editMessage, regenerate });
  view.setComposerBusy(Boolean(gen));
  $('#title').textContent = app.current?.name ?? 'New chat';
  document.title = app.current ? `${app.current.name} - llamacpy` : 'llamacpy';
}

function renderAll() {
  renderSidebar();
  renderMessages();
}

/** Redraw a streaming reply at most once per frame. */
function queueUpdate(gen) {
  if (app.queued.has(gen)) return;
  app.queued.add(gen);
  requestAnimationFrame(() => {
    app.queued.delete(gen);
    // once ended, generationEnded draws the reply with its buttons; a late frame must not undo that
    if (gen.ended || app.current?.id !== gen.convId) return;
    view.updateMessage(gen.message, gen);
    view.scrollToEnd(false);
  });
}

async function loadSidebar() {
  app.convs = await db.listConversations();
  renderSidebar();
}

// -- conversations ---------------------------------------------------------------------------------------------

function routeId() {
  const m = location.hash.match(/^#\/c\/([\w-]+)$/);
  return m ? m[1] : null;
}

async function openConversation(id, { discover = true } = {}) {
  const token = ++app.openToken;
  const conv = id ? await db.getConversation(id) : null;
  const messages = conv ? await db.getMessages(conv.id) : [];
  if (token !== app.openToken) return; // another conversation was opened meanwhile
  app.current = conv || null;
  const gen = conv && app.gens.get(conv.id);
  app.messages = gen ? messages.map((m) => (m.id === gen.message.id ? gen.message : m)) : messages;
  if (gen && !app.messages.includes(gen.message)) app.messages.push(gen.message);
  renderAll();
  view.scrollToEnd(true);
  if (conv && discover && app.ready) discoverStream(conv);
}

function newConversation(text) {
  const now = Date.now();
  const name = text.replace(/\s+/g, ' ').trim().slice(0, 60) || 'New chat';
  return { id: db.newId(), name, createdAt: now, updatedAt: now, model: null, settings: db.defaultSettings() };
}

async function renameConversation(conv, name) {
  conv.name = name;
  await db.putConversation(conv);
  if (app.current?.id === conv.id) app.current.name = name;
  await loadSidebar();
  renderMessages();
}

async function deleteConversation(conv) {
  if (!confirm(`Delete "${conv.name}"?`)) return;
  await app.gens.get(conv.id)?.stop();
  await db.deleteConversation(conv.id);
  resume.clear(conv.id);
  if (app.current?.id === conv.id) location.hash = '#/';
  await loadSidebar();
}

async function touch(conv) {
  conv.updatedAt = Date.now();
  await db.putConversation(conv);
}

// -- sending ---------------------------------------------------------------------------------------------------

function requestBody(conv, history, model) {
  const s = conv.settings || db.defaultSettings();
  const messages = [];
  if (s.system?.trim()) messages.push({ role: 'system', content: s.system });
  for (const m of history) {
    if (m.role === 'user' || (m.role === 'assistant' && m.content)) messages.push({ role: m.role, content: m.content });
  }
  const body = { messages, stream: true, temperature: Number(s.temperature), top_p: Number(s.top_p) };
  if (Number(s.max_tokens) > 0) body.max_tokens = Number(s.max_tokens);
  if (model) body.model = model;
  return body;
}

function nextSeq() {
  return (app.messages.at(-1)?.seq ?? -1) + 1;
}

async function sendMessage(text) {
  if (!text.trim()) return false;
  let conv = app.current;
  if (conv && app.gens.has(conv.id)) return false;
  if (!conv) {
    conv = newConversation(text);
    await db.putConversation(conv);
    app.openToken++; // a pending openConversation must not replace this one
    app.current = conv;
    app.messages = [];
    history.pushState(null, '', `#/c/${conv.id}`);
  }
  const user = { id: db.newId(), convId: conv.id, seq: nextSeq(), role: 'user', content: text, status: 'done' };
  await db.putMessage(user);
  app.messages.push(user);
  await generate(conv);
  return true;
}

/** Ask for a reply to the open conversation's messages. */
async function generate(conv) {
  const model = sendModel();
  const body = requestBody(conv, app.messages, model);
  conv.model = model;
  await touch(conv);
  const reply = { id: db.newId(), convId: conv.id, seq: nextSeq(), role: 'assistant', content: '', status: 'streaming' };
  app.messages.push(reply);
  const gen = new Generation(reply, resume.identity(conv.id, model), { onUpdate: queueUpdate, onEnd: generationEnded });
  app.gens.set(conv.id, gen);
  await loadSidebar();
  renderMessages();
  view.scrollToEnd(true);
  gen.send(body);
}

async function generationEnded(gen) {
  app.gens.delete(gen.convId);
  app.remote.delete(gen.convId);
  const conv = await db.getConversation(gen.convId);
  if (conv) await touch(conv);
  if (app.current?.id === gen.convId) {
    app.current.updatedAt = conv?.updatedAt ?? app.current.updatedAt;
    renderMessages();
    view.scrollToEnd(false);
  }
  await loadSidebar();
  app.repliesEnded++;
  if (app.router) loadModels();
}

async function regenerate(m) {
  const conv = app.current;
  if (!conv || app.gens.has(conv.id)) return;
  const drop = app.messages.filter((x) => x.seq >= m.seq);
  await db.deleteMessages(drop.map((x) => x.id));
  app.messages = app.messages.filter((x) => x.seq < m.seq);
  await generate(conv);
}

async function editMessage(m, text) {
  const conv = app.current;
  if (text === null || !conv || app.gens.has(conv.id)) return renderMessages();
  m.content = text;
  await db.putMessage(m);
  const drop = app.messages.filter((x) => x.seq > m.seq);
  await db.deleteMessages(drop.map((x) => x.id));
  app.messages = app.messages.filter((x) => x.seq <= m.seq);
  await generate(conv);
}

// -- following replies generating on the server ----------------------------------------------------------------

/** Reattach to this conversation's reply if the server is still generating it (or this page was closed
 * while it did): continue from the saved text's offset, or replay the whole stream into a new reply. */
async function discoverStream(conv) {
  if (app.gens.has(conv.id) || app.attaching.has(conv.id)) return;
  app.attaching.add(conv.id);
  try {
    const saved = resume.read(conv.id);
    const identity = identityOf(conv);
    const active = api.selectActive(await api.lookup([identity]));
    if (app.gens.has(conv.id)) return;
    const messages = await db.getMessages(conv.id);
    const last = messages.at(-1);
    let reply, from = 0;
    const target = active ? active.conversation_id : identity;
    if (last?.role === 'assistant' && last.status === 'streaming') {
      if (!active && !saved) return settleInterrupted(conv, last);
      reply = last;
      if (last.stream?.identity === target && last.stream.offset > 0) from = last.stream.offset;
      else Object.assign(reply, { content: '', reasoning: '', error: undefined, timings: undefined });
    } else if (active) {
      // started elsewhere (another device, or a cleared database): a new reply, rebuilt from byte 0
      reply = { id: db.newId(), convId: conv.id, seq: (last?.seq ?? -1) + 1, role: 'assistant', content: '', status: 'streaming' };
    } else {
      if (saved) resume.clear(conv.id);
      return;
    }
    const gen = new Generation(reply, target, { onUpdate: queueUpdate, onEnd: generationEnded });
    app.gens.set(conv.id, gen);
    if (app.current?.id === conv.id) {
      app.messages = [...messages.filter((m) => m.id !== reply.id), reply];
      renderMessages();
      view.scrollToEnd(true);
    }
    renderSidebar();
    gen.attach(from);
  } finally {
    app.attaching.delete(conv.id);
  }
}

async function settleInterrupted(conv, msg) {
  msg.status = 'interrupted';
  delete msg.stream;
  await db.putMessage(msg);
  if (app.current?.id === conv.id) {
    app.messages = app.messages.map((m) => (m.id === msg.id ? msg : m));
    renderMessages();
  }
}

/** Ask the server which conversations are generating (this tab's, other tabs', other devices'). */
async function syncRemote() {
  clearTimeout(app.pollTimer);
  if (!app.ready) return;
  app.convs = await db.listConversations();
  const sessions = await api.lookup(app.convs.map(identityOf));
  app.remote = new Set(sessions.filter((s) => !s.is_done).map((s) => resume.convIdOf(s.conversation_id)));
  renderSidebar();
  if (app.current && app.remote.has(app.current.id)) discoverStream(app.current);
  if ([...app.remote].some((id) => !app.gens.has(id))) app.pollTimer = setTimeout(syncRemote, REMOTE_POLL_MS);
}

let syncSoon = null;
function scheduleSync() {
  clearTimeout(syncSoon);
  syncSoon = setTimeout(syncRemote, 150);
}

// -- server, models, key ---------------------------------------------------------------------------------------

async function loadModels() {
  try {
    app.models = await api.models();
  } catch (e) {
    view.setServerStatus(e.message, 'error');
    return;
  }
  if (!app.models.some((m) => m.id === app.model)) app.model = app.models[0]?.id ?? null;
  view.renderModels(app.models, app.model);
}

/** Router mode: model statuses change while the page is open (loads, unloads, crashes); follow them. */
async function watchModelEvents() {
  for (;;) {
    try {
      const res = await api.modelEvents();
      if (res.ok && res.body) {
        await readLines(res.body.getReader(), (line) => {
          const event = dataOf(line);
          if (event?.model && event.status) updateModelStatus(event.model, event.status);
        });
      }
    } catch {
      // the server went away: try again shortly
    }
    await new Promise((r) => setTimeout(r, MODEL_EVENTS_RETRY_MS));
  }
}

function updateModelStatus(id, status) {
  const model = app.models.find((m) => m.id === id);
  if (!model) return; // a model the list does not have yet: the next loadModels() brings it
  model.status = status;
  view.renderModels(app.models, app.model);
}

async function watchServer() {
  const status = await api.health();
  if (status !== 200) {
    view.setServerStatus(status === 503 ? 'loading model…' : 'server unreachable', 'warn');
    setTimeout(watchServer, HEALTH_POLL_MS);
    return;
  }
  view.setServerStatus('');
  try {
    app.router = (await api.props()).role === 'router';
  } catch (e) {
    view.setServerStatus(e.message, 'error');
  }
  await loadModels();
  if (app.router && !app.watchingModels) {
    app.watchingModels = true;
    watchModelEvents();
  }
  app.ready = true;
  if (app.current) await discoverStream(app.current);
  syncRemote();
}

function askKey() {
  const dialog = $('#key-dialog');
  const input = $('#key-input');
  input.value = '';
  dialog.showModal();
  return new Promise((resolve) => {
    $('#key-form').onsubmit = (e) => {
      e.preventDefault();
      api.setApiKey(input.value.trim());
      dialog.close();
      resolve(true);
    };
    dialog.oncancel = () => resolve(false);
  });
}

// -- settings, export, import ----------------------------------------------------------------------------------

const SETTING_FIELDS = ['system', 'temperature', 'top_p', 'max_tokens'];

function openSettings() {
  const s = app.current?.settings || db.defaultSettings();
  for (const k of SETTING_FIELDS) $(`#setting-${k}`).value = s[k];
  $('#settings-scope').textContent = app.current ? `for "${app.current.name}"` : 'for new chats';
  $('#settings-dialog').showModal();
}

async function saveSettings(e) {
  e.preventDefault();
  const num = (k, fallback) => (Number.isFinite(parseFloat($(`#setting-${k}`).value)) ? parseFloat($(`#setting-${k}`).value) : fallback);
  const s = { system: $('#setting-system').value, temperature: num('temperature', 0.8), top_p: num('top_p', 0.95),
    max_tokens: Math.trunc(num('max_tokens', -1)) };
  db.rememberSettings(s);
  if (app.current) {
    app.current.settings = s;
    await db.putConversation(app.current);
  }
  $('#settings-dialog').close();
}

async function exportConversations() {
  const data = await db.exportAll();
  const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: `llamacpy-conversations-${new Date().toISOString().slice(0, 10)}.json` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function importConversations(file) {
  try {
    const n = await db.importAll(JSON.parse(await file.text()));
    view.setServerStatus(`imported ${n} conversation${n === 1 ? '' : 's'}`);
  } catch (e) {
    view.setServerStatus(`import failed: ${e.message}`, 'error');
  }
  await loadSidebar();
}

// -- wiring ----------------------------------------------------------------------------------------------------

function wire() {
  const input = $('#input');
  if (matchMedia('(max-width: 720px)').matches) input.placeholder = 'Message';
  const submit = async () => {
    const text = input.value;
    if (await sendMessage(text)) {
      input.value = '';
      input.style.height = '';
    }
  };
  $('#composer').addEventListener('submit', (e) => {
    e.preventDefault();
    submit();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (!app.current || !app.gens.has(app.current.id)) submit();
    }
  });
  input.addEventListener('input', () => {
    input.style.height = '';
    input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
  });
  $('#stop').addEventListener('click', () => app.current && app.gens.get(app.current.id)?.stop());
  $('#new-chat').addEventListener('click', () => {
    location.hash = '#/';
    document.body.classList.remove('sidebar-open');
    input.focus();
  });
  $('#open-sidebar').addEventListener('click', () => document.body.classList.add('sidebar-open'));
  $('#close-sidebar').addEventListener('click', () => document.body.classList.remove('sidebar-open'));
  $('#settings-button').addEventListener('click', openSettings);
  $('#settings-form').addEventListener('submit', saveSettings);
  $('#settings-cancel').addEventListener('click', () => $('#settings-dialog').close());
  $('#export').addEventListener('click', exportConversations);
  $('#import').addEventListener('change', (e) => {
    if (e.target.files[0]) importConversations(e.target.files[0]);
    e.target.value = '';
  });
  $('#model-picker').addEventListener('change', (e) => {
    app.model = e.target.value;
    localStorage.setItem(MODEL_KEY, app.model);
  });
  $('#model-picker').addEventListener('focus', () => app.router && loadModels());
  window.addEventListener('hashchange', () => openConversation(routeId()));
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible') return;
    for (const gen of app.gens.values()) gen.kickIfStale();
    if (app.current) discoverStream(app.current);
    scheduleSync();
  });
  window.addEventListener('online', () => {
    for (const gen of app.gens.values()) {
      gen.retryNow();
      gen.kickIfStale();
    }
  });
  // another tab started or finished a reply (its resume state changed): refresh the list and spinners
  window.addEventListener('storage', (e) => {
    if (e.key === null || e.key.startsWith(resume.PREFIX)) scheduleSync();
  });
}

async function main() {
  api.setKeyPrompt(askKey);
  wire();
  await openConversation(routeId(), { discover: false });
  await loadSidebar();
  watchServer();
}

main();

// for tests and debugging in the console
window.llamacpy = { app, db, resume };
