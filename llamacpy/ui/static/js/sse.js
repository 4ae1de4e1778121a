// Reading an SSE response body line by line while counting bytes, so that a reply can be resumed from the
// exact byte after the last complete line (the server's `GET /v1/stream/<id>?from=N` counts the same bytes).
//
// Lines are cut on the byte 0x0A before decoding: UTF-8 never uses that byte inside a character, so a
// character split across network chunks is never decoded in halves.

export const DONE = Symbol('done');
const LF = 10;

function concat(a, b) {
  if (!a.length) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Read `reader` to its end. `onLine(text, nBytes)` gets each complete line (without its line ending) and
 * may return DONE to stop; `onChunk()` runs after each network chunk has been parsed. A trailing partial line
 * is dropped: the resume starts on its first byte.
 * @returns {Promise<{done: boolean, error: any}>} done: onLine returned DONE; error: the read failed.
 */
export async function readLines(reader, onLine, onChunk = () => {}) {
  const decoder = new TextDecoder();
  let pending = new Uint8Array(0);
  for (;;) {
    let r;
    try {
      r = await reader.read();
    } catch (error) {
      return { done: false, error };
    }
    if (r.done) return { done: false, error: null };
    const bytes = concat(pending, r.value);
    let start = 0;
    for (let i = bytes.indexOf(LF); i !== -1; i = bytes.indexOf(LF, start)) {
      let line = decoder.decode(bytes.subarray(start, i));
      if (line.endsWith('\r')) line = line.slice(0, -1);
      const n = i + 1 - start;
      start = i + 1;
      if (onLine(line, n) === DONE) {
        reader.cancel().catch(() => {});
        return { done: true, error: null };
      }
    }
    pending = bytes.slice(start);
    onChunk();
  }
}

/** The JSON payload of a `data:` line, `DONE` for `data: [DONE]`, null for anything else. */
export function dataOf(line) {
  if (!line.startsWith('data:')) return null;
  const payload = line.slice(5).trim();
  if (payload === '[DONE]') return DONE;
  try {
    return JSON.parse(payload);
  } catch {
    return null;
  }
}
