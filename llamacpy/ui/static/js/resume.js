// Per-conversation resume state in localStorage, as llama.cpp's UI keeps it: the byte offset parsed so far
// and the model frozen when the request was sent (null outside router mode). Other tabs see these keys
// change through `storage` events, which is how they learn that a conversation started or stopped streaming.

export const PREFIX = 'llamacpy.streamResume.';

export function save(convId, { bytesReceived, model }) {
  localStorage.setItem(PREFIX + convId, JSON.stringify({ bytesReceived, updatedAt: Date.now(), model: model ?? null }));
}

/** The saved state, or null (none, or corrupted). */
export function read(convId) {
  try {
    const s = JSON.parse(localStorage.getItem(PREFIX + convId) || 'null');
    return s && typeof s === 'object' && Number.isInteger(s.bytesReceived) ? s : null;
  } catch {
    return null;
  }
}

export function clear(convId) {
  localStorage.removeItem(PREFIX + convId);
}

/** The X-Conversation-Id of a conversation: `<conv>` or, when a model is named, `<conv>::<model>`. */
export function identity(convId, model) {
  return model ? `${convId}::${model}` : convId;
}

/** The model to address a conversation's stream with: the one frozen at send time wins (even a frozen
 * null); the fallback (the conversation's last model, or the picker's) only when nothing is saved. */
export function frozenModel(convId, fallback) {
  const s = read(convId);
  return s && 'model' in s ? s.model : fallback ?? null;
}

export function convIdOf(identity) {
  const i = identity.indexOf('::');
  return i === -1 ? identity : identity.slice(0, i);
}
