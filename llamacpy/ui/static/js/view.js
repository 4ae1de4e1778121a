// DOM building: the sidebar, the messages, the model picker. No state lives here; main.js passes what to
// show and the callbacks to run.

import { copy, renderInto } from './markdown.js';

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, '');
    else if (v !== false && v != null) node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c != null));
  return node;
}

// -- sidebar ---------------------------------------------------------------------------------------------------

/**
 * @param {object[]} convs
 * @param {string|null} currentId
 * @param {Set<string>} running ids of conversations still generating (here or on the server)
 * @param {{picked, rename, remove}} on
 */
export function renderSidebar(convs, currentId, running, on) {
  const list = $('#conversations');
  list.replaceChildren(
    ...convs.map((c) => {
      const busy = running.has(c.id);
      return el(
        'li',
        { class: `conv${c.id === currentId ? ' active' : ''}`, 'data-id': c.id, 'data-running': String(busy),
          'data-testid': 'conv-item' },
        el('span', { class: 'spinner', title: 'generating', hidden: !busy, 'aria-label': 'generating' }),
        el('a', { class: 'conv-name', href: `#/c/${c.id}`, title: c.name, onclick: () => on.picked(c.id) }, c.name),
        el('button', { class: 'icon rename', title: 'Rename', 'aria-label': 'Rename', onclick: () => startRename(c, on) }, '✎'),
        el('button', { class: 'icon delete', title: 'Delete', 'aria-label': 'Delete', onclick: () => on.remove(c) }, '✕'),
      );
    }),
  );
  if (!convs.length) list.append(el('li', { class: 'empty' }, 'No conversations yet'));
}

function startRename(conv, on) {
  const item = document.querySelector(`#conversations li[data-id="${conv.id}"]`);
  const input = el('input', { class: 'rename-input', value: conv.name, 'aria-label': 'New name' });
  let settled = false;
  const finish = (save) => {
    if (settled) return;
    settled = true;
    const name = input.value.trim();
    on.rename(conv, save && name ? name : conv.name);
  };
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') finish(true);
    if (e.key === 'Escape') finish(false);
  });
  input.addEventListener('blur', () => finish(true));
  item.querySelector('.conv-name').replaceWith(input);
  input.focus();
  input.select();
}

// -- messages --------------------------------------------------------------------------------------------------

/**
 * @param {object[]} messages the current conversation's messages, in order
 * @param {{state: string}|null} live the generation of this conversation, if one runs
 * @param {{edit, regenerate}} on
 */
export function renderMessages(messages, live, on) {
  const box = $('#messages');
  const lastAssistant = messages.findLast((m) => m.role === 'assistant');
  box.replaceChildren(
    ...messages.map((m) => messageElement(m, { live: m.status === 'streaming' ? live : null,
      canRegenerate: !live && m === lastAssistant, canEdit: !live && m.role === 'user', on })),
  );
  if (!messages.length) {
    box.append(el('div', { class: 'welcome' }, el('h2', {}, 'llamacpy'), el('p', {}, 'Ask anything to start a conversation.')));
  }
}

function messageElement(m, opts) {
  const node = el('article', { class: `msg ${m.role}`, 'data-id': m.id, 'data-testid': `msg-${m.role}` });
  fillMessage(node, m, opts);
  return node;
}

/** (Re)draw one message in place: called for every parsed chunk of a streaming reply. */
export function updateMessage(m, live) {
  const node = document.querySelector(`#messages article[data-id="${m.id}"]`);
  if (node) fillMessage(node, m, { live, canRegenerate: false, canEdit: false, on: null });
}

function fillMessage(node, m, { live, canRegenerate, canEdit, on }) {
  const streaming = m.status === 'streaming';
  node.dataset.status = m.status || 'done';
  node.classList.toggle('streaming', streaming);
  const parts = [];
  if (m.reasoning) {
    const details = el('details', { class: 'reasoning', open: streaming && !m.content }, el('summary', {}, 'Reasoning'));
    details.append(el('div', { class: 'reasoning-text' }, m.reasoning));
    parts.push(details);
  }
  const body = el('div', { class: m.role === 'assistant' ? 'body markdown' : 'body plain', 'data-testid': 'msg-body' });
  if (m.role === 'assistant') renderInto(body, m.content);
  else body.textContent = m.content;
  parts.push(body);
  if (m.error) parts.push(el('div', { class: 'error', role: 'alert' }, m.error));
  parts.push(metaLine(m, live, { canRegenerate, canEdit, on }));
  node.replaceChildren(...parts);
}

function metaLine(m, live, { canRegenerate, canEdit, on }) {
  const meta = el('footer', { class: 'meta' });
  const liveState = live?.stopping ? 'stopping' : live?.state;
  const state = live ? { streaming: '', resuming: 'reconnecting…', lost: 'connection lost', stopping: 'stopping…' }[liveState] || ''
    : { stopped: 'stopped', interrupted: 'interrupted' }[m.status] || '';
  if (state) meta.append(el('span', { class: 'state', 'data-testid': 'msg-state' }, state));
  const t = m.timings;
  if (t && m.role === 'assistant' && !live) {
    const speed = t.predicted_per_second ? ` · ${t.predicted_per_second.toFixed(1)} t/s` : '';
    meta.append(el('span', { class: 'speed', 'data-testid': 'msg-speed' }, `${t.predicted_n} tokens${speed}`));
  }
  if (!live && m.content) meta.append(el('button', { class: 'link', onclick: (e) => copy(m.content, e.target) }, 'Copy'));
  if (canEdit && on) meta.append(el('button', { class: 'link', onclick: () => startEdit(m, on) }, 'Edit'));
  if (canRegenerate && on) meta.append(el('button', { class: 'link', onclick: () => on.regenerate(m) }, 'Regenerate'));
  return meta;
}

function startEdit(m, on) {
  const node = document.querySelector(`#messages article[data-id="${m.id}"]`);
  const area = el('textarea', { class: 'edit-input', rows: 3, 'aria-label': 'Edit message' });
  area.value = m.content;
  const save = () => area.value.trim() && on.edit(m, area.value);
  area.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      save();
    }
    if (e.key === 'Escape') on.edit(m, null);
  });
  node.replaceChildren(area, el('footer', { class: 'meta' },
    el('button', { class: 'primary', onclick: save }, 'Save & send'),
    el('button', { class: 'link', onclick: () => on.edit(m, null) }, 'Cancel')));
  area.focus();
}

export function scrollToEnd(force) {
  const box = $('#messages');
  const nearEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 120;
  if (force || nearEnd) box.scrollTop = box.scrollHeight;
}

// -- header ----------------------------------------------------------------------------------------------------

/** The model picker: every model with its status when the server reports one (router mode). */
export function renderModels(models, selected) {
  const picker = $('#model-picker');
  picker.replaceChildren(
    ...models.map((m) => {
      const status = m.status?.value ? ` (${m.status.value}${m.status.failed ? ', failed' : ''})` : '';
      return el('option', { value: m.id, selected: m.id === selected, 'data-status': m.status?.value || '', title: m.id },
        `${displayName(m.id)}${status}`);
    }),
  );
  picker.disabled = models.length < 2;
  picker.hidden = !models.length;
}

/** A model served from a file path is shown by its file name. */
function displayName(id) {
  return /^(\/|[A-Za-z]:\\)|\.gguf$/i.test(id) ? id.split(/[\\/]/).pop() : id;
}

export function setComposerBusy(busy) {
  $('#send').hidden = busy;
  $('#stop').hidden = !busy;
}

let statusTimer = null;

/** A line in the header: warnings and errors stay until replaced, notes fade after a few seconds. */
export function setServerStatus(text, kind = '') {
  const s = $('#server-status');
  s.textContent = text;
  s.className = kind;
  clearTimeout(statusTimer);
  if (text && !kind) statusTimer = setTimeout(() => (s.textContent = ''), 4000);
}
